"""Host harness: seal a launch plan in a memfd, spawn the launcher with the authority fds at
their declared slots, drain control + stdout + stderr concurrently, and observe the verdict.

Thread-safe: the launcher is started with ``posix_spawn`` whose file actions place every fd
in the child only, so a multi-threaded host never has its own fd table rearranged.
"""

import enum
import errno
import fcntl
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence

from bvisor.capture import RunIO, StreamCapture, pump
from bvisor.launcher import wire
from bvisor.linux.protocol import LinuxLaunchPlanV1, encode_frame

_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


class LauncherState(enum.Enum):
    LauncherStarted = "LauncherStarted"
    IdentityVerified = "IdentityVerified"
    PlanVerified = "PlanVerified"
    HandlesVerified = "HandlesVerified"
    ChildCreated = "ChildCreated"
    IdentityPhaseResolved = "IdentityPhaseResolved"
    VisibilityPhaseResolved = "VisibilityPhaseResolved"
    AmbientAuthorityPhaseResolved = "AmbientAuthorityPhaseResolved"
    ConfinementPhaseResolved = "ConfinementPhaseResolved"
    ReadyToExec = "ReadyToExec"
    ExecSucceeded = "ExecSucceeded"
    SetupRefused = "SetupRefused"
    SetupFaulted = "SetupFaulted"


_TERMINALS = {LauncherState(name) for name in wire.TERMINAL_STATES}


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

    __slots__ = ("terminal", "transcript", "notes", "launcher_exit", "stdout", "stderr", "held_open")

    def __init__(self, terminal, transcript, notes, launcher_exit, stdout, stderr, held_open):
        self.terminal: LauncherState | None = terminal
        self.transcript: list = transcript
        self.notes: list = notes
        self.launcher_exit: int = launcher_exit
        self.stdout: StreamCapture = stdout
        self.stderr: StreamCapture = stderr
        self.held_open: list = held_open  # stream names a descendant still held after the run

    @property
    def captured_stdout(self) -> bytes:
        return bytes(self.stdout.kept)

    @property
    def captured_stderr(self) -> bytes:
        return bytes(self.stderr.kept)

    def exec_succeeded(self) -> bool:
        return self.terminal is LauncherState.ExecSucceeded

    def note_fields(self, head: str):
        """The ``key=value`` fields of the first note starting with ``head``, or None."""
        for note in self.notes:
            if note == head or note.startswith(head + " "):
                return dict(p.split("=", 1) for p in note[len(head):].split() if "=" in p)
        return None

    def workload_exit(self):
        fields = self.note_fields("workload_exit")
        if fields is None:
            return None
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


def _launcher_argv(launcher) -> list:
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
    """posix_spawn file actions that put each source fd at its target number in the child.

    Sources go first to fresh numbers above every source and target, then down to their
    targets, so no placement can clobber a source another placement still needs.
    """
    base = max(list(placement) + list(placement.values())) + 1
    staged = [(os.POSIX_SPAWN_DUP2, src, base + i) for i, src in enumerate(placement.values())]
    placed = [(os.POSIX_SPAWN_DUP2, base + i, target) for i, target in enumerate(placement)]
    cleared = [(os.POSIX_SPAWN_CLOSE, base + i) for i in range(len(placement))]
    return staged + placed + cleared


def run_launcher(launcher, plan: LinuxLaunchPlanV1, authorities: Sequence[AuthorityFd], io: RunIO | None = None, supervisor=None):
    """Run one launch plan to a verdict. Raises ``HarnessError`` only if nothing could start.
    ``supervisor`` (a ``RunSupervisor``) is attached to the launcher's pidfd and checked while
    the launcher runs."""
    return run_launcher_frame(launcher, encode_frame(plan), authorities, io, supervisor)


def run_launcher_frame(launcher, frame: bytes, authorities: Sequence[AuthorityFd], io: RunIO | None = None, supervisor=None):
    """``run_launcher`` for an already-encoded frame (protocol tests hand it broken ones)."""
    io = io or RunIO()
    opened: list = []
    try:
        slots = [a.slot_index for a in authorities]
        if len(set(slots)) != len(slots) or any(s <= 2 for s in slots):
            raise HarnessError(f"authority slots must be distinct and above stdio: {slots}")
        plan_fd = _sealed_plan_fd(frame)
        opened.append(plan_fd)
        control_host, control_launcher = _socketpair()
        opened += [control_host, control_launcher]
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        opened += [out_r, out_w, err_r, err_w]
        stdin = io.stdin_fd
        if stdin is None:
            stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            opened.append(stdin)
        # Channel fds sit strictly above every authority slot.
        channel = max(slots + [2]) + 1
        placement = {0: stdin, 1: out_w, 2: err_w, channel: plan_fd, channel + 1: control_launcher}
        placement.update({a.slot_index: a.handle for a in authorities})
        env = {wire.ENV_PLAN_FD: str(channel), wire.ENV_CONTROL_FD: str(channel + 1), wire.ENV_HOST_PID: str(os.getpid())}
        argv = _launcher_argv(launcher)
        try:
            pid = os.posix_spawn(
                argv[0], argv, env, file_actions=_placement_actions(placement), setsigmask=(), setsigdef=_DEFAULT_SIGNALS
            )
        except OSError as exc:
            raise HarnessError(f"cannot start launcher {argv[0]}: {exc.strerror}") from None
        # The launcher has its copies; drop ours so EOF means the launcher side is done.
        for fd in (plan_fd, control_launcher, out_w, err_w):
            os.close(fd)
            opened.remove(fd)
        return _observe(pid, control_host, out_r, err_r, io, supervisor)
    finally:
        for fd in opened:
            os.close(fd)
        for authority in authorities:
            _close_quietly(authority.handle)


# The host interpreter ignores these; the launcher must start with them at default.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


def _socketpair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return a.detach(), b.detach()


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise


def _observe(pid: int, control: int, out_r: int, err_r: int, io: RunIO, supervisor) -> LaunchObservation:
    control_bytes = bytearray()
    stdout = StreamCapture("stdout", io.capture_limit, io.stdout_sink)
    stderr = StreamCapture("stderr", io.capture_limit, io.stderr_sink)
    pidfd = os.pidfd_open(pid)
    if supervisor is not None:
        supervisor.attach(pidfd)
    try:
        held = pump({control: control_bytes.extend, out_r: stdout.feed, err_r: stderr.feed}, pidfd, watchdog=supervisor)
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    names = {control: "control", out_r: "stdout", err_r: "stderr"}
    transcript, notes = [], []
    for line in control_bytes.decode("utf-8", "replace").splitlines():
        if line.startswith("# "):
            notes.append(line[2:])
        elif line in LauncherState.__members__:
            transcript.append(LauncherState(line))
        else:
            notes.append(f"unrecognised control line: {line!r}")
    terminals = [s for s in transcript if s in _TERMINALS]
    return LaunchObservation(
        terminal=terminals[-1] if terminals else None,
        transcript=transcript,
        notes=notes,
        launcher_exit=os.waitstatus_to_exitcode(status),
        stdout=stdout,
        stderr=stderr,
        held_open=[names[fd] for fd in held],
    )


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


def report_confinement_unavailable(observed) -> bool:
    """True when a report's facts say the host could not install the admitted confinement."""
    return any(fact.kind == CONFINEMENT_UNAVAILABLE_FACT for fact in observed)


def probe_launcher(launcher=None) -> dict:
    """Run the launcher's ``--probe``: what this launcher identity can install, proven by doing."""
    argv = _launcher_argv(launcher or default_launcher()) + ["--probe"]
    try:
        done = subprocess.run(argv, capture_output=True, env={}, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"launcher_probe": f"failed {exc}"}
    if done.returncode != 0:
        return {"launcher_probe": f"failed exit={done.returncode}"}
    facts = dict(line.split("=", 1) for line in done.stdout.decode().splitlines() if "=" in line)
    facts["launcher_probe"] = "ok"
    return facts


UNPRIVILEGED_PREFIX = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


@functools.cache
def unprivileged_userns_available() -> bool:
    """Can an unprivileged launcher create a user + network namespace here? Proven once, by
    doing; as root the probe drops to uid 65534 first so root's privilege proves nothing."""
    launcher = default_launcher()
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            return False
        launcher = UNPRIVILEGED_PREFIX + launcher
    return probe_launcher(launcher).get("userns_netns") == "ok"
