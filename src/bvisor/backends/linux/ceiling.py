"""The Linux ceiling: per requirement kind, what this host gives, a pure function of the
probed facts.

A cell is Enforced only where ``execute`` really installs its mechanism on this host, gated
by facts the probe proved by doing. Everything else is Unsupported with a reason and a
remediation, so the planner refuses it.
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

from bvisor.backends.linux.budgets import run_tree_kill
from bvisor.backends.linux.facts import LinuxFacts
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
from bvisor.mechanism.seccomp import UNIX_GATE_MECHANISM

BACKEND_ID = "linux"

K = RequirementKind
E = EvidenceClaim

Refusal = tuple[str, str]  # why a host cannot give a kind, and what would lift it

_USERNS_REMEDIATION = (
    "allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0; "
    "kernel.unprivileged_userns_clone=1 or kernel.apparmor_restrict_unprivileged_userns=0 where present)"
)


def _launch_refused(facts: LinuxFacts) -> Refusal | None:
    """A workload runs only in the world the run constructs: never as host root (a root
    launcher needs the transient identity), and in its own IPC, UTS and cgroup namespaces
    and fresh root (pivot_root, the new mount API) wherever user namespaces exist at all."""
    if facts.launcher_is_root and not facts.userns_transient.ok:
        return (
            "bvisor's launcher runs as root and cannot give the run an unprivileged transient identity here "
            f"({facts.userns_transient.said}): the workload would be host root",
            "run bvisor as an unprivileged user, or use a kernel with user namespaces and idmapped mounts (Linux 5.12+)",
        )
    if facts.userns_netns.ok and not facts.userns_isolation.ok:
        return (
            f"the run's own IPC, UTS and cgroup namespaces and its fresh root cannot be made here ({facts.userns_isolation.said})",
            _USERNS_REMEDIATION,
        )
    return None


def _network_deny_all_refused(facts: LinuxFacts) -> Refusal | None:
    """An empty network namespace, and the unix socket gate: the namespace does not cover
    pathname unix sockets, which the filesystem names."""
    if not facts.userns_netns.ok:
        limit = "?" if facts.max_user_namespaces is None else facts.max_user_namespaces
        return (
            f"the launcher cannot create a user + network namespace here ({facts.userns_netns.said}; user.max_user_namespaces={limit})",
            _USERNS_REMEDIATION,
        )
    if not facts.unix_gate.ok:
        return (
            "the launcher cannot gate unix sockets here: its seccomp user-notification gate, served by the "
            f"run's pid namespace init, failed its probe ({facts.unix_gate.said}); the host's pathname sockets would stay reachable",
            "use Linux 5.9+ (seccomp user notification, pidfd_getfd) with unprivileged user namespaces",
        )
    return None


def _filesystem_refused(facts: LinuxFacts) -> Refusal | None:
    if facts.landlock_abi < landlock.ABI_FLOOR:
        return (
            f"landlock ABI {facts.landlock_abi} is below {landlock.ABI_FLOOR}: truncate(2) outside the write roots would not be "
            "confined (ABI 3), so confinement would be partial",
            "use a kernel with landlock ABI 3 or later (Linux 6.2+) and landlock in the lsm= boot list",
        )
    if not facts.landlock_restrict.ok:
        return f"the launcher cannot restrict itself with landlock here ({facts.landlock_restrict.said})", "enable landlock"
    return None


def _filesystem_on_host(facts: LinuxFacts, mechanism: str) -> str:
    # With its own pid namespace every run has its own mount namespace, built as a fresh root
    # (view.py): what is not granted does not exist; landlock stays as the second wall.
    return f"fresh_root+{mechanism}" if facts.userns_pid.ok else mechanism


def _mount_refused(facts: LinuxFacts) -> Refusal | None:
    if not facts.userns_mount.ok:
        return f"the launcher cannot create a private mount namespace here ({facts.userns_mount.said})", _USERNS_REMEDIATION
    return None


def _run_tree_refused(facts: LinuxFacts) -> Refusal | None:
    """Descendants stay inside, and the whole tree dies at once, where the run's pid namespace
    init takes its tree along, or a cgroup leaf it joins can be killed atomically."""
    if run_tree_kill(facts) is None:
        return (
            "the run cannot get its own pid namespace here, whose init holds the tree and joins any cgroup leaf "
            f"(pid namespace: {facts.userns_pid.said}; cgroup.kill: {facts.cgroup_kill_said})",
            _USERNS_REMEDIATION,
        )
    return None


def _run_tree_on_host(facts: LinuxFacts, mechanism: str) -> str:
    return f"{mechanism}:{run_tree_kill(facts)}"


def _seccomp_refused(facts: LinuxFacts) -> Refusal | None:
    if not facts.seccomp_filter.ok:
        return (
            f"the launcher cannot install a seccomp filter here ({facts.seccomp_filter.said})",
            "use a kernel with CONFIG_SECCOMP_FILTER and a container runtime that allows seccomp(2)",
        )
    return None


def _always(facts: LinuxFacts) -> Refusal | None:
    return None


def _as_named(facts: LinuxFacts, mechanism: str) -> str:
    return mechanism


class Row(NamedTuple):
    """One kind's line of the ceiling table.

    ``mechanism`` is the kind's one name: what a plan's admitted requirement says
    (``linux:<mechanism>:<enforcement>``) and what the host's cell starts from. ``on_host``
    gives the cell's name on a host, which adds how this host provides it (a fresh root, the
    run tree's kill) — that string keys the ledger's rows, so both names are kept as they are
    bound into plans, reports and the ledger. ``evidence`` is the family's best case;
    ``refused`` says why a host cannot give the kind (None where it can).
    """

    mechanism: str
    evidence: frozenset[EvidenceClaim]
    refused: Callable[[LinuxFacts], Refusal | None] = _always
    on_host: Callable[[LinuxFacts, str], str] = _as_named


MA = frozenset({E.MechanismAttestation})

# What each kind gets on a Linux host.
CEILING = {
    K.LaunchWorkload: Row("launcher_fexecve", frozenset({E.TerminalOutcome, E.ProcessTree}), _launch_refused),
    K.CaptureStreams: Row("pipe_capture", frozenset({E.CapturedStreams})),
    K.Environment: Row("explicit_envp", MA),
    K.InheritedFdsNone: Row("fd_scrub", MA),
    K.NetworkDenyAll: Row(f"empty_netns+unix_gate:{UNIX_GATE_MECHANISM}", MA, _network_deny_all_refused),
    K.Filesystem: Row("landlock", frozenset({E.MechanismAttestation, E.AllowedActions}), _filesystem_refused, _filesystem_on_host),
    K.TempRoot: Row("private_tmpfs", MA, _mount_refused),
    K.ExposePath: Row("bind_mount", MA, _mount_refused),
    K.ChildSpawnAllowDescendants: Row("run_tree", frozenset({E.ProcessTree}), _run_tree_refused, _run_tree_on_host),
    K.ChildSpawnDenyNewTasks: Row("seccomp_filter", MA, _seccomp_refused),
    K.ChildSpawnAllowThreads: Row("seccomp_filter", MA, _seccomp_refused),
    K.Kill: Row("run_tree_kill", frozenset({E.ProcessTree}), _run_tree_refused, _run_tree_on_host),
}

# Kinds no Linux host gets from this version: why, and the spec edit that runs without it.
_NOT_YET = {
    K.InheritedFdsOnly: ("a selective fd keep-list", 'set the inherited_fds capability\'s policy to { kind = "none" } (what flag-built runs use)'),
    K.CommitArtifact: ("artifact commit", 'remove the { kind = "commit_artifact" } entry from controls'),
    K.DiscardArtifact: ("artifact discard", 'remove the { kind = "discard_artifact" } entry from controls'),
    K.ListOutputs: ("output listing", 'remove the { kind = "list_outputs" } entry from controls'),
}
NEVER = {
    K.NetworkAllowList: (
        "an allow-list needs a network broker, which bvisor does not have",
        "use --net none (network policy deny_all), or drop the network capability to run without network confinement",
    ),
    **{kind: (f"{what} is not implemented by this bvisor version", remediation) for kind, (what, remediation) in _NOT_YET.items()},
}

# What the Linux family can deliver at best; the live ceiling decides what this host gives.
FAMILY = SupportMatrix.of({kind: SupportVerdict(enforcement=Enforcement.Enforced, evidence=row.evidence) for kind, row in CEILING.items()})


def mechanism_name(kind: RequirementKind) -> str:
    """The kind's one mechanism name (``Row.mechanism``); "none" for a kind never offered."""
    return CEILING[kind].mechanism if kind in CEILING else "none"


def _unsupported(kind: RequirementKind, reason: str, remediation: str) -> CeilingCell:
    return CeilingCell(kind=kind, verdict=UNSUPPORTED, mechanism="none", reason=reason, remediation=remediation)


def _cell(kind: RequirementKind, facts: LinuxFacts) -> CeilingCell:
    if kind in NEVER:
        return _unsupported(kind, *NEVER[kind])
    row = CEILING[kind]
    refusal = row.refused(facts)
    if refusal is not None:
        return _unsupported(kind, *refusal)
    return CeilingCell(kind=kind, verdict=FAMILY.best_case(kind), mechanism=row.on_host(facts, row.mechanism))


def linux_ceiling(facts: LinuxFacts) -> list[CeilingCell]:
    """The per-kind ceiling, a pure function of the probed facts."""
    if not facts.launcher_probe.ok:
        why = f"the launcher could not run its probe ({facts.launcher_probe.said})"
        return [_unsupported(kind, why, "check that bvisor is installed for the launcher's interpreter") for kind in K]
    return [_cell(kind, facts) for kind in K]


# The ceiling is a pure function of the probed facts, which change only on drift: computed
# once per set of facts, not at every plan.
@functools.lru_cache(maxsize=8)
def profile_of(facts: LinuxFacts) -> BackendProfile:
    return BackendProfile(backend=BACKEND_ID, cells=linux_ceiling(facts))
