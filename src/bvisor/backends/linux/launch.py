"""Host harness: seal a launch plan in a memfd, spawn the launcher with the authority fds at
their declared slots, drain control + stdout + stderr concurrently, and observe the verdict.

Thread-safe: the launcher is started with ``posix_spawn`` whose file actions place every fd
in the child only, so a multi-threaded host never has its own fd table rearranged.
``LaunchChannels`` (the run's fds, its fd layout, the observation) is shared with the warm
launcher (``bvisor.backends.linux.warm``), so both paths lay out and observe a run identically.
"""

import errno
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from bvisor.capture import HANDED_AS_IS, RunIO, StdinRelay, StreamCapture, pump, stdin_source
from bvisor.terminal import KeyRelay, Terminal
from bvisor.wire.frame import ENV_CONTROL_FD, ENV_HOST_PID, ENV_PLAN_FD, staged_placement
from bvisor.wire.plan import TERMINAL_STATES, LauncherState

_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


class AuthorityFd:
    """A host-opened handle the launcher finds at fd ``slot_index``. ``run_launcher`` takes
    ownership and closes ``handle`` once the launcher has its copy."""

    __slots__ = ("slot_index", "handle")

    def __init__(self, slot_index: int, handle: int):
        self.slot_index, self.handle = slot_index, handle


class HarnessError(Exception):
    """The launcher could not be started at all (not a launcher verdict)."""


class WorkloadExit:
    __slots__ = ("code", "signal")

    def __init__(self, code=None, signal=None):
        self.code, self.signal = code, signal

    def __repr__(self) -> str:
        return f"WorkloadExit(code={self.code}, signal={self.signal})"


class LaunchObservation:
    """Everything the host saw of one launcher run."""

    __slots__ = ("terminal", "transcript", "notes", "launcher_exit", "stdout", "stderr", "held_open", "timeline", "stdin", "_heads")

    def __init__(self, terminal, transcript, notes, launcher_exit, stdout, stderr, held_open, timeline=(), stdin=""):
        self.terminal: LauncherState | None = terminal
        self.transcript: list = transcript
        self.notes: list = notes
        self.launcher_exit: int = launcher_exit
        self.stdout: StreamCapture = stdout
        self.stderr: StreamCapture = stderr
        self.held_open: list = held_open  # stream names a descendant still held after the run
        # (state or "launcher_exited", monotonic ns the host saw it): where a run's time went
        self.timeline: tuple = tuple(timeline)
        self.stdin: str = stdin  # how the caller's stdin reached the workload (``PipeHandover.describe``, ``TerminalHandover.describe``)
        self._heads = None  # first word -> the notes it begins, in order (see note_fields)

    @property
    def captured_stdout(self) -> bytes:
        return bytes(self.stdout.kept)

    @property
    def captured_stderr(self) -> bytes:
        return bytes(self.stderr.kept)

    def exec_succeeded(self) -> bool:
        return self.terminal is LauncherState.ExecSucceeded

    def _notes_with(self, head: str) -> list:
        """The notes that are ``head``, or ``head`` and a space and more, in order. (A run's
        verdict asks this of every attested note: the notes are indexed by first word once.)"""
        if self._heads is None:
            self._heads = {}
            for note in self.notes:
                self._heads.setdefault(note.split(" ", 1)[0], []).append(note)
        return [note for note in self._heads.get(head.split(" ", 1)[0], ()) if note == head or note.startswith(head + " ")]

    def note_fields(self, head: str):
        """The ``key=value`` fields of the first note starting with ``head``, or None."""
        found = self._notes_with(head)
        return dict(p.split("=", 1) for p in found[0][len(head):].split() if "=" in p) if found else None

    def workload_exit(self):
        """How the workload ended, from the one ``workload_exit`` note; None without one, and
        None where there are two (only the launcher writes it, once)."""
        if len(self._notes_with("workload_exit")) != 1:
            return None
        fields = self.note_fields("workload_exit")
        if "signal" in fields:
            return WorkloadExit(signal=int(fields["signal"]))
        if "code" in fields:
            return WorkloadExit(code=int(fields["code"]))
        return None  # "workload_exit unknown": a run-tree kill ended the init first

    def __repr__(self) -> str:
        return f"LaunchObservation(terminal={self.terminal}, notes={self.notes})"


def default_launcher() -> tuple:
    """Always run the launcher with this interpreter (a ``python3`` on PATH may be a slow shim)."""
    return (sys.executable, "-I", "-m", "bvisor.launcher")


def launcher_argv(launcher) -> list:
    """A launcher is a path or a command (e.g. a privilege-dropping prefix); resolve argv[0]."""
    argv = [os.fspath(launcher)] if isinstance(launcher, (str, os.PathLike)) else [os.fspath(p) for p in launcher]
    argv[0] = shutil.which(argv[0]) or argv[0]
    return argv


def _sealed_plan_fd(frame: bytes) -> int:
    fd = os.memfd_create("bvisor-launch-plan", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        data = memoryview(frame)
        while data:
            data = data[os.write(fd, data):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _placement_actions(placement: dict) -> list:
    """posix_spawn file actions that put each source fd at its target number in the child
    (``staged_placement``: staged above every number first, then placed)."""
    stage, final = staged_placement(placement)
    moves = [(os.POSIX_SPAWN_DUP2, source, target) for source, target in stage + final]
    return moves + [(os.POSIX_SPAWN_CLOSE, staged) for _, staged in stage]


# The host interpreter ignores these; the launcher must start with them at default.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


def spawn_launcher(argv: list, env: dict, placement: dict) -> int:
    """Start a launcher program with exactly ``env``, each host fd of ``placement`` (number in
    the child → host fd) at its number and nothing else, and default signal dispositions."""
    try:
        return os.posix_spawn(
            argv[0], argv, env, file_actions=_placement_actions(placement), setsigmask=(), setsigdef=_DEFAULT_SIGNALS
        )
    except OSError as exc:
        raise HarnessError(f"cannot start launcher {argv[0]}: {exc.strerror}") from None


def run_launcher(launcher, plan, authorities: Sequence[AuthorityFd], io: RunIO | None = None, supervisor=None):
    """Run one launch plan (a ``LinuxLaunchPlanV1``) to a verdict. Raises ``HarnessError``
    only if nothing could start. ``supervisor`` (a ``RunSupervisor``) is attached to the
    launcher's pidfd and checked while the launcher runs."""
    # Here, not at import: this module (through the warm launcher) is imported before the
    # CLI's heavy imports, to start the launcher early, and the plan encoding needs msgspec.
    from bvisor.wire.plan import encode_frame

    return run_launcher_frame(launcher, encode_frame(plan), authorities, io, supervisor)


def run_launcher_frame(launcher, frame: bytes, authorities: Sequence[AuthorityFd], io: RunIO | None = None, supervisor=None):
    """``run_launcher`` for an already-encoded frame (protocol tests hand it broken ones)."""
    with LaunchChannels(frame, authorities, io or RunIO()) as channels:
        plan_at, control_at, placement = channels.layout()
        env = {ENV_PLAN_FD: str(plan_at), ENV_CONTROL_FD: str(control_at), ENV_HOST_PID: str(os.getpid())}
        pid = spawn_launcher(launcher_argv(launcher), env, placement)
        channels.handed_over()
        pidfd = os.pidfd_open(pid)
        try:
            return channels.observe(pidfd, supervisor, lambda: os.waitpid(pid, 0)[1])
        finally:
            os.close(pidfd)


class LaunchChannels:
    """The host side of one launcher run, the same whichever launcher carries it out (one-shot
    or warm): the plan sealed in a memfd, the control socket pair, the stdout/stderr pipes,
    stdin, and the caller's authority handles, owned from construction on. A context manager:
    whatever is still open on exit is closed."""

    def __init__(self, frame: bytes, authorities: Sequence[AuthorityFd], io: RunIO):
        self._authorities, self._io = authorities, io
        self._opened: list = []
        self._stdio = None
        try:
            slots = [a.slot_index for a in authorities]
            if len(set(slots)) != len(slots) or any(s <= 2 for s in slots):
                raise HarnessError(f"authority slots must be distinct and above stdio: {slots}")
            self._plan = self._own(_sealed_plan_fd(frame))
            self._control, self._control_launcher = map(self._own, _socketpair())
            self._stdio = TerminalHandover(io.terminal, self._own) if io.terminal is not None else PipeHandover(io.stdin_fd, self._own)
        except BaseException:
            self.close()
            raise

    def _own(self, fd: int) -> int:
        self._opened.append(fd)
        return fd

    def layout(self) -> tuple:
        """``(plan fd, control fd, {fd number in the launcher: host fd})``: stdio at 0-2, each
        authority at its slot, the plan and the control channel strictly above every slot."""
        channel = max([a.slot_index for a in self._authorities] + [2]) + 1
        placement = dict(enumerate(self._stdio.workload_ends))
        placement.update({channel: self._plan, channel + 1: self._control_launcher})
        placement.update({a.slot_index: a.handle for a in self._authorities})
        return channel, channel + 1, placement

    def handed_over(self) -> None:
        """The launcher side has its copies; drop ours so EOF means the launcher side is done."""
        for fd in {self._plan, self._control_launcher, *self._stdio.workload_ends}:
            os.close(fd)
            self._opened.remove(fd)

    def observe(self, pidfd: int, supervisor, wait_status) -> LaunchObservation:
        """Drain control, stdout and stderr until the launcher (``pidfd``) has exited, then
        ``wait_status()`` gives its wait status."""
        control_bytes, arrivals = bytearray(), []

        def feed_control(chunk: bytes) -> None:
            control_bytes.extend(chunk)
            arrivals.append((len(control_bytes), time.monotonic_ns()))

        captures = {
            "stdout": StreamCapture("stdout", self._io.capture_limit, self._io.stdout_sink),
            "stderr": StreamCapture("stderr", self._io.capture_limit, self._io.stderr_sink),
        }
        if supervisor is not None:
            supervisor.attach(pidfd)
        names = {self._control: "control", **self._stdio.host_ends}
        readers = {fd: feed_control if name == "control" else captures[name].feed for fd, name in names.items()}
        held = pump(readers, pidfd, watchdog=supervisor, relay=self._stdio.relay)
        exited_ns = time.monotonic_ns()
        status = wait_status()
        transcript, notes = _read_control(control_bytes)
        terminals = [s for s in transcript if s in TERMINAL_STATES]
        return LaunchObservation(
            terminal=terminals[-1] if terminals else None,
            transcript=transcript,
            notes=notes,
            launcher_exit=os.waitstatus_to_exitcode(status),
            stdout=captures["stdout"],
            stderr=captures["stderr"],
            held_open=[names[fd] for fd in held],
            timeline=state_arrivals(control_bytes, arrivals) + [("launcher_exited", exited_ns)],
            stdin=self._stdio.describe(),
        )

    def close(self) -> None:
        for fd in self._opened:
            os.close(fd)
        self._opened.clear()
        if self._stdio is not None and self._stdio.relay is not None:
            self._stdio.relay.stop()
        for authority in self._authorities:
            _close_quietly(authority.handle)
        self._authorities = ()  # closed once: a second close could hit a number reused since

    def __enter__(self) -> "LaunchChannels":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class PipeHandover:
    """The workload's stdio as pipes: stdout and stderr are pipes the host drains, and fd 0
    is /dev/null for no stdin (``stdin_fd`` None), a duplicate of the caller's fd when it is
    one of ``HANDED_AS_IS``, else the read end of a pipe ``relay`` fills from it. No socket
    and no terminal ever reaches the workload, whichever launcher carries the run.
    ``own``: registers each fd made here with its owner, who closes it."""

    __slots__ = ("source", "relay", "workload_ends", "host_ends")

    def __init__(self, stdin_fd, own):
        self.source = "none" if stdin_fd is None else stdin_source(stdin_fd)
        self.relay = None
        out_r, out_w = map(own, os.pipe2(os.O_CLOEXEC))
        err_r, err_w = map(own, os.pipe2(os.O_CLOEXEC))
        if self.source in ("none", "closed"):
            stdin = own(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        elif self.source in HANDED_AS_IS:
            stdin = own(fcntl.fcntl(stdin_fd, fcntl.F_DUPFD_CLOEXEC, 3))
        else:
            stdin, write_end = os.pipe2(os.O_CLOEXEC)
            own(stdin)
            self.relay = StdinRelay(stdin_fd, write_end)
        self.workload_ends = (stdin, out_w, err_w)
        self.host_ends = {out_r: "stdout", err_r: "stderr"}

    def describe(self) -> str:
        """The report's words: ``relayed from=socket bytes=12``, ``as_is from=pipe``,
        ``devnull from=none``."""
        if self.relay is not None:
            return f"relayed from={self.source} bytes={self.relay.relayed}"
        how = "as_is" if self.source in HANDED_AS_IS else "devnull"
        return f"{how} from={self.source}"


class TerminalHandover:
    """The workload's stdio as one pseudo-terminal made for the run (``bvisor.terminal``):
    its slave at fds 0-2, its master drained as the run's stdout (a terminal merges the two
    streams), the caller's keys relayed to the master."""

    __slots__ = ("relay", "workload_ends", "host_ends", "_size")

    def __init__(self, terminal: Terminal, own):
        master, slave = map(own, terminal.hand_over())
        self._size = terminal.size()
        self.relay = KeyRelay(terminal.fd, fcntl.fcntl(master, fcntl.F_DUPFD_CLOEXEC, 3))
        self.workload_ends = (slave, slave, slave)
        self.host_ends = {master: "stdout"}

    def describe(self) -> str:
        return f"terminal pty {self._size} keys_bytes={self.relay.relayed}"


def _read_control(control_bytes: bytes) -> tuple:
    """The control channel's lines as (states, notes). A line ends at "\\n" alone, as the
    launcher writes it (``wire.frame.control_line``): ``str.splitlines`` would also end one at
    \\r, \\x1e or U+2028, which a path in a note could carry."""
    transcript, notes = [], []
    lines = control_bytes.decode("utf-8", "replace").split("\n")
    for line in lines[:-1] if lines[-1] == "" else lines:
        if line.startswith("# "):
            notes.append(line[2:])
        elif line in LauncherState.__members__:
            transcript.append(LauncherState(line))
        else:
            notes.append(f"unrecognised control line: {line!r}")
    return transcript, notes


def state_arrivals(control_bytes: bytes, arrivals: list) -> list:
    """``(state, ns)`` for each state line: the time the chunk that completed it arrived.
    ``arrivals`` holds ``(bytes received so far, ns)`` per chunk, in order."""
    timeline, end, chunk = [], 0, 0
    for line in bytes(control_bytes).split(b"\n")[:-1]:
        end += len(line) + 1
        while arrivals[chunk][0] < end:
            chunk += 1
        name = line.decode("utf-8", "replace")
        if name in LauncherState.__members__:
            timeline.append((name, arrivals[chunk][1]))
    return timeline


def _socketpair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return a.detach(), b.detach()


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise


# Errnos with which namespace/filter creation fails when the kernel or container forbids it.
_UNAVAILABLE_ERRNOS = {errno.EPERM, errno.ENOSYS, errno.EACCES, errno.ENOSPC, errno.EINVAL, errno.EOPNOTSUPP}


def launch_confinement_unavailable(obs: LaunchObservation) -> bool:
    """True when the launcher faulted before exec because this host cannot install confinement."""
    if obs.terminal is not LauncherState.SetupFaulted:
        return False
    failed = obs.note_fields("child_failed")
    return (
        failed is not None
        and failed.get("step") in ("identity", "confinement", "seccomp")
        and int(failed.get("errno", "0")) in _UNAVAILABLE_ERRNOS
    )


CONFINEMENT_UNAVAILABLE_FACT = "confinement_unavailable"


class LauncherProbe:
    """The launcher's ``--probe`` (what this launcher identity can install, proven by doing),
    started at construction and read by ``facts``: whoever starts it early (the backend
    before its cgroup checks, the CLI before its imports) overlaps the two."""

    def __init__(self, launcher=None):
        argv = launcher_argv(launcher or default_launcher()) + ["--probe"]
        self._facts = None
        try:
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={})
        except OSError as exc:
            self._process, self._facts = None, {"launcher_probe": f"failed {exc}"}

    def facts(self) -> dict:
        """The probe's facts, waiting for it on the first call."""
        if self._facts is None:
            self._facts = self._collect()
        return dict(self._facts)

    def close(self) -> None:
        """Let a probe nobody read (a command that ended on bad input) finish: it reaps its
        own throwaway children, which a kill would leave behind. Bounded like ``facts``."""
        self.facts()

    def _collect(self) -> dict:
        try:
            out, _ = self._process.communicate(timeout=_PROBE_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            self._process.kill()
            self._process.communicate()
            return {"launcher_probe": f"failed {exc}"}
        if self._process.returncode != 0:
            return {"launcher_probe": f"failed exit={self._process.returncode}"}
        facts = dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)
        facts["launcher_probe"] = "ok"
        return facts


_PROBE_TIMEOUT = 30
