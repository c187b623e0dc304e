"""Report signatures: a host key signs a sealed report's body_hash, and any change to the
report — body, hash, key or signature — fails verification."""

import copy
import json
import os
import stat

import msgspec
import pytest

from bvisor.contract import (
    BoundaryReport,
    CaptureRef,
    ReportDecodeError,
    ReportVerdict,
    decode_report_json,
    encode_report_json,
    seal,
    verify_report_json,
)
from bvisor.evidence.signing import HostSigningKey, SignatureVerdict, SigningError, verify_signed
from bvisor.planner import BoundaryPlanner
from bvisor.runner import BoundaryRunner
from fake_backend import seed_spec


@pytest.fixture
def report(registry, backend) -> BoundaryReport:
    """A real sealed report, with a captured stream so every report part has leaves."""
    captured = [CaptureRef(stream="stdout", bytes=2, kept=2, truncated=False, blake3="e" * 64)]
    backend.record = msgspec.structs.replace(backend.record, captured=captured)
    return BoundaryRunner(registry).run(BoundaryPlanner(registry).plan(seed_spec(), "fake"))


# --- signing and verifying --------------------------------------------------------------


def test_a_signed_report_verifies_under_its_key(report, key):
    signed = key.sign(report)
    assert isinstance(verify_signed(signed, key.public_key_pem()), SignatureVerdict.Valid)
    assert signed.signature.alg == "ed25519" and signed.signature.public_key == key.public_key_hex()


def test_the_signature_is_ed25519_over_the_tagged_body_hash(report, key):
    """Pins the message format independently of the code that builds it."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    signed = key.sign(report)
    message = b"bvisor.report-signature.v1\0" + bytes.fromhex(report.body_hash)
    load_pem_public_key(key.public_key_pem()).verify(bytes.fromhex(signed.signature.value), message)
    assert len(bytes.fromhex(signed.signature.value)) == 64
    assert len(bytes.fromhex(key.public_key_hex())) == 32


def test_signing_keeps_the_body_its_hash_and_its_unsigned_bytes(report, key):
    signed = key.sign(report)
    assert (signed.body, signed.body_hash) == (report.body, report.body_hash)
    unsigned_json = encode_report_json(report)
    assert b"signature" not in unsigned_json
    assert encode_report_json(signed).startswith(unsigned_json[:-1] + b',"signature":{')


def test_an_unsigned_report_is_unsigned(report, key):
    assert isinstance(verify_signed(report, key.public_key_pem()), SignatureVerdict.Unsigned)


def test_another_hosts_key_is_the_wrong_key(report, key, tmp_path):
    other = HostSigningKey.load_or_create(tmp_path / "other")
    verdict = verify_signed(other.sign(report), key.public_key_pem())
    assert isinstance(verdict, SignatureVerdict.WrongKey)
    assert other.public_key_hex() in verdict.reason


def test_another_keys_signature_relabelled_with_ours_is_bad(report, key, tmp_path):
    forged = HostSigningKey.load_or_create(tmp_path / "other").sign(report)
    forged = msgspec.structs.replace(
        forged, signature=msgspec.structs.replace(forged.signature, public_key=key.public_key_hex())
    )
    assert isinstance(verify_signed(forged, key.public_key_pem()), SignatureVerdict.BadSignature)


def test_a_changed_body_fails_even_under_a_genuine_signature(report, key):
    signed = key.sign(report)
    body = msgspec.structs.replace(signed.body, observed=[])
    kept_hash = msgspec.structs.replace(signed, body=body)
    resealed = msgspec.structs.replace(seal(body), signature=signed.signature)
    for tampered in (kept_hash, resealed):
        assert isinstance(verify_signed(tampered, key.public_key_pem()), SignatureVerdict.BadSignature)


def test_a_report_whose_seal_is_broken_is_not_signed(report, key):
    broken = msgspec.structs.replace(report, body=msgspec.structs.replace(report.body, observed=[]))
    with pytest.raises(SigningError, match="body_hash"):
        key.sign(broken)


def test_an_expected_key_that_is_not_ed25519_is_an_error(report, key):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for pem in (ec_pem, b"not a key"):
        with pytest.raises(SigningError):
            verify_signed(key.sign(report), pem)


# --- every leaf of the JSON is bound ------------------------------------------------------


def _leaves(node, path=()):
    if isinstance(node, dict):
        for name, item in node.items():
            yield from _leaves(item, (*path, name))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _leaves(item, (*path, index))
    else:
        yield path, node


def _leaf(document, path):
    for step in path:
        document = document[step]
    return document


def _replaced(document, path, value):
    changed = copy.deepcopy(document)
    node = changed
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return changed


def _alternatives(value, strings):
    """Other values for a leaf, the likeliest to still decode first (a hex digest stays
    hex; an enum value becomes another value seen in the document)."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1]
    if isinstance(value, str):
        flipped = value[:-1] + ("b" if value.endswith("a") else "a")
        return [flipped, *sorted(strings - {value}), value + "x"]
    return [0, "x"]


def _decoded_variant(document, path, strings):
    """The first change of the leaf at ``path`` that still decodes as a report, or None
    when strict decoding rejects every one (the change is caught before verification)."""
    for value in _alternatives(_leaf(document, path), strings):
        try:
            return decode_report_json(json.dumps(_replaced(document, path, value)).encode())
        except ReportDecodeError:
            continue
    return None


def test_changing_any_leaf_of_a_signed_report_fails_verification(report, key):
    signed = key.sign(report)
    pem = key.public_key_pem()
    document = json.loads(encode_report_json(signed))
    leaves = list(_leaves(document))
    strings = {value for _, value in leaves if isinstance(value, str)}
    verified = []
    for path, _ in leaves:
        variant = _decoded_variant(document, path, strings)
        if variant is None:
            continue
        assert variant != signed, path
        verdict = verify_signed(variant, pem)
        assert not isinstance(verdict, SignatureVerdict.Valid), path
        if path[0] != "signature":
            assert isinstance(verdict, SignatureVerdict.BadSignature), (path, verdict)
        if path[0] not in ("signature", "body_hash"):
            # Re-sealing the changed body does not help: the signature binds the old hash.
            resealed = msgspec.structs.replace(seal(variant.body), signature=signed.signature)
            assert isinstance(verify_signed(resealed, pem), SignatureVerdict.BadSignature), path
        verified.append(path)
    assert len(verified) > len(leaves) * 3 // 4  # most changes reach the signature check
    assert {("body_hash",), ("signature", "public_key"), ("signature", "value")} <= set(verified)


def test_the_key_and_signature_fields_each_fail_in_their_own_way(report, key):
    signed = key.sign(report)
    document = json.loads(encode_report_json(signed))
    strings = set()
    wrong_key = _decoded_variant(document, ("signature", "public_key"), strings)
    bad_value = _decoded_variant(document, ("signature", "value"), strings)
    assert isinstance(verify_signed(wrong_key, key.public_key_pem()), SignatureVerdict.WrongKey)
    assert isinstance(verify_signed(bad_value, key.public_key_pem()), SignatureVerdict.BadSignature)


# --- the JSON form ------------------------------------------------------------------------


def test_a_signed_report_round_trips_and_its_seal_still_verifies(report, key):
    signed = key.sign(report)
    data = encode_report_json(signed)
    assert decode_report_json(data) == signed
    verdict = verify_report_json(data)
    assert isinstance(verdict, ReportVerdict.Valid) and verdict.report == signed
    assert isinstance(verify_signed(verdict.report, key.public_key_pem()), SignatureVerdict.Valid)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d.update(signature=None),
        lambda d: d["signature"].update(alg="rsa"),
        lambda d: d["signature"].update(value="00"),
        lambda d: d["signature"].update(public_key=d["signature"]["public_key"].upper()),
        lambda d: d["signature"].update(extra=1),
        lambda d: d["signature"].pop("value"),
    ],
)
def test_a_malformed_signature_makes_a_malformed_report(report, key, tamper):
    document = json.loads(encode_report_json(key.sign(report)))
    tamper(document)
    assert isinstance(verify_report_json(json.dumps(document).encode()), ReportVerdict.Tampered)


# --- the key file -------------------------------------------------------------------------


def test_the_key_is_created_once_private_and_whole(tmp_path):
    home = tmp_path / "home"
    first = HostSigningKey.load_or_create(home)
    path = home / "signing-key.pem"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    assert os.listdir(home) == ["signing-key.pem"]  # no temporary file left behind
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    before = os.stat(path)
    second = HostSigningKey.load_or_create(home)
    assert second.public_key_hex() == first.public_key_hex()
    assert second.public_key_pem() == first.public_key_pem()
    assert (os.stat(path).st_ino, os.stat(path).st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_can_access_is_refused(tmp_path, mode):
    HostSigningKey.load_or_create(tmp_path)
    os.chmod(tmp_path / "signing-key.pem", mode)
    with pytest.raises(SigningError, match="group or others"):
        HostSigningKey.load_or_create(tmp_path)


def test_a_key_file_that_is_not_an_ed25519_key_is_refused(tmp_path):
    path = tmp_path / "signing-key.pem"
    path.write_bytes(b"not a key")
    os.chmod(path, 0o600)
    with pytest.raises(SigningError, match="PEM private key"):
        HostSigningKey.load_or_create(tmp_path)
