"""The launch-plan protocol: round trip, golden bytes, every frame and table rejection, and
the launcher's refusals (h_l mismatch, unknown primitive, handle mismatch) before any child."""

import os
import struct

import blake3
import msgspec
import pytest

from bvisor.wire.frame import EXIT_FAULTED, EXIT_REFUSED, FrameReject, HEADER_LEN, build_frame, parse_frame
from bvisor.wire import vocabulary
from bvisor.launcher.request import Refusal, build_request, verify_identity
from bvisor.backends.linux import launch
from bvisor.wire.plan import (
    DescriptorKind,
    DescriptorRole,
    DescriptorShape,
    DescriptorSlotV1,
    decode_frame,
    encode_frame,
)
from helpers import entry, plan, sh_authority, launcher_path

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


def _good_frame() -> bytes:
    return encode_frame(plan(ARGV, False))


def _reframe(body: bytes) -> bytes:
    return build_frame(body)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda f: f[: HEADER_LEN - 1], "Truncated"),
        (lambda f: b"BVZLNCH2" + f[8:], "BadMagic"),
        (lambda f: f[:8] + struct.pack("<H", 2) + f[10:], "UnsupportedVersion"),
        (lambda f: f + b"\x00", "LengthMismatch"),
        (lambda f: f[:-1] + bytes([f[-1] ^ 1]), "DigestMismatch"),
    ],
)
def test_every_frame_rejection(mangle, reason):
    with pytest.raises(FrameReject) as caught:
        parse_frame(mangle(_good_frame()))
    assert caught.value.reason == reason
    # The real launcher refuses the same frame before anything is created.
    obs = launch.run_launcher_frame(launcher_path(), mangle(_good_frame()), [sh_authority()])
    assert obs.terminal is launch.LauncherState.SetupRefused
    assert launch.LauncherState.ChildCreated not in obs.transcript
    assert any(reason in note for note in obs.notes), obs.notes


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


def test_h_l_mismatch_is_refused_by_the_launcher():
    body = _body_dict(plan(ARGV, False))
    body["h_l"] = bytes(32)
    obs = launch.run_launcher_frame(launcher_path(), _reframe(msgspec.msgpack.encode(body)), [sh_authority()])
    assert obs.terminal is launch.LauncherState.SetupRefused
    assert launch.LauncherState.IdentityVerified not in obs.transcript
    assert any("IdentityMismatch" in n for n in obs.notes), obs.notes


def test_unknown_primitive_is_refused_and_no_child_is_created():
    marker = f"BVISOR-NEVER-RUNS-{os.getpid()}"
    entries = [entry(vocabulary.ID_AMBIENT_SCRUB, 3), entry("linux.teleport.v1", 4), entry(vocabulary.ID_EXEC, 5)]
    obs = launch.run_launcher(
        launcher_path(), plan(["sh", "-c", f"echo {marker}"], False, entries=entries), [sh_authority()]
    )
    assert obs.terminal is launch.LauncherState.SetupRefused
    assert obs.transcript == [
        launch.LauncherState.LauncherStarted,
        launch.LauncherState.IdentityVerified,
        launch.LauncherState.SetupRefused,
    ]
    assert any("MissingPrimitive" in n and "linux.teleport.v1" in n for n in obs.notes), obs.notes
    assert obs.note_fields("mechanism=fork") is None and marker.encode() not in obs.captured_stdout
    assert obs.launcher_exit == EXIT_REFUSED


def test_a_seccomp_policy_this_launcher_does_not_know_is_a_missing_primitive():
    body = _body_dict(plan(ARGV, False))
    body["target"]["seccomp"] = {"policies": ["teleport.v1"], "program_digest": bytes(32)}
    with pytest.raises(Refusal, match="MissingPrimitive.*teleport.v1") as refused:
        _request_from(body)
    assert refused.value.reason == "MissingPrimitive"


def test_a_primitive_scheduled_without_its_parameters_is_refused_not_skipped():
    entries = [entry(vocabulary.ID_AMBIENT_SCRUB, 3), entry(vocabulary.ID_SECCOMP_APPLY, 4), entry(vocabulary.ID_EXEC, 5)]
    obs = launch.run_launcher(launcher_path(), plan(ARGV, False, entries=entries), [sh_authority()])
    assert obs.terminal is launch.LauncherState.SetupRefused
    implied = "is not the one its target implies ['linux.ambient.scrub.v1', 'linux.exec.v1']"
    assert any("refusal=PlanInvalid" in n and "linux.seccomp.apply.v1" in n and implied in n for n in obs.notes), obs.notes


def test_primitive_in_the_wrong_phase_is_refused():
    entries = [entry(vocabulary.ID_AMBIENT_SCRUB, 4), entry(vocabulary.ID_EXEC, 5)]
    obs = launch.run_launcher(launcher_path(), plan(ARGV, False, entries=entries), [sh_authority()])
    assert obs.terminal is launch.LauncherState.SetupRefused
    assert any("phase" in n for n in obs.notes), obs.notes


def test_handle_of_the_wrong_shape_is_refused():
    directory = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    obs = launch.run_launcher(launcher_path(), plan(ARGV, False), [launch.AuthorityFd(10, directory)])
    assert obs.terminal is launch.LauncherState.SetupRefused
    assert launch.LauncherState.HandlesVerified not in obs.transcript
    assert any("HandleMismatch" in n and "not a regular" in n for n in obs.notes), obs.notes


def test_missing_handle_is_refused():
    obs = launch.run_launcher(launcher_path(), plan(ARGV, False), [])
    assert obs.terminal is launch.LauncherState.SetupRefused
    assert any("HandleMismatch" in n for n in obs.notes), obs.notes


def test_launcher_without_its_fds_faults_at_boot_and_runs_nothing():
    import subprocess

    done = subprocess.run([str(launcher_path())], capture_output=True, env={}, check=False)
    assert done.returncode == EXIT_FAULTED
    assert b"boot fault" in done.stderr and done.stdout == b""


def test_a_successful_run_reports_states_in_order():
    obs = launch.run_launcher(launcher_path(), plan(["sh", "-c", "exit 7"], False), [sh_authority()])
    assert [s.value for s in obs.transcript] == list(vocabulary.STATES[:11])
    assert obs.workload_exit().code == 7
    assert obs.launcher_exit == 0


def test_descriptor_slot_round_trip_shapes():
    slot = DescriptorSlotV1(
        slot_index=15, role=DescriptorRole.ReadRoot, expected=DescriptorShape(kind=DescriptorKind.Directory, writable=False)
    )
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(slot), type=DescriptorSlotV1) == slot


# The launcher in a user namespace whose quota of nested user namespaces is 0: the kernel
# then refuses to clone the run's child into new namespaces, as a host that forbids them does.
NO_USERNS_PREFIX = ("unshare", "-Ur", "sh", "-c", 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh")


@pytest.mark.parametrize("deny_network", [True, False])
def test_a_kernel_that_refuses_the_namespaces_faults_at_identity_and_no_workload_runs(deny_network):
    marker = f"BVISOR-NEVER-RUNS-{os.getpid()}"
    obs = launch.run_launcher(
        (*NO_USERNS_PREFIX, str(launcher_path())), plan(["sh", "-c", f"echo {marker}"], deny_network), [sh_authority()]
    )
    if not deny_network:  # control: the same launcher runs a plan that needs no namespace
        assert obs.exec_succeeded() and obs.captured_stdout == f"{marker}\n".encode(), obs.notes
        return
    assert obs.terminal is launch.LauncherState.SetupFaulted
    assert launch.LauncherState.ChildCreated not in obs.transcript, "no child may exist"
    failed = obs.note_fields("child_failed")
    assert failed is not None and failed["step"] == "identity" and int(failed["errno"]) == 28, obs.notes  # ENOSPC
    assert launch.launch_confinement_unavailable(obs)
    assert marker.encode() not in obs.captured_stdout


def test_the_probe_of_a_launcher_that_may_not_make_namespaces_says_so():
    facts = launch.LauncherProbe((*NO_USERNS_PREFIX, str(launcher_path()))).facts()
    assert facts["launcher_probe"] == "ok"
    for name in ("userns_netns", "userns_mount", "userns_pid"):
        assert facts[name].startswith("failed errno=28"), facts
    assert facts["seccomp_filter"] == "ok", "the control: what needs no namespace is still proven"
