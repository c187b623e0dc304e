"""Decode and validate a launch-plan body into a ``LaunchRequest`` (launcher side).

The launcher trusts nothing in the body: every map must have exactly the fields
``wire.vocabulary.MESSAGES`` gives it, every field is type-checked, the lowering digest is
recomputed, the descriptor table is checked for duplicate slots and singleton roles, and the
schedule must be the very one the target implies (``vocabulary.schedule_for``): known
primitives, in their frozen phases and order, each entry's digests recomputed from the
parameters the launcher will apply. Each failure is a ``Refusal`` naming the reason.
"""

import posixpath

import msgpack

from bvisor.mechanism import seccomp
from bvisor.wire import vocabulary
from bvisor.wire.frame import lowering_digest


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


class Bind:
    __slots__ = ("source_slot", "source_path", "dest", "writable")

    def __init__(self, source_slot: int, source_path: str, dest: str, writable: bool):
        self.source_slot, self.source_path, self.dest, self.writable = source_slot, source_path, dest, writable


class LaunchRequest:
    """What the launcher will do, after validation. Plain attributes, no behaviour."""

    __slots__ = (
        "schedule",
        "slots",
        "argv",
        "envp",
        "exe_slot",
        "user_namespace",
        "network_namespace",
        "mount_namespace",
        "temp_root",
        "binds",
        "landlock_floor",
        "pid_namespace",
        "cgroup_slots",
        "rlimits",
        "scope_floor",
        "proc_roots",
        "seccomp",
        "outside_id",
        "ipc_namespace",
        "hostname",
        "cgroup_namespace",
        "idmapped",
        "view",
        "unix_gate",
        "terminal",
    )

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields[name])

    def scheduled(self, handlers: dict) -> list:
        """The handler of each scheduled entry ``handlers`` carries out, in schedule order: how
        each launcher process dispatches its part of the program."""
        return [handlers[primitive] for primitive in self.schedule if primitive in handlers]

    def roots(self) -> list:
        """The landlock roots the host declared: ``(slot, writable)``."""
        return [(s.index, s.role == "write_root") for s in self.slots if s.role in ("read_root", "write_root")]


RLIMIT_RESOURCES = ("nofile",)
_MAX_FD = 1 << 20


def _invalid(detail: str) -> Refusal:
    return Refusal("PlanInvalid", detail)


def _fields(value, name: str, message: str) -> dict:
    """``value`` as the map ``vocabulary.MESSAGES[message]``: no unknown field, none missing."""
    if not isinstance(value, dict):
        raise _invalid(f"{name} is not a map")
    shape = vocabulary.MESSAGES[message]
    unknown = set(value) - set(shape.fields)
    if unknown:
        raise _invalid(f"{name} has unknown fields {sorted(map(str, unknown))}")
    missing = [k for k in shape.required if k not in value]
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
    fields = _fields(raw, "body", "body")
    for name in ("attempt_id", "plan_id", "h_a", "h_p", "h_l"):
        _digest(fields[name], name)

    lowering = _fields(fields["lowering"], "lowering", "lowering")
    entries = _typed(lowering["entries"], list, "lowering.entries")
    for i, entry in enumerate(entries):
        e = _fields(entry, f"lowering.entries[{i}]", "entry")
        _text(e["id"], f"lowering.entries[{i}].id")
        _typed(e["version"], int, f"lowering.entries[{i}].version")
        _typed(e["phase_code"], int, f"lowering.entries[{i}].phase_code")
        _digest(e["param_digest"], f"lowering.entries[{i}].param_digest")
        _digest(e["decl_digest"], f"lowering.entries[{i}].decl_digest")
    # h_l binds the schedule: recompute it from the canonical re-encoding of what we decoded.
    if lowering_digest(msgpack.packb(lowering, use_bin_type=True)) != fields["h_l"]:
        raise Refusal("IdentityMismatch", "h_l does not match the lowering")
    return fields


def build_request(fields: dict) -> LaunchRequest:
    """Validate the descriptor table, the target and the schedule of an identity-verified body."""
    slots = _decode_table(fields["descriptor_table"])
    target = _fields(fields["target"], "target", "target")
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
    userns, outside_id = _user_namespace(target.get("user_namespace"))
    netns, unix_gate = _network_namespace(target.get("network_namespace"))
    mountns = _empty_request(target.get("mount_namespace"), "target.mount_namespace")
    pidns = _empty_request(target.get("pid_namespace"), "target.pid_namespace")
    ipcns = _empty_request(target.get("ipc_namespace"), "target.ipc_namespace")
    hostname = _hostname(target.get("uts_namespace"))
    cgroupns = _empty_request(target.get("cgroup_namespace"), "target.cgroup_namespace")
    if (netns or mountns or pidns or ipcns or hostname or cgroupns) and not userns:
        raise _invalid("every other namespace requires user_namespace")
    if cgroupns and not pidns:
        raise _invalid("cgroup_namespace requires pid_namespace (the init enters it once placed)")
    if pidns and not mountns:
        raise _invalid("pid_namespace requires mount_namespace (the init mounts its own /proc)")
    temp_root, binds = _temp_root(target.get("temp_root")), _binds(target.get("binds"), slots)
    if (temp_root or binds) and not mountns:
        raise _invalid("temp_root and binds require mount_namespace")
    request = LaunchRequest(
        schedule=(),  # checked last, against the target as validated
        slots=slots,
        argv=argv,
        envp=envp,
        exe_slot=exe_slot,
        user_namespace=userns,
        network_namespace=netns,
        mount_namespace=mountns,
        temp_root=temp_root,
        binds=binds,
        landlock_floor=_abi_floor(target.get("landlock"), "target.landlock"),
        pid_namespace=pidns,
        cgroup_slots=_cgroup_slots(target.get("cgroup"), slots),
        rlimits=_rlimits(target.get("rlimits")),
        scope_floor=_abi_floor(target.get("landlock_scope"), "target.landlock_scope"),
        proc_roots=_proc_roots(target.get("proc_roots")),
        seccomp=_seccomp(target.get("seccomp")),
        outside_id=outside_id,
        ipc_namespace=ipcns,
        hostname=hostname,
        cgroup_namespace=cgroupns,
        idmapped=_idmapped(target.get("idmapped_mounts"), slots),
        view=_view(target.get("view"), slots),
        unix_gate=unix_gate,
        terminal=_empty_request(target.get("terminal"), "target.terminal"),
    )
    if bool(request.view) != bool(mountns):
        raise _invalid("a mount_namespace is built as a view, and a view needs a mount_namespace")
    if request.idmapped and (outside_id is None or not mountns):
        raise _invalid("idmapped_mounts require mount_namespace and user_namespace.outside_id")
    if request.proc_roots and not (pidns and request.landlock_floor is not None):
        raise _invalid("proc_roots require pid_namespace and landlock")
    if request.unix_gate and not pidns:
        raise _invalid("network_namespace.unix_gate requires pid_namespace (the init supervises it)")
    if request.cgroup_slots and not pidns:
        raise _invalid("cgroup placement requires pid_namespace (the init places itself)")
    request.schedule = _check_schedule(fields["lowering"]["entries"], target, fields["descriptor_table"])
    return request


def _absolute(value, name: str) -> str:
    path = _text(value, name)
    if not path.startswith("/") or posixpath.normpath(path) != path:
        raise _invalid(f"{name} must be a normalized absolute path")
    return path


def _temp_root(value):
    if value is None:
        return None
    fields = _fields(value, "target.temp_root", "temp_root")
    size = _typed(fields["size_bytes"], int, "target.temp_root.size_bytes")
    if size <= 0:
        raise _invalid("target.temp_root.size_bytes must be positive")
    inodes = _typed(fields["max_inodes"], int, "target.temp_root.max_inodes")
    if inodes <= 0:
        raise _invalid("target.temp_root.max_inodes must be positive")
    return _absolute(fields["path"], "target.temp_root.path"), size, inodes


def _binds(value, slots) -> list:
    if value is None:
        return []
    sources = {s.index for s in slots if s.role == "expose_source"}
    binds = []
    for i, raw in enumerate(_typed(value, list, "target.binds")):
        f = _fields(raw, f"target.binds[{i}]", "bind")
        slot = _fd_number(f["source_slot"], f"target.binds[{i}].source_slot")
        if slot not in sources:
            raise _invalid(f"target.binds[{i}].source_slot {slot} is not a declared expose_source slot")
        path, dest = _absolute(f["source_path"], "source_path"), _absolute(f["dest"], "dest")
        binds.append(Bind(slot, path, dest, _typed(f["writable"], bool, f"target.binds[{i}].writable")))
    if not binds:
        raise _invalid("target.binds is empty (omit it instead)")
    return binds


def _abi_floor(value, name: str):
    if value is None:
        return None
    floor = _typed(_fields(value, name, name.rsplit(".", 1)[-1])["abi_floor"], int, f"{name}.abi_floor")
    if floor < 1:
        raise _invalid(f"{name}.abi_floor must be at least 1")
    return floor


def _proc_roots(value) -> list:
    if value is None:
        return []
    roots = []
    for i, raw in enumerate(_typed(value, list, "target.proc_roots")):
        f = _fields(raw, f"target.proc_roots[{i}]", "proc_root")
        path = _absolute(f["path"], f"target.proc_roots[{i}].path")
        if path != "/proc" and not path.startswith("/proc/"):
            raise _invalid(f"target.proc_roots[{i}].path {path!r} is not beneath /proc")
        roots.append((path, _typed(f["writable"], bool, f"target.proc_roots[{i}].writable")))
    if not roots:
        raise _invalid("target.proc_roots is empty (omit it instead)")
    return roots


def _seccomp(value):
    """``(policy names, program digest)``; the names must be frozen policies of this launcher."""
    if value is None:
        return None
    fields = _fields(value, "target.seccomp", "seccomp")
    names = [_text(n, "target.seccomp.policies[]") for n in _typed(fields["policies"], list, "target.seccomp.policies")]
    unknown = [n for n in names if n not in seccomp.POLICIES]
    if not names or unknown or len(set(names)) != len(names):
        raise Refusal("MissingPrimitive", f"target.seccomp.policies {names}: empty, repeated or unknown {unknown}")
    return names, _digest(fields["program_digest"], "target.seccomp.program_digest")


def _cgroup_slots(value, slots) -> list:
    if value is None:
        return []
    declared = {s.index for s in slots if s.role == "cgroup_procs"}
    raw = _typed(_fields(value, "target.cgroup", "cgroup")["procs_slots"], list, "target.cgroup.procs_slots")
    chosen = [_fd_number(slot, "target.cgroup.procs_slots[]") for slot in raw]
    if not chosen or set(chosen) != declared or len(set(chosen)) != len(chosen):
        raise _invalid(f"target.cgroup.procs_slots {chosen} must name each declared cgroup_procs slot once")
    return chosen


def _rlimits(value) -> list:
    if value is None:
        return []
    limits = []
    for i, raw in enumerate(_typed(value, list, "target.rlimits")):
        f = _fields(raw, f"target.rlimits[{i}]", "rlimit")
        resource = _text(f["resource"], f"target.rlimits[{i}].resource")
        limit = _typed(f["limit"], int, f"target.rlimits[{i}].limit")
        if resource not in RLIMIT_RESOURCES or any(r == resource for r, _ in limits):
            raise _invalid(f"target.rlimits[{i}].resource {resource!r} is unknown or repeated")
        if limit < 0:
            raise _invalid(f"target.rlimits[{i}].limit must not be negative")
        limits.append((resource, limit))
    if not limits:
        raise _invalid("target.rlimits is empty (omit it instead)")
    return limits


_MAX_ID = 2**32 - 2  # (uid_t)-1 is "no change" to the kernel
_HOSTNAME_MAX = 64


def _user_namespace(value) -> tuple:
    """``(requested, outside_id or None)``; an outside id is never root."""
    if value is None:
        return False, None
    fields = _fields(value, "target.user_namespace", "user_namespace")
    outside = fields.get("outside_id")
    if outside is not None and not 0 < _typed(outside, int, "target.user_namespace.outside_id") <= _MAX_ID:
        raise _invalid("target.user_namespace.outside_id must be an unprivileged id")
    return True, outside


def _hostname(value):
    if value is None:
        return None
    name = _text(_fields(value, "target.uts_namespace", "uts_namespace")["hostname"], "target.uts_namespace.hostname")
    if not 0 < len(name.encode()) <= _HOSTNAME_MAX:
        raise _invalid(f"target.uts_namespace.hostname must be 1-{_HOSTNAME_MAX} bytes")
    return name


def _idmapped(value, slots) -> dict:
    """``{slot: dest}``: each a declared write root or expose source, once."""
    if value is None:
        return {}
    sources = {s.index for s in slots if s.role in ("write_root", "expose_source")}
    mapped = {}
    for i, raw in enumerate(_typed(value, list, "target.idmapped_mounts")):
        f = _fields(raw, f"target.idmapped_mounts[{i}]", "idmapped_mount")
        slot = _fd_number(f["slot"], f"target.idmapped_mounts[{i}].slot")
        if slot not in sources or slot in mapped:
            raise _invalid(f"target.idmapped_mounts[{i}].slot {slot} is not a declared write root or expose source, or repeats")
        mapped[slot] = _absolute(f["dest"], f"target.idmapped_mounts[{i}].dest")
    if not mapped:
        raise _invalid("target.idmapped_mounts is empty (omit it instead)")
    return mapped


class View:
    """The fresh root: ``roots`` as ``[(slot, path, writable)]`` in path order; ``cwd`` as
    ``(path, required)``."""

    __slots__ = ("roots", "cwd", "host_tree", "masked", "links", "exe")

    def __init__(self, roots: list, cwd: str, host_tree: bool, masked: list, links: list, exe):
        self.roots, self.cwd, self.host_tree, self.masked, self.links, self.exe = roots, cwd, host_tree, masked, links, exe


def _view(value, slots):
    if value is None:
        return None
    f = _fields(value, "target.view", "view")
    roles = {s.index: s.role for s in slots if s.role in ("read_root", "write_root")}
    roots = []
    for i, raw in enumerate(_typed(f["roots"], list, "target.view.roots")):
        r = _fields(raw, f"target.view.roots[{i}]", "view_root")
        slot = _fd_number(r["slot"], f"target.view.roots[{i}].slot")
        if slot not in roles or any(slot == s for s, _, _ in roots):
            raise _invalid(f"target.view.roots[{i}].slot {slot} is not a declared root, or repeats")
        roots.append((slot, _absolute(r["path"], f"target.view.roots[{i}].path"), roles[slot] == "write_root"))
    masked = [_absolute(p, "target.view.masked[]") for p in _typed(f.get("masked", []), list, "target.view.masked")]
    host_tree = _typed(f.get("host_tree", False), bool, "target.view.host_tree")
    links = []
    for i, pair in enumerate(_typed(f.get("links", []), list, "target.view.links")):
        if not isinstance(pair, list) or len(pair) != 2:
            raise _invalid(f"target.view.links[{i}] must be [path, target]")
        links.append((_absolute(pair[0], f"target.view.links[{i}][0]"), _absolute(pair[1], f"target.view.links[{i}][1]")))
    exe = _absolute(f["exe"], "target.view.exe") if f.get("exe") is not None else None
    cwd = (_absolute(f["cwd"], "target.view.cwd"), _typed(f.get("cwd_required", False), bool, "target.view.cwd_required"))
    return View(sorted(roots, key=lambda r: r[1]), cwd, host_tree, masked, links, exe)


def _network_namespace(value) -> tuple:
    """``(network namespace asked, unix socket gate asked)``."""
    if value is None:
        return False, False
    fields = _fields(value, "target.network_namespace", "network_namespace")
    return True, _empty_request(fields.get("unix_gate"), "target.network_namespace.unix_gate")


def _empty_request(value, name: str) -> bool:
    """A request with no parameters (its presence is the request); ``name`` ends in its message."""
    if value is None:
        return False
    _fields(value, name, name.rsplit(".", 1)[-1])
    return True


def _decode_table(table) -> list:
    slots = []
    seen_indexes, seen_singletons = set(), set()
    for i, raw in enumerate(_typed(table, list, "descriptor_table")):
        f = _fields(raw, f"descriptor_table[{i}]", "slot")
        shape = _fields(f["expected"], f"descriptor_table[{i}].expected", "shape")
        index = _fd_number(f["slot_index"], f"descriptor_table[{i}].slot_index")
        role, kind = f["role"], shape["kind"]
        if role not in vocabulary.ROLES:
            raise _invalid(f"descriptor_table[{i}].role {role!r} is unknown")
        if kind not in vocabulary.KINDS:
            raise _invalid(f"descriptor_table[{i}].expected.kind {kind!r} is unknown")
        if index <= 2:
            raise _invalid(f"descriptor_table[{i}].slot_index {index} collides with stdio")
        if index in seen_indexes:
            raise Refusal("PlanInvalid", f"DuplicateSlotIndex {index}")
        if role not in vocabulary.REPEATABLE_ROLES and role in seen_singletons:
            raise Refusal("PlanInvalid", f"DuplicateSingletonRole {role}")
        seen_indexes.add(index)
        seen_singletons.add(role)
        slots.append(Slot(index, role, kind, _typed(shape["writable"], bool, "writable")))
    return slots


def _check_schedule(entries: list, target: dict, table: list) -> tuple:
    """The schedule is the program: exactly the primitives the target implies, in the
    vocabulary's order, each known in its frozen phase and version, each entry's digests
    recomputed here from the parameters this launcher will apply. Returns the ids in order."""
    for entry in entries:
        primitive = vocabulary.PRIMITIVE_BY_ID.get(entry["id"])
        if primitive is None:
            raise Refusal("MissingPrimitive", f"unknown primitive {entry['id']!r}")
        if (entry["phase_code"], entry["version"]) != (primitive.phase, vocabulary.PRIMITIVE_VERSION):
            raise Refusal(
                "MissingPrimitive",
                f"{primitive.id} v{entry['version']} scheduled in phase {entry['phase_code']}, "
                f"expected v{vocabulary.PRIMITIVE_VERSION} in phase {primitive.phase}",
            )
    implied = vocabulary.schedule_for(target)
    scheduled = tuple(entry["id"] for entry in entries)
    if scheduled != tuple(p.id for p in implied):
        raise Refusal("PlanInvalid", f"schedule {list(scheduled)} is not the one its target implies {[p.id for p in implied]}")
    seed_shaped = set(scheduled) <= vocabulary.SEED_SHAPED
    for entry, primitive in zip(entries, implied, strict=True):
        seed_zero = seed_shaped and primitive.id in vocabulary.SEED_ZERO_DIGEST_PRIMITIVES
        for field, recomputed in (
            ("param_digest", vocabulary.param_digest(primitive, target, table)),
            ("decl_digest", vocabulary.decl_digest(primitive)),
        ):
            if entry[field] != recomputed and not (seed_zero and entry[field] == vocabulary.ZERO_DIGEST):
                raise Refusal("IdentityMismatch", f"{primitive.id} {field} does not bind the parameters it would apply")
    return scheduled
