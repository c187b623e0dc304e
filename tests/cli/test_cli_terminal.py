"""``bvisor run -- /bin/bash`` on a terminal, driven as a person would through a real pty:
the prompt appears, typed input echoes back, Ctrl-C interrupts a ``sleep`` without killing
the shell, a resize of the caller's terminal reaches ``stty size``, ``exit 3`` is bvisor's
exit code, and the caller's terminal mode is what it was before the run. The report keeps
what the terminal showed and says the run had a terminal of its own."""

import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from helpers import IDENTITIES, cli_prefix, shared_host_dir

BVISOR = str(Path(sys.executable).parent / "bvisor")
PROMPT = b"ready> "


class CallerTerminal:
    """A pty playing the caller's terminal: ``bvisor`` runs with its secondary end as stdio
    and controlling terminal; the test types into and reads from the main end."""

    def __init__(self, argv: list, rows: int, cols: int):
        self.main, self.secondary = os.openpty()
        self.resize(rows, cols)
        self.mode_before = termios.tcgetattr(self.secondary)
        self.seen = bytearray()
        self.matched = 0  # where the last wait_for's token ended
        self.process = subprocess.Popen(
            argv,
            stdin=self.secondary,
            stdout=self.secondary,
            stderr=self.secondary,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
            env={"PATH": os.environ["PATH"], "TERM": "xterm-256color", "BVISOR_HOME": os.environ.get("BVISOR_HOME", "")},
        )

    def resize(self, rows: int, cols: int) -> None:
        # Set on the caller's terminal: the kernel sends SIGWINCH to its foreground group (bvisor).
        fcntl.ioctl(self.secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, keys: bytes) -> None:
        os.write(self.main, keys)

    def wait_for(self, token: bytes, timeout: float = 30.0) -> bytes:
        """Read until ``token`` shows after the previous match; returns what came up to and
        including it (what came after stays for the next wait)."""
        start, deadline = self.matched, time.monotonic() + timeout
        while (found := self.seen.find(token, start)) < 0:
            ready, _, _ = select.select([self.main], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"{token!r} never showed; the terminal showed {bytes(self.seen)!r}")
            try:
                self.seen += os.read(self.main, 65536)
            except OSError:  # EIO: nobody holds the terminal any more
                raise AssertionError(f"the terminal closed before {token!r}; it showed {bytes(self.seen)!r}") from None
        self.matched = found + len(token)
        return bytes(self.seen[start : self.matched])

    def finish(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout)
        self.mode_after = termios.tcgetattr(self.secondary)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.main)
        os.close(self.secondary)


@pytest.fixture
def report_dir():
    path = shared_host_dir("bvisor-cli-terminal-", mode=0o777)  # the unprivileged CLI writes its report here
    yield Path(path)
    shutil.rmtree(path)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_an_interactive_shell_through_a_terminal(identity, report_dir):
    report = report_dir / "shell.json"
    argv = [*cli_prefix(identity), BVISOR, "run", "--quiet", "--no-store", "--report", str(report), "--env", "PS1=ready> ", "--", "/bin/bash", "--norc", "--noprofile", "-i"]
    term = CallerTerminal(argv, rows=24, cols=80)
    callers = os.fstat(term.secondary).st_rdev
    try:
        term.wait_for(PROMPT)  # the shell's own prompt, before anything is typed
        term.type(b"echo round-''trip\r")  # the quotes show the line was edited by the shell, not echoed back whole
        assert b"round-trip" in term.wait_for(PROMPT)
        term.type(b"sleep 60; echo slept-$((6 * 7))\r")
        time.sleep(0.5)  # the shell is waiting on sleep now; ^C goes to sleep's process group
        term.type(b"\x03")
        interrupted = term.wait_for(PROMPT, timeout=20)
        assert b"^C" in interrupted and b"slept-42" not in interrupted, interrupted
        term.type(b"echo still-$((40 + 2))\r")
        assert b"still-42" in term.wait_for(PROMPT)
        term.resize(33, 101)
        time.sleep(0.2)  # let bvisor's SIGWINCH handler copy the size before the shell asks
        term.type(b"stty size\r")
        term.wait_for(b"33 101")  # (the shell may redraw its prompt on the resize first)
        term.wait_for(PROMPT)
        term.type(b"tty_nr=$(cut -d' ' -f7 /proc/self/stat); echo tty_nr=$tty_nr\r")
        shown = term.wait_for(PROMPT)
        term.type(b"tty\r")  # ttyname(3) finds the run's pty by its node in the view's /dev/pts
        named = term.wait_for(PROMPT)
        term.type(b"exit 3\r")
        code = term.finish()
    finally:
        term.close()
    assert code == 3, bytes(term.seen)
    assert term.mode_after == term.mode_before, "the caller's terminal mode was not restored"
    # The shell's controlling terminal is a pty (major 136-143), and not the caller's.
    tty_nr = int(shown.split(b"tty_nr=")[-1].split()[0])
    assert 136 <= os.major(tty_nr) <= 143 and tty_nr != callers, shown
    number = (os.major(tty_nr) - 136) * 256 + os.minor(tty_nr)
    assert f"\r/dev/pts/{number}\r\n".encode() in named, named
    body = json.loads(report.read_text())
    stdin = [f["detail"] for f in body["observed"] if f["kind"] == "stdin"]
    assert len(stdin) == 1 and stdin[0].startswith("terminal pty rows=24 cols=80"), stdin
    assert body["outcome"] == "failed" and body["exit"] == {"code": 3}, body["exit"]


def _processes_running(marker: bytes) -> list:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker in f.read():
                    found.append(int(pid))
        except OSError:  # gone meanwhile
            pass
    return found


@pytest.mark.parametrize("identity", IDENTITIES)
def test_sigterm_restores_the_callers_terminal_and_leaves_nothing(identity):
    """bvisor ended by SIGTERM mid-run (as a service manager or `kill` would): the caller's
    terminal is out of raw mode again, bvisor died of that signal, and no process of the
    run is left."""
    marker = f"{os.getpid()}.{time.monotonic_ns() % 1000000}"
    argv = [*cli_prefix(identity), BVISOR, "run", "--quiet", "--no-store", "--", "/bin/sh", "-c", f"echo started; exec sleep {marker}"]
    term = CallerTerminal(argv, rows=24, cols=80)
    try:
        term.wait_for(b"started")
        assert termios.tcgetattr(term.secondary) != term.mode_before, "the control: raw mode while the run holds the terminal"
        term.process.terminate()
        code = term.finish()
    finally:
        term.close()
    assert code == -15
    assert term.mode_after == term.mode_before, "the caller's terminal mode was not restored after SIGTERM"
    deadline = time.monotonic() + 10
    while _processes_running(marker.encode()) and time.monotonic() < deadline:
        time.sleep(0.05)  # the run tree dies with its launcher, asynchronously
    assert _processes_running(marker.encode()) == []
