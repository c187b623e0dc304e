"""How a run's stdio meets the caller: bounded, hashed capture with optional live passthrough.

Every backend drains its workload's pipes through ``pump`` so that capture, hashing and
passthrough behave identically whatever confined the process.
"""

import os
import selectors
import time

import blake3

DEFAULT_CAPTURE_LIMIT = 16 * 1024 * 1024
_CHUNK = 65536


class RunIO:
    """Caller-side stdio for one run.

    ``stdin_fd``: an fd the workload reads as stdin (None → /dev/null). ``stdout_sink`` /
    ``stderr_sink``: called with each chunk as it arrives (live passthrough). At most
    ``capture_limit`` bytes per stream are kept; counts and hashes always cover everything.
    """

    __slots__ = ("stdin_fd", "stdout_sink", "stderr_sink", "capture_limit")

    def __init__(self, stdin_fd=None, stdout_sink=None, stderr_sink=None, capture_limit=DEFAULT_CAPTURE_LIMIT):
        self.stdin_fd = stdin_fd
        self.stdout_sink = stdout_sink
        self.stderr_sink = stderr_sink
        self.capture_limit = capture_limit


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


def pump(readers: dict, exit_fd: int, grace: float = 1.0, watchdog=None) -> list:
    """Feed each readable fd in ``readers`` (fd → callable) to its callable until EOF.

    ``exit_fd`` is a pidfd of the process the run waits for; once it has exited, the other
    fds get ``grace`` seconds to reach EOF (a descendant may hold a pipe open). Returns the
    fds still open then; the caller decides what that means. Closes nothing.
    ``watchdog``: while the process runs, ``watchdog.check()`` is called at (not before)
    each ``watchdog.next_check()`` monotonic time; None from it means nothing to watch.
    """
    selector = selectors.DefaultSelector()
    for fd in readers:
        selector.register(fd, selectors.EVENT_READ)
    selector.register(exit_fd, selectors.EVENT_READ)
    open_fds = set(readers)
    give_up_at = None
    try:
        while open_fds:
            wake = watchdog.next_check() if watchdog is not None and give_up_at is None else None
            deadline = give_up_at if wake is None else wake
            events = selector.select(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if wake is not None and time.monotonic() >= wake:
                watchdog.check()
            if not events and give_up_at is not None:
                break
            for key, _ in events:
                fd = key.fd
                if fd == exit_fd:
                    selector.unregister(exit_fd)
                    give_up_at = time.monotonic() + grace
                    continue
                data = os.read(fd, _CHUNK)
                if data:
                    readers[fd](data)
                else:
                    selector.unregister(fd)
                    open_fds.discard(fd)
    finally:
        selector.close()
    return sorted(open_fds)
