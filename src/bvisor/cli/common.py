"""What every ``bvisor`` command shares: its exit statuses, bad input, the parser class that
turns a usage error into bad input, writing bytes out, and where a report is written.

Exit status of ``run``: the workload's own code; 128+N if it died of signal N; 124 wall
timeout; 137 killed for a budget; 125 refused at admission or a bvisor fault; 126 exe not
executable; 127 exe not found; 2 bad input or usage. Bad input never prints a traceback
and never writes a report. ``plan``: 0 admitted, 125 refused. A refused plan has one code
under ``plan`` and ``run``: 125, as env(1), timeout(1) and docker use it (the tool could not
run the command).
"""

import argparse
import os

EXIT_BAD_INPUT = 2
EXIT_TIMEOUT = 124
EXIT_REFUSED_OR_FAULT = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
EXIT_KILLED = 137


class BadInput(Exception):
    """Caller input that bvisor will not act on; the message is one line."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        subcommand = self.prog.removeprefix("bvisor").strip()
        raise BadInput(f"{subcommand}: {message}" if subcommand else message)


def write_out(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def pass_through(fd: int, data: bytes) -> None:
    """The workload's output to the caller. A reader that has gone (``| head``) ends the
    workload's stream, as in a shell pipeline: the workload's EPIPE, not bvisor's failure."""
    try:
        write_out(fd, data)
    except BrokenPipeError:
        from bvisor.capture import ReaderGone

        raise ReaderGone from None


class ReportTarget:
    """Where ``--report`` goes: its directory pinned by an fd before anything runs, so a run
    that could write there (a ``--rw`` root holding the report) can neither redirect the
    write with a symlink nor swap the directory. Written whole or not at all."""

    __slots__ = ("path", "name", "_dir")

    def __init__(self, path: str):
        self.path, self.name = path, os.path.basename(path)
        self._dir = os.open(os.path.dirname(os.path.abspath(path)), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def write(self, data: bytes) -> None:
        """A fresh temp file (never an existing name: O_EXCL|O_NOFOLLOW), renamed over the
        name, which replaces whatever is there (a planted symlink too) and follows nothing."""
        for _ in range(16):
            temp = f".{self.name}.{os.urandom(8).hex()}.tmp"
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=self._dir)
            except FileExistsError:
                continue
            try:
                write_out(fd, data)
                os.close(fd)
                os.rename(temp, self.name, src_dir_fd=self._dir, dst_dir_fd=self._dir)
            except OSError:
                try:
                    os.unlink(temp, dir_fd=self._dir)
                except OSError:
                    pass  # already gone: the error that matters is the one raised
                raise
            return
        raise OSError(17, "no free temporary name beside the report")  # EEXIST


class StreamTarget:
    """A report written as a stream to an fd opened before the run (stdout, a pipe, a device)."""

    __slots__ = ("path", "_fd")

    def __init__(self, path: str, fd: int):
        self.path, self._fd = path, fd

    def write(self, data: bytes) -> None:
        try:
            write_out(self._fd, data)
        finally:
            os.close(self._fd)
