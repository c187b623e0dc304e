"""The caller's terminal, lent to one run through a pseudo-terminal of the run's own.

The workload never holds the caller's tty (whoever holds a terminal can change its settings,
push input with TIOCSTI or take over job control). Instead the host opens a fresh pty pair
for the run: the slave is the workload's stdin, stdout and stderr and its controlling
terminal (the launcher makes it so, ``launcher/ctty.py``); the host keeps the master and
relays bytes between it and the caller's terminal, which it puts in raw mode for the run so
that every key (Ctrl-C, Ctrl-Z, arrows) reaches the run's own line discipline. The caller's
window size is copied at the start and on every SIGWINCH; the caller's mode is restored on
every way out of ``attached()``, and input not yet read is discarded then (TCSAFLUSH): an
answer the caller's terminal owes to an escape sequence the run printed (a title or status
report) must not become a command typed into the caller's shell.
"""

import contextlib
import fcntl
import os
import selectors
import signal
import termios
import threading
import tty

from bvisor.capture import CHUNK

# Signals that end bvisor by default while the caller's terminal is raw: each restores it first.
_ENDINGS = (signal.SIGTERM, signal.SIGHUP)


class Terminal:
    """The caller's terminal (``fd``, read for keys and resized from) and, while a run holds
    it, the pty pair made for that run. Open with ``attached()``."""

    __slots__ = ("fd", "_master", "_slave")

    def __init__(self, fd: int = 0):
        self.fd = fd
        self._master = self._slave = None

    @contextlib.contextmanager
    def attached(self):
        """Open the run's pty pair with the caller's settings and window size, put the
        caller's terminal in raw mode and follow its size; undo all of it on the way out,
        a SIGTERM or SIGHUP included (the caller's mode is restored, then the signal ends
        bvisor as it would have)."""
        saved = termios.tcgetattr(self.fd)
        with contextlib.ExitStack() as undo:
            self._master, self._slave = os.openpty()
            undo.callback(self._close_pair)
            for fd in (self._master, self._slave):
                os.set_inheritable(fd, False)
            termios.tcsetattr(self._slave, termios.TCSANOW, saved)  # the caller's erase, kill, eof…
            self.follow_size()
            if threading.current_thread() is threading.main_thread():  # where Python runs handlers
                handlers = {signal.SIGWINCH: lambda *_: self.follow_size()}
                handlers.update(dict.fromkeys(_ENDINGS, lambda signum, _: self._restore_and_end(saved, signum)))
                for signum, handler in handlers.items():
                    undo.callback(signal.signal, signum, signal.signal(signum, handler))
            tty.setraw(self.fd, termios.TCSANOW)
            undo.callback(termios.tcsetattr, self.fd, termios.TCSAFLUSH, saved)
            yield self

    def _restore_and_end(self, saved, signum: int) -> None:
        with contextlib.suppress(OSError):  # a hung-up terminal takes no settings
            termios.tcsetattr(self.fd, termios.TCSAFLUSH, saved)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def _close_pair(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def follow_size(self) -> None:
        """Copy the caller's window size to the run's pty (the kernel then sends SIGWINCH to
        the run's foreground process group)."""
        if self._master is not None:
            size = fcntl.ioctl(self.fd, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, size)

    def hand_over(self) -> tuple:
        """``(master, slave)``: fresh duplicates for one launch. The slave's copy the terminal
        held is closed: once the run's own copies close, the master reads EIO (its end)."""
        if self._slave is None:
            raise RuntimeError("the terminal is not attached, or already handed to a run")
        master = fcntl.fcntl(self._master, fcntl.F_DUPFD_CLOEXEC, 3)
        slave, self._slave = self._slave, None
        return master, slave

    def size(self) -> str:
        """``rows=R cols=C`` of the run's pty, for the report."""
        rows, cols = termios.tcgetwinsize(self._master)
        return f"rows={rows} cols={cols}"


class KeyRelay:
    """Copies the caller's keys (``source``, never closed here) to the run's pty master
    (``write_end``, a duplicate owned here), driven by ``capture.pump`` like the stdin relay:
    ``interest``, ``step``, ``stop``, ``relayed``. A terminal in raw mode has no end of
    input: the relay ends when the run does, or when the caller's terminal hangs up."""

    __slots__ = ("source", "relayed", "_write_end", "_pending")

    def __init__(self, source: int, write_end: int):
        self.source, self._write_end = source, write_end
        os.set_blocking(write_end, False)
        self.relayed = 0
        self._pending = b""

    def interest(self):
        if self._write_end is None:
            return None
        if self._pending:
            return self._write_end, selectors.EVENT_WRITE
        return self.source, selectors.EVENT_READ

    def step(self) -> None:
        if self._write_end is None:
            return
        if not self._pending:
            try:
                self._pending = os.read(self.source, CHUNK)
            except BlockingIOError:
                return
            except OSError:
                self._pending = b""
            if not self._pending:  # the caller's terminal hung up
                self.stop()
            return
        try:
            written = os.write(self._write_end, self._pending)
        except BlockingIOError:
            return
        except OSError:  # the run's pty is gone
            self.stop()
            return
        self.relayed += written
        self._pending = self._pending[written:]

    def stop(self) -> None:
        if self._write_end is not None:
            os.close(self._write_end)
            self._write_end = None
        self._pending = b""
