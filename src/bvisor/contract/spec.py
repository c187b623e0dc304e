"""The caller's declaration: what runs, what it may do, what the host does, and its budgets.

Tagged unions carry their tag in a ``kind`` field. Each union lives in a namespace class
(``Capability``, ``NetPolicy``, …) holding its variant types, so callers write
``Capability.Network(policy=NetPolicy.DenyAll())``; ``<Namespace>.Any`` is the union type.
Paths are inert strings here: only a backend opens them.
"""

import enum
from typing import Annotated, TypeAlias

import msgspec

from bvisor.contract.annotate import doc
from bvisor.contract.budget import BudgetRequirements
from bvisor.contract.evidence import EvidenceRequirements
from bvisor.contract.identity import CanonicalEnum

_TAGGED = {"frozen": True, "forbid_unknown_fields": True, "tag_field": "kind"}

# Bounds contract/validate.py enforces, kept beside the fields they bound so that the
# schemas and the spec reference state the same numbers.
MAX_ENV_ENTRIES = 256
MAX_ENV_TOTAL_BYTES = 128 * 1024
# The kernel's MAX_ARG_STRLEN: execve refuses (E2BIG) any one argv or envp string longer
# than this, counting its terminating NUL (and, for envp, the '=').
MAX_EXEC_STRING = 131072
# '=' ends a name in envp; NUL ends the string; a control character (C0, DEL, C1) forges
# lines in anything that prints the environment (`--env $'X\nY=1'` reads as two entries).
ENV_NAME_FORBIDDEN = r"=\x00-\x1f\x7f-\x9f"
PORT_RANGE = (1, 65535)

# An absolute path without NUL; the pattern is the schema's, validate.py gives the message.
AbsolutePath = Annotated[str, msgspec.Meta(extra_json_schema={"pattern": r"^/[^\x00]*$"})]


class FsAccess(enum.Enum):
    """How a filesystem grant may be used. ``read``: read files, list directories and
    execute. ``write`` and ``read_write``: everything besides (create, write, truncate,
    rename, remove, make devices, sockets, FIFOs and links); the Linux backend treats the
    two alike."""

    Read = "read"
    Write = "write"
    ReadWrite = "read_write"

    @property
    def writes(self) -> bool:
        return self is not FsAccess.Read


class WorkloadKind(CanonicalEnum):
    """The kinds of workload a backend may run."""

    Process = "process"


class Workload:
    """What runs inside the boundary."""

    class Process(msgspec.Struct, tag="process", **_TAGGED):
        """A native process; ``exe`` is an absolute path, ``args`` follow argv[0]. ``cwd``:
        the absolute path in the run's view it starts in (the run fails if the view has no
        such directory); unset, the caller's working directory where the view has it, else
        /. (Unset is left out of the encoding, so reports sealed before the field existed
        still verify.)"""

        exe: Annotated[AbsolutePath, doc("The program: an absolute path, no NUL (`bvisor run -- NAME` resolves a bare name on the workload's PATH inside its view). The host opens it and the launcher execs that open file, never the path again; argv[0] is this path.")]
        args: Annotated[list[str], doc(f"The arguments after argv[0], each without NUL and at most {MAX_EXEC_STRING - 1} bytes of UTF-8 (the kernel's limit per string).")] = []
        cwd: Annotated[AbsolutePath | msgspec.UnsetType, doc("The directory of the run's view it starts in: an absolute path, no NUL; the run fails (`cwd_missing`) where the view has no such directory. Unset: the caller's working directory where the view has it, else /.")] = msgspec.UNSET

    Any: TypeAlias = Process


class NetDest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One destination of a network allow-list."""

    host: Annotated[str, doc("A host name or IP address; non-empty, no NUL.", minLength=1)]
    port: Annotated[int, doc("The port.", minimum=PORT_RANGE[0], maximum=PORT_RANGE[1])]


class NetPolicy:
    """What the workload may reach over the network."""

    class DenyAll(msgspec.Struct, tag="deny_all", **_TAGGED):
        """No network (`--net none`): a new, empty network namespace (a loopback device, down,
        no routes; no IPv4, IPv6 or packet sockets), and the unix socket gate, under which a
        pathname unix socket is reachable only on the run's own temp root."""

    class AllowList(msgspec.Struct, tag="allow_list", **_TAGGED):
        """Always refused in this version: an allow-list needs a network broker, which bvisor
        does not have (`--net allow=HOST:PORT` builds one; the plan refuses it)."""

        dests: Annotated[list[NetDest], doc("The only destinations the workload may reach.")]

    Any: TypeAlias = DenyAll | AllowList


class EnvSource:
    """Where an environment entry's value comes from."""

    class Literal(msgspec.Struct, tag="literal", **_TAGGED):
        """A value written in the spec, and so also in the plan and the report."""

        value: Annotated[str, doc(f"The value: anything but NUL; NAME=VALUE at most {MAX_EXEC_STRING - 1} bytes of UTF-8 (the kernel's limit per string).")]

    class SecretLease(msgspec.Struct, tag="secret_lease", **_TAGGED):
        """An opaque reference resolved just in time by the host; the value never enters
        a plan or a report."""

        ref: Annotated[str, doc("The lease reference, non-empty and without NUL, resolved by the host's secret resolver just before launch; the CLI's resolver reads `env:VAR` from the caller's own environment (`--env-secret NAME=env:VAR`).", minLength=1)]

    Any: TypeAlias = Literal | SecretLease


class EnvEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One variable of the workload's environment."""

    name: Annotated[str, doc("The variable's name: non-empty, without '=', NUL or a control character, and not repeated in the policy.", pattern=f"^[^{ENV_NAME_FORBIDDEN}]+$")]
    source: Annotated[EnvSource.Any, doc("Where its value comes from.")]

    @classmethod
    def literal(cls, name: str, value: str) -> "EnvEntry":
        return cls(name=name, source=EnvSource.Literal(value))

    @classmethod
    def lease(cls, name: str, ref: str) -> "EnvEntry":
        return cls(name=name, source=EnvSource.SecretLease(ref))


class EnvPolicy:
    """How the workload's environment is made."""

    class Exact(msgspec.Struct, tag="exact", **_TAGGED):
        """The workload's environment is exactly these entries; nothing is inherited."""

        entries: Annotated[list[EnvEntry], doc(f"Every variable the workload gets, in this order: at most {MAX_ENV_ENTRIES} entries, and at most {MAX_ENV_TOTAL_BYTES} bytes of names and values (or lease references) together.", maxItems=MAX_ENV_ENTRIES)]

    Any: TypeAlias = Exact


class FdPolicy:
    """Which of the host's open file descriptors the workload inherits."""

    # Rust spells this ``FdPolicy::None``; ``None`` is reserved in Python, the tag is still
    # ``"none"``.
    class Nothing(msgspec.Struct, tag="none", **_TAGGED):
        """No host fd survives into the workload beyond its standard streams: every other
        descriptor is closed in the launcher and the table read back before exec."""

    class Only(msgspec.Struct, tag="only", **_TAGGED):
        """Always refused in this version: a selective fd keep-list is not implemented."""

        fds: Annotated[list[Annotated[int, msgspec.Meta(extra_json_schema={"minimum": 0})]], doc("Descriptor numbers the workload keeps besides 0, 1 and 2: each >= 0, none twice.", uniqueItems=True)]

    Any: TypeAlias = Nothing | Only


class SpawnPolicy:
    """The workload's authority to create its own tasks, strictest first."""

    class DenyNewTasks(msgspec.Struct, tag="deny_new_tasks", **_TAGGED):
        """No new process or thread (`--no-spawn`): seccomp makes clone, clone3, fork and
        vfork fail with EPERM."""

    class AllowThreadsWithinBoundary(msgspec.Struct, tag="allow_threads_within_boundary", **_TAGGED):
        """Threads but no new process (`--threads-only`): seccomp allows clone only with
        CLONE_THREAD; clone3 fails with ENOSYS (the C library falls back to clone), fork and
        vfork with EPERM."""

    class AllowDescendantsWithinBoundary(msgspec.Struct, tag="allow_descendants_within_boundary", **_TAGGED):
        """Processes and threads, all kept in the run: its pid namespace (and its cgroup
        leaf where one is delegated) holds the whole tree, which dies with the run."""

    Any: TypeAlias = DenyNewTasks | AllowThreadsWithinBoundary | AllowDescendantsWithinBoundary


class Capability:
    """Guest authority: grants and restrictions on what the workload may do."""

    class Filesystem(msgspec.Struct, tag="filesystem", **_TAGGED):
        """Filesystem access confined to ``roots``; ``system_roots`` additionally grants
        read-only the system paths ordinary programs need (loader, libraries, /etc, …)."""

        access: Annotated[FsAccess, doc("How every root of this grant may be used.")]
        roots: Annotated[list[AbsolutePath], doc("Host paths the run sees at the same paths: at least one, each absolute and without NUL. The host opens each; the run's fresh root shows it (read-only where access is read; all nosuid,nodev) and landlock confines the run to the granted roots as a second wall.", minItems=1)]
        system_roots: Annotated[bool, doc("Also grant read-only the system paths this host's probe lists (fact `fs.system_roots`: /usr, /bin, /lib…, /etc and a few /dev nodes).")] = True

    class Network(msgspec.Struct, tag="network", **_TAGGED):
        """Network confinement. A spec without it leaves the run in the host's network
        namespace."""

        policy: Annotated[NetPolicy.Any, doc("`deny_all`, or `allow_list` (always refused in this version).")]

    class Environment(msgspec.Struct, tag="environment", **_TAGGED):
        """The workload's environment. Without it the Linux backend gives an empty one."""

        policy: Annotated[EnvPolicy.Any, doc("`exact`: exactly the listed entries.")]

    class InheritedFds(msgspec.Struct, tag="inherited_fds", **_TAGGED):
        """Which host file descriptors the workload inherits."""

        policy: Annotated[FdPolicy.Any, doc("`none` (only stdin, stdout and stderr), or `only` (always refused in this version).")]

    class ChildSpawn(msgspec.Struct, tag="child_spawn", **_TAGGED):
        """The workload's authority to create processes and threads. A spec without it
        allows descendants (they stay in the run's pid namespace)."""

        policy: Annotated[SpawnPolicy.Any, doc("Strictest first: `deny_new_tasks`, `allow_threads_within_boundary`, `allow_descendants_within_boundary`.")]

    Any: TypeAlias = Filesystem | Network | Environment | InheritedFds | ChildSpawn


class StdStreams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which standard streams to capture. Each one asked adds one to the handle_count
    minimum. The Linux backend captures stdout and stderr of every run whatever these say,
    and never stdin (the report's `stdin` fact says how stdin reached the run)."""

    stdout: Annotated[bool, doc("Capture stdout: every byte counted and hashed, the first 16 MiB kept.")]
    stderr: Annotated[bool, doc("Capture stderr, as stdout.")]
    stdin: Annotated[bool, doc("Capture stdin (not captured by the Linux backend).")]

    @classmethod
    def capture_out_err(cls) -> "StdStreams":
        return cls(stdout=True, stderr=True, stdin=False)

    def count(self) -> int:
        return self.stdout + self.stderr + self.stdin


class KillTarget(enum.Enum):
    """What a kill reaches: ``run_tree``, every process of the run."""

    RunTree = "run_tree"


class KillGuarantee(enum.Enum):
    """``atomic``: the whole tree at once, nothing left to fork in between.
    ``best_effort_allowed``: the caller also accepts a kill that is not atomic. The Linux
    backend kills at once either way (the cgroup leaf's cgroup.kill, or the run's pid
    namespace init, whose death takes the namespace along); the plan's mechanism says which."""

    Atomic = "atomic"
    BestEffortAllowed = "best_effort_allowed"


class HostControl:
    """What the host does for the run; never authority granted to the workload."""

    class LaunchWorkload(msgspec.Struct, tag="launch_workload", **_TAGGED):
        """Launch the workload: the launcher, never host root, applies the confinement and
        execs the exe from a descriptor the host opened."""

    class CaptureStreams(msgspec.Struct, tag="capture_streams", **_TAGGED):
        """Capture the workload's standard streams for the report."""

        streams: Annotated[StdStreams, doc("Which streams.")]

    class TempRoot(msgspec.Struct, tag="temp_root", **_TAGGED):
        """Private temporary storage mounted at ``path``: a tmpfs of the run's own, its size
        budgets.storage.limit bytes and one inode per 4 KiB of it (at least 64), gone when
        the run ends."""

        path: Annotated[AbsolutePath, doc("Where the run sees it: an absolute path, no NUL.")] = "/tmp"

    class ExposePath(msgspec.Struct, tag="expose_path", **_TAGGED):
        """A host path shown at another place in the run (`--bind SRC:DST[:ro]`): a clone of
        the object the host opened, checked by device and inode. Repeatable."""

        source: Annotated[AbsolutePath, doc("The host path: absolute, no NUL.")]
        dest: Annotated[AbsolutePath, doc("Where the run sees it: absolute, no NUL. A missing mountpoint is made in the run's own root or temp root, never on a host filesystem (a dest inside a granted host root must exist there).")]
        access: Annotated[FsAccess, doc("`read` shows it read-only; `write` or `read_write` writable.")]

    class Kill(msgspec.Struct, tag="kill", kw_only=True, **_TAGGED):
        """Kill the run's whole tree when it ends, as a guarantee of the plan (admitted where
        the host can kill the tree at once). Every Linux run's tree is torn down anyway."""

        target: Annotated[KillTarget, doc("What is killed.")] = KillTarget.RunTree
        guarantee: Annotated[KillGuarantee, doc("How strictly.")]

    class CommitArtifact(msgspec.Struct, tag="commit_artifact", **_TAGGED):
        """Always refused in this version: artifact commit is not implemented."""

    class DiscardArtifact(msgspec.Struct, tag="discard_artifact", **_TAGGED):
        """Always refused in this version: artifact discard is not implemented."""

    class ListOutputs(msgspec.Struct, tag="list_outputs", **_TAGGED):
        """Always refused in this version: output listing is not implemented."""

    Any: TypeAlias = (
        LaunchWorkload | CaptureStreams | TempRoot | ExposePath | Kill | CommitArtifact | DiscardArtifact | ListOutputs
    )


# One classification path serves both: a requirement is a capability or a host control.
Requirement = Capability.Any | HostControl.Any


class BoundarySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A boundary spec: what runs, what it may do, what the host does for it, its budgets
    and the evidence its report must back. Every capability and control is a requirement the
    host must enforce, or the plan is refused before anything runs."""

    workload: Annotated[Workload.Any, doc("What runs.")]
    capabilities: Annotated[list[Capability.Any], doc("What the workload may (or may not) do. Each kind at most once, except `filesystem`.")]
    controls: Annotated[list[HostControl.Any], doc("What the host does for the run. Each kind at most once, except `expose_path`.")]
    budgets: Annotated[BudgetRequirements, doc("A limit and a guarantee on each of the seven dimensions.")]
    evidence: Annotated[EvidenceRequirements, doc("The claims the report must be able to back, or the plan is refused.")] = EvidenceRequirements()

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
