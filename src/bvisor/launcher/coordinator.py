"""The launcher coordinator: verify the plan, create one child, confine it, exec, report.

Single-threaded by construction (checked at run time): it forks, so it must never hold a
thread. It writes nothing to its own stdout/stderr once a plan is being carried out — those
fds belong to the workload — and reports everything on the control channel instead.
"""

import os
import _signal as signal  # the C module; "signal" wraps it in enums that cost ~7 ms of start-up
import sys

from bvisor.launcher import caps, childproc, execve, fds, landlock, lifetime, mounts, netns, seccomp, userns, wire
from bvisor.launcher.request import LaunchRequest, Refusal, build_request, verify_identity
from bvisor.launcher.transcript import Transcript


def main() -> None:
    """One-shot entry: read the fds the host passed, run the plan, exit with the verdict."""
    control = _fd_from_env(wire.ENV_CONTROL_FD)
    plan_fd = _fd_from_env(wire.ENV_PLAN_FD)
    if control is None or plan_fd is None:
        # The only stdio write the launcher makes: no control channel exists, no workload runs.
        sys.stderr.write("bvisor-linux-launcher: boot fault: control or plan fd missing from the environment\n")
        os._exit(wire.EXIT_FAULTED)
    code = wire.EXIT_FAULTED
    try:
        os.set_inheritable(control, False)
        transcript = Transcript(control)
        transcript.state("LauncherStarted")
        with open(plan_fd, "rb", closefd=True) as plan:
            frame = plan.read()
        code = run_plan(frame, transcript)
    except BaseException as exc:  # report, never print: stdio belongs to the workload
        code = _fault_quietly(control, f"internal {type(exc).__name__}: {exc}")
    os._exit(code)


def run_plan(frame: bytes, transcript: Transcript) -> int:
    """Everything after "plan received"; a warm launcher server calls this in a forked child."""
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        return _fault(transcript, f"NotSingleThreaded threads={threads}")
    try:
        fields = verify_identity(wire.parse_frame(frame))
        transcript.state("IdentityVerified")
        request = build_request(fields)
        transcript.state("PlanVerified")
        _verify_handles(request)
        transcript.state("HandlesVerified")
        _check_kernel_floors(request)
    except wire.FrameReject as exc:
        return _refuse(transcript, "PlanInvalid", f"frame {exc}")
    except Refusal as exc:
        return _refuse(transcript, exc.reason, exc.detail)
    return _launch(request, transcript)


def confine_and_exec(request: LaunchRequest, transcript: Transcript, error_fd: int, parent: int, sigint) -> None:
    """The child: every confinement step in order, then exec. Never returns."""
    step = "child"
    try:
        transcript.state("ChildCreated")
        transcript.note(f"mechanism=fork child_pid={os.getpid()}")
        step = "lifetime"
        transcript.note(lifetime.die_with_parent(parent))
        step = "identity"
        _identity_phase(request, transcript)
        transcript.state("IdentityPhaseResolved")
        step = "visibility"
        _visibility_phase(request, transcript)
        transcript.state("VisibilityPhaseResolved")
        step = "confinement"
        ruleset = _landlock_ruleset(request, transcript)  # before the scrub: rules capture the root fds
        step = "ambient"
        keep = {0, 1, 2, request.exe_slot, transcript.fd, error_fd} | ({ruleset} if ruleset is not None else set())
        transcript.note(fds.scrub(keep))
        transcript.note(f"environment=exact entries={len(request.envp)} inherited=none")
        transcript.state("AmbientAuthorityPhaseResolved")
        step = "confinement"
        _confinement_phase(ruleset, transcript)
        transcript.state("ConfinementPhaseResolved")
        step = "exec"
        execve.restore_signals(sigint)
        transcript.state("ReadyToExec")
        execve.exec_fd(request.exe_slot, request.argv, request.envp)
    except BaseException as exc:
        childproc.fail(error_fd, step, exc)
    os._exit(childproc.CHILD_FAILED)  # unreachable: exec or fail() ends the child


def _check_kernel_floors(request: LaunchRequest) -> None:
    """Refuse before any child exists when this kernel lacks what the plan needs."""
    if request.landlock_floor is not None:
        abi = landlock.abi_version()
        if abi < request.landlock_floor:
            raise Refusal("MissingPrimitive", f"landlock ABI {abi} is below the plan's floor {request.landlock_floor}")


def _identity_phase(request: LaunchRequest, transcript: Transcript) -> None:
    if not request.user_namespace:
        transcript.note("identity=not_required")
        return
    flags = (netns.CLONE_NEWNET if request.network_namespace else 0) | (mounts.CLONE_NEWNS if request.mount_namespace else 0)
    transcript.note(userns.enter(flags))
    if request.network_namespace:
        transcript.note(netns.attest())


def _visibility_phase(request: LaunchRequest, transcript: Transcript) -> None:
    if not request.mount_namespace:
        transcript.note("visibility=not_required")
        return
    transcript.note(mounts.make_private())
    sources = [mounts.locate_source(b.source_slot, b.source_path) for b in request.binds]
    temp_path = None
    if request.temp_root is not None:
        temp_path = request.temp_root[0]
        transcript.note(mounts.mount_temp_root(*request.temp_root))
    for b, source in zip(request.binds, sources):
        transcript.note(mounts.bind(source, b.dest, b.writable, temp_path))
        os.close(source)


def _add_rule(ruleset: int, abi: int, fd: int, writable: bool) -> str:
    """One path-beneath rule on ``fd``; returns the rights it grants, for the transcript."""
    allowed = landlock.access_mask(abi, writable, os.path.stat.S_ISDIR(os.fstat(fd).st_mode))
    landlock.add_rule(ruleset, fd, allowed)
    return ",".join(landlock.right_names(allowed))


def _landlock_ruleset(request: LaunchRequest, transcript: Transcript):
    """Build the ruleset from the host's root fds (and the mounts this child made)."""
    if request.landlock_floor is None:
        return None
    abi = landlock.abi_version()
    ruleset = landlock.create_ruleset(abi)
    # The exe the host opened may always be read and executed, wherever it lives.
    rules = [(request.exe_slot, False, "exe")] + [(slot, writable, "root") for slot, writable in request.roots()]
    for slot, writable, what in rules:
        transcript.note(f"landlock_rule {what} slot={slot} access={_add_rule(ruleset, abi, slot, writable)}")
    mounted = ([(request.temp_root[0], True)] if request.temp_root else []) + [(b.dest, b.writable) for b in request.binds]
    for path, writable in mounted:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)  # a mount this child made, not host authority
        try:
            transcript.note(f"landlock_rule mount path={path} access={_add_rule(ruleset, abi, fd, writable)}")
        finally:
            os.close(fd)
    handled = landlock.handled_rights(abi)
    transcript.note(f"landlock abi={abi} handled={','.join(landlock.right_names(handled))} rules={len(rules) + len(mounted)}")
    return ruleset


def _confinement_phase(ruleset, transcript: Transcript) -> None:
    """Every boundary: no_new_privs and no capabilities; landlock where the plan asks."""
    transcript.note(seccomp.no_new_privs())
    transcript.note(caps.drop_all())  # before landlock: it reads back from /proc
    if ruleset is not None:
        landlock.restrict_self(ruleset)
        os.close(ruleset)
        transcript.note("landlock=restricted installed=true")


def _launch(request: LaunchRequest, transcript: Transcript) -> int:
    # The coordinator outlives a terminal Ctrl-C so it can report how the workload ended;
    # the workload gets back the SIGINT disposition the launcher inherited.
    inherited_sigint = signal.SIG_IGN if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else signal.SIG_DFL
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getpid()
    pid, error_fd = childproc.fork_with_error_pipe()
    if pid == 0:
        confine_and_exec(request, transcript, error_fd, parent, inherited_sigint)
    failure = childproc.read_failure(error_fd)
    if failure is not None:
        os.waitpid(pid, 0)
        step, errno, detail = failure
        transcript.note(f"child_failed step={step} errno={errno} detail={detail}")
        return _fault(transcript, f"child failed at {step}")
    transcript.state("ExecSucceeded")
    _, status, usage = os.wait4(pid, 0)
    if os.WIFSIGNALED(status):
        transcript.note(f"workload_exit signal={os.WTERMSIG(status)}")
    else:
        transcript.note(f"workload_exit code={os.WEXITSTATUS(status)}")
    transcript.note(
        f"workload_rusage utime_us={round(usage.ru_utime * 1e6)} stime_us={round(usage.ru_stime * 1e6)} "
        f"maxrss_kib={usage.ru_maxrss}"
    )
    return wire.EXIT_EXEC_SUCCEEDED


def _verify_handles(request: LaunchRequest) -> None:
    for slot in request.slots:
        why = fds.shape_mismatch(slot.index, slot.kind, slot.writable)
        if why is not None:
            raise Refusal("HandleMismatch", f"slot {slot.index} ({slot.role}): {why}")


def _refuse(transcript: Transcript, reason: str, detail: str) -> int:
    transcript.note(f"refusal={reason} {detail}")
    transcript.state("SetupRefused")
    return wire.EXIT_REFUSED


def _fault(transcript: Transcript, detail: str) -> int:
    transcript.note(f"fault: {detail}")
    transcript.state("SetupFaulted")
    return wire.EXIT_FAULTED


def _fault_quietly(control: int, detail: str) -> int:
    try:
        return _fault(Transcript(control), detail)
    except OSError:  # the host hung up; there is nobody left to tell
        return wire.EXIT_FAULTED


def _fd_from_env(name: str):
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else None
