"""The caller's declaration: what runs, what it may do, what the host does, and its budgets.

Tagged unions carry their tag in a ``kind`` field. Each union lives in a namespace class
(``Capability``, ``NetPolicy``, …) holding its variant types, so callers write
``Capability.Network(policy=NetPolicy.DenyAll())``; ``<Namespace>.Any`` is the union type.
Paths are inert strings here: only a backend opens them.
"""

import enum

import msgspec

from bvisor.contract.budget import BudgetRequirements
from bvisor.contract.evidence import EvidenceRequirements
from bvisor.contract.identity import CanonicalEnum

_TAGGED = {"frozen": True, "forbid_unknown_fields": True, "tag_field": "kind"}


class FsAccess(enum.Enum):
    Read = "read"
    Write = "write"
    ReadWrite = "read_write"

    @property
    def writes(self) -> bool:
        return self is not FsAccess.Read


class WorkloadKind(CanonicalEnum):
    Process = "process"


class Workload:
    """What runs inside the boundary."""

    class Process(msgspec.Struct, tag="process", **_TAGGED):
        """A native process; ``exe`` is an absolute path, ``args`` follow argv[0]. ``cwd``:
        the absolute path in the run's view it starts in (the run fails if the view has no
        such directory); unset, the caller's working directory where the view has it, else
        /. (Unset is left out of the encoding, so reports sealed before the field existed
        still verify.)"""

        exe: str
        args: list[str] = []
        cwd: str | msgspec.UnsetType = msgspec.UNSET

    Any = Process


class NetDest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str
    port: int


class NetPolicy:
    class DenyAll(msgspec.Struct, tag="deny_all", **_TAGGED):
        pass

    class AllowList(msgspec.Struct, tag="allow_list", **_TAGGED):
        dests: list[NetDest]

    Any = DenyAll | AllowList


class EnvSource:
    class Literal(msgspec.Struct, tag="literal", **_TAGGED):
        value: str

    class SecretLease(msgspec.Struct, tag="secret_lease", **_TAGGED):
        """An opaque reference resolved just in time by the host; the value never enters
        a plan or a report."""

        ref: str

    Any = Literal | SecretLease


class EnvEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    source: EnvSource.Any

    @classmethod
    def literal(cls, name: str, value: str) -> "EnvEntry":
        return cls(name=name, source=EnvSource.Literal(value))

    @classmethod
    def lease(cls, name: str, ref: str) -> "EnvEntry":
        return cls(name=name, source=EnvSource.SecretLease(ref))


class EnvPolicy:
    class Exact(msgspec.Struct, tag="exact", **_TAGGED):
        """The workload's environment is exactly these entries; nothing is inherited."""

        entries: list[EnvEntry]

    Any = Exact


class FdPolicy:
    class Nothing(msgspec.Struct, tag="none", **_TAGGED):
        """No host fd survives into the workload beyond its standard streams.

        Rust spells this ``FdPolicy::None``; ``None`` is reserved in Python, the tag is
        still ``"none"``."""

    class Only(msgspec.Struct, tag="only", **_TAGGED):
        fds: list[int]

    Any = Nothing | Only


class SpawnPolicy:
    """The workload's authority to create its own tasks, strictest first."""

    class DenyNewTasks(msgspec.Struct, tag="deny_new_tasks", **_TAGGED):
        pass

    class AllowThreadsWithinBoundary(msgspec.Struct, tag="allow_threads_within_boundary", **_TAGGED):
        pass

    class AllowDescendantsWithinBoundary(msgspec.Struct, tag="allow_descendants_within_boundary", **_TAGGED):
        pass

    Any = DenyNewTasks | AllowThreadsWithinBoundary | AllowDescendantsWithinBoundary


class Capability:
    """Guest authority: grants and restrictions on what the workload may do."""

    class Filesystem(msgspec.Struct, tag="filesystem", **_TAGGED):
        """Filesystem access confined to ``roots``; ``system_roots`` additionally grants
        read-only the system paths ordinary programs need (loader, libraries, /etc, …)."""

        access: FsAccess
        roots: list[str]
        system_roots: bool = True

    class Network(msgspec.Struct, tag="network", **_TAGGED):
        policy: NetPolicy.Any

    class Environment(msgspec.Struct, tag="environment", **_TAGGED):
        policy: EnvPolicy.Any

    class InheritedFds(msgspec.Struct, tag="inherited_fds", **_TAGGED):
        policy: FdPolicy.Any

    class ChildSpawn(msgspec.Struct, tag="child_spawn", **_TAGGED):
        policy: SpawnPolicy.Any

    Any = Filesystem | Network | Environment | InheritedFds | ChildSpawn


class StdStreams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    stdout: bool
    stderr: bool
    stdin: bool

    @classmethod
    def capture_out_err(cls) -> "StdStreams":
        return cls(stdout=True, stderr=True, stdin=False)

    def count(self) -> int:
        return self.stdout + self.stderr + self.stdin


class KillTarget(enum.Enum):
    RunTree = "run_tree"


class KillGuarantee(enum.Enum):
    Atomic = "atomic"
    BestEffortAllowed = "best_effort_allowed"


class HostControl:
    """What the host does for the run; never authority granted to the workload."""

    class LaunchWorkload(msgspec.Struct, tag="launch_workload", **_TAGGED):
        pass

    class CaptureStreams(msgspec.Struct, tag="capture_streams", **_TAGGED):
        streams: StdStreams

    class TempRoot(msgspec.Struct, tag="temp_root", **_TAGGED):
        """Private temporary storage mounted at ``path``."""

        path: str = "/tmp"

    class ExposePath(msgspec.Struct, tag="expose_path", **_TAGGED):
        source: str
        dest: str
        access: FsAccess

    class Kill(msgspec.Struct, tag="kill", kw_only=True, **_TAGGED):
        target: KillTarget = KillTarget.RunTree
        guarantee: KillGuarantee

    class CommitArtifact(msgspec.Struct, tag="commit_artifact", **_TAGGED):
        pass

    class DiscardArtifact(msgspec.Struct, tag="discard_artifact", **_TAGGED):
        pass

    class ListOutputs(msgspec.Struct, tag="list_outputs", **_TAGGED):
        pass

    Any = (
        LaunchWorkload | CaptureStreams | TempRoot | ExposePath | Kill | CommitArtifact | DiscardArtifact | ListOutputs
    )


# One classification path serves both: a requirement is a capability or a host control.
Requirement = Capability.Any | HostControl.Any


class BoundarySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    workload: Workload.Any
    capabilities: list[Capability.Any]
    controls: list[HostControl.Any]
    budgets: BudgetRequirements
    evidence: EvidenceRequirements = EvidenceRequirements()

    def requirements(self) -> list[Requirement]:
        """Capabilities first, then controls: the order admission classifies them in."""
        return [*self.capabilities, *self.controls]


class RequirementKind(CanonicalEnum):
    """One support cell per distinct policy: ``NetworkDenyAll`` and ``NetworkAllowList``
    are different cells, so a ceiling can grant one without the other."""

    Filesystem = "filesystem"
    NetworkDenyAll = "network_deny_all"
    NetworkAllowList = "network_allow_list"
    ChildSpawnDenyNewTasks = "child_spawn_deny_new_tasks"
    ChildSpawnAllowThreads = "child_spawn_allow_threads"
    ChildSpawnAllowDescendants = "child_spawn_allow_descendants"
    Environment = "environment"
    InheritedFdsNone = "inherited_fds_none"
    InheritedFdsOnly = "inherited_fds_only"
    LaunchWorkload = "launch_workload"
    CaptureStreams = "capture_streams"
    TempRoot = "temp_root"
    ExposePath = "expose_path"
    CommitArtifact = "commit_artifact"
    DiscardArtifact = "discard_artifact"
    Kill = "kill"
    ListOutputs = "list_outputs"


_KIND_OF_REQUIREMENT: dict[type, RequirementKind] = {
    Capability.Filesystem: RequirementKind.Filesystem,
    Capability.Environment: RequirementKind.Environment,
    HostControl.LaunchWorkload: RequirementKind.LaunchWorkload,
    HostControl.CaptureStreams: RequirementKind.CaptureStreams,
    HostControl.TempRoot: RequirementKind.TempRoot,
    HostControl.ExposePath: RequirementKind.ExposePath,
    HostControl.CommitArtifact: RequirementKind.CommitArtifact,
    HostControl.DiscardArtifact: RequirementKind.DiscardArtifact,
    HostControl.Kill: RequirementKind.Kill,
    HostControl.ListOutputs: RequirementKind.ListOutputs,
}
# These capabilities take their cell from their policy: denying all network and allowing
# a list are different guarantees.
_KIND_OF_POLICY: dict[type, RequirementKind] = {
    NetPolicy.DenyAll: RequirementKind.NetworkDenyAll,
    NetPolicy.AllowList: RequirementKind.NetworkAllowList,
    SpawnPolicy.DenyNewTasks: RequirementKind.ChildSpawnDenyNewTasks,
    SpawnPolicy.AllowThreadsWithinBoundary: RequirementKind.ChildSpawnAllowThreads,
    SpawnPolicy.AllowDescendantsWithinBoundary: RequirementKind.ChildSpawnAllowDescendants,
    FdPolicy.Nothing: RequirementKind.InheritedFdsNone,
    FdPolicy.Only: RequirementKind.InheritedFdsOnly,
}
_POLICY_DECIDES = (Capability.Network, Capability.InheritedFds, Capability.ChildSpawn)


def requirement_kind(requirement: Requirement) -> RequirementKind:
    """The support cell a requirement is classified under."""
    try:
        if isinstance(requirement, _POLICY_DECIDES):
            return _KIND_OF_POLICY[type(requirement.policy)]
        return _KIND_OF_REQUIREMENT[type(requirement)]
    except KeyError:
        raise TypeError(f"not a requirement: {requirement!r}") from None


def workload_kind(workload: Workload.Any) -> WorkloadKind:
    return WorkloadKind(workload.__struct_config__.tag)
