"""The wire vocabulary is the one definition of the protocol: the host's structs follow its
tables field by field, and the launcher runs the schedule it names, refusing an entry whose
digests do not bind the parameters it would apply."""

import msgspec
import pytest

from bvisor.launcher.request import Refusal, build_request, verify_identity
from bvisor.mechanism.seccomp import BASELINE_POLICY
from bvisor.wire import plan as host
from bvisor.wire import vocabulary
from bvisor.wire.frame import parse_frame
from helpers import entry, plan

# Each message of the vocabulary, as the host's struct that encodes it.
HOST_STRUCTS = {
    "body": host.LinuxLaunchBodyV1,
    "lowering": host.LoweringWireV1,
    "entry": host.LoweringWireEntryV1,
    "slot": host.DescriptorSlotV1,
    "shape": host.DescriptorShape,
    "target": host.TargetSpecV1,
    "user_namespace": host.UserNsRequest,
    "network_namespace": host.NetworkNsRequest,
    "unix_gate": host.UnixGateRequest,
    "mount_namespace": host.MountNsRequest,
    "pid_namespace": host.PidNsRequest,
    "ipc_namespace": host.IpcNsRequest,
    "cgroup_namespace": host.CgroupNsRequest,
    "terminal": host.TerminalRequest,
    "uts_namespace": host.UtsNsRequest,
    "temp_root": host.TempRootRequest,
    "bind": host.BindRequest,
    "landlock": host.LandlockRequest,
    "landlock_scope": host.LandlockScopeRequest,
    "cgroup": host.CgroupPlacementRequest,
    "rlimit": host.RlimitRequest,
    "proc_root": host.ProcRootRequest,
    "seccomp": host.SeccompRequest,
    "idmapped_mount": host.IdmappedMountRequest,
    "view_root": host.ViewRootRequest,
    "view": host.ViewRequest,
}


def test_every_message_has_one_host_struct_and_every_struct_one_message():
    assert set(HOST_STRUCTS) == set(vocabulary.MESSAGES)


@pytest.mark.parametrize("message", sorted(vocabulary.MESSAGES))
def test_a_host_struct_has_its_messages_fields_in_order_required_first(message):
    fields = msgspec.structs.fields(HOST_STRUCTS[message])
    shape = vocabulary.MESSAGES[message]
    assert tuple(f.encode_name for f in fields) == shape.fields
    assert tuple(f.encode_name for f in fields if f.required) == shape.required


@pytest.mark.parametrize(
    ("enum", "values"),
    [(host.DescriptorRole, vocabulary.ROLES), (host.DescriptorKind, vocabulary.KINDS), (host.LauncherState, vocabulary.STATES)],
)
def test_the_host_enums_are_the_vocabularys_value_lists_in_order(enum, values):
    assert tuple(member.value for member in enum) == values


def test_the_primitives_are_listed_in_phase_order_once_each():
    phases = [p.phase for p in vocabulary.PRIMITIVES]
    assert phases == sorted(phases)
    assert len(vocabulary.PRIMITIVE_BY_ID) == len(vocabulary.PRIMITIVES)
    assert vocabulary.PRIMITIVES[-1].id == vocabulary.ID_EXEC


def test_every_target_field_a_primitive_applies_is_a_target_field():
    target = set(vocabulary.MESSAGES["target"].fields)
    for primitive in vocabulary.PRIMITIVES:
        assert set(primitive.params) <= target, primitive.id
        assert primitive.present is None or primitive.present.split(".")[0] in target, primitive.id


# A target that schedules several primitives with parameters, and one change to each.
_TARGET = host.TargetSpecV1(
    argv=["sh", "-c", "true"],
    envp=[("PATH", "/usr/bin:/bin")],
    exe_slot=vocabulary.EXE_SLOT,
    user_namespace=host.UserNsRequest(outside_id=1879048192 + 7),
    ipc_namespace=host.IpcNsRequest(),
    uts_namespace=host.UtsNsRequest(hostname="run"),
    rlimits=[host.RlimitRequest(resource="nofile", limit=64)],
    landlock_scope=host.LandlockScopeRequest(abi_floor=6),
    seccomp=host.SeccompRequest(policies=[BASELINE_POLICY], program_digest=bytes(range(32))),
)
TAMPERS = {
    vocabulary.ID_TRANSIENT_ID: lambda b: b["target"]["user_namespace"].update(outside_id=1879048192 + 8),
    vocabulary.ID_UTS_NS: lambda b: b["target"]["uts_namespace"].update(hostname="host"),
    vocabulary.ID_RLIMIT_SET: lambda b: b["target"]["rlimits"][0].update(limit=65536),
    vocabulary.ID_LANDLOCK_SCOPE: lambda b: b["target"]["landlock_scope"].update(abi_floor=7),
    vocabulary.ID_SECCOMP_APPLY: lambda b: b["target"]["seccomp"].update(program_digest=bytes(32)),
    vocabulary.ID_EXEC: lambda b: b["target"]["argv"].append("--more"),
}
# The descriptor table is bound too: each slot by the entries whose roles use it.
TABLE_TAMPERS = {
    "the exe slot's kind": lambda b: b["descriptor_table"][0]["expected"].update(kind="char_device"),
    "the exe slot's mode": lambda b: b["descriptor_table"][0]["expected"].update(writable=True),
}


def _body(target: host.TargetSpecV1, lowering: host.LoweringWireV1 | None = None) -> dict:
    exe = host.DescriptorSlotV1(
        slot_index=vocabulary.EXE_SLOT,
        role=host.DescriptorRole.TargetExe,
        expected=host.DescriptorShape(kind=host.DescriptorKind.Regular, writable=False),
    )
    lowering = lowering or host.schedule(target, [exe])
    body = host.LinuxLaunchBodyV1(
        attempt_id=bytes(32), plan_id=bytes(32), h_a=bytes(32), h_p=bytes(32),
        h_l=host.lowering_hash(lowering), lowering=lowering, descriptor_table=[exe], target=target,
    )
    return msgspec.msgpack.decode(parse_frame(host.encode_frame(host.LinuxLaunchPlanV1(body=body))))


def _request(body: dict):
    return build_request(verify_identity(msgspec.msgpack.encode(body)))


def _zeroed(lowering: host.LoweringWireV1, keep) -> host.LoweringWireV1:
    """The lowering with all-zero digests on every entry ``keep`` does not name."""
    return host.LoweringWireV1(entries=[e if keep(e.id) else entry(e.id, e.phase_code) for e in lowering.entries])


def test_the_launcher_runs_the_schedule_the_host_lowered_in_the_vocabularys_order():
    request = _request(_body(_TARGET))
    assert request.schedule == tuple(p.id for p in vocabulary.schedule_for(_body(_TARGET)["target"]))
    assert set(TAMPERS) | {vocabulary.ID_IPC_NS, vocabulary.ID_AMBIENT_SCRUB} == set(request.schedule)


@pytest.mark.parametrize("primitive", sorted(TAMPERS))
def test_a_parameter_changed_after_scheduling_is_refused_by_the_entry_that_applies_it(primitive):
    body = _body(_TARGET)
    _request(body)  # the control: as lowered, the plan is accepted
    TAMPERS[primitive](body)  # h_l still holds: it covers the schedule, not the target
    with pytest.raises(Refusal, match=f"{primitive} param_digest does not bind") as refused:
        _request(body)
    assert refused.value.reason == "IdentityMismatch"


@pytest.mark.parametrize("tamper", sorted(TABLE_TAMPERS))
def test_a_slot_changed_after_scheduling_is_refused_by_the_entry_that_uses_it(tamper):
    body = _body(_TARGET)
    TABLE_TAMPERS[tamper](body)
    with pytest.raises(Refusal, match=f"{vocabulary.ID_EXEC} param_digest does not bind"):
        _request(body)


def test_an_entry_that_declares_itself_otherwise_is_refused():
    body = _body(_TARGET)
    body["lowering"]["entries"][1]["decl_digest"] = bytes(range(32))
    body["h_l"] = host.lowering_hash(msgspec.convert(body["lowering"], host.LoweringWireV1))
    with pytest.raises(Refusal, match=f"{vocabulary.ID_IPC_NS} decl_digest does not bind"):
        _request(body)


def test_the_seeds_zero_digests_are_accepted_in_a_seed_shaped_plan_and_nowhere_else():
    seed = plan(["true"], True)  # the seed's shape (a root launcher's adds the transient id)
    _request(msgspec.msgpack.decode(parse_frame(host.encode_frame(seed))))
    lowering = host.schedule(_TARGET, [])
    # A full plan: zero digests on the seed's own two entries are refused there too, since
    # they would leave argv, envp, the exe slot and the terminal unbound.
    seed_zeros = _zeroed(lowering, lambda primitive: primitive not in vocabulary.SEED_ZERO_DIGEST_PRIMITIVES)
    with pytest.raises(Refusal, match=f"{vocabulary.ID_AMBIENT_SCRUB} param_digest does not bind"):
        _request(_body(_TARGET, seed_zeros))
    all_zeros = _zeroed(lowering, lambda primitive: False)
    with pytest.raises(Refusal, match=f"{vocabulary.ID_TRANSIENT_ID} param_digest does not bind"):
        _request(_body(_TARGET, all_zeros))
