"""The Linux backend: probe → ceiling → execute through the separate launcher.

The ceiling advertises a cell as Enforced only where ``execute`` really installs its
mechanism on this host, gated by facts the probe proved by doing. Everything else is
Unsupported with a reason and a remediation, so the planner refuses it.
"""

import errno
import functools
import os
import _signal as signal
import time

import msgspec

from bvisor.backends.observed import Rusage, execution_record, observed_usage
from bvisor.capture import RunIO
from bvisor.contract import (
    UNSUPPORTED,
    BackendProfile,
    BackendProfileSnapshot,
    BoundaryPlan,
    BoundarySpec,
    BudgetDimension,
    Capability,
    CeilingCell,
    Enforcement,
    EvidenceClaim,
    ExecutionRecord,
    ExitStatus,
    HostControl,
    ObservedFact,
    Outcome,
    RequirementKind,
    SupportMatrix,
    SupportVerdict,
    capped_limit,
)
from bvisor.contract.storage import storage_capped_by_temp_root
from bvisor.launcher import landlock, seccomp, unixgate
from bvisor.backends.linux import cgroup, identity, probe
from bvisor.backends.linux.budgets import RunSupervisor, leaf_limits, linux_budget_profile, run_tree_kill, run_usage
from bvisor.backends.linux.filesystem import exe_grant, exposed_grant, requirement_grants, temp_root_grant
from bvisor.backends.linux.launch import (
    CONFINEMENT_UNAVAILABLE_FACT,
    HarnessError,
    LaunchObservation,
    LauncherProbe,
    LauncherState,
    default_launcher,
    launch_confinement_unavailable,
    run_launcher,
)
from bvisor.backends.linux.lowering import LoweredLaunch, LoweringFailed, compiled_filter, lower
from bvisor.backends.linux.protocol import encode_frame
from bvisor.backends.linux.warm import WarmLauncher
from bvisor.backend import classify_requirement
from bvisor.secrets import NoSecrets

BACKEND_ID = "linux"

K = RequirementKind
E = EvidenceClaim


def _verdict(*claims) -> SupportVerdict:
    return SupportVerdict(enforcement=Enforcement.Enforced, evidence=frozenset(claims))


# What the Linux family can deliver at best; the live ceiling decides what this host gives.
FAMILY = SupportMatrix.of(
    {
        K.LaunchWorkload: _verdict(E.TerminalOutcome, E.ProcessTree),
        K.CaptureStreams: _verdict(E.CapturedStreams),
        K.Environment: _verdict(E.MechanismAttestation),
        K.InheritedFdsNone: _verdict(E.MechanismAttestation),
        K.NetworkDenyAll: _verdict(E.MechanismAttestation),
        K.Filesystem: _verdict(E.MechanismAttestation, E.AllowedActions),
        K.TempRoot: _verdict(E.MechanismAttestation),
        K.ExposePath: _verdict(E.MechanismAttestation),
        K.ChildSpawnDenyNewTasks: _verdict(E.MechanismAttestation),
        K.ChildSpawnAllowThreads: _verdict(E.MechanismAttestation),
        K.ChildSpawnAllowDescendants: _verdict(E.ProcessTree),
        K.Kill: _verdict(E.ProcessTree),
    }
)

MECHANISMS = {
    K.LaunchWorkload: "launcher_fexecve",
    K.CaptureStreams: "pipe_capture",
    K.Environment: "explicit_envp",
    K.InheritedFdsNone: "fd_scrub",
    K.NetworkDenyAll: "empty_netns+unix_gate:seccomp_user_notif",
    K.Filesystem: "landlock",
    K.TempRoot: "private_tmpfs",
    K.ExposePath: "bind_mount",
    K.ChildSpawnAllowDescendants: "run_tree",
    K.ChildSpawnDenyNewTasks: "seccomp_filter",
    K.ChildSpawnAllowThreads: "seccomp_filter",
    K.Kill: "run_tree_kill",
}

# Kinds no version so far implements: what each is, and the spec edit that runs without it.
_NOT_YET = {
    K.InheritedFdsOnly: ("a selective fd keep-list", 'set the inherited_fds capability\'s policy to { kind = "none" } (what flag-built runs use)'),
    K.CommitArtifact: ("artifact commit", 'remove the { kind = "commit_artifact" } entry from controls'),
    K.DiscardArtifact: ("artifact discard", 'remove the { kind = "discard_artifact" } entry from controls'),
    K.ListOutputs: ("output listing", 'remove the { kind = "list_outputs" } entry from controls'),
}


def _enforced(kind: RequirementKind) -> CeilingCell:
    return CeilingCell(kind=kind, verdict=FAMILY.best_case(kind), mechanism=MECHANISMS[kind])


def _unsupported(kind: RequirementKind, reason: str, remediation: str) -> CeilingCell:
    return CeilingCell(kind=kind, verdict=UNSUPPORTED, mechanism="none", reason=reason, remediation=remediation)


def linux_ceiling(facts: dict) -> list:
    """The per-kind ceiling, a pure function of the probed facts."""
    if facts.get("launcher.launcher_probe") != "ok":
        why = f"the launcher could not run its probe ({facts.get('launcher.launcher_probe', 'no result')})"
        return [_unsupported(k, why, "check that bvisor is installed for the launcher's interpreter") for k in K]
    cells = {k: _enforced(k) for k in (K.CaptureStreams, K.Environment, K.InheritedFdsNone)}
    cells[K.LaunchWorkload] = _launch_cell(facts)
    cells[K.NetworkDenyAll] = _network_deny_all_cell(facts)
    cells[K.Filesystem] = _filesystem_cell(facts)
    for kind in (K.TempRoot, K.ExposePath):
        cells[kind] = _mount_cell(kind, facts)
    for kind in (K.Kill, K.ChildSpawnAllowDescendants):
        cells[kind] = _run_tree_cell(kind, facts)
    for kind in (K.ChildSpawnDenyNewTasks, K.ChildSpawnAllowThreads):
        cells[kind] = _seccomp_cell(kind, facts)
    cells[K.NetworkAllowList] = _unsupported(
        K.NetworkAllowList,
        "an allow-list needs a network broker, which bvisor does not have",
        "use --net none (network policy deny_all), or drop the network capability to run without network confinement",
    )
    for kind, (mechanism, remediation) in _NOT_YET.items():
        cells[kind] = _unsupported(kind, f"{mechanism} is not implemented by this bvisor version", remediation)
    return list(cells.values())


_USERNS_REMEDIATION = (
    "allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0; "
    "kernel.unprivileged_userns_clone=1 or kernel.apparmor_restrict_unprivileged_userns=0 where present)"
)


def _launch_cell(facts: dict) -> CeilingCell:
    """A workload runs only in the world the run constructs: never as host root (a root
    launcher needs the transient identity), and in its own IPC, UTS and cgroup namespaces
    and fresh root (pivot_root, the new mount API) wherever user namespaces exist at all."""
    if facts.get("launcher.launcher_euid") == "0" and facts.get("launcher.userns_transient") != "ok":
        return _unsupported(
            K.LaunchWorkload,
            "bvisor's launcher runs as root and cannot give the run an unprivileged transient identity here "
            f"({facts.get('launcher.userns_transient')}): the workload would be host root",
            "run bvisor as an unprivileged user, or use a kernel with user namespaces and idmapped mounts (Linux 5.12+)",
        )
    if facts.get("launcher.userns_netns") == "ok" and facts.get("launcher.userns_isolation") != "ok":
        return _unsupported(
            K.LaunchWorkload,
            f"the run's own IPC, UTS and cgroup namespaces and its fresh root cannot be made here ({facts.get('launcher.userns_isolation')})",
            _USERNS_REMEDIATION,
        )
    return _enforced(K.LaunchWorkload)


def _network_deny_all_cell(facts: dict) -> CeilingCell:
    """An empty network namespace, and the unix socket gate: the namespace does not cover
    pathname unix sockets, which the filesystem names."""
    if facts.get("launcher.userns_netns") != "ok":
        return _unsupported(
            K.NetworkDenyAll,
            "the launcher cannot create a user + network namespace here "
            f"({facts.get('launcher.userns_netns')}; user.max_user_namespaces="
            f"{facts.get('sysctl.user.max_user_namespaces', '?')})",
            _USERNS_REMEDIATION,
        )
    gate = facts.get("launcher.unix_gate")
    if gate != "ok":
        return _unsupported(
            K.NetworkDenyAll,
            "the launcher cannot gate unix sockets here: its seccomp user-notification gate, served by the "
            f"run's pid namespace init, failed its probe ({gate}); the host's pathname sockets would stay reachable",
            "use Linux 5.9+ (seccomp user notification, pidfd_getfd) with unprivileged user namespaces",
        )
    return _enforced(K.NetworkDenyAll)


def _landlock_abi(facts: dict) -> int:
    return probe.landlock_abi(facts.get("launcher.landlock_abi"))


def _filesystem_cell(facts: dict) -> CeilingCell:
    abi = _landlock_abi(facts)
    restrict = facts.get("launcher.landlock_restrict")
    if abi < landlock.ABI_FLOOR:
        return _unsupported(
            K.Filesystem,
            f"landlock ABI {abi} is below {landlock.ABI_FLOOR}: truncate(2) outside the write roots would not be "
            "confined (ABI 3), so confinement would be partial",
            "use a kernel with landlock ABI 3 or later (Linux 6.2+) and landlock in the lsm= boot list",
        )
    if restrict != "ok":
        return _unsupported(K.Filesystem, f"the launcher cannot restrict itself with landlock here ({restrict})", "enable landlock")
    if facts.get("launcher.userns_pid") == "ok":
        # Every run then has its own mount namespace, built as a fresh root (view.py): what
        # is not granted does not exist; landlock stays as the second wall.
        return CeilingCell(kind=K.Filesystem, verdict=FAMILY.best_case(K.Filesystem), mechanism=f"fresh_root+{MECHANISMS[K.Filesystem]}")
    return _enforced(K.Filesystem)


def _mount_cell(kind: RequirementKind, facts: dict) -> CeilingCell:
    proof = facts.get("launcher.userns_mount")
    if proof != "ok":
        return _unsupported(kind, f"the launcher cannot create a private mount namespace here ({proof})", _USERNS_REMEDIATION)
    return _enforced(kind)


def _run_tree_cell(kind: RequirementKind, facts: dict) -> CeilingCell:
    """Descendants stay inside, and the whole tree dies at once, where the run's pid namespace
    init takes its tree along, or a cgroup leaf it joins can be killed atomically."""
    kill = run_tree_kill(facts)
    if kill is None:
        return _unsupported(
            kind,
            "the run cannot get its own pid namespace here, whose init holds the tree and joins any cgroup leaf "
            f"(pid namespace: {facts.get('launcher.userns_pid')}; cgroup.kill: {facts.get('cgroup.kill', 'not probed')})",
            _USERNS_REMEDIATION,
        )
    return CeilingCell(kind=kind, verdict=FAMILY.best_case(kind), mechanism=f"{MECHANISMS[kind]}:{kill}")


def _seccomp_cell(kind: RequirementKind, facts: dict) -> CeilingCell:
    proof = facts.get("launcher.seccomp_filter")
    if proof != "ok":
        return _unsupported(
            kind,
            f"the launcher cannot install a seccomp filter here ({proof})",
            "use a kernel with CONFIG_SECCOMP_FILTER and a container runtime that allows seccomp(2)",
        )
    return _enforced(kind)


def seccomp_baseline_facts(facts: dict) -> dict:
    """The policies every run gets (the hardening baseline, the no-setid rules), named in the
    profile by their policy digest."""
    if facts.get("launcher.seccomp_filter") != "ok":
        return {"seccomp.baseline": "not installed: no seccomp filter mode"}
    _, policy_digest, _, rules = compiled_filter(seccomp.EVERY_RUN_POLICIES, os.uname().machine)
    return {"seccomp.baseline": f"{','.join(seccomp.EVERY_RUN_POLICIES)} policy={policy_digest} rules={len(rules)}"}


def landlock_summary(facts: dict) -> str:
    """The ABI and the rights a ruleset handles on this host, for ``bvisor probe``."""
    abi = _landlock_abi(facts)
    return f"abi={abi} handled={','.join(landlock.right_names(landlock.handled_rights(abi))) or 'none'}"


class LinuxBackend:
    """Runs boundaries through ``bvisor-linux-launcher``.

    ``launcher``: a path or a command (default: this interpreter running ``bvisor.launcher``).
    ``fact_overrides`` replace probed facts, to simulate a weaker host in tests; they are part
    of the snapshot, so a plan made under them says so. ``warm``: run through a warm launcher
    server (call ``close()`` when done) instead of one launcher process per run.
    ``prestarted``: a ``PrestartedLauncher`` whose launcher, probe and warm server this backend
    adopts (``launcher`` and ``warm`` are then its own).
    ``evidence_paths``: directories of evidence (a store and its key) besides ``$BVISOR_HOME``
    that no run may see or write: masked in every view, and a run that would write them is
    refused.
    """

    def __init__(self, launcher=None, *, secret_resolver=None, fact_overrides=None, warm=None, prestarted=None, evidence_paths=()):
        self._resolver = secret_resolver or NoSecrets()
        self._evidence = tuple(evidence_paths)
        self._overrides = dict(fact_overrides or {})
        if prestarted is not None:  # its launcher, probe and warm server (``PrestartedLauncher``)
            self._launcher, launcher_probe, self._warm = prestarted.launcher, prestarted.probe, prestarted.warm
        else:
            self._launcher = launcher if launcher is not None else default_launcher()
            launcher_probe = LauncherProbe(self._launcher)  # runs while the cgroups are checked
            # warm: one pre-imported launcher server, started on the first run, forks a
            # coordinator per run (the same code from "plan received" on as the one-shot
            # launcher). Unset, BVISOR_LAUNCHER=warm chooses it (the suite runs oracles both ways).
            if warm is None:
                warm = os.environ.get("BVISOR_LAUNCHER") == "warm"
            self._warm = WarmLauncher(self._launcher) if warm else None
        try:
            self._layout = cgroup.current_layout()
            # Leaves a crashed host left behind are killed and removed before anything else.
            self.reconciled = cgroup.reconcile_orphans(self._layout)
            self._delegation = cgroup.prove_delegation(self._layout)
        except BaseException:
            launcher_probe.close()
            raise
        self._proven = {**probe.prove(launcher_probe), **self._delegation.facts()}

    @classmethod
    def with_launcher_path(cls, launcher) -> "LinuxBackend":
        return cls(launcher)

    def close(self) -> None:
        """Stop the warm launcher server, if one runs (a later run starts a new one)."""
        if self._warm is not None:
            self._warm.close()

    def warm_launcher_pid(self):
        """The warm launcher server's pid while one runs, else None."""
        return self._warm.server_pid() if self._warm is not None else None

    def id(self) -> str:
        return BACKEND_ID

    def support(self) -> SupportMatrix:
        return FAMILY

    def probe(self) -> BackendProfileSnapshot:
        facts = {**probe.read_live(), **self._proven, **self._overrides}
        facts.update(seccomp_baseline_facts(facts))  # derived after overrides: a simulated host says so
        # An overridden fact is marked, so a plan made on a simulated host says so.
        facts.update({f"override.{name}": "forced" for name in self._overrides})
        return BackendProfileSnapshot.of(BACKEND_ID, facts, _budget_profile_of(tuple(facts.items())))

    def profile(self, snapshot: BackendProfileSnapshot) -> BackendProfile:
        return _profile_of(tuple((f.name, f.value) for f in snapshot.facts))

    def classify(self, requirement, profile: BackendProfile) -> SupportVerdict:
        return classify_requirement(self, requirement, profile)

    def mechanism(self, kind: RequirementKind, enforcement: Enforcement) -> str:
        return f"linux:{MECHANISMS.get(kind, 'none')}:{enforcement.value}"

    def grants(self, requirement, spec: BoundarySpec, snapshot: BackendProfileSnapshot) -> list:
        if isinstance(requirement, Capability.Filesystem):
            return [grant.describe() for grant in requirement_grants(requirement, snapshot)]
        if isinstance(requirement, HostControl.ExposePath):
            return [exposed_grant(requirement).describe()]
        if isinstance(requirement, HostControl.LaunchWorkload):
            return [exe_grant(spec.workload).describe()]
        if isinstance(requirement, HostControl.TempRoot):
            return [temp_root_grant(requirement).describe()]
        return []

    def execute(self, plan: BoundaryPlan, attempt_id: str, io: RunIO) -> ExecutionRecord:
        started_ns, clock = time.time_ns(), time.monotonic_ns()
        try:
            leaf = self._make_leaf(plan, attempt_id)
        except cgroup.CgroupError as exc:
            facts = [ObservedFact(kind="cgroup_setup_failed", detail=str(exc))]
            return execution_record(Outcome.SupervisorFault, None, facts, started_ns, observed_usage(clock))
        teardown = []
        try:
            lease = identity.run_identity(plan.profile.fact("launcher.launcher_euid"))
        except identity.IdentityUnavailable as exc:
            if leaf is not None:
                leaf.teardown()
            facts = [ObservedFact(kind="identity_unavailable", detail=str(exc))]
            return execution_record(Outcome.Unsupported, None, facts, started_ns, observed_usage(clock))
        try:
            record = self._run_in(leaf, plan, attempt_id, io, started_ns, clock, lease.outside_id if lease else None)
        finally:
            if leaf is not None:
                teardown = leaf.teardown()
            if lease is not None:
                lease.release()  # only once nothing of the run is left: the id is free again
        if teardown:
            # The tree or its leaf outlived the run: never a clean ending.
            facts = record.observed + [ObservedFact(kind="cgroup_teardown_incomplete", detail="; ".join(teardown))]
            return msgspec.structs.replace(record, outcome=Outcome.SupervisorFault, observed=facts)
        return record

    def _make_leaf(self, plan: BoundaryPlan, attempt_id: str):
        """The run's cgroup leaf with its caps written, or None where no cgroup is delegated."""
        if not self._delegation.usable():
            return None
        owner = os.getpid()
        name = cgroup.leaf_name(owner, cgroup.process_start_time(owner), attempt_id)
        return cgroup.RunLeaf.create(self._layout, self._delegation, name, leaf_limits(plan.budgets))

    def _run_in(self, leaf, plan: BoundaryPlan, attempt_id: str, io: RunIO, started_ns: int, clock: int, outside_id) -> ExecutionRecord:
        procs = leaf.open_procs() if leaf is not None else []
        try:
            lowered = lower(plan, attempt_id, self._resolver, procs, outside_id, self._evidence, io.terminal is not None)
        except LoweringFailed as exc:
            for fd in procs:
                os.close(fd)
            outcome = Outcome.Failed if exc.caller_error else Outcome.Unsupported
            return execution_record(outcome, None, [ObservedFact(kind=exc.fact, detail=exc.detail)], started_ns, observed_usage(clock))
        supervisor = RunSupervisor(plan.budgets, leaf, clock / 1e9)
        try:
            if self._warm is not None:
                observation = self._warm.run(encode_frame(lowered.plan), lowered.authorities, io, supervisor)
            else:
                observation = run_launcher(self._launcher, lowered.plan, lowered.authorities, io, supervisor)
        except HarnessError as exc:
            facts = lowered.facts + [ObservedFact(kind="launcher_harness_fault", detail=str(exc))]
            return execution_record(Outcome.SupervisorFault, None, facts, started_ns, observed_usage(clock))
        leaf_usage = leaf.usage() if leaf is not None else None
        outcome, exit_status, verdict_facts = judge(observation, lowered)
        outcome, exit_status, budget_facts = budget_ending(outcome, exit_status, supervisor, leaf_usage, plan.budgets)
        facts = lowered.facts + observation_facts(observation) + verdict_facts + budget_facts + _leaf_facts(leaf, leaf_usage)
        facts.append(timeline_fact(observation, clock))
        usage = run_usage(observed_usage(clock, _rusage(observation)), leaf_usage, observation, storage_capped_by_temp_root(plan.spec))
        return execution_record(outcome, exit_status, facts, started_ns, usage, (observation.stdout, observation.stderr))


# The ceiling and the budget profile are pure functions of the probed facts, which change
# only on drift: computed once per set of facts, not at every plan.
@functools.lru_cache(maxsize=8)
def _profile_of(facts: tuple) -> BackendProfile:
    return BackendProfile(backend=BACKEND_ID, cells=linux_ceiling(dict(facts)))


@functools.lru_cache(maxsize=8)
def _budget_profile_of(facts: tuple):
    return linux_budget_profile(dict(facts))


def _rusage(observation: LaunchObservation):
    fields = observation.note_fields("workload_rusage")
    if not fields:
        return None
    return Rusage(int(fields["utime_us"]) + int(fields["stime_us"]), int(fields["maxrss_kib"]))


def _leaf_facts(leaf, usage) -> list:
    if leaf is None:
        return [ObservedFact(kind="cgroup_leaf", detail="none: no cgroup is delegated to this user")]
    return [ObservedFact(kind="cgroup_leaf", detail=f"{' '.join(leaf.dirs)} {usage.describe()}")]


def budget_ending(outcome, exit_status, supervisor: RunSupervisor, usage, budgets) -> tuple:
    """A budget that ended the run overrides how the launcher saw it end."""
    if supervisor.killed_for is not None and outcome is not Outcome.Unsupported:
        dimension = supervisor.killed_for
        fact = ObservedFact(
            kind="budget_enforced",
            detail=f"dimension={dimension.value} action=run_tree_killed mechanism={supervisor.kill_mechanism}",
        )
        ended = Outcome.Timeout if dimension is BudgetDimension.Wall else Outcome.Killed
        return ended, exit_status or ExitStatus(signal=signal.SIGKILL), [fact]
    memory_capped = capped_limit(budgets, BudgetDimension.ResidentMemory) is not None
    if memory_capped and usage is not None and usage.oom_kills:
        fact = ObservedFact(kind="budget_enforced", detail=f"dimension=resident_memory action=oom_kill count={usage.oom_kills}")
        killed = exit_status is None or exit_status.signal == signal.SIGKILL
        return (Outcome.Killed if killed else outcome), exit_status or ExitStatus(signal=signal.SIGKILL), [fact]
    if usage is not None and usage.pids_limit_hits:
        fact = ObservedFact(kind="budget_enforced", detail=f"dimension=process_count action=fork_refused count={usage.pids_limit_hits}")
        return outcome, exit_status, [fact]
    return outcome, exit_status, []


def timeline_fact(obs: LaunchObservation, clock: int) -> ObservedFact:
    """When the host saw each launcher state, in ms since the run began (leaf and lowering
    included): an operator's answer to where a slow run's time went."""
    steps = " ".join(f"{name}={(ns - clock) / 1e6:.2f}ms" for name, ns in obs.timeline)
    return ObservedFact(kind="launch_timeline", detail=steps)


def observation_facts(obs: LaunchObservation) -> list:
    terminal = obs.terminal.value if obs.terminal else "none"
    facts = [ObservedFact(kind="launcher_terminal", detail=f"{terminal} launcher_exit={obs.launcher_exit}")]
    if obs.stdin:
        facts.append(ObservedFact(kind="stdin", detail=obs.stdin))
    facts += [ObservedFact(kind="launcher_note", detail=note) for note in obs.notes]
    # What the launcher attests it installed, restated as facts of their own.
    facts += [ObservedFact(kind="mount_made", detail=n) for n in obs.notes if n.startswith(("temp_root=", "bind dest="))]
    if obs.note_fields("landlock=restricted installed=true") is not None:
        facts += [ObservedFact(kind="landlock_installed", detail=n) for n in obs.notes if n.startswith("landlock abi=")]
    if obs.held_open:
        facts.append(ObservedFact(kind="stream_held_open", detail=f"{obs.held_open} still open after the launcher exited"))
    return facts


def _child_failure_detail(obs: LaunchObservation) -> str:
    note = next((n for n in obs.notes if n.startswith("child_failed ")), "")
    return note.partition(" detail=")[2] or note


_EXEC_ERRNO_FACT = {errno.ENOENT: "exe_not_found", errno.ENOTDIR: "exe_not_found", errno.E2BIG: "exec_arguments_too_long"}


def required_attestations(lowered: LoweredLaunch) -> list:
    """The launcher notes that must be present before a run may count as confined."""
    notes = ["launcher_lifetime=pdeathsig_sigkill", "controlling_terminal=none"]
    notes += ["fd_scrub", "environment=exact", "no_new_privs=1", "capabilities=none"]
    if lowered.deny_network:
        notes += ["user_namespace=mapped", "network_namespace=empty_netns"]
    if lowered.plan is None:
        return notes
    target = lowered.plan.body.target
    outside_id = target.user_namespace.outside_id if target.user_namespace is not None else None
    if outside_id is not None:
        notes.append(f"user_namespace=mapped uid0={outside_id} gid0={outside_id}")
    if target.ipc_namespace is not None:
        notes.append("ipc_namespace=new shm=0 msg=0 sem=0")
    if target.uts_namespace is not None:
        notes.append(f"uts_namespace=new hostname={target.uts_namespace.hostname}")
    if target.cgroup_namespace is not None:
        notes.append("cgroup_namespace=new root=leaf")
    notes += [f"view_root path={m.dest} writable=true owner=run_root" for m in target.idmapped_mounts or []]
    if target.view is not None:
        notes.append(f"view=pivoted root={'host_tree' if target.view.host_tree else 'fresh'}")
        notes.append("view_dev devices=null,zero,full,random,urandom" + (",tty" if target.terminal is not None else ""))
        if target.view.exe is not None:
            notes.append(f"view_exe path={target.view.exe} read_only=true")
    if target.mount_namespace is not None:
        notes += ["user_namespace=mapped", "mount_namespace=private"]
    if target.temp_root is not None:
        root = target.temp_root
        notes.append(f"temp_root=tmpfs path={root.path} size={root.size_bytes} nr_inodes={root.max_inodes} verified=statvfs")
    notes += [f"bind dest={bind.dest}" for bind in target.binds or []]
    if target.landlock is not None:
        notes.append("landlock=restricted installed=true")
    if target.pid_namespace is not None:
        notes += ["pid_namespace=init pid=1 proc=own", "lifetime=pdeathsig_sigkill(init)"]
    if target.cgroup is not None:
        notes.append("cgroup=placed")
    if target.rlimits:
        notes.append("rlimits=set")
    if target.landlock_scope is not None:
        notes.append("landlock_scope=signal,abstract_unix_socket installed=true")
    if target.network_namespace is not None and target.network_namespace.unix_gate is not None:
        notes.append(f"unix_gate={unixgate.MECHANISM} supervisor=init")
    if target.terminal is not None:
        notes.append("controlling_terminal=run_pty session=new")
        if target.view is not None:
            notes.append("terminal_node=unchangeable")
    if target.seccomp is not None:
        notes.append(f"seccomp=filter policies={','.join(target.seccomp.policies)} program={target.seccomp.program_digest.hex()}")
    return notes


def judge(obs: LaunchObservation, lowered: LoweredLaunch):
    """Map the launcher's verdict to (outcome, exit status, extra facts). Pure."""
    if obs.terminal is LauncherState.ExecSucceeded:
        # Admitted Enforced but not attested by the launcher: an honesty fault, not a pass.
        missing = [note for note in required_attestations(lowered) if obs.note_fields(note) is None]
        if missing:
            return Outcome.SupervisorFault, None, [ObservedFact(kind="confinement_not_attested", detail=" ".join(missing))]
        status = obs.workload_exit()
        if status is None:
            return Outcome.SupervisorFault, None, [ObservedFact(kind="workload_exit_unknown", detail="no exit status")]
        exit_status = ExitStatus(code=status.code, signal=status.signal)
        return (Outcome.Completed if status.code == 0 else Outcome.Failed), exit_status, []
    if obs.terminal is LauncherState.SetupRefused:
        return Outcome.Unsupported, None, []
    failed = obs.note_fields("child_failed") or {}
    if obs.terminal is LauncherState.SetupFaulted and failed.get("step") == "exec":
        code = int(failed.get("errno", "0"))
        fact = _EXEC_ERRNO_FACT.get(code, "exe_not_executable")
        # ENOENT from an exec of a host-opened fd: its interpreter or loader is not in the view.
        detail = f"exec failed: {os.strerror(code)}" + (" (the exe's interpreter or loader is not in the run's root)" if code == errno.ENOENT else "")
        return Outcome.Failed, None, [ObservedFact(kind=fact, detail=detail)]
    if obs.terminal is LauncherState.SetupFaulted and failed.get("step") == "cwd":
        # The spec's workload.cwd is not a directory of the run's view: the caller's to fix.
        return Outcome.Failed, None, [ObservedFact(kind="cwd_missing", detail=f"workload.cwd {lowered.plan.body.target.view.cwd}: {_child_failure_detail(obs)}")]
    if obs.terminal is LauncherState.SetupFaulted and failed.get("step") == "visibility" and failed.get("errno") == str(errno.ENOENT):
        # The spec names a mountpoint this host does not have: the caller's to fix, not a fault.
        return Outcome.Unsupported, None, [ObservedFact(kind="mountpoint_missing", detail=_child_failure_detail(obs))]
    if launch_confinement_unavailable(obs):
        detail = f"step={failed.get('step')} errno={failed.get('errno')}"
        return Outcome.Unsupported, None, [ObservedFact(kind=CONFINEMENT_UNAVAILABLE_FACT, detail=detail)]
    return Outcome.SupervisorFault, None, []
