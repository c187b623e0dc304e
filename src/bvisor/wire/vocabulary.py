"""The launch plan's vocabulary, each name defined once: the messages and their fields, the
descriptor roles and kinds, the launcher's states, and the primitives a schedule may name.

The host's msgspec structs (``wire.plan``) and the launcher's validator
(``launcher/request.py``) both follow these tables; ``tests/unit/test_wire_vocabulary.py``
checks the structs against them field by field, in order (the order is the byte form).

Stdlib + blake3 + msgpack only: the launcher imports this on every run.
"""

import blake3
import msgpack

# Not ``typing``: importing it costs the launcher ~8 ms a run (re, enum, functools...);
# mypy reads this name as typing's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Message:
    """A map on the wire: ``required`` keys, then ``optional`` ones (omitted when absent),
    in the order the canonical encoding writes them."""

    __slots__ = ("required", "optional")

    def __init__(self, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
        self.required, self.optional = required, optional

    @property
    def fields(self) -> tuple[str, ...]:
        return self.required + self.optional


# Every map of a launch-plan body, by the name the validator reports it under.
MESSAGES: dict[str, Message] = {
    "body": Message(("attempt_id", "plan_id", "h_a", "h_p", "h_l", "lowering", "descriptor_table", "target")),
    "lowering": Message(("entries",)),
    "entry": Message(("id", "version", "phase_code", "param_digest", "decl_digest")),
    "slot": Message(("slot_index", "role", "expected")),
    "shape": Message(("kind", "writable")),
    "target": Message(
        ("argv", "envp", "exe_slot"),
        (
            "user_namespace",
            "network_namespace",
            "mount_namespace",
            "temp_root",
            "binds",
            "landlock",
            "pid_namespace",
            "cgroup",
            "rlimits",
            "landlock_scope",
            "proc_roots",
            "seccomp",
            "ipc_namespace",
            "uts_namespace",
            "cgroup_namespace",
            "idmapped_mounts",
            "view",
            "terminal",
        ),
    ),
    "user_namespace": Message((), ("outside_id",)),
    "network_namespace": Message((), ("unix_gate",)),
    "unix_gate": Message(()),
    "mount_namespace": Message(()),
    "pid_namespace": Message(()),
    "ipc_namespace": Message(()),
    "cgroup_namespace": Message(()),
    "terminal": Message(()),
    "uts_namespace": Message(("hostname",)),
    "temp_root": Message(("path", "size_bytes", "max_inodes")),
    "bind": Message(("source_slot", "source_path", "dest", "writable")),
    "landlock": Message(("abi_floor",)),
    "landlock_scope": Message(("abi_floor",)),
    "cgroup": Message(("procs_slots",)),
    "rlimit": Message(("resource", "limit")),
    "proc_root": Message(("path", "writable")),
    "seccomp": Message(("policies", "program_digest")),
    "idmapped_mount": Message(("slot", "dest")),
    "view_root": Message(("slot", "path")),
    "view": Message(("roots", "cwd"), ("cwd_required", "host_tree", "masked", "links", "exe")),
}

# Descriptor table: the role each host-opened fd plays, and the kind of object it must be.
ROLES = (
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
)
REPEATABLE_ROLES = frozenset({"read_root", "write_root", "expose_source", "cgroup_procs"})
KINDS = ("directory", "regular", "char_device", "socket", "pipe")
EXE_SLOT = 10  # the seed's slot for the exe the host opened

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

# Phase codes are frozen: new behaviour gets a new id, never a renumbering.
PHASE_NAMESPACE_CREATE = 0
PHASE_FS_SETUP = 1
PHASE_PRIVILEGE_DROP = 2
PHASE_FD_HYGIENE = 3
PHASE_POLICY_INSTALL = 4
PHASE_LAUNCH = 5

ID_TRANSIENT_ID = "linux.userns.transient_id.v1"
ID_IPC_NS = "linux.ipcns.v1"
ID_UTS_NS = "linux.utsns.v1"
ID_CGROUP_NS = "linux.cgroupns.v1"
ID_PID_INIT = "linux.pidns.init.v1"
ID_CGROUP_PLACE = "linux.cgroup.place.v1"
ID_MOUNT_TEMP_ROOT = "linux.mount.temp_root.v1"
ID_MOUNT_BIND = "linux.mount.bind.v1"
ID_MOUNT_IDMAPPED = "linux.mount.idmapped.v1"
ID_MOUNT_VIEW = "linux.mount.view.v1"
# v1 was scheduled in privilege_drop, before the fd scrub: a cap on open files set there
# would fail the scrub itself. v2 is set in policy_install, once only the exec's fds remain.
ID_RLIMIT_SET = "linux.rlimit.set.v2"
ID_AMBIENT_SCRUB = "linux.ambient.scrub.v1"
ID_LANDLOCK_APPLY = "linux.landlock.apply.v1"
ID_LANDLOCK_SCOPE = "linux.landlock.scope.v1"
ID_UNIX_GATE = "linux.unixgate.supervise.v1"
ID_SECCOMP_APPLY = "linux.seccomp.apply.v1"
ID_EXEC = "linux.exec.v1"
PRIMITIVE_VERSION = 1


class Primitive:
    """One step a schedule may name. ``present``: the target field (or ``field.subfield``)
    whose presence schedules it, None for a step every plan has. ``params``: the target
    fields it applies, and ``roles``: the descriptor roles whose slots it uses; its
    ``param_digest`` binds both."""

    __slots__ = ("id", "phase", "present", "params", "roles")

    def __init__(self, id: str, phase: int, present: str | None, params: tuple[str, ...], roles: tuple[str, ...] = ()) -> None:
        self.id, self.phase, self.present, self.params, self.roles = id, phase, present, params, roles


# Every primitive this launcher carries out, in the one order a schedule lists them: by
# phase, and within a phase in the order the launcher applies them (the init joins the
# run's cgroup leaf before it roots a cgroup namespace there; seccomp is last of all before
# exec: from there on only execve runs).
PRIMITIVES: tuple[Primitive, ...] = (
    Primitive(ID_TRANSIENT_ID, PHASE_NAMESPACE_CREATE, "user_namespace.outside_id", ("user_namespace",)),
    Primitive(ID_IPC_NS, PHASE_NAMESPACE_CREATE, "ipc_namespace", ("ipc_namespace",)),
    Primitive(ID_UTS_NS, PHASE_NAMESPACE_CREATE, "uts_namespace", ("uts_namespace",)),
    Primitive(ID_PID_INIT, PHASE_NAMESPACE_CREATE, "pid_namespace", ("pid_namespace",)),
    Primitive(ID_CGROUP_PLACE, PHASE_NAMESPACE_CREATE, "cgroup", ("cgroup",), ("cgroup_procs",)),
    Primitive(ID_CGROUP_NS, PHASE_NAMESPACE_CREATE, "cgroup_namespace", ("cgroup_namespace",)),
    Primitive(ID_MOUNT_TEMP_ROOT, PHASE_FS_SETUP, "temp_root", ("temp_root",)),
    Primitive(ID_MOUNT_BIND, PHASE_FS_SETUP, "binds", ("binds",), ("expose_source",)),
    Primitive(ID_MOUNT_IDMAPPED, PHASE_FS_SETUP, "idmapped_mounts", ("idmapped_mounts",), ("write_root", "expose_source")),
    Primitive(ID_MOUNT_VIEW, PHASE_FS_SETUP, "view", ("mount_namespace", "view"), ("read_root", "write_root")),
    Primitive(ID_AMBIENT_SCRUB, PHASE_FD_HYGIENE, None, ()),
    Primitive(ID_RLIMIT_SET, PHASE_POLICY_INSTALL, "rlimits", ("rlimits",)),
    Primitive(
        ID_LANDLOCK_APPLY, PHASE_POLICY_INSTALL, "landlock", ("landlock", "proc_roots"), ("read_root", "write_root", "expose_source", "target_exe")
    ),
    Primitive(ID_LANDLOCK_SCOPE, PHASE_POLICY_INSTALL, "landlock_scope", ("landlock_scope",)),
    Primitive(ID_UNIX_GATE, PHASE_POLICY_INSTALL, "network_namespace.unix_gate", ("network_namespace",)),
    Primitive(ID_SECCOMP_APPLY, PHASE_POLICY_INSTALL, "seccomp", ("seccomp",)),
    Primitive(ID_EXEC, PHASE_LAUNCH, None, ("argv", "envp", "exe_slot", "terminal"), ("target_exe",)),
)
PRIMITIVE_BY_ID = {p.id: p for p in PRIMITIVES}

# The seed's acceptance test (shared/seed/network_deny_all_linux.rs) builds exactly these two
# entries with all-zero param and decl digests; a zero digest is accepted for them, and only
# in a seed-shaped schedule (these two, and the transient id a root launcher needs, whose
# digests must bind). The seed's target also sets user_namespace and network_namespace, which
# schedule no primitive of their own (no outside id, no unix gate): the fields are the request.
SEED_ZERO_DIGEST_PRIMITIVES = frozenset({ID_AMBIENT_SCRUB, ID_EXEC})
SEED_SHAPED = SEED_ZERO_DIGEST_PRIMITIVES | {ID_TRANSIENT_ID}
ZERO_DIGEST = bytes(32)

_PARAMS_DOMAIN = b"bvisor.primitive-params.v1\x00"
_DECL_DOMAIN = b"bvisor.primitive-decl.v1\x00"


def _present(target: dict[str, "Any"], path: str) -> bool:
    head, _, sub = path.partition(".")
    value = target.get(head)
    return value is not None and (not sub or (isinstance(value, dict) and value.get(sub) is not None))


def schedule_for(target: dict[str, "Any"]) -> list[Primitive]:
    """The one schedule a target (as decoded from the wire: plain maps and lists) implies."""
    return [p for p in PRIMITIVES if p.present is None or _present(target, p.present)]


def param_digest(primitive: Primitive, target: dict[str, "Any"], table: list["Any"]) -> bytes:
    """blake3 over the canonical MessagePack of what ``primitive`` applies: the values of its
    target fields (nil where absent), then the descriptor-table slots of its roles, in table
    order. The host computes it from the body it encoded, the launcher from the body it
    decoded: one function, so the two cannot drift. (It checks that both read one schedule
    the same way; the body's integrity is the frame's digest and the sealed memfd's.)"""
    values = [target.get(name) for name in primitive.params]
    values += [slot for slot in table if isinstance(slot, dict) and slot.get("role") in primitive.roles]
    return blake3.blake3(_PARAMS_DOMAIN + msgpack.packb(values, use_bin_type=True)).digest()


def decl_digest(primitive: Primitive) -> bytes:
    """blake3 over ``[id, version, phase]``: what the entry declares itself to be."""
    declared = [primitive.id, PRIMITIVE_VERSION, primitive.phase]
    return blake3.blake3(_DECL_DOMAIN + msgpack.packb(declared, use_bin_type=True)).digest()
