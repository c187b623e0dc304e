"""``LinuxLaunchPlanV1``: the host's typed view of what the launcher is told to do.

Encodes to canonical MessagePack inside a ``BVZLNCH1`` frame (``wire.frame``). Every struct
here is one message of ``wire.vocabulary.MESSAGES`` (a test checks them field by field), and
every enum one of its value lists. Opt-in target fields are omitted when absent so that
proven byte forms stay stable; a golden vector test pins them.
"""

import enum

import msgpack
import msgspec

from bvisor.wire import frame, vocabulary

# The wire's canonical MessagePack: maps in field order, shortest encodings (what the
# launcher re-encodes with msgpack to recompute h_l and each entry's param digest).
_canonical = msgspec.msgpack.Encoder(order="deterministic")


class DescriptorRole(enum.Enum):
    ReadRoot = "read_root"
    WriteRoot = "write_root"
    ExposeSource = "expose_source"
    TargetExe = "target_exe"
    CgroupDir = "cgroup_dir"
    CgroupProcs = "cgroup_procs"
    Stdin = "stdin"
    Stdout = "stdout"
    Stderr = "stderr"
    ControlChannel = "control_channel"


class DescriptorKind(enum.Enum):
    Directory = "directory"
    Regular = "regular"
    CharDevice = "char_device"
    Socket = "socket"
    Pipe = "pipe"


class DescriptorShape(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: DescriptorKind
    writable: bool


class DescriptorSlotV1(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``slot_index`` is the fd number at which the launcher finds the handle."""

    slot_index: int
    role: DescriptorRole
    expected: DescriptorShape


class LoweringWireEntryV1(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    version: int
    phase_code: int
    param_digest: bytes
    decl_digest: bytes


class LoweringWireV1(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    entries: list[LoweringWireEntryV1]


class UserNsRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Birth the child in a new user namespace, mapped to uid/gid 0 inside. ``outside_id``:
    the unprivileged host uid/gid that in-run root is (a root launcher maps the child to it
    and the child takes it on); absent, the launcher's own ids, which must not be root."""

    outside_id: int | None = None


class IpcNsRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Birth the child in a new IPC namespace: no SysV object or POSIX queue of the host."""


class UtsNsRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Birth the child in a new UTS namespace and name it ``hostname``."""

    hostname: str


class CgroupNsRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The init enters a new cgroup namespace once placed: its leaf is the run's cgroup root."""


class IdmappedMountRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Attach an idmapped clone of the tree at ``slot`` (a write root or expose source) at
    ``dest``: its owner is the run's root, what the run creates belongs to that owner on the
    host. Made by a root launcher for a run with an ``outside_id``."""

    slot: int
    dest: str


class UnixGateRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Gate connect(2), addressed sendto(2) and sendmsg(2) of the workload through the run's
    init, which reaches only sockets on the run's own temp root (requires ``pid_namespace``);
    sendmmsg(2) is refused."""


class NetworkNsRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Birth the child in a new, empty network namespace (requires ``user_namespace``), and
    where ``unix_gate`` is set gate the host's unix sockets too, which no network namespace
    covers. (The gate rides here, not as a seventeenth target field: msgspec gives a struct
    of 16+ fields a map16 header, which would change every plan's byte form.)"""

    unix_gate: UnixGateRequest | None = None


class MountNsRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Birth the child in a new, private mount namespace (requires ``user_namespace``)."""


class PidNsRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Run the workload under a minimal init as pid 1 of a new pid namespace with its own
    /proc (requires ``user_namespace`` and ``mount_namespace``): the tree dies with the init."""


class CgroupPlacementRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The init writes itself into each host-opened ``cgroup.procs`` at these slots before
    the workload exists, so the whole run tree lives in the run's leaf."""

    procs_slots: list[int]


class RlimitRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A per-process kernel cap set (soft = hard = ``limit``) just before exec."""

    resource: str  # "nofile"
    limit: int


class LandlockScopeRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Scope signals and abstract unix sockets to the workload's own landlock domain."""

    abi_floor: int


class ProcRootRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A landlock root beneath /proc. The run sees the /proc its init mounted, not the host's,
    so the rule goes on the object at ``path`` in that mount, opened by the launcher."""

    path: str
    writable: bool


class SeccompRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Install the filter compiled from these frozen policies, in this order, last before exec.
    The launcher compiles it itself and refuses unless it hashes to ``program_digest``."""

    policies: list[str]
    program_digest: bytes


class TempRootRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A private tmpfs of ``size_bytes`` and at most ``max_inodes`` inodes (its root
    included) mounted at ``path``."""

    path: str
    size_bytes: int
    max_inodes: int


class BindRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Bind the object the host opened at ``source_slot`` (found at ``source_path``) to ``dest``."""

    source_slot: int
    source_path: str
    dest: str
    writable: bool


class LandlockRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Restrict the child to the read/write root slots; refuse below ``abi_floor``."""

    abi_floor: int


class ViewRootRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A granted root in the run's fresh root, at ``path``: a clone of the object the host
    opened at ``slot`` (a read or write root), read-only unless it is a write root."""

    slot: int
    path: str


class ViewRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The run's root, built from nothing and entered with pivot_root (requires
    ``mount_namespace``): the roots, a minimal /dev, the run's own /proc (with a pid
    namespace), the temp root and binds, ``masked`` paths covered; the workload starts in
    ``cwd`` where the view has it, else /. ``host_tree``: no Filesystem requirement, so the
    base is the host's tree (nosuid,nodev) instead of an empty tmpfs. ``links``: ``(path,
    target)`` symlinks made where nothing is (a root declared as /bin is at /usr/bin).
    ``exe``: the exe's path; the run execs it through a read-only clone of it found there
    (its /proc/self/exe then allows no chmod or utime of the host's file). ``cwd_required``:
    the spec named ``cwd``, so a view without it fails the run instead of starting in /."""

    roots: list[ViewRootRequest]
    cwd: str
    cwd_required: bool = False
    host_tree: bool = False
    masked: list[str] = []
    links: list[tuple[str, str]] = []
    exe: str | None = None


class TerminalRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The run's stdio (fds 0-2) is one pseudo-terminal the host opened for this run, never
    the caller's own: the workload starts a new session with it as its controlling terminal,
    and the view's /dev gets ``tty`` (which names it)."""


class TargetSpecV1(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    argv: list[str]
    envp: list[tuple[str, str]]
    exe_slot: int
    user_namespace: UserNsRequest | None = None
    network_namespace: NetworkNsRequest | None = None
    mount_namespace: MountNsRequest | None = None
    temp_root: TempRootRequest | None = None
    binds: list[BindRequest] | None = None
    landlock: LandlockRequest | None = None
    pid_namespace: PidNsRequest | None = None
    cgroup: CgroupPlacementRequest | None = None
    rlimits: list[RlimitRequest] | None = None
    landlock_scope: LandlockScopeRequest | None = None
    proc_roots: list[ProcRootRequest] | None = None
    seccomp: SeccompRequest | None = None
    ipc_namespace: IpcNsRequest | None = None
    uts_namespace: UtsNsRequest | None = None
    cgroup_namespace: CgroupNsRequest | None = None
    idmapped_mounts: list[IdmappedMountRequest] | None = None
    view: ViewRequest | None = None
    terminal: TerminalRequest | None = None


class LinuxLaunchBodyV1(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    attempt_id: bytes
    plan_id: bytes
    h_a: bytes
    h_p: bytes
    h_l: bytes
    lowering: LoweringWireV1
    descriptor_table: list[DescriptorSlotV1]
    target: TargetSpecV1


class LinuxLaunchPlanV1(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    body: LinuxLaunchBodyV1


class LauncherState(enum.Enum):
    """``vocabulary.STATES``: the states the launcher reports, one control line each."""

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


TERMINAL_STATES = frozenset(LauncherState(name) for name in vocabulary.TERMINAL_STATES)


def schedule(target: TargetSpecV1, table: list[DescriptorSlotV1]) -> LoweringWireV1:
    """The lowering a target implies: its primitives in the vocabulary's order, each entry's
    param digest over the very fields and slots the launcher will apply (as it will decode
    them)."""
    decoded = msgpack.unpackb(_canonical.encode(target), raw=False)
    slots = msgpack.unpackb(_canonical.encode(table), raw=False)
    return LoweringWireV1(
        entries=[
            LoweringWireEntryV1(
                id=p.id,
                version=vocabulary.PRIMITIVE_VERSION,
                phase_code=p.phase,
                param_digest=vocabulary.param_digest(p, decoded, slots),
                decl_digest=vocabulary.decl_digest(p),
            )
            for p in vocabulary.schedule_for(decoded)
        ]
    )


def lowering_hash(lowering: LoweringWireV1) -> bytes:
    """``h_l`` exactly as the launcher recomputes it: blake3 of the canonical lowering bytes."""
    return frame.lowering_digest(_canonical.encode(lowering))


def encode_frame(plan: LinuxLaunchPlanV1) -> bytes:
    return frame.build_frame(_canonical.encode(plan.body))


_body_decoder = msgspec.msgpack.Decoder(LinuxLaunchBodyV1)


def decode_frame(data: bytes) -> LinuxLaunchPlanV1:
    """Verify a frame and decode its body (raises ``frame.FrameReject`` or
    ``msgspec.DecodeError``)."""
    return LinuxLaunchPlanV1(body=_body_decoder.decode(frame.parse_frame(data)))
