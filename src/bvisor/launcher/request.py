"""Decode and validate a launch-plan body into a ``LaunchRequest`` (launcher side).

The launcher trusts nothing in the body: every field is type-checked, unknown keys are
refused, the lowering digest is recomputed, the descriptor table is checked for duplicate
slots and singleton roles, and every scheduled primitive must be one this launcher carries
out, in its frozen phase. Each failure is a ``Refusal`` naming the reason.
"""

import msgpack

from bvisor.launcher import wire


class Refusal(Exception):
    """The plan is refused before any child exists. ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Slot:
    __slots__ = ("index", "role", "kind", "writable")

    def __init__(self, index: int, role: str, kind: str, writable: bool):
        self.index, self.role, self.kind, self.writable = index, role, kind, writable


class LaunchRequest:
    """What the launcher will do, after validation. Plain attributes, no behaviour."""

    __slots__ = ("lowering_ids", "slots", "argv", "envp", "exe_slot", "user_namespace", "network_namespace")

    def __init__(self, lowering_ids, slots, argv, envp, exe_slot, user_namespace, network_namespace):
        self.lowering_ids = lowering_ids
        self.slots = slots
        self.argv = argv
        self.envp = envp
        self.exe_slot = exe_slot
        self.user_namespace = user_namespace
        self.network_namespace = network_namespace


_BODY_KEYS = ("attempt_id", "plan_id", "h_a", "h_p", "h_l", "lowering", "descriptor_table", "target")
_ENTRY_KEYS = ("id", "version", "phase_code", "param_digest", "decl_digest")
_TARGET_REQUIRED = ("argv", "envp", "exe_slot")
_TARGET_OPTIONAL = ("user_namespace", "network_namespace")
_MAX_FD = 1 << 20


def _invalid(detail: str) -> Refusal:
    return Refusal("PlanInvalid", detail)


def _fields(value, name: str, required: tuple, optional: tuple = ()) -> dict:
    if not isinstance(value, dict):
        raise _invalid(f"{name} is not a map")
    unknown = set(value) - set(required) - set(optional)
    if unknown:
        raise _invalid(f"{name} has unknown fields {sorted(map(str, unknown))}")
    missing = [k for k in required if k not in value]
    if missing:
        raise _invalid(f"{name} lacks {missing}")
    return value


def _typed(value, kind, name: str):
    if type(value) is not kind:
        raise _invalid(f"{name} must be {kind.__name__}")
    return value


def _digest(value, name: str) -> bytes:
    if type(value) is not bytes or len(value) != 32:
        raise _invalid(f"{name} must be 32 bytes")
    return value


def _fd_number(value, name: str) -> int:
    _typed(value, int, name)
    if not 0 <= value < _MAX_FD:
        raise _invalid(f"{name} out of range")
    return value


def _text(value, name: str) -> str:
    _typed(value, str, name)
    if "\0" in value:
        raise _invalid(f"{name} contains NUL")
    return value


def verify_identity(body: bytes) -> dict:
    """Decode the body and check the identity bindings (digest shapes, ``h_l``)."""
    try:
        raw = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # any malformed MessagePack is a refusal, never a crash
        raise _invalid(f"body is not MessagePack ({type(exc).__name__})") from None
    fields = _fields(raw, "body", _BODY_KEYS)
    for name in ("attempt_id", "plan_id", "h_a", "h_p", "h_l"):
        _digest(fields[name], name)

    lowering = _fields(fields["lowering"], "lowering", ("entries",))
    entries = _typed(lowering["entries"], list, "lowering.entries")
    for i, entry in enumerate(entries):
        e = _fields(entry, f"lowering.entries[{i}]", _ENTRY_KEYS)
        _text(e["id"], f"lowering.entries[{i}].id")
        _typed(e["version"], int, f"lowering.entries[{i}].version")
        _typed(e["phase_code"], int, f"lowering.entries[{i}].phase_code")
        _digest(e["param_digest"], f"lowering.entries[{i}].param_digest")
        _digest(e["decl_digest"], f"lowering.entries[{i}].decl_digest")
    # h_l binds the schedule: recompute it from the canonical re-encoding of what we decoded.
    if wire.lowering_digest(msgpack.packb(lowering, use_bin_type=True)) != fields["h_l"]:
        raise Refusal("IdentityMismatch", "h_l does not match the lowering")
    return fields


def build_request(fields: dict) -> LaunchRequest:
    """Validate the descriptor table, the target and the schedule of an identity-verified body."""
    slots = _decode_table(fields["descriptor_table"])
    target = _fields(fields["target"], "target", _TARGET_REQUIRED, _TARGET_OPTIONAL)
    argv = [_text(a, "target.argv[]") for a in _typed(target["argv"], list, "target.argv")]
    if not argv:
        raise _invalid("target.argv is empty")
    envp = []
    for pair in _typed(target["envp"], list, "target.envp"):
        if not isinstance(pair, list) or len(pair) != 2:
            raise _invalid("target.envp entries must be [name, value]")
        name, value = _text(pair[0], "target.envp[].name"), _text(pair[1], "target.envp[].value")
        if not name or "=" in name:
            raise _invalid(f"target.envp name {name!r} is empty or contains '='")
        envp.append((name, value))
    exe_slot = _fd_number(target["exe_slot"], "target.exe_slot")
    if not any(s.index == exe_slot and s.role == "target_exe" for s in slots):
        raise Refusal("PlanInvalid", "target.exe_slot is not a declared target_exe slot")
    userns = _empty_request(target.get("user_namespace"), "target.user_namespace")
    netns = _empty_request(target.get("network_namespace"), "target.network_namespace")
    if netns and not userns:
        raise _invalid("network_namespace requires user_namespace")
    schedule = [(e["id"], e["phase_code"]) for e in fields["lowering"]["entries"]]
    request = LaunchRequest(schedule, slots, argv, envp, exe_slot, userns, netns)
    _check_primitives(request)
    return request


def _empty_request(value, name: str) -> bool:
    if value is None:
        return False
    _fields(value, name, ())
    return True


def _decode_table(table) -> list:
    slots = []
    seen_indexes, seen_singletons = set(), set()
    for i, raw in enumerate(_typed(table, list, "descriptor_table")):
        f = _fields(raw, f"descriptor_table[{i}]", ("slot_index", "role", "expected"))
        shape = _fields(f["expected"], f"descriptor_table[{i}].expected", ("kind", "writable"))
        index = _fd_number(f["slot_index"], f"descriptor_table[{i}].slot_index")
        role, kind = f["role"], shape["kind"]
        if role not in wire.ROLES:
            raise _invalid(f"descriptor_table[{i}].role {role!r} is unknown")
        if kind not in wire.KINDS:
            raise _invalid(f"descriptor_table[{i}].expected.kind {kind!r} is unknown")
        if index <= 2:
            raise _invalid(f"descriptor_table[{i}].slot_index {index} collides with stdio")
        if index in seen_indexes:
            raise Refusal("PlanInvalid", f"DuplicateSlotIndex {index}")
        if role not in wire.REPEATABLE_ROLES and role in seen_singletons:
            raise Refusal("PlanInvalid", f"DuplicateSingletonRole {role}")
        seen_indexes.add(index)
        seen_singletons.add(role)
        slots.append(Slot(index, role, kind, _typed(shape["writable"], bool, "writable")))
    return slots


def _check_primitives(request: LaunchRequest) -> None:
    """Refuse any primitive this launcher does not carry out, or one outside its phase."""
    ids = [pid for pid, _ in request.lowering_ids]
    for pid, phase in request.lowering_ids:
        expected = wire.IMPLEMENTED_PRIMITIVES.get(pid)
        if expected is None:
            raise Refusal("MissingPrimitive", f"unknown primitive {pid!r}")
        if expected != phase:
            raise Refusal("MissingPrimitive", f"{pid} scheduled in phase {phase}, expected {expected}")
    if len(set(ids)) != len(ids):
        raise Refusal("PlanInvalid", "a primitive is scheduled twice")
    for required in (wire.ID_AMBIENT_SCRUB, wire.ID_EXEC):
        if required not in ids:
            raise Refusal("MissingPrimitive", f"plan does not schedule {required}")
    if ids[-1] != wire.ID_EXEC:
        raise Refusal("PlanInvalid", "linux.exec.v1 must be the last primitive")
