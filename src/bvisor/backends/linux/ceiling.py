"""The Linux ceiling: per requirement kind, what this host gives, a pure function of the
probed facts.

A cell is Enforced only where ``execute`` really installs its mechanism on this host, gated
by facts the probe proved by doing. Everything else is Unsupported with a reason and a
remediation, so the planner refuses it.
"""

import functools

from bvisor.contract import (
    UNSUPPORTED,
    BackendProfile,
    CeilingCell,
    Enforcement,
    EvidenceClaim,
    RequirementKind,
    SupportMatrix,
    SupportVerdict,
)
from bvisor.mechanism import landlock
from bvisor.backends.linux import probe
from bvisor.backends.linux.budgets import run_tree_kill

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


# The ceiling is a pure function of the probed facts, which change only on drift: computed
# once per set of facts, not at every plan.
@functools.lru_cache(maxsize=8)
def profile_of(facts: tuple) -> BackendProfile:
    return BackendProfile(backend=BACKEND_ID, cells=linux_ceiling(dict(facts)))
