"""Lower an admitted plan to a ``LinuxLaunchPlanV1`` and the authority handles it needs.

Everything the launcher will act on is decided here, in the host: the exact envp (secret
leases resolved now, never written to the plan or report), the namespaces, the schedule of
primitives with real declaration and parameter digests, and the exe opened as an fd.
"""

import errno
import functools
import os
import stat

import msgspec

from bvisor.backends.linux import mountinfo
from bvisor.backends.linux.budgets import temp_root_inodes
from bvisor.backends.linux.exe_identity import exe_identity
from bvisor.backends.linux.facts import linux_facts
from bvisor.backends.linux.filesystem import (
    exe_grant,
    exposed_grant,
    filesystem_grants,
    temp_root_grant,
)
from bvisor.backends.linux.launch import AuthorityFd
from bvisor.contract import (
    BoundaryPlan,
    BudgetDimension,
    Capability,
    HostControl,
    NetPolicy,
    ObservedFact,
    SpawnPolicy,
    Workload,
    capped_limit,
)
from bvisor.environment import lower_environment
from bvisor.evidence.home import ensure_home, evidence_dirs, lookups
from bvisor.mechanism import landlock, seccomp
from bvisor.secrets import SecretUnavailable
from bvisor.wire import vocabulary
from bvisor.wire.plan import (
    BindRequest,
    CgroupNsRequest,
    CgroupPlacementRequest,
    DescriptorKind,
    DescriptorRole,
    DescriptorShape,
    DescriptorSlotV1,
    IdmappedMountRequest,
    IpcNsRequest,
    LandlockRequest,
    LandlockScopeRequest,
    LinuxLaunchBodyV1,
    LinuxLaunchPlanV1,
    MountNsRequest,
    NetworkNsRequest,
    PidNsRequest,
    ProcRootRequest,
    RlimitRequest,
    SeccompRequest,
    TargetSpecV1,
    TempRootRequest,
    TerminalRequest,
    UnixGateRequest,
    UserNsRequest,
    UtsNsRequest,
    ViewRequest,
    ViewRootRequest,
    lowering_hash,
    schedule,
)


class LoweringFailed(Exception):
    """The plan cannot be carried out as admitted; nothing was started.

    ``fact`` names what failed; ``caller_error`` is true when the caller's own input is the
    cause (a missing or non-executable exe), false when the host cannot honour the plan.
    """

    def __init__(self, fact: str, detail: str, caller_error: bool = False, os_errno: int = 0):
        super().__init__(f"{fact}: {detail}")
        self.fact, self.detail, self.caller_error, self.os_errno = fact, detail, caller_error, os_errno


class LoweredLaunch:
    __slots__ = ("plan", "authorities", "facts", "deny_network")

    def __init__(self, plan, authorities, facts, deny_network):
        self.plan, self.authorities, self.facts, self.deny_network = plan, authorities, facts, deny_network


def open_exe(path: str) -> int:
    """Open the exe as an O_PATH fd: the authority the launcher execs, never the path again."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        fact = "exe_not_found" if exc.errno in (errno.ENOENT, errno.ENOTDIR) else "exe_not_executable"
        raise LoweringFailed(fact, f"{path}: {exc.strerror}", caller_error=True, os_errno=exc.errno) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LoweringFailed("exe_not_executable", f"{path}: not a regular file", caller_error=True, os_errno=errno.EACCES)
    return fd


FIRST_CGROUP_SLOT = 11  # up to 5 hierarchies: 11..15, below the roots
MAX_CGROUP_SLOTS = 5
FIRST_ROOT_SLOT = 20
MAX_ROOTS = 256

_KIND_OF_MODE = (
    (stat.S_ISDIR, DescriptorKind.Directory),
    (stat.S_ISREG, DescriptorKind.Regular),
    (stat.S_ISCHR, DescriptorKind.CharDevice),
)


def _open_authority(path: str, fact: str) -> tuple:
    """An O_PATH fd on ``path`` and its descriptor kind; refuses what cannot be a root."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise LoweringFailed(fact, f"{path}: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    for test, kind in _KIND_OF_MODE:
        if test(mode):
            return fd, kind
    os.close(fd)
    raise LoweringFailed(fact, f"{path}: not a directory, regular file or character device")


class _Authorities:
    """Host-opened handles in slot order; closed together if lowering fails half-way."""

    def __init__(self):
        self.table, self.fds = [], []
        self.resolved = []  # (declared path, the object's path) where a symlink was followed
        self.actual = {}  # slot -> the object's path

    def add(self, path: str, role: DescriptorRole, fact: str) -> int:
        if len(self.table) >= MAX_ROOTS:
            raise LoweringFailed(fact, f"more than {MAX_ROOTS} roots and exposed paths")
        fd, kind = _open_authority(path, fact)
        actual = os.readlink(f"/proc/self/fd/{fd}")
        if actual != path:
            self.resolved.append((path, actual))
        slot = FIRST_ROOT_SLOT + len(self.table)
        self.actual[slot] = actual
        self.fds.append(AuthorityFd(slot, fd))
        self.table.append(DescriptorSlotV1(slot_index=slot, role=role, expected=DescriptorShape(kind=kind, writable=False)))
        return slot

    def kinds(self) -> dict:
        return {d.slot_index: d.expected.kind for d in self.table}

    def handle(self, slot: int) -> int:
        return next(a.handle for a in self.fds if a.slot_index == slot)

    def close(self) -> None:
        for authority in self.fds:
            os.close(authority.handle)


def _temp_root_control(spec):
    return next((c for c in spec.controls if isinstance(c, HostControl.TempRoot)), None)


def _temp_root(spec, budgets) -> TempRootRequest | None:
    control = _temp_root_control(spec)
    if control is None:
        return None
    storage = next(b for b in budgets if b.dimension is BudgetDimension.Storage)
    return TempRootRequest(path=control.path, size_bytes=storage.limit, max_inodes=temp_root_inodes(storage.limit))


def _rlimits(plan: BoundaryPlan) -> list:
    """Per-process kernel caps: the fd count. (Storage is the temp root's tmpfs size: the
    budget counts boundary-owned storage only, so RLIMIT_FSIZE, which would also cap writes
    to granted host paths and pre-empt the tmpfs's ENOSPC with SIGXFSZ, is not used.)"""
    handles = capped_limit(plan.budgets, BudgetDimension.HandleCount)
    return [] if handles is None else [RlimitRequest(resource="nofile", limit=handles)]


def _run_tree(plan: BoundaryPlan, cgroup_procs) -> tuple:
    """The pid namespace every run gets where the host can make one, and the cgroup slots."""
    if not linux_facts(plan.profile).userns_pid.ok:
        if cgroup_procs:
            raise LoweringFailed("cgroup_placement_unavailable", "cgroup placement needs the pid namespace's init")
        return None, None, []
    if len(cgroup_procs) > MAX_CGROUP_SLOTS:
        raise LoweringFailed("cgroup_placement_unavailable", f"more than {MAX_CGROUP_SLOTS} cgroup hierarchies")
    slots = [FIRST_CGROUP_SLOT + i for i in range(len(cgroup_procs))]
    table = [
        DescriptorSlotV1(slot_index=slot, role=DescriptorRole.CgroupProcs, expected=DescriptorShape(kind=DescriptorKind.Regular, writable=True))
        for slot in slots
    ]
    placement = CgroupPlacementRequest(procs_slots=slots) if slots else None
    return PidNsRequest(), placement, table


_SPAWN_POLICIES = {
    SpawnPolicy.DenyNewTasks: seccomp.SPAWN_POLICIES[0],
    SpawnPolicy.AllowThreadsWithinBoundary: seccomp.SPAWN_POLICIES[1],
}


def seccomp_policies(capabilities, deny_network: bool) -> list:
    """The filter's frozen policies (``seccomp.policy_list``): the strictest spawn policy
    asked for, inet sockets under deny-all, the baseline."""
    asked = {type(c.policy) for c in capabilities if isinstance(c, Capability.ChildSpawn)}
    spawn = next((name for policy, name in _SPAWN_POLICIES.items() if policy in asked), None)
    return list(seccomp.policy_list(spawn, deny_network))


@functools.lru_cache(maxsize=32)
def compiled_filter(policies: tuple, arch: str) -> tuple:
    """``(program digest, policy digest, instruction count, rule lines)`` of a policy list:
    pure, so each combination is compiled once per host process."""
    program, digest = seccomp.planned_program(policies, arch)
    return digest, seccomp.policy_digest(list(policies)), len(program) // 8, tuple(seccomp.describe(seccomp.merged(policies)))


def _seccomp(plan: BoundaryPlan, deny_network: bool):
    """The filter request, where this host can install one (else the run has none, and says so)."""
    if not linux_facts(plan.profile).seccomp_filter.ok:
        return None, []
    policies = seccomp_policies(plan.spec.capabilities, deny_network)
    digest, policy_digest, insns, lines = compiled_filter(tuple(policies), os.uname().machine)
    facts = [ObservedFact(kind="seccomp_lowered", detail=f"policies={','.join(policies)} policy={policy_digest} program={digest} insns={insns}")]
    facts += [ObservedFact(kind="seccomp_rule", detail=line) for line in lines]
    return SeccompRequest(policies=policies, program_digest=bytes.fromhex(digest)), facts


def _beneath_proc(path: str) -> bool:
    return path == "/proc" or path.startswith("/proc/")


def _landlock_scope(plan: BoundaryPlan) -> LandlockScopeRequest | None:
    """Signal and abstract-socket scoping, on every run whose kernel offers it."""
    facts = linux_facts(plan.profile)
    if facts.landlock_abi < landlock.SCOPE_ABI or not facts.landlock_restrict.ok:
        return None
    return LandlockScopeRequest(abi_floor=landlock.SCOPE_ABI)


HOSTNAME = "bvisor"


def _isolation(plan: BoundaryPlan, pid_ns) -> tuple:
    """The IPC, UTS and cgroup namespaces every run with a user namespace gets; a host that
    cannot make them runs nothing (the probe proves them with the pid namespace's init)."""
    isolation = linux_facts(plan.profile).userns_isolation
    if not isolation.ok:
        raise LoweringFailed("namespace_isolation_unavailable", f"IPC/UTS/cgroup namespaces: {isolation.said}")
    return IpcNsRequest(), UtsNsRequest(hostname=HOSTNAME), CgroupNsRequest() if pid_ns is not None else None


def _shared(authorities: _Authorities, slot: int) -> bool:
    """Whether the object is writable by every user (``/tmp``, ``/var/tmp``, ``/dev/shm``, a
    0666 file). Idmapping its owner would hand the run that owner's rights over every other
    file in it (root's, in ``/tmp``: other services' private files, and links the kernel's
    protected_symlinks then trusts); the run writes there as its own id instead, as any user
    does."""
    return bool(os.fstat(authorities.handle(slot)).st_mode & stat.S_IWOTH)


def _idmapped(grants, binds, outside_id, authorities: _Authorities) -> tuple:
    """With a transient outside id, each writable root (at its object's path) and each
    writable bind is attached as an idmapped clone, but a shared one (``_shared``): ``(idmapped
    requests, shared paths)``. A device (/dev/null, say) is writable by its own mode, and
    devtmpfs has no idmapping."""
    if outside_id is None:
        return [], []
    kinds = authorities.kinds()
    writable = [(slot, authorities.actual[slot]) for slot, g in grants if g.writable] + [(b.source_slot, b.dest) for b in binds if b.writable]
    idmapped, shared = [], []
    for slot, dest in writable:
        if kinds[slot] is DescriptorKind.CharDevice:
            continue
        if _shared(authorities, slot):
            shared.append(dest)
        else:
            idmapped.append(IdmappedMountRequest(slot=slot, dest=dest))
    return idmapped, shared


def _view(grants, confine_fs: bool, authorities: _Authorities, masked: list, exe_path: str, cwd) -> ViewRequest:
    """The run's root: every granted root but devices (the view's own /dev has the ones a
    run gets), each at its object's path, with a symlink where the declared path led there
    through one (/bin -> /usr/bin); the spec's ``cwd`` to start in, or the caller's working
    directory where the view has it; the evidence directories masked."""
    kinds = authorities.kinds()
    roots = [(slot, g.path, authorities.actual[slot]) for slot, g in grants if kinds[slot] is not DescriptorKind.CharDevice]
    return ViewRequest(
        roots=[ViewRootRequest(slot=slot, path=actual) for slot, _, actual in roots],
        cwd=os.getcwd() if cwd is msgspec.UNSET else cwd,
        cwd_required=cwd is not msgspec.UNSET,
        host_tree=not confine_fs,
        masked=masked,
        links=[(declared, actual) for _, declared, actual in roots if declared != actual],
        exe=exe_path,
    )


def describe_view(view: ViewRequest, authorities: _Authorities, temp_root, binds, own_proc: bool) -> str:
    """The run's root in one line, as the summary prints it."""
    if view.host_tree:
        parts = ["the host's tree (nosuid,nodev; /sys read-only)"]
    else:
        writable = {d.slot_index for d in authorities.table if d.role is DescriptorRole.WriteRoot}
        ro = [r.path for r in view.roots if r.slot not in writable]
        rw = [r.path for r in view.roots if r.slot in writable]
        parts = ["fresh root"] + ([f"ro {','.join(ro)}"] if ro else []) + ([f"rw {','.join(rw)}"] if rw else [])
    if temp_root is not None:
        parts.append(f"tmpfs {temp_root.path} {temp_root.size_bytes // 1024}K")
    parts += [f"{'rw' if b.writable else 'ro'} {b.dest} (from {b.source_path})" for b in binds]
    parts.append("/dev minimal" + ("; /proc own" if own_proc else ""))
    parts.append(f"cwd {view.cwd}" if view.cwd_required else f"cwd {view.cwd} if present, else /")
    return "; ".join(parts)


def _unix_gate(plan: BoundaryPlan, deny_network: bool, pid_ns) -> UnixGateRequest | None:
    """Under deny-all, the unix socket gate, served by the pid namespace's init. A host
    without it does not admit NetworkDenyAll (the ceiling refuses); a zero network budget
    gets it wherever the host has it."""
    if not deny_network or pid_ns is None or not linux_facts(plan.profile).unix_gate.ok:
        return None
    return UnixGateRequest()


def _writable_objects(grants, binds, authorities: _Authorities) -> list:
    """``(declared path, object path)`` of every writable root and writable bind source."""
    return [(g.path, authorities.actual[slot]) for slot, g in grants if g.writable] + [
        (b.source_path, authorities.actual[b.source_slot]) for b in binds if b.writable
    ]


def _no_read_only_inside_writable(grants, binds, authorities: _Authorities, table: list) -> None:
    """A read-only root (or exposed source) you declared cannot stay read-only where a
    writable one also shows it: the run could write it there (a bind mount of it inside the
    writable root), or rename the directories above it and put its own files at its path.
    Refused rather than promised. (The system roots are exempt: beneath a writable root the
    run may change them through that root anyway.)"""
    writable = _writable_objects(grants, binds, authorities)
    read_only = [(g.path, authorities.actual[slot]) for slot, g in grants if not g.writable and g.origin == "requested"]
    read_only += [(b.source_path, authorities.actual[b.source_slot]) for b in binds if not b.writable]
    for declared, actual in read_only:
        shown = mountinfo.visible_at(actual, table)
        for parent, parent_actual in writable:
            if actual != parent_actual and any(mountinfo.beneath(place, parent_actual) for place in shown):
                raise LoweringFailed(
                    "read_only_root_inside_writable_root",
                    f"{declared} is granted read-only inside the writable {parent}: the run could write it there, or rename "
                    "its parent directories and leave its own files at that path; grant the parent read-only, or keep the two apart",
                    caller_error=True,
                )


def _refuse_evidence(fact: str, detail: str, remedy: str = "grant it read-only") -> None:
    raise LoweringFailed(fact, f"{detail}: {remedy}, or keep the evidence elsewhere (BVISOR_HOME, --store)", caller_error=True)


def _transient_id_may_replace(directory: str, name: str) -> bool:
    """Whether a transient id (which owns nothing and is in no group), seeing the host's tree,
    may rename or replace ``name`` in ``directory``: only where every user may write, and in a
    sticky directory only an entry that is not there yet."""
    st = os.stat(directory)
    if st.st_mode & 0o003 != 0o003:
        return False
    return not st.st_mode & stat.S_ISVTX or not os.path.lexists(os.path.join(directory, name))


def _evidence_out_of_reach(grants, binds, authorities: _Authorities, evidence_paths, table: list, transient_host_tree: bool) -> list:
    """Every path at which the evidence directories (``$BVISOR_HOME``, every other directory
    a store was kept in, and any the caller names) show, bind mounts of them or of a
    directory above them included, and where an exposed path shows them in the run: the
    view masks them all. Refuses a run that could write one (a mask cannot hold inside a
    writable root, whose parent directories the run may rename away), or change what their
    paths name (an entry on the way there, a symlink say, in a place the run may write), for
    bvisor resolves those paths again after the run. (A rootless run with no Filesystem
    requirement holds the caller's rights over the caller's files, these among them: the CLI
    checks after the run that the home is still the directory it was.)"""
    ensure_home()
    writable = _writable_objects(grants, binds, authorities)
    shown, on_the_way = [], {}  # (directory, name) -> the evidence path it leads to
    for path in dict.fromkeys([*evidence_dirs(), *evidence_paths]):
        shown += [place for place in mountinfo.visible_at(os.path.realpath(path), table) if place not in shown]
        for entry in lookups(path):
            on_the_way.setdefault(entry, path)
    places = {}  # directory -> where it shows, read once
    for (directory, name), path in on_the_way.items():
        if transient_host_tree and _transient_id_may_replace(directory, name):
            _refuse_evidence(
                "evidence_path_writable_by_run",
                f"with no Filesystem requirement the run sees the host's tree with its own identity, which may change "
                f"{os.path.join(directory, name)} on the way to bvisor's evidence {path}",
                "declare the roots the run needs (a Filesystem requirement)",
            )
        if writable and directory not in places:
            places[directory] = mountinfo.visible_at(directory, table, parts=False)
        for declared, actual in writable:
            if any(mountinfo.beneath(place, actual) for place in places[directory]):
                _refuse_evidence(
                    "evidence_in_writable_root",
                    f"{declared} is writable by the run and holds {os.path.join(directory, name)}, on the way to bvisor's evidence {path}",
                )
    for declared, actual in writable:
        for place in shown:
            if mountinfo.beneath(place, actual) or mountinfo.beneath(actual, place):
                _refuse_evidence(
                    "evidence_in_writable_root",
                    f"{declared} is writable by the run and shows bvisor's evidence at {place} (its store and signing key)",
                )
    exposed = []
    for bind in binds:
        source = authorities.actual[bind.source_slot]
        for place in shown:
            if mountinfo.beneath(source, place):
                _refuse_evidence(
                    "evidence_in_exposed_path",
                    f"{bind.source_path} lies in bvisor's evidence at {place}: the run would see only its mask at {bind.dest}",
                    "expose something outside it",
                )
            if mountinfo.beneath(place, source):
                exposed.append(os.path.join(bind.dest, os.path.relpath(place, source)))
    return shown + exposed


def lower(plan: BoundaryPlan, attempt_id: str, resolver, cgroup_procs=(), outside_id=None, evidence_paths=(), terminal=False) -> LoweredLaunch:
    """``cgroup_procs``: host-opened ``cgroup.procs`` fds of the run's leaf; they ride the
    launch as authorities (the caller still closes them if lowering fails). ``outside_id``:
    the transient host id in-run root is, when bvisor runs as root (``identity.py``).
    ``terminal``: the run's stdio is a pseudo-terminal of its own (``bvisor.terminal``)."""
    spec = plan.spec
    if not isinstance(spec.workload, Workload.Process):
        raise LoweringFailed("workload_unsupported", f"{type(spec.workload).__name__} workloads do not run on linux")
    try:
        envp = lower_environment(spec.capabilities, resolver)
    except SecretUnavailable as exc:
        raise LoweringFailed("environment_lowering_failed", str(exc)) from None
    # A capped network budget of 0 bytes is met by the same empty namespace as deny-all.
    deny_network = capped_limit(plan.budgets, BudgetDimension.Network) == 0 or any(
        isinstance(c, Capability.Network) and isinstance(c.policy, NetPolicy.DenyAll) for c in spec.capabilities
    )
    confine_fs = any(isinstance(c, Capability.Filesystem) for c in spec.capabilities)
    grants = filesystem_grants(spec.capabilities, plan.profile)
    exposed = [c for c in spec.controls if isinstance(c, HostControl.ExposePath)]
    temp_root = _temp_root(spec, plan.budgets)
    argv = [spec.workload.exe, *spec.workload.args]

    authorities = _Authorities()
    try:
        pid_ns, placement, cgroup_table = _run_tree(plan, list(cgroup_procs))
        mount_ns = temp_root is not None or bool(exposed) or pid_ns is not None
        if not mount_ns and spec.workload.cwd is not msgspec.UNSET:
            raise LoweringFailed("cwd_unsupported", "workload.cwd is set, but this run has no view of its own to start in")
        proc_roots = [ProcRootRequest(path=g.path, writable=g.writable) for g in grants if _beneath_proc(g.path)] if pid_ns else []
        user_ns = deny_network or mount_ns
        if outside_id is not None and not user_ns:
            raise LoweringFailed("identity_unavailable", "bvisor runs as root and this host gives the run no user namespace: the workload would be host root")
        transient = linux_facts(plan.profile).userns_transient
        if outside_id is not None and not transient.ok:
            raise LoweringFailed("identity_unavailable", f"a transient run identity cannot be made here: {transient.said}")
        isolation = _isolation(plan, pid_ns) if user_ns else (None, None, None)
        root_slots = []
        for grant in grants:
            if proc_roots and _beneath_proc(grant.path):
                continue
            role = DescriptorRole.WriteRoot if grant.writable else DescriptorRole.ReadRoot
            root_slots.append((authorities.add(grant.path, role, "filesystem_root_unavailable"), grant))
        binds = [
            BindRequest(
                source_slot=authorities.add(source, DescriptorRole.ExposeSource, "expose_source_unavailable"),
                source_path=source,
                dest=dest,
                writable=writable,
            )
            for source, dest, writable in [(e.source, e.dest, e.access.writes) for e in exposed]
        ]
        table = mountinfo.read()
        _no_read_only_inside_writable(root_slots, binds, authorities, table)
        protected = _evidence_out_of_reach(root_slots, binds, authorities, evidence_paths, table, not confine_fs and outside_id is not None)
        exe_fd = open_exe(spec.workload.exe)
    except BaseException:
        authorities.close()
        raise
    idmapped, shared = _idmapped(root_slots, binds, outside_id, authorities)
    view = _view(root_slots, confine_fs, authorities, protected, os.readlink(f"/proc/self/fd/{exe_fd}"), spec.workload.cwd) if mount_ns else None
    ipc_ns, uts_ns, cgroup_ns = isolation
    scope = _landlock_scope(plan)
    rlimits = _rlimits(plan)
    filter_request, seccomp_facts = _seccomp(plan, deny_network)
    gate = _unix_gate(plan, deny_network, pid_ns)
    exe_shape = DescriptorShape(kind=DescriptorKind.Regular, writable=False)
    table = [DescriptorSlotV1(slot_index=vocabulary.EXE_SLOT, role=DescriptorRole.TargetExe, expected=exe_shape)]
    table += cgroup_table + authorities.table
    target = TargetSpecV1(
        argv=argv,
        envp=envp,
        exe_slot=vocabulary.EXE_SLOT,
        user_namespace=UserNsRequest(outside_id=outside_id) if user_ns else None,
        network_namespace=NetworkNsRequest(unix_gate=gate) if deny_network else None,
        mount_namespace=MountNsRequest() if mount_ns else None,
        temp_root=temp_root,
        binds=binds or None,
        landlock=LandlockRequest(abi_floor=landlock.ABI_FLOOR) if confine_fs else None,
        pid_namespace=pid_ns,
        cgroup=placement,
        rlimits=rlimits or None,
        landlock_scope=scope,
        proc_roots=proc_roots or None,
        seccomp=filter_request,
        ipc_namespace=ipc_ns,
        uts_namespace=uts_ns,
        cgroup_namespace=cgroup_ns,
        idmapped_mounts=idmapped or None,
        view=view,
        terminal=TerminalRequest() if terminal else None,
    )
    lowering = schedule(target, table)
    launch_plan = LinuxLaunchPlanV1(
        body=LinuxLaunchBodyV1(
            attempt_id=bytes.fromhex(attempt_id),
            plan_id=bytes.fromhex(plan.plan_id),
            h_a=bytes.fromhex(plan.admission_hash),
            h_p=bytes.fromhex(plan.profile_hash),
            h_l=lowering_hash(lowering),
            lowering=lowering,
            descriptor_table=table,
            target=target,
        )
    )
    facts = [
        # The file the launcher will exec (through exe_fd), as the host opened it.
        ObservedFact(kind="exe_identity", detail=exe_identity(exe_fd).detail()),
        ObservedFact(kind="environment_lowered", detail=f"exact envp entries={len(envp)} names={[n for n, _ in envp]}"),
        ObservedFact(kind="inherited_fds_lowered", detail="every fd but stdio and the exe is closed before exec"),
    ]
    if terminal:
        facts.append(ObservedFact(kind="terminal_lowered", detail="stdio is a pseudo-terminal opened for this run; the workload leads a session of its own on it"))
    if user_ns:
        who = f"transient host uid/gid {outside_id}" if outside_id is not None else f"the launcher's user (uid {linux_facts(plan.profile).launcher_euid})"
        facts.append(ObservedFact(kind="identity_lowered", detail=f"in-run root is {who}"))
        namespaces = ["user", "ipc", f"uts(hostname={uts_ns.hostname})"] + (["mount"] if mount_ns else []) + (["pid", "cgroup"] if pid_ns else []) + (["net"] if deny_network else [])
        facts.append(ObservedFact(kind="namespaces_lowered", detail=" ".join(namespaces)))
    for request in idmapped:
        facts.append(ObservedFact(kind="mount_planned", detail=f"idmapped {request.dest} owner=run_root nosuid,nodev"))
    for dest in shared:
        facts.append(ObservedFact(kind="mount_planned", detail=f"shared {dest} written as the run's own id nosuid,nodev"))
    if view is not None:
        facts.append(ObservedFact(kind="view_lowered", detail=describe_view(view, authorities, temp_root, binds, pid_ns is not None)))
    if deny_network:
        facts.append(ObservedFact(kind="network_lowered", detail="new user namespace + empty network namespace"))
    if gate is not None:
        facts.append(ObservedFact(kind="unix_gate_lowered", detail=(
            "connect, addressed sendto and sendmsg go through the init (seccomp user notification), which reaches "
            "only sockets on the run's own temp root; sendmmsg is refused (EPERM)")))
    if confine_fs:
        mounted = [temp_root_grant(control)] if (control := _temp_root_control(spec)) is not None else []
        implicit = [g.describe() for g in [*map(exposed_grant, exposed), exe_grant(spec.workload), *mounted]]
        granted = "; ".join([g.describe() for g in grants] + implicit)
        facts.append(ObservedFact(kind="filesystem_confined", detail=f"landlock abi>={landlock.ABI_FLOOR}; granted: {granted}"))
    else:
        facts.append(ObservedFact(kind="filesystem_unconfined", detail="no Filesystem requirement: the host filesystem is visible"))
    for declared, actual in authorities.resolved:
        # The rule lands on the object the path named when the host opened it: say which.
        facts.append(ObservedFact(kind="filesystem_root_resolved", detail=f"{declared} -> {actual}"))
    if temp_root is not None:
        facts.append(ObservedFact(kind="mount_planned", detail=f"tmpfs {temp_root.path} size={temp_root.size_bytes} nr_inodes={temp_root.max_inodes}"))
    for bind in binds:
        facts.append(ObservedFact(kind="mount_planned", detail=f"bind {bind.source_path} -> {bind.dest} writable={str(bind.writable).lower()}"))
    if pid_ns is not None:
        facts.append(ObservedFact(kind="run_tree_lowered", detail="own pid namespace and /proc under a minimal init; the tree dies with it"))
    if placement is not None:
        facts.append(ObservedFact(kind="cgroup_lowered", detail=f"the init joins the run's leaf in {len(placement.procs_slots)} hierarchies before the workload exists"))
    for limit in rlimits:
        facts.append(ObservedFact(kind="rlimit_lowered", detail=f"{limit.resource}={limit.limit} per process"))
    facts += seccomp_facts or [ObservedFact(kind="seccomp_lowered", detail="none: this host cannot install a seccomp filter")]
    procs = [AuthorityFd(slot, fd) for slot, fd in zip(placement.procs_slots if placement else [], cgroup_procs, strict=True)]
    return LoweredLaunch(launch_plan, [AuthorityFd(vocabulary.EXE_SLOT, exe_fd), *procs, *authorities.fds], facts, deny_network)
