"""The launcher coordinator: verify the plan, create one child, confine it, exec, report.

Single-threaded by construction (checked at run time): it forks, so it must never hold a
thread. It writes nothing to its own stdout/stderr once a plan is being carried out — those
fds belong to the workload — and reports everything on the control channel instead.
"""

import _signal as signal  # the C module; "signal" wraps it in enums that cost ~7 ms of start-up
import os
import sys

from bvisor.launcher import (
    attach,
    caps,
    cgroup,
    childproc,
    ctty,
    execve,
    fds,
    idmap,
    ipc,
    landlock,
    lifetime,
    mounts,
    netns,
    pidns,
    rlimits,
    seccomp,
    unixgate,
    userns,
    uts,
    view,
)
from bvisor.launcher.request import LaunchRequest, Refusal, build_request, verify_identity
from bvisor.launcher.transcript import Transcript
from bvisor.mechanism import fdio
from bvisor.mechanism.landlock import (
    SCOPE_ABSTRACT_UNIX_SOCKET,
    SCOPE_SIGNAL,
    access_mask,
    handled_rights,
    right_names,
)
from bvisor.mechanism.seccomp import UNIX_GATE_MECHANISM, planned_program, policy_lists
from bvisor.wire import attest, vocabulary
from bvisor.wire.frame import (
    ENV_CONTROL_FD,
    ENV_HOST_PID,
    ENV_PLAN_FD,
    EXIT_EXEC_SUCCEEDED,
    EXIT_FAULTED,
    EXIT_REFUSED,
    FrameReject,
    parse_frame,
)


def main() -> None:
    """One-shot entry: read the fds the host passed, run the plan, exit with the verdict."""
    control = _int_from_env(ENV_CONTROL_FD)
    plan_fd = _int_from_env(ENV_PLAN_FD)
    if control is None or plan_fd is None:
        # The only stdio write the launcher makes: no control channel exists, no workload runs.
        sys.stderr.write("bvisor-linux-launcher: boot fault: control or plan fd missing from the environment\n")
        os._exit(EXIT_FAULTED)
    os._exit(carry_out(control, plan_fd, _int_from_env(ENV_HOST_PID)))


def carry_out(control: int, plan_fd: int, parent) -> int:
    """Everything from the first control line on, shared by the one-shot launcher and every
    child of the warm server (``server.py``): report started, tie this process's life to
    ``parent`` (the host; for a warm child the server, which dies with the host), read the
    plan, run it. Returns the launcher's exit code."""
    try:
        os.set_inheritable(control, False)
        transcript = Transcript(control)
        transcript.state("LauncherStarted")
        if parent is not None:
            # A host killed mid-run takes the launcher, and through it the whole run, along.
            transcript.note(lifetime.die_with_parent(parent, attest.LAUNCHER_LIFETIME))
        return run_plan(fdio.read_all(plan_fd), transcript)
    except BaseException as exc:  # report, never print: stdio belongs to the workload
        return _fault_quietly(control, f"internal {type(exc).__name__}: {exc}")


def prepare() -> None:
    """What every run computes alike, computed once in the warm server before it forks: each
    seccomp program the host can plan, and the kernel's last capability number."""
    for policies in policy_lists():
        planned_program(policies, os.uname().machine)
    caps.last_cap()


def run_plan(frame: bytes, transcript: Transcript) -> int:
    """Everything after "plan received"; a warm launcher server calls this in a forked child."""
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        return _fault(transcript, f"NotSingleThreaded threads={threads}")
    try:
        fields = verify_identity(parse_frame(frame))
        transcript.state("IdentityVerified")
        request = build_request(fields)
        transcript.state("PlanVerified")
        # Only what the plan declares stays: anything else this process inherited (a host fd
        # left without close-on-exec) is closed before any handle is checked or any child made.
        declared = {0, 1, 2, transcript.fd} | {slot.index for slot in request.slots}
        transcript.note(fds.scrub(declared, "undeclared_fd_scrub"))
        _verify_handles(request)
        transcript.state("HandlesVerified")
        _check_kernel_floors(request)
        _check_identity(request)
    except FrameReject as exc:
        return _refuse(transcript, "PlanInvalid", f"frame {exc}")
    except Refusal as exc:
        return _refuse(transcript, exc.reason, exc.detail)
    return _launch(request, transcript)


def confine_and_exec(request: LaunchRequest, transcript: Transcript, error_fd: int, status_fd: int, tie, sigint, identity, trees: dict) -> None:
    """The child, born in the plan's namespaces: take its identity, then (with a pid namespace,
    whose pid 1 it is) become the init that runs the workload, else the workload itself.
    ``tie``: the lifeline's read end with a pid namespace, else the parent's pid. ``identity``:
    see ``_identity_phase``. ``trees``: idmapped clones to attach, by slot. Never returns."""
    step = "child"
    try:
        attach.allow_own_proc()
        transcript.state("ChildCreated")
        mechanism = "clone" if request.user_namespace else "fork"
        # /proc is still the launcher's here: /proc/self names this child by its pid out there.
        transcript.note(f"mechanism={mechanism} child_pid={os.readlink('/proc/self')}")
        step = "identity"
        _identity_phase(request, transcript, identity)
        transcript.state("IdentityPhaseResolved")
        # After the identity: the kernel clears the parent-death signal when the credentials
        # change (until then a dead launcher shows as EOF on the mapping pipe).
        step = "lifetime"
        transcript.note(lifetime.die_with_lifeline(tie) if request.pid_namespace else lifetime.die_with_parent(tie))
        step = "terminal"
        transcript.note(ctty.detach())
        if request.pid_namespace:
            step = "pid_namespace"
            transcript.note("pid_namespace=new")
            _init(request, transcript, error_fd, status_fd, sigint, trees)
        os.close(status_fd)
        step = "visibility"
        temp_root = _visibility_phase(request, transcript, trees)
        step = "cwd"
        _start_dir(request, transcript)
        transcript.state("VisibilityPhaseResolved")
    except BaseException as exc:
        childproc.fail(error_fd, step, exc)
    confine_workload(request, transcript, error_fd, sigint, temp_root)


def _init(request: LaunchRequest, transcript: Transcript, error_fd: int, status_fd: int, sigint, trees: dict) -> None:
    """Pid 1: join the run's cgroup leaf (and a cgroup namespace rooted there), mount this
    namespace's /proc and the run's mounts,
    start the workload, reap until it ends, relay how it ended, exit (taking the tree along).
    Never returns."""
    if os.getpid() != 1:
        raise OSError(0, f"the init is pid {os.getpid()}, not 1")
    step = "cgroup"
    try:
        for place in request.scheduled(_INIT_STEPS):
            transcript.note(place(request))
        step = "visibility"
        temp_root = _visibility_phase(request, transcript, trees)
        step = "cwd"
        _start_dir(request, transcript)
        transcript.note(attest.PID_NAMESPACE)
        transcript.state("VisibilityPhaseResolved")
        gate = unixgate.Handoff() if request.unix_gate else None
        workload = os.fork()
    except BaseException as exc:
        childproc.fail(error_fd, step, exc)
    if workload == 0:
        os.close(status_fd)
        confine_workload(request, transcript, error_fd, sigint, temp_root, gate)
    os.close(error_fd)
    _release_stdio()
    status, usage, gate_notes = _reap(transcript, workload, gate, temp_root)
    notes = _ending_notes(status, usage) + gate_notes + _boundary_usage_notes(request, temp_root)
    os.write(status_fd, "\n".join(notes).encode())
    os._exit(0)


def _release_stdio() -> None:
    """The init keeps no handle on the run's stdio once the workload has its own: none the
    run could reach again through it (the host's pty node), none that holds a stream open
    after the workload's tree has closed it."""
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _reap(transcript: Transcript, workload: int, gate, temp_root: int | None) -> tuple:
    """Reap until the workload ends: ``(status, rusage, notes)``. Under the unix socket gate
    the init first takes the gate's listener from the workload, before it may exec, and
    answers it meanwhile; sockets on the temp root's tmpfs are the run's own."""
    if gate is None:
        return (*pidns.reap_until(workload), [])
    try:
        listener = gate.take(workload)
    except OSError as exc:
        listener = None
        transcript.note(f"unix_gate=failed errno={exc.errno} detail={exc.strerror}")
    if listener is not None:
        own = "temp_root" if temp_root is not None else "none"
        transcript.note(f"{attest.unix_gate(UNIX_GATE_MECHANISM)} own_sockets={own}")
    gate.release(listener is not None)  # the workload fails at the gate unless it is held
    if listener is None:
        return (*pidns.reap_until(workload), [])
    account = unixgate.Account()
    own_dev = os.fstat(temp_root).st_dev if temp_root is not None else None
    return (*unixgate.supervise(listener, workload, own_dev, account), [account.note()])


def _ending_notes(status: int, usage) -> list:
    """How the workload ended, from its wait status and rusage."""
    return [
        f"workload_exit {pidns.describe_exit(status)}",
        f"workload_rusage utime_us={round(usage.ru_utime * 1e6)} stime_us={round(usage.ru_stime * 1e6)} "
        f"maxrss_kib={usage.ru_maxrss}",
    ]


def _boundary_usage_notes(request: LaunchRequest, temp_root: int | None) -> list:
    """What the run left in the boundary's own storage and moved over its own network,
    read from inside its namespaces once the workload has ended."""
    notes = []
    if temp_root is not None:
        notes.append(mounts.usage_note(temp_root))
    if request.network_namespace:
        notes.append(netns.usage_note())
    return notes


def confine_workload(request: LaunchRequest, transcript: Transcript, error_fd: int, sigint, temp_root: int | None, gate=None) -> None:
    """The workload's own process: its scheduled privilege-drop, fd-hygiene, policy-install
    and launch entries, each dispatched to its step in schedule order (the order
    ``wire.vocabulary.PRIMITIVES`` fixes). Never returns.
    ``temp_root``: an fd on the temp root's tmpfs (its rule's object), closed here.
    ``gate``: the unix socket gate's ``Handoff`` to the init, or None."""
    step, workload = "terminal", None
    try:
        if request.terminal:
            if request.view is not None:
                transcript.note(ctty.hold_through_the_view())
            transcript.note(ctty.take_run_terminal())
        step = "confinement"
        ruleset = _landlock_ruleset(request, transcript, temp_root)  # before the scrub: rules capture the root fds
        if temp_root is not None:
            os.close(temp_root)
        workload = _Workload(request, transcript, error_fd, sigint, ruleset, _seccomp_program(request, transcript), gate)
        for run in request.scheduled(_WORKLOAD_STEPS):
            run(workload)
    except BaseException as exc:
        childproc.fail(error_fd, workload.step if workload is not None else step, exc)
    os._exit(childproc.CHILD_FAILED)  # unreachable: exec or fail() ends the child


class _Workload:
    """What the workload's steps share: the request, the prepared ruleset and filter program,
    the gate's handoff, whether the confinement phase has been resolved yet, and ``step``: the
    name a failure is reported under (the host's verdict reads "confinement", "exec"...)."""

    def __init__(self, request: LaunchRequest, transcript: Transcript, error_fd: int, sigint, ruleset, program, gate):
        self.request, self.transcript, self.error_fd, self.sigint = request, transcript, error_fd, sigint
        self.ruleset, self.program, self.gate = ruleset, program, gate
        self.ready, self.step = False, "confinement"

    def restrict(self) -> None:
        """Landlock's one ruleset (paths and scopes alike) is enforced once."""
        if self.ruleset is not None:
            landlock.restrict_self(self.ruleset)
            os.close(self.ruleset)
            self.ruleset = None

    def ready_to_exec(self) -> None:
        """Confinement resolved: what remains are the steps that seal the exec itself."""
        if not self.ready:
            self.step = "exec"
            self.transcript.state("ConfinementPhaseResolved")
            execve.restore_signals(self.sigint)
            self.transcript.state("ReadyToExec")
            self.ready = True


def _set_rlimits(w: _Workload) -> None:
    w.step = "confinement"
    w.transcript.note(rlimits.apply(w.request.rlimits))


def _scrub_ambient(w: _Workload) -> None:
    """Ambient authority: every fd but what the exec needs, the environment (exact), then
    every privilege: no_new_privs and no capabilities (before landlock: it reads /proc)."""
    w.step = "ambient"
    keep = {0, 1, 2, w.request.exe_slot, w.transcript.fd, w.error_fd} | ({w.ruleset} if w.ruleset is not None else set())
    keep |= w.gate.workload_fds() if w.gate is not None else set()
    w.transcript.note(fds.scrub(keep))
    w.transcript.note(f"{attest.ENVIRONMENT} entries={len(w.request.envp)} inherited=none")
    w.transcript.state("AmbientAuthorityPhaseResolved")
    w.step = "confinement"
    w.transcript.note(seccomp.no_new_privs())
    w.transcript.note(caps.drop_all())


def _apply_landlock(w: _Workload) -> None:
    w.step = "confinement"
    w.restrict()
    w.transcript.note(attest.LANDLOCK)


def _scope_landlock(w: _Workload) -> None:
    w.step = "confinement"
    w.restrict()
    w.transcript.note(attest.LANDLOCK_SCOPE)


def _hand_over_gate(w: _Workload) -> None:
    w.ready_to_exec()
    w.step = "unix_gate"
    w.gate.hand_over()  # its filter first: the run's own, last, may refuse what it needs


def _install_seccomp(w: _Workload) -> None:
    w.ready_to_exec()
    w.step = "seccomp"
    seccomp.install(w.program)  # last: from here on only execve runs


def _exec(w: _Workload) -> None:
    w.ready_to_exec()
    w.step = "exec"
    execve.exec_fd(w.request.exe_slot, w.request.argv, w.request.envp)


# The workload's steps, by the primitive that schedules each. The namespace-create and
# fs-setup entries are carried out earlier, by the clone and the view (``_namespaces``,
# ``view.assemble``), which read the same validated request.
_WORKLOAD_STEPS = {
    vocabulary.ID_RLIMIT_SET: _set_rlimits,
    vocabulary.ID_AMBIENT_SCRUB: _scrub_ambient,
    vocabulary.ID_LANDLOCK_APPLY: _apply_landlock,
    vocabulary.ID_LANDLOCK_SCOPE: _scope_landlock,
    vocabulary.ID_UNIX_GATE: _hand_over_gate,
    vocabulary.ID_SECCOMP_APPLY: _install_seccomp,
    vocabulary.ID_EXEC: _exec,
}


def _check_kernel_floors(request: LaunchRequest) -> None:
    """Refuse before any child exists when this kernel lacks what the plan needs."""
    floors = [f for f in (request.landlock_floor, request.scope_floor) if f is not None]
    if floors:
        abi = landlock.abi_version()
        if abi < max(floors):
            raise Refusal("MissingPrimitive", f"landlock ABI {abi} is below the plan's floor {max(floors)}")


def _namespaces(request: LaunchRequest) -> int:
    """The CLONE_NEW* flags the child is born with: none without a user namespace, which
    owns (and, unprivileged, is the ticket to) every other one. The user and network
    namespaces are the seed's target fields, which schedule no primitive of their own; every
    other one is asked by a scheduled entry."""
    if not request.user_namespace:
        return 0
    flags = userns.CLONE_NEWUSER | (netns.CLONE_NEWNET if request.network_namespace else 0)
    for flag in request.scheduled(_BIRTH_FLAGS):
        flags |= flag
    return flags


# The namespace each primitive needs the child born in (a cgroup namespace is entered later,
# by the init once it is placed in the run's leaf).
_BIRTH_FLAGS = {
    vocabulary.ID_IPC_NS: ipc.CLONE_NEWIPC,
    vocabulary.ID_UTS_NS: uts.CLONE_NEWUTS,
    vocabulary.ID_PID_INIT: pidns.CLONE_NEWPID,
    vocabulary.ID_MOUNT_VIEW: mounts.CLONE_NEWNS,
}


def _check_identity(request: LaunchRequest) -> None:
    """A root launcher never makes in-run root host root: it needs the plan's outside id."""
    if request.user_namespace and request.outside_id is None and os.geteuid() == 0:
        raise Refusal("IdentityRefused", "a root launcher maps in-run root to an unprivileged outside_id; the plan gives none")


def _identity_phase(request: LaunchRequest, transcript: Transcript, identity) -> None:
    """``identity``: with an outside id, the read end the parent signals on once it mapped
    this child; else this launcher's own ``(uid, gid)``, which the child maps itself."""
    if not request.user_namespace:
        transcript.note("identity=not_required")
        return
    if request.outside_id is not None:
        if os.read(identity, 1) != b"m":
            raise OSError(0, "the launcher did not map the run's user namespace")
        os.close(identity)
        transcript.note(userns.become_mapped_root(request.outside_id))
    else:
        transcript.note(userns.map_self(*identity))
    if request.network_namespace:
        transcript.note(netns.attest())
    for attest_namespace in request.scheduled(_IDENTITY_STEPS):
        transcript.note(attest_namespace(request))


# What the child does in the namespaces it was born in, once it is their root.
_IDENTITY_STEPS = {
    vocabulary.ID_IPC_NS: lambda request: ipc.attest(),
    vocabulary.ID_UTS_NS: lambda request: uts.set_hostname(request.hostname),
}
# What the init does before the run's view: join the run's leaf, then root a cgroup namespace there.
_INIT_STEPS = {
    vocabulary.ID_CGROUP_PLACE: lambda request: cgroup.place(request.cgroup_slots),
    vocabulary.ID_CGROUP_NS: lambda request: cgroup.enter_namespace(),
}


def _visibility_phase(request: LaunchRequest, transcript: Transcript, trees: dict) -> int | None:
    """The run's own root, built from nothing (``view.py``); returns an fd on the temp root's
    tmpfs, or None without one. ``trees``: idmapped clones of writable roots and binds."""
    if not request.mount_namespace:
        transcript.note("visibility=not_required")
        return None
    transcript.note(mounts.make_private())
    return view.assemble(request, trees, transcript.note)


def _start_dir(request: LaunchRequest, transcript: Transcript) -> None:
    """Where the workload starts, inside the view (without one, where the host started us)."""
    if request.view is not None:
        transcript.note(view.start_in(*request.view.cwd))


def _add_rule(ruleset: int, abi: int, fd: int, writable: bool) -> str:
    """One path-beneath rule on ``fd``; returns the rights it grants, for the transcript."""
    allowed = access_mask(abi, writable, os.path.stat.S_ISDIR(os.fstat(fd).st_mode))
    landlock.add_rule(ruleset, fd, allowed)
    return ",".join(right_names(allowed))


def _landlock_ruleset(request: LaunchRequest, transcript: Transcript, temp_root: int | None):
    """Build the ruleset from fds only: the host's root and bind-source fds, and the fd the
    temp root's mount gave; paths are opened only beneath this run's own /proc. Scoped where
    the plan asks; None when the plan asks for neither."""
    scoped = SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET if request.scope_floor is not None else 0
    if request.landlock_floor is None:
        return landlock.create_ruleset(landlock.abi_version(), handle_fs=False, scoped=scoped) if scoped else None
    abi = landlock.abi_version()
    ruleset = landlock.create_ruleset(abi, scoped=scoped)
    # The exe the host opened may always be read and executed, wherever it lives.
    rules = [(request.exe_slot, False, "exe")] + [(slot, writable, "root") for slot, writable in request.roots()]
    for slot, writable, what in rules:
        transcript.note(f"landlock_rule {what} slot={slot} access={_add_rule(ruleset, abi, slot, writable)}")
    # A bind shows the host-opened source object itself: its rule is on the source fd.
    mounted = ([(temp_root, True, request.temp_root[0], "temp_root_mount")] if temp_root is not None else []) + [
        (b.source_slot, b.writable, b.dest, "bind_source") for b in request.binds
    ]
    for fd, writable, path, origin in mounted:
        transcript.note(f"landlock_rule mount path={path} from={origin} access={_add_rule(ruleset, abi, fd, writable)}")
    own = [(path, writable, "own_proc") for path, writable in request.proc_roots]
    if request.terminal and request.view is not None:
        own.append(("/dev/tty", True, "terminal"))  # the view's: it names only the run's own pty
    for path, writable, origin in own:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)  # in the run's own view (sealed), which no host process can rename
        try:
            transcript.note(f"landlock_rule mount path={path} from={origin} access={_add_rule(ruleset, abi, fd, writable)}")
        finally:
            os.close(fd)
    handled = handled_rights(abi)
    transcript.note(f"landlock abi={abi} handled={','.join(right_names(handled))} rules={len(rules) + len(mounted) + len(own)}")
    return ruleset


def _seccomp_program(request: LaunchRequest, transcript: Transcript):
    """Compile the plan's filter here, for this machine, and refuse unless it is the very
    program the host planned (same policies, same compiler, same architecture)."""
    if request.seccomp is None:
        return None
    policies, expected = request.seccomp
    program, digest = planned_program(tuple(policies), os.uname().machine)
    if bytes.fromhex(digest) != expected:
        raise OSError(0, f"seccomp program digest {digest} is not the planned {expected.hex()}")
    transcript.note(f"{attest.seccomp(policies, digest)} insns={len(program) // 8}")
    return program


def _launch(request: LaunchRequest, transcript: Transcript) -> int:
    # The coordinator outlives a terminal Ctrl-C so it can report how the workload ended;
    # the workload gets back the SIGINT disposition the launcher inherited.
    inherited_sigint = signal.SIG_IGN if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else signal.SIG_DFL
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getpid()
    try:
        # Made while this process is still host root, before the child exists to inherit them
        # (the run's child, in its own namespace, may not clone a mount of the host's).
        trees = _host_clones(request)
        if request.outside_id is not None and request.view is not None and request.view.exe is not None:
            transcript.note(view.exec_through_read_only_clone(request.exe_slot, request.view.exe, request.exe_slot))
    except OSError as exc:
        transcript.note(f"child_failed step=host_clones errno={exc.errno} detail=idmapped or exe clone: {exc.strerror}")
        return _fault(transcript, "the host-side mount clones could not be made")
    # With an outside id this process maps the child, then says so on this pipe; without,
    # the child maps its ids itself (read here: inside, unmapped, they read as the overflow id).
    mapped_r, mapped_w = os.pipe2(os.O_CLOEXEC) if request.outside_id is not None else (None, None)
    identity = mapped_r if request.outside_id is not None else (os.geteuid(), os.getegid())
    status_r, status_w = os.pipe2(os.O_CLOEXEC)  # the init's account of how the workload ended
    # The init's parent is outside its pid namespace (getppid() reads 0 there): a lifeline,
    # whose write end only this process holds, proves it is still alive. Held to the end.
    life_r, life_w = lifetime.lifeline() if request.pid_namespace else (None, None)
    transcript.note(attach.refuse_attach())  # before the child exists: the workload descends from it
    try:
        pid, error_fd = childproc.fork_with_error_pipe(_namespaces(request))
    except OSError as exc:  # the kernel refused the namespaces: no child exists
        fdio.close_all((status_r, status_w, life_r, life_w, mapped_r, mapped_w, *trees.values()))
        transcript.note(f"child_failed step=identity errno={exc.errno} detail=clone: {exc.strerror}")
        return _fault(transcript, "child failed at identity")
    if pid == 0:
        fdio.close_all((status_r, life_w, mapped_w))
        confine_and_exec(request, transcript, error_fd, status_w, life_r if request.pid_namespace else parent, inherited_sigint, identity, trees)
    fdio.close_all((status_w, life_r, mapped_r, *trees.values()))
    if mapped_w is not None:
        _map_child(pid, request.outside_id, mapped_w, transcript)
    failure = childproc.read_failure(error_fd)
    if failure is not None:
        os.close(status_r)
        os.waitpid(pid, 0)
        step, errno, detail = failure
        transcript.note(f"child_failed step={step} errno={errno} detail={detail}")
        return _fault(transcript, f"child failed at {step}")
    transcript.state("ExecSucceeded")
    relayed = fdio.read_all(status_r).decode("utf-8", "replace").splitlines()
    _, status, usage = os.wait4(pid, 0)
    if not request.pid_namespace:
        relayed = _ending_notes(status, usage)
    elif not relayed:
        # A run-tree kill (or the init's death) ended the namespace before it could report.
        relayed = [f"workload_exit unknown init_exit={pidns.describe_exit(status)}"]
    for note in relayed:
        transcript.note(note)
    return EXIT_EXEC_SUCCEEDED


def _host_clones(request: LaunchRequest) -> dict:
    """``{slot: detached tree}``: a root launcher clones every tree the view shows from the
    host's fds while it is still host root, idmapped where the plan asks and plain otherwise.
    The run's child, already the transient id, could not even reach a path under a 0700
    directory to locate it there (a rootless child can: it is the very user who opened it)."""
    if request.outside_id is None:
        return {}
    trees = idmap.clone_trees(list(request.idmapped), request.outside_id) if request.idmapped else {}
    try:
        if request.view is not None:
            for slot, _, writable in view.shown_trees(request):
                if slot not in trees:
                    trees[slot] = view.detached_clone(slot, writable)
    except BaseException:
        fdio.close_all(trees.values())
        raise
    return trees


def _map_child(pid: int, outside_id: int, mapped_w: int, transcript: Transcript) -> None:
    """Map the child's user namespace to ``outside_id`` and release it; on failure the child
    reads EOF, fails at identity, and the failure is read from its error pipe as any other."""
    try:
        userns.map_child(pid, outside_id)
        os.write(mapped_w, b"m")
    except OSError as exc:
        transcript.note(f"identity_map_failed errno={exc.errno} detail={exc.strerror}")
    finally:
        os.close(mapped_w)


def _verify_handles(request: LaunchRequest) -> None:
    for slot in request.slots:
        why = fds.shape_mismatch(slot.index, slot.kind, slot.writable)
        if why is not None:
            raise Refusal("HandleMismatch", f"slot {slot.index} ({slot.role}): {why}")
    if request.terminal:
        try:
            ctty.check_run_terminal()
        except OSError as exc:
            raise Refusal("HandleMismatch", f"terminal: {exc.strerror}") from None


def _refuse(transcript: Transcript, reason: str, detail: str) -> int:
    transcript.note(f"refusal={reason} {detail}")
    transcript.state("SetupRefused")
    return EXIT_REFUSED


def _fault(transcript: Transcript, detail: str) -> int:
    transcript.note(f"fault: {detail}")
    transcript.state("SetupFaulted")
    return EXIT_FAULTED


def _fault_quietly(control: int, detail: str) -> int:
    try:
        return _fault(Transcript(control), detail)
    except OSError:  # the host hung up; there is nobody left to tell
        return EXIT_FAULTED


def _int_from_env(name: str):
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else None
