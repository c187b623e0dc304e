"""The launch plan without a launcher: the round trip, the golden bytes, every frame
rejection, and the launcher's validator refusing malformed bodies and tables (a function
call, no process)."""

import struct

import blake3
import msgspec
import pytest

from bvisor.launcher.request import Refusal, build_request, verify_identity
from bvisor.wire.frame import HEADER_LEN, FrameReject, parse_frame
from bvisor.wire.plan import (
    DescriptorKind,
    DescriptorRole,
    DescriptorShape,
    DescriptorSlotV1,
    decode_frame,
    encode_frame,
)
from helpers import FRAME_MANGLES, plan

ARGV = ["sh", "-c", "true"]


# Pinned: the frame of plan(ARGV, deny_network=False). Changing a field name, an enum value,
# the field order or the omission of absent opt-in fields breaks this on purpose. (The target
# has more than 15 fields, so msgspec writes its map header as map16 even when 3 are present.)
GOLDEN_FRAME_HEX = (
    "42565a4c4e43483101007d020000e65a4a740b5eb6aba8a9bd6bc5fff9fc604d9a9c1c9a6bc360e4b14111fb762288aa"
    "617474656d70745f6964c4200707070707070707070707070707070707070707070707070707070707070707a7706c61"
    "6e5f6964c4200101010101010101010101010101010101010101010101010101010101010101a3685f61c42002020202"
    "02020202020202020202020202020202020202020202020202020202a3685f70c4200303030303030303030303030303"
    "030303030303030303030303030303030303a3685f6cc4209a0e80bb87797c7fe34040c6d3e0e988909b02569b6ac25e"
    "74e436116ef20654a86c6f776572696e6781a7656e74726965739285a26964b66c696e75782e616d6269656e742e7363"
    "7275622e7631a776657273696f6e01aa70686173655f636f646503ac706172616d5f646967657374c420000000000000"
    "0000000000000000000000000000000000000000000000000000ab6465636c5f646967657374c4200000000000000000"
    "00000000000000000000000000000000000000000000000085a26964ad6c696e75782e657865632e7631a77665727369"
    "6f6e01aa70686173655f636f646505ac706172616d5f646967657374c420000000000000000000000000000000000000"
    "0000000000000000000000000000ab6465636c5f646967657374c4200000000000000000000000000000000000000000"
    "000000000000000000000000b064657363726970746f725f7461626c659183aa736c6f745f696e6465780aa4726f6c65"
    "aa7461726765745f657865a8657870656374656482a46b696e64a7726567756c6172a87772697461626c65c2a6746172"
    "676574de0003a46172677693a27368a22d63a474727565a4656e76709192a450415448ad2f7573722f62696e3a2f6269"
    "6ea86578655f736c6f740a"
)


def test_round_trip_preserves_every_field():
    for deny in (False, True):
        original = plan(ARGV, deny)
        assert decode_frame(encode_frame(original)) == original


def test_golden_vector_pins_the_byte_form():
    frame = encode_frame(plan(ARGV, False))
    assert frame[:8] == b"BVZLNCH1"
    assert struct.unpack_from("<HI", frame, 8) == (1, len(frame) - HEADER_LEN)
    assert frame.hex() == GOLDEN_FRAME_HEX
    assert frame[HEADER_LEN - 32 : HEADER_LEN] == blake3.blake3(frame[HEADER_LEN :]).digest()


def test_absent_opt_in_target_fields_are_omitted_not_encoded_as_nil():
    body = msgspec.msgpack.decode(parse_frame(encode_frame(plan(ARGV, False))))
    assert set(body["target"]) == {"argv", "envp", "exe_slot"}
    body = msgspec.msgpack.decode(parse_frame(encode_frame(plan(ARGV, True, identity="unprivileged"))))
    assert body["target"]["user_namespace"] == {} and body["target"]["network_namespace"] == {}


@pytest.mark.parametrize(("mangle", "reason"), FRAME_MANGLES)
def test_every_frame_rejection(mangle, reason):
    with pytest.raises(FrameReject) as caught:
        parse_frame(mangle(encode_frame(plan(ARGV, False))))
    assert caught.value.reason == reason


def _body_dict(p):
    return msgspec.msgpack.decode(parse_frame(encode_frame(p)))


def _request_from(body: dict):
    return build_request(verify_identity(msgspec.msgpack.encode(body)))


def test_descriptor_table_rejects_duplicate_slot_index():
    body = _body_dict(plan(ARGV, False))
    body["descriptor_table"].append({**body["descriptor_table"][0], "role": "read_root"})
    with pytest.raises(Refusal, match="DuplicateSlotIndex"):
        _request_from(body)


def test_descriptor_table_rejects_duplicate_singleton_role():
    body = _body_dict(plan(ARGV, False))
    body["descriptor_table"].append({**body["descriptor_table"][0], "slot_index": 11})
    with pytest.raises(Refusal, match="DuplicateSingletonRole"):
        _request_from(body)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda b: b["descriptor_table"][0].update(role="owner"), "role"),
        (lambda b: b["descriptor_table"][0]["expected"].update(kind="device"), "kind"),
        (lambda b: b["descriptor_table"][0].update(slot_index=1), "stdio"),
        (lambda b: b["target"].update(exe_slot=11), "exe_slot"),
        (lambda b: b["target"].update(seccomp={}), "target.seccomp lacks"),
        (lambda b: b["target"].update(network_namespace={}), "requires user_namespace"),
        (lambda b: b["target"].update(mount_namespace={}), "requires user_namespace"),
        (lambda b: b["target"].update(user_namespace={}, temp_root={"path": "/tmp", "size_bytes": 1, "max_inodes": 1}), "require mount_namespace"),
        (lambda b: b["target"].update(landlock={"abi_floor": 3}), "not the one its target implies"),
        (lambda b: b["target"].update(user_namespace={}, network_namespace={"unix_gate": {}}), "unix_gate requires pid_namespace"),
        (lambda b: b["target"].update(user_namespace={}, network_namespace={"unix_gate": {"own": "all"}}), "unix_gate has unknown fields"),
        (lambda b: b["target"].update(user_namespace={}, network_namespace={"gate": {}}), "network_namespace has unknown fields"),
        (lambda b: b["target"].update(user_namespace={}, mount_namespace={}, temp_root={"path": "/tmp/../etc", "size_bytes": 1, "max_inodes": 1}), "normalized absolute"),
        (lambda b: b["target"].update(user_namespace={}, mount_namespace={}, temp_root={"path": "/tmp", "size_bytes": 1}), r"temp_root lacks \['max_inodes'\]"),
        (lambda b: b["target"].update(user_namespace={}, mount_namespace={}, temp_root={"path": "/tmp", "size_bytes": 1, "max_inodes": 0}), "max_inodes must be positive"),
        (lambda b: b["target"].update(user_namespace={}, mount_namespace={}, binds=[{"source_slot": 10, "source_path": "/a", "dest": "/b", "writable": False}]), "expose_source"),
        (lambda b: b["target"]["envp"].append(["A=B", "x"]), "contains '='"),
        (lambda b: b["target"].update(argv=[]), "argv is empty"),
        (lambda b: b.update(plan_id=b"short"), "32 bytes"),
    ],
)
def test_malformed_bodies_are_refused_as_plan_invalid(change, match):
    body = _body_dict(plan(ARGV, False))
    change(body)
    with pytest.raises(Refusal, match=match) as caught:
        _request_from(body)
    assert caught.value.reason in ("PlanInvalid", "IdentityMismatch")


def test_a_seccomp_policy_this_launcher_does_not_know_is_a_missing_primitive():
    body = _body_dict(plan(ARGV, False))
    body["target"]["seccomp"] = {"policies": ["teleport.v1"], "program_digest": bytes(32)}
    with pytest.raises(Refusal, match=r"MissingPrimitive.*teleport\.v1") as refused:
        _request_from(body)
    assert refused.value.reason == "MissingPrimitive"


def test_descriptor_slot_round_trip_shapes():
    slot = DescriptorSlotV1(
        slot_index=15, role=DescriptorRole.ReadRoot, expected=DescriptorShape(kind=DescriptorKind.Directory, writable=False)
    )
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(slot), type=DescriptorSlotV1) == slot
