"""How a run's stdio meets the caller: bounded, hashed capture with optional live passthrough.

Every backend drains its workload's pipes through ``pump`` so that capture, hashing and
passthrough behave identically whatever confined the process.
"""

import errno
import fcntl
import os
import selectors
import stat
import time

import blake3

DEFAULT_CAPTURE_LIMIT = 16 * 1024 * 1024
CHUNK = 65536  # the most one read takes from a stream


class RunIO:
    """Caller-side stdio for one run.

    ``stdin_fd``: an fd the workload reads as stdin (None → /dev/null); unless it is one
    of ``HANDED_AS_IS``, the workload reads a pipe the host relays it through instead.
    ``stdout_sink`` / ``stderr_sink``: called with each chunk as it arrives (live
    passthrough). At most ``capture_limit`` bytes per stream are kept; counts and hashes
    always cover everything.
    ``terminal``: an attached ``bvisor.terminal.Terminal``: the workload's stdio is then a
    pseudo-terminal of its own, fed with the caller's keys (``stdin_fd`` is unused), and
    everything it shows is its stdout (``stderr_sink`` is unused).
    """

    __slots__ = ("stdin_fd", "stdout_sink", "stderr_sink", "capture_limit", "terminal")

    def __init__(self, stdin_fd=None, stdout_sink=None, stderr_sink=None, capture_limit=DEFAULT_CAPTURE_LIMIT, terminal=None):
        self.stdin_fd = stdin_fd
        self.stdout_sink = stdout_sink
        self.stderr_sink = stderr_sink
        self.capture_limit = capture_limit
        self.terminal = terminal


class ReaderGone(Exception):
    """Raised by a sink whose reader has gone (the caller's stdout is a pipe whose reader
    closed it, ``| head``): ``pump`` then closes the workload's stream on it, so its next
    write gets SIGPIPE/EPIPE, as in a shell pipeline."""


class StreamCapture:
    """One stream: the first ``limit`` bytes kept, every byte counted and hashed."""

    __slots__ = ("name", "limit", "kept", "total", "_hasher", "_sink")

    def __init__(self, name: str, limit: int, sink=None):
        self.name, self.limit, self._sink = name, limit, sink
        self.kept = bytearray()
        self.total = 0
        self._hasher = blake3.blake3()

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        self._hasher.update(data)
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += data[:room]
        if self._sink is not None:
            self._sink(data)

    @property
    def truncated(self) -> bool:
        return self.total > len(self.kept)

    @property
    def digest(self) -> str:
        return self._hasher.hexdigest()


# The kinds of caller stdin the workload gets as they are: each carries bytes and nothing
# else. A socket is a network endpoint (send on fd 0 reaches its peer whatever the run's
# network); a terminal lets its holder change the caller's terminal (termios, window size,
# job control); a file or a named FIFO is a host file whose metadata its owner may change
# through /proc/self/fd (chmod, utime), and write if it was opened so; a directory, an
# O_PATH fd or any other device or anonymous inode (eventfd, pidfd, epoll…) is authority
# of its own kind. All those are relayed, byte for byte, through a pipe the host pumps.
# Only an anonymous pipe's read end and /dev/null are handed as they are: reading them
# (and writing /dev/null) does nothing else.
HANDED_AS_IS = frozenset({"pipe", "null"})
_DEV_NULL = os.makedev(1, 3)


def stdin_source(fd: int) -> str:
    """What the caller's stdin ``fd`` is, as the report names it: ``pipe`` (anonymous) and
    ``null`` (``HANDED_AS_IS``), else ``file``, ``fifo`` (named), ``socket``, ``tty``,
    ``char_device``, ``block_device``, ``directory``, ``path_only``, ``writable_pipe``,
    ``writable_fifo``, ``writable_file``, ``other``, or ``closed`` (no such fd)."""
    try:
        st = os.fstat(fd)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return "closed"
    mode = st.st_mode
    if flags & os.O_PATH:
        return "path_only"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        if st.st_rdev == _DEV_NULL:
            return "null"
        return "tty" if os.isatty(fd) else "char_device"
    if stat.S_ISBLK(mode):
        return "block_device"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        kind = "pipe" if os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:") else "fifo"
    else:
        kind = "file" if stat.S_ISREG(mode) else "other"
    if kind != "other" and flags & os.O_ACCMODE != os.O_RDONLY:
        return f"writable_{kind}"
    return kind


class StdinRelay:
    """Copies the caller's stdin (``source``, never closed here) into a pipe whose read end
    the workload gets, driven by ``pump`` on the thread that drains the run: no thread of
    its own. It reads no further ahead than the workload: one read (at most ``CHUNK``
    bytes; one line from a terminal) at a time, and the next only once the workload has
    taken all of it, so what a workload never reads stays with the caller. Ends at the
    source's EOF or read error (the workload then reads EOF), when the workload stops
    reading (EPIPE), or at ``stop``. Only polls and reads ``source``: its file status flags
    and its terminal settings stay as the caller set them. A read follows a poll that said
    readable, so it returns at once unless another reader drains the same source meanwhile.
    """

    __slots__ = ("source", "relayed", "_write_end", "_pending", "_drained")

    def __init__(self, source: int, write_end: int):
        self.source, self._write_end = source, write_end
        os.set_blocking(write_end, False)  # our own pipe end: a full pipe never blocks the pump
        # A one-page pipe polls writable only when it is empty: that is how the relay sees
        # that the workload has taken everything.
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, os.sysconf("SC_PAGE_SIZE"))
        self.relayed = 0
        self._pending = b""
        self._drained = True

    def interest(self):
        """``(fd, selector events)`` the relay waits for next, or None once it has ended."""
        if self._write_end is None:
            return None
        if self._pending or not self._drained:
            return self._write_end, selectors.EVENT_WRITE
        return self.source, selectors.EVENT_READ

    def step(self) -> None:
        """Move what the ready fd allows: read one chunk from the source, write what waits,
        or note that the workload has emptied the pipe."""
        if self._write_end is None:  # stopped in the same round its fd was reported ready
            return
        if self._pending:
            self._write()
        elif not self._drained:
            self._drained = True
        else:
            self._read()

    def _read(self) -> None:
        try:
            self._pending = os.read(self.source, CHUNK)
        except BlockingIOError:  # a caller's non-blocking source raced empty
            return
        except OSError:  # hung-up terminal, unconnected socket, directory…: its end
            self._pending = b""
        if not self._pending:
            self.stop()

    def _write(self) -> None:
        try:
            written = os.write(self._write_end, self._pending)
        except BlockingIOError:
            return
        except BrokenPipeError:  # the workload closed its stdin: nothing more to carry
            self.stop()
            return
        self.relayed += written
        self._pending = self._pending[written:]
        self._drained = False

    def stop(self) -> None:
        """Close the workload's pipe (it reads EOF); idempotent."""
        if self._write_end is not None:
            os.close(self._write_end)
            self._write_end = None
        self._pending = b""


def _follow_relay(selector, relay, registered):
    """Register what ``relay`` waits for now in place of ``registered``; returns it."""
    wanted = relay.interest() if relay is not None else None
    if wanted != registered:
        if registered is not None:
            selector.unregister(registered[0])
        if wanted is not None:
            selector.register(*wanted, data=relay)
    return wanted


def _close_for_the_writer(fd: int) -> None:
    """Close the pipe's read end under ``fd`` (its writer then gets EPIPE) while the number
    stays open, on /dev/null, for its owner to close."""
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.dup2(null, fd, inheritable=False)
    finally:
        os.close(null)


def _read_stream(fd: int) -> bytes:
    """One chunk; b"" at the end, which a pseudo-terminal's master reports as EIO once
    every slave has closed."""
    try:
        return os.read(fd, CHUNK)
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        return b""


def pump(readers: dict, exit_fd: int, grace: float = 1.0, watchdog=None, relay: StdinRelay | None = None) -> list:
    """Feed each readable fd in ``readers`` (fd → callable) to its callable until EOF.

    ``exit_fd`` is a pidfd of the process the run waits for; once it has exited, the other
    fds get ``grace`` seconds to reach EOF (a descendant may hold a pipe open). Returns the
    fds still open then; the caller decides what that means. Closes nothing (a reader that
    raises ``ReaderGone`` has its pipe closed under the same fd number).
    ``watchdog``: while the process runs, ``watchdog.check()`` is called at (not before)
    each ``watchdog.next_check()`` monotonic time; None from it means nothing to watch.
    ``relay``: a ``StdinRelay`` moved along while the process runs and stopped when it exits.
    """
    # poll(2), not epoll: a relay's source may be a file epoll refuses (a device without
    # poll support, a directory), which poll reports ready and the relay's read then ends.
    selector = selectors.PollSelector()
    for fd in readers:
        selector.register(fd, selectors.EVENT_READ)
    selector.register(exit_fd, selectors.EVENT_READ)
    open_fds = set(readers)
    give_up_at = None
    relaying = None  # (fd, events) the relay is registered with
    try:
        while open_fds:
            relaying = _follow_relay(selector, relay, relaying)
            wake = watchdog.next_check() if watchdog is not None and give_up_at is None else None
            deadline = give_up_at if wake is None else wake
            events = selector.select(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if wake is not None and time.monotonic() >= wake:
                watchdog.check()
            if not events and give_up_at is not None:
                break
            for key, _ in events:
                fd = key.fd
                if key.data is not None:
                    key.data.step()
                    continue
                if fd == exit_fd:
                    selector.unregister(exit_fd)
                    give_up_at = time.monotonic() + grace
                    if relay is not None:
                        relay.stop()
                    continue
                data = _read_stream(fd)
                if data:
                    try:
                        readers[fd](data)
                        continue
                    except ReaderGone:
                        _close_for_the_writer(fd)
                selector.unregister(fd)
                open_fds.discard(fd)
    finally:
        selector.close()
    return sorted(open_fds)
