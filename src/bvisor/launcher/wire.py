"""Frozen wire constants and the launch-plan frame, shared by host and launcher.

Stdlib + blake3 + msgpack only: the launcher imports this, so it must stay cheap.
A frame is ``MAGIC | u16 version | u32 body length | blake3(body) | body`` where the
body is canonical MessagePack (maps with named fields, shortest encodings).
"""

import struct

import blake3

MAGIC = b"BVZLNCH1"
PROTOCOL_VERSION = 1
_HEADER = struct.Struct("<8sHI32s")
HEADER_LEN = _HEADER.size  # 46

# Primitive ids and phase codes are frozen: new behaviour gets a new id, never a renumbering.
PHASE_NAMESPACE_CREATE = 0
PHASE_FS_SETUP = 1
PHASE_PRIVILEGE_DROP = 2
PHASE_FD_HYGIENE = 3
PHASE_POLICY_INSTALL = 4
PHASE_LAUNCH = 5

ID_PID_INIT = "linux.pidns.init.v1"
ID_CGROUP_PLACE = "linux.cgroup.place.v1"
ID_MOUNT_TEMP_ROOT = "linux.mount.temp_root.v1"
ID_MOUNT_BIND = "linux.mount.bind.v1"
ID_AMBIENT_SCRUB = "linux.ambient.scrub.v1"
ID_RLIMIT_SET = "linux.rlimit.set.v1"
ID_LANDLOCK_APPLY = "linux.landlock.apply.v1"
ID_LANDLOCK_SCOPE = "linux.landlock.scope.v1"
ID_SECCOMP_APPLY = "linux.seccomp.apply.v1"
ID_UNIX_GATE = "linux.unixgate.supervise.v1"
ID_EXEC = "linux.exec.v1"
ID_TRANSIENT_ID = "linux.userns.transient_id.v1"
ID_IPC_NS = "linux.ipcns.v1"
ID_UTS_NS = "linux.utsns.v1"
ID_CGROUP_NS = "linux.cgroupns.v1"
ID_MOUNT_IDMAPPED = "linux.mount.idmapped.v1"
ID_MOUNT_VIEW = "linux.mount.view.v1"

# The primitives this launcher can carry out, with the phase each must be scheduled in.
IMPLEMENTED_PRIMITIVES = {
    ID_PID_INIT: PHASE_NAMESPACE_CREATE,
    ID_CGROUP_PLACE: PHASE_NAMESPACE_CREATE,
    ID_MOUNT_TEMP_ROOT: PHASE_FS_SETUP,
    ID_MOUNT_BIND: PHASE_FS_SETUP,
    ID_AMBIENT_SCRUB: PHASE_FD_HYGIENE,
    ID_RLIMIT_SET: PHASE_PRIVILEGE_DROP,
    ID_LANDLOCK_APPLY: PHASE_POLICY_INSTALL,
    ID_LANDLOCK_SCOPE: PHASE_POLICY_INSTALL,
    ID_SECCOMP_APPLY: PHASE_POLICY_INSTALL,
    ID_UNIX_GATE: PHASE_POLICY_INSTALL,
    ID_EXEC: PHASE_LAUNCH,
    ID_TRANSIENT_ID: PHASE_NAMESPACE_CREATE,
    ID_IPC_NS: PHASE_NAMESPACE_CREATE,
    ID_UTS_NS: PHASE_NAMESPACE_CREATE,
    ID_CGROUP_NS: PHASE_NAMESPACE_CREATE,
    ID_MOUNT_IDMAPPED: PHASE_FS_SETUP,
    ID_MOUNT_VIEW: PHASE_FS_SETUP,
}

EXE_SLOT = 10

# Environment variables naming the fds the host passes to the launcher.
ENV_PLAN_FD = "BVISOR_LAUNCH_PLAN_FD"
ENV_CONTROL_FD = "BVISOR_CONTROL_FD"
ENV_HOST_PID = "BVISOR_HOST_PID"  # the launcher dies with this process (its parent)

# Descriptor-table vocabulary (string values on the wire).
ROLES = frozenset(
    {
        "read_root",
        "write_root",
        "expose_source",
        "target_exe",
        "cgroup_dir",
        "cgroup_procs",
        "stdin",
        "stdout",
        "stderr",
        "control_channel",
    }
)
REPEATABLE_ROLES = frozenset({"read_root", "write_root", "expose_source", "cgroup_procs"})
KINDS = frozenset({"directory", "regular", "char_device", "socket", "pipe"})

# Launcher states, in the order a successful run reports them; the last three are terminal.
STATES = (
    "LauncherStarted",
    "IdentityVerified",
    "PlanVerified",
    "HandlesVerified",
    "ChildCreated",
    "IdentityPhaseResolved",
    "VisibilityPhaseResolved",
    "AmbientAuthorityPhaseResolved",
    "ConfinementPhaseResolved",
    "ReadyToExec",
    "ExecSucceeded",
    "SetupRefused",
    "SetupFaulted",
)
TERMINAL_STATES = frozenset({"ExecSucceeded", "SetupRefused", "SetupFaulted"})

# Launcher process exit codes.
EXIT_EXEC_SUCCEEDED = 0
EXIT_REFUSED = 3
EXIT_FAULTED = 4


def staged_placement(placement: dict) -> tuple:
    """How to put each source fd (value) at its number (key) when sources and targets may
    overlap: ``(stage, final)`` lists of ``(from, to)`` moves. Every source first goes to a
    fresh number above them all, then down to its target, so no move clobbers a source
    another move still needs; the staged numbers are then to be closed."""
    base = max(list(placement) + list(placement.values())) + 1
    stage = [(source, base + i) for i, source in enumerate(placement.values())]
    final = [(base + i, target) for i, target in enumerate(placement)]
    return stage, final


class FrameReject(Exception):
    """The frame is not a well-formed, untampered launch plan; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def build_frame(body: bytes) -> bytes:
    return _HEADER.pack(MAGIC, PROTOCOL_VERSION, len(body), blake3.blake3(body).digest()) + body


def parse_frame(frame: bytes) -> bytes:
    """Return the body of a verified frame. Checks run in a fixed order; the first failure wins."""
    if len(frame) < HEADER_LEN:
        raise FrameReject("Truncated", f"{len(frame)} bytes, header needs {HEADER_LEN}")
    magic, version, length, digest = _HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise FrameReject("BadMagic", repr(magic))
    if version != PROTOCOL_VERSION:
        raise FrameReject("UnsupportedVersion", str(version))
    if len(frame) - HEADER_LEN != length:
        raise FrameReject("LengthMismatch", f"header says {length}, body has {len(frame) - HEADER_LEN}")
    body = frame[HEADER_LEN:]
    if blake3.blake3(body).digest() != digest:
        raise FrameReject("DigestMismatch")
    return body


def lowering_digest(lowering_bytes: bytes) -> bytes:
    """``h_l``: blake3 of the canonical bytes of the lowering, no domain tag (as the seed)."""
    return blake3.blake3(lowering_bytes).digest()
