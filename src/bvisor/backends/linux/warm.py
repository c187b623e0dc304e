"""The host side of the warm launcher (``bvisor.launcher.server``): one pre-imported launcher
server per owner, which forks a coordinator per run instead of starting an interpreter.

A run is laid out and observed exactly as ``run_launcher_frame`` does it (``LaunchChannels``):
the launcher-side fds go to the server in one message, the server answers with a pidfd of
the coordinator it forked (the host is not its parent, so a pid alone could be reaped and
reused under it), the host pumps control, stdout and stderr against that pidfd, and the
exit status comes from the server's EXITED reply.

A server that dies is noticed when a reply cannot come (EOF, a failed send, a reply overdue)
or, between runs, by its pidfd; the runs it was carrying end with ``HarnessError`` — never a
hang — and the next run starts a new server. Its coordinators, and through them their runs,
die with it (each is tied to the server by PR_SET_PDEATHSIG, the server to the host).
"""

import itertools
import os
import queue
import select
import signal
import socket
import threading
import time

from bvisor.backends.linux.launch import (
    HarnessError,
    LaunchChannels,
    LauncherProbe,
    LaunchObservation,
    default_launcher,
    launcher_argv,
    spawn_launcher,
)
from bvisor.capture import RunIO
from bvisor.mechanism import fdio
from bvisor.wire import warm as protocol
from bvisor.wire.frame import ENV_HOST_PID

# A live server answers within milliseconds; a reply this late means it is wedged (stopped,
# or stuck), and waiting on would hang the run. It is then killed, so its runs end too.
REPLY_TIMEOUT = 10.0

_SERVER_FD = 3

# How long ``close`` lets the server end on its own once it has read the hang-up (about a
# millisecond in practice; bounded, then it is killed).
_STOP_GRACE = 1.0

# How long ``close`` waits for the joined spawner thread to leave the kernel's task list
# (microseconds in practice; bounded so a close can never hang on it).
_THREAD_EXIT_WAIT = 1.0


class WarmLauncher:
    """The warm launcher of one owner (a ``LinuxBackend``): started by the first run, replaced
    when it has died, stopped by ``close`` (a later run starts a new one). Thread-safe: any
    number of threads may run at once.

    ``launcher`` takes the forms ``run_launcher`` takes (a path, or a command such as a
    privilege-dropping prefix); the server is that command with ``--serve``.
    """

    def __init__(self, launcher):
        self._argv = launcher_argv(launcher) + ["--serve"]
        self._lock = threading.Lock()
        self._server = None
        self._spawner = None
        self._owner = os.getpid()

    def server_pid(self):
        """The pid of the server carrying runs now, or None (for tests and memory reports)."""
        with self._lock:
            server = self._server
        return server.pid if server is not None and server.failure is None else None

    def run(self, plan_frame: bytes, authorities, io: RunIO | None = None, supervisor=None) -> LaunchObservation:
        """``run_launcher_frame`` through the warm server, with the same contract: owns the
        authority handles, returns the launcher's observation; ``HarnessError`` when the
        server could not carry the run (it died, was closed, or refused the request)."""
        with LaunchChannels(plan_frame, authorities, io or RunIO()) as channels:
            server = self._enter()
            try:
                return server.carry(channels, supervisor)
            finally:
                server.leave()

    def start(self) -> None:
        """Start the server now rather than at the first run, so that its start-up overlaps
        the caller's own work. HarnessError if it cannot be started."""
        self._enter().leave()

    def close(self) -> None:
        """Stop the server and its spawner thread; a run still in flight ends with HarnessError."""
        with self._lock:
            server, self._server = self._server, None
            spawner, self._spawner = self._spawner, None
        if server is not None:
            server.stop("the warm launcher was closed")
        if spawner is not None:
            spawner.stop()

    def _enter(self) -> "_Server":
        """The server for the next run, started (or restarted) when there is none alive."""
        with self._lock:
            if self._owner != os.getpid():
                self._forked()
            if self._server is None or not self._server.usable():
                if self._spawner is None:
                    self._spawner = _Spawner()
                self._server = _Server(self._argv, self._spawner)
            self._server.enter()
            return self._server

    def _forked(self) -> None:
        """This process is a fork of the owner: the server and the spawner thread are the
        parent's (its runs would die with the parent, and it refuses our pid). Let go of our
        copies only; the next run starts this process's own server."""
        if self._server is not None:
            self._server.abandon()
        self._server = self._spawner = None
        self._owner = os.getpid()


class PrestartedLauncher:
    """A launcher's two slow starts, begun before the host needs them: its ``--probe`` and a
    warm server, for ``LinuxBackend(prestarted=...)`` to adopt. The CLI begins them before its
    own imports (~100 ms), which they then overlap. ``close`` ends both."""

    def __init__(self, launcher=None):
        self.launcher = launcher if launcher is not None else default_launcher()
        self.probe = LauncherProbe(self.launcher)
        self.warm = WarmLauncher(self.launcher)
        try:
            self.warm.start()
        except HarnessError:
            pass  # the first run tries again, and fails the way a run does

    def close(self) -> None:
        self.probe.close()
        self.warm.close()


class _Spawner:
    """The one host thread every server of a WarmLauncher is started from, alive until
    ``close``. PR_SET_PDEATHSIG fires when the *thread* that started a process ends, not the
    process: a server started from a caller's short-lived thread would be killed with that
    thread, and every run in flight with it."""

    def __init__(self):
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="bvisor-warm-spawner", daemon=True)
        self._thread.start()

    def spawn(self, argv: list, env: dict, placement: dict) -> int:
        done = queue.SimpleQueue()
        self._jobs.put((argv, env, placement, done))
        outcome = done.get()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def stop(self) -> None:
        """Return once the thread is gone from the kernel too: ``join`` returns when Python is
        done with it, a moment before the task exits, and a caller that goes on to need a
        single-threaded process (``clone(CLONE_NEWUSER)``, a thread count) must not see it."""
        self._jobs.put(None)
        self._thread.join()
        task = f"/proc/self/task/{self._thread.native_id}"
        deadline = time.monotonic() + _THREAD_EXIT_WAIT
        while os.path.exists(task) and time.monotonic() < deadline:
            time.sleep(0.0005)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            argv, env, placement, done = job
            try:
                done.put(spawn_launcher(argv, env, placement))
            except BaseException as exc:  # handed to the caller, raised on its thread
                done.put(exc)


class _Server:
    """One server process and the host's end of its socket.

    No thread is dedicated to reading replies: whichever waiting run finds no reader reads
    one, files it under its request id and wakes the others (leader/followers). ``failure``
    is set once, when the server can carry no more runs; the socket is closed once no run
    uses it any longer, so no thread ever works on a closed (and maybe reused) fd number.
    """

    def __init__(self, argv: list, spawner: _Spawner):
        host_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        env = {protocol.ENV_SERVER_FD: str(_SERVER_FD), ENV_HOST_PID: str(os.getpid())}
        try:
            # The server writes nothing on its stdio; each coordinator gets its run's own.
            self.pid = spawner.spawn(argv, env, {0: devnull, 1: devnull, 2: devnull, _SERVER_FD: server_end.fileno()})
        except BaseException:
            host_end.close()
            raise
        finally:
            server_end.close()
            os.close(devnull)
        self._pidfd = os.pidfd_open(self.pid)
        self._sock = host_end
        self._poller = select.poll()
        self._poller.register(host_end.fileno(), select.POLLIN)
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._inbox = {}  # request id -> replies not yet taken: (kind, value, fds)
        self._reading = False
        self._runs = 0
        self.failure = None

    def enter(self) -> None:
        with self._cond:
            self._runs += 1

    def leave(self) -> None:
        with self._cond:
            self._runs -= 1
            self._close_socket_when_unused()

    def usable(self) -> bool:
        """False once it has failed; notices a server that died between runs."""
        with self._cond:
            if self.failure is None and _has_exited(self._pidfd):
                self._fail("the warm launcher server had exited")
            return self.failure is None

    def stop(self, reason: str) -> None:
        with self._cond:
            self._fail(reason, _STOP_GRACE)

    def abandon(self) -> None:
        """In a forked child of the owner: close this process's copies, touch nothing else."""
        self.failure = "the warm launcher server belongs to the parent process"
        self._sock.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def carry(self, channels: LaunchChannels, supervisor) -> LaunchObservation:
        """One run: send it, observe the coordinator the server forked, take its exit status."""
        request_id = self._register()
        try:
            self._send(request_id, *channels.layout())
            channels.handed_over()
            pidfd = self._started(request_id)
            try:
                return channels.observe(pidfd, supervisor, lambda: self._exit_status(request_id))
            finally:
                os.close(pidfd)
        finally:
            self._forget(request_id)

    def _register(self) -> int:
        with self._cond:
            if self.failure is not None:
                raise HarnessError(self.failure)
            request_id = next(self._ids)
            self._inbox[request_id] = []
            return request_id

    def _send(self, request_id: int, plan_at: int, control_at: int, placement: dict) -> None:
        if len(placement) > protocol.MAX_FDS:
            raise HarnessError(f"{len(placement)} fds do not fit one message to the warm launcher (max {protocol.MAX_FDS})")
        # A one-shot launcher inherits an ignored SIGINT from the host; a coordinator is told.
        sigint_ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        data, passed = protocol.encode_request(request_id, os.getpid(), sigint_ignored, plan_at, control_at, placement)
        try:
            # Outside the lock: a send may block while the server's queue is full, and the
            # replies that drain it must still be read.
            protocol.send(self._sock, data, passed)
        except OSError as exc:
            with self._cond:
                self._fail(f"the warm launcher server cannot be reached: {exc.strerror}")
            raise HarnessError(self.failure) from None

    def _started(self, request_id: int) -> int:
        """The coordinator's pidfd, once the server has forked it."""
        kind, value, passed = self._next_reply(request_id)
        if kind == protocol.REFUSED:
            raise HarnessError(f"the warm launcher server refused the run: {os.strerror(value)}")
        if kind != protocol.STARTED:
            raise self._broken(f"reply {kind} before the run started", passed)
        return passed[0]

    def _exit_status(self, request_id: int) -> int:
        kind, value, passed = self._next_reply(request_id)
        if kind != protocol.EXITED:
            raise self._broken(f"reply {kind} where the run's exit was due", passed)
        return value

    def _broken(self, detail: str, passed: list) -> HarnessError:
        fdio.close_all(passed)
        with self._cond:
            self._fail(f"the warm launcher server broke the protocol: {detail}")
        return HarnessError(self.failure)

    def _forget(self, request_id: int) -> None:
        with self._cond:
            for _, _, passed in self._inbox.pop(request_id):
                fdio.close_all(passed)

    def _next_reply(self, request_id: int) -> tuple:
        deadline = time.monotonic() + REPLY_TIMEOUT
        with self._cond:
            box = self._inbox[request_id]
            while not box:
                if self.failure is not None:
                    raise HarnessError(self.failure)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._fail(f"the warm launcher server sent no reply within {REPLY_TIMEOUT}s")
                elif self._reading:
                    self._cond.wait(remaining)
                else:
                    self._read_one(remaining)
            return box.pop(0)

    def _read_one(self, timeout: float) -> None:
        """Called locked: wait for one reply with the lock released, then file it."""
        self._reading = True
        self._cond.release()
        try:
            ready = self._poller.poll(timeout * 1000)
            received = protocol.receive(self._sock, protocol.REPLY.size + 1, 1) if ready else None
        except OSError as exc:
            received = exc
        finally:
            self._cond.acquire()
            self._reading = False
            self._cond.notify_all()
        if isinstance(received, OSError):
            self._fail(f"the warm launcher server ended: {received.strerror}")
        elif received is not None:
            self._file(*received)

    def _file(self, data: bytes, passed: list, msg_flags: int) -> None:
        if not data:
            fdio.close_all(passed)
            self._fail("the warm launcher server ended")
            return
        if not _well_formed(data, passed, msg_flags):
            fdio.close_all(passed)
            self._fail(f"the warm launcher server sent a malformed reply ({len(data)} bytes, {len(passed)} fds)")
            return
        kind, request_id, _, value = protocol.REPLY.unpack(data)
        box = self._inbox.get(request_id)
        if box is None:  # not a run in flight: nobody will take what it carries
            fdio.close_all(passed)
            return
        box.append((kind, value, passed))

    def _fail(self, reason: str, grace: float = 0.0) -> None:
        """Called locked. End the server for good — its coordinators, and through them their
        runs, die with it — and wake every run waiting on it. ``grace``: how long a server
        that reads the hang-up may take to end on its own (reaping its spare coordinator, so
        nothing of it outlives the call) before it is killed."""
        if self.failure is not None:
            return
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # a reader blocked on it returns at once
        except OSError:
            pass  # already disconnected: the server is gone
        if grace:
            exited = select.poll()
            exited.register(self._pidfd, select.POLLIN)
            exited.poll(grace * 1000)
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it has exited already
        self.failure = f"{reason} ({_describe(_reap(self.pid))})"
        os.close(self._pidfd)
        self._pidfd = None
        self._close_socket_when_unused()
        self._cond.notify_all()

    def _close_socket_when_unused(self) -> None:
        if self.failure is not None and self._runs == 0:
            self._sock.close()


def _well_formed(data: bytes, passed: list, msg_flags: int) -> bool:
    if len(data) != protocol.REPLY.size or msg_flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        return False
    kind = data[0]
    return len(passed) == 1 if kind == protocol.STARTED else kind in (protocol.EXITED, protocol.REFUSED) and not passed


def _has_exited(pidfd: int) -> bool:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def _reap(pid: int):
    """The server's wait status (it is the host's child), or None if someone else reaped it."""
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None


def _describe(status) -> str:
    if status is None:
        return "exit status unknown"
    code = os.waitstatus_to_exitcode(status)
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"
