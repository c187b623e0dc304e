"""The signed head of the evidence store, against a tamperer who can write the SQLite file
but cannot read the host's key: every edit that keeps the chain self-consistent (rows cut,
deleted, replaced, the head reset or signed with another key, an older signature put back)
fails verification of a signed store. Controls: an untampered signed store verifies, and the
same edits on an unsigned store go unseen (so the signature is what catches them)."""

import shutil
import sqlite3
from pathlib import Path

import msgspec
import pytest

from bvisor.contract import Workload, decode_report_json, encode_report_json, fresh_attempt_id, seal
from bvisor.evidence import EvidenceStore, StoreError
from bvisor.evidence.signing import HostSigningKey
from bvisor.evidence.store import _chain_hash
from evidence_reports import raw, variant

ROWS = 6


def store_of(path: Path, base, signer: HostSigningKey | None) -> None:
    with EvidenceStore(path) as store:
        for n in range(ROWS):
            store.append(variant(base, started=n), {"stdout": b"out %d" % n}, signer=signer)


def rechain(db: sqlite3.Connection) -> None:
    """Recompute every row's chain hash and point the head at the last row: the chain is
    unkeyed, so anyone who can write the file can make it consistent again."""
    prev, seq = bytes(32), 0
    for seq, report_id, document in db.execute(
        "SELECT r.seq, r.report_id, d.json FROM reports AS r JOIN documents AS d USING (seq) ORDER BY r.seq"
    ).fetchall():
        chain = _chain_hash(prev, report_id, document)
        db.execute("UPDATE reports SET chain_hash = ? WHERE seq = ?", (chain, seq))
        prev = bytes.fromhex(chain)
    db.executemany("UPDATE meta SET value = ? WHERE key = ?", [(seq, "head_seq"), (prev.hex(), "head_chain")])


def delete_rows(db: sqlite3.Connection, where: str) -> None:
    for table in ("report_streams", "documents", "reports"):
        db.execute(f"DELETE FROM {table} WHERE {where}")


def truncate_the_last_two_rows(db, _attacker):
    delete_rows(db, f"seq > {ROWS - 2}")
    rechain(db)


def delete_a_middle_row_and_renumber(db, _attacker):
    delete_rows(db, "seq = 3")
    for table in ("reports", "documents", "report_streams"):
        db.execute(f"UPDATE {table} SET seq = seq - 1 WHERE seq > 3")
    rechain(db)


def swap_the_head_row_for_another_report(db, _attacker):
    """The last report replaced by another sealed report (say, one that completed)."""
    (document,) = db.execute("SELECT json FROM documents WHERE seq = ?", (ROWS,)).fetchone()
    old = decode_report_json(document)
    body = msgspec.structs.replace(old.body, attempt_id=fresh_attempt_id(), workload=Workload.Process(exe="/bin/true"))
    other = seal(body)
    db.execute("UPDATE documents SET json = ? WHERE seq = ?", (encode_report_json(other), ROWS))
    db.execute("UPDATE reports SET report_id = ?, exe = '/bin/true' WHERE seq = ?", (other.body_hash, ROWS))
    rechain(db)


def sign_a_truncated_head_with_another_key(db, attacker):
    truncate_the_last_two_rows(db, attacker)
    head_seq, head_chain = (
        dict(db.execute("SELECT key, value FROM meta"))[name] for name in ("head_seq", "head_chain")
    )
    signature = attacker.sign_head(head_seq, bytes.fromhex(head_chain))
    db.executemany(
        "UPDATE meta SET value = ? WHERE key = ?",
        [(attacker.public_key_hex(), "head_key"), (signature, "head_signature")],
    )


def strip_the_signature_and_truncate(db, attacker):
    truncate_the_last_two_rows(db, attacker)
    db.execute("DELETE FROM meta WHERE key IN ('head_key', 'head_signature')")


SIGNED_STORE_ATTACKS = {
    "last rows truncated, head reset": truncate_the_last_two_rows,
    "middle row deleted, later rows renumbered and rechained": delete_a_middle_row_and_renumber,
    "head row swapped for another sealed report": swap_the_head_row_for_another_report,
    "truncated head signed with another key": sign_a_truncated_head_with_another_key,
    "signature stripped, rows truncated": strip_the_signature_and_truncate,
}


@pytest.mark.parametrize("attack", SIGNED_STORE_ATTACKS.values(), ids=SIGNED_STORE_ATTACKS.keys())
def test_every_attack_on_a_signed_store_fails_verification(tmp_path, base_report, key, attacker_key, attack):
    path = tmp_path / "evidence.sqlite3"
    store_of(path, base_report, key)
    with raw(path) as db:
        attack(db, attacker_key)
    with EvidenceStore(path) as store:
        verdict = store.verify_chain(key.public_key_hex())
    assert not verdict.ok, verdict
    assert verdict.reason.startswith("head: "), verdict


def test_control_an_untampered_signed_store_verifies_under_its_key(tmp_path, base_report, key, attacker_key):
    path = tmp_path / "evidence.sqlite3"
    store_of(path, base_report, key)
    with EvidenceStore(path) as store:
        verdict = store.verify_chain(key.public_key_hex())
        assert (verdict.ok, verdict.rows, verdict.signed_by) == (True, ROWS, key.public_key_hex()), verdict
        # The trusted key is the reader's: the store's own says nothing about another's.
        assert not store.verify_chain(attacker_key.public_key_hex()).ok


CHAIN_CONSISTENT_ATTACKS = {
    name: SIGNED_STORE_ATTACKS[name]
    for name in (
        "last rows truncated, head reset",
        "middle row deleted, later rows renumbered and rechained",
        "head row swapped for another sealed report",
    )
}


@pytest.mark.parametrize("attack", CHAIN_CONSISTENT_ATTACKS.values(), ids=CHAIN_CONSISTENT_ATTACKS.keys())
def test_control_the_same_attacks_on_an_unsigned_store_go_unseen(tmp_path, base_report, attacker_key, attack):
    path = tmp_path / "evidence.sqlite3"
    store_of(path, base_report, None)
    with raw(path) as db:
        attack(db, attacker_key)
    with EvidenceStore(path) as store:
        verdict = store.verify_chain()
    assert verdict.ok and verdict.signed_by is None, verdict


def head_meta(path: Path) -> dict:
    with raw(path) as db:
        return dict(db.execute("SELECT key, value FROM meta WHERE key LIKE 'head_%'"))


def put_back(path: Path, meta: dict, keys: tuple[str, ...]) -> None:
    with raw(path) as db:
        db.executemany("UPDATE meta SET value = ? WHERE key = ?", [(meta[k], k) for k in keys])


def test_an_older_signature_put_back_fails_unless_the_whole_file_is_rolled_back(tmp_path, base_report, key):
    """The limit of a signature kept inside the file: an older signed state, rows and head
    together, is a valid store. Only a counter kept elsewhere could tell it is old."""
    path = tmp_path / "evidence.sqlite3"
    with EvidenceStore(path) as store:
        for n in range(ROWS - 2):
            store.append(variant(base_report, started=n), signer=key)
    older = head_meta(path)
    snapshot = tmp_path / "older.sqlite3"
    with raw(path) as db:
        db.execute(f"VACUUM INTO '{snapshot}'")
    with EvidenceStore(path) as store:
        for n in range(ROWS - 2, ROWS):
            store.append(variant(base_report, started=n), signer=key)

    put_back(path, older, ("head_signature",))  # only the signature: it covers another head
    with EvidenceStore(path) as store:
        verdict = store.verify_chain(key.public_key_hex())
    assert not verdict.ok and "does not hold" in verdict.reason, verdict

    put_back(path, older, ("head_seq", "head_chain"))  # and the head: rows beyond it remain
    with EvidenceStore(path) as store:
        verdict = store.verify_chain(key.public_key_hex())
    assert not verdict.ok and verdict.first_bad_seq == ROWS - 1 and "beyond the store's head" in verdict.reason, verdict

    shutil.copyfile(snapshot, path)  # the whole file: undetectable from inside it
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with EvidenceStore(path) as store:
        verdict = store.verify_chain(key.public_key_hex())
    assert verdict.ok and verdict.rows == ROWS - 2, verdict


def test_a_signed_store_takes_appends_only_with_its_own_key(tmp_path, base_report, key, attacker_key):
    path = tmp_path / "evidence.sqlite3"
    store_of(path, base_report, key)
    with EvidenceStore(path) as store:
        assert store.head_key() == key.public_key_hex()
        with pytest.raises(StoreError, match="appending needs that key"):
            store.append(variant(base_report, started=100))
        with pytest.raises(StoreError, match=f"not by key {attacker_key.public_key_hex()}"):
            store.append(variant(base_report, started=101), signer=attacker_key)
        verdict = store.verify_chain(key.public_key_hex())
        assert (verdict.ok, verdict.rows) == (True, ROWS), verdict  # refused appends left nothing


def test_an_unsigned_store_opens_and_becomes_signed_at_its_first_signed_append(tmp_path, base_report, key):
    """A store written before head signing existed is an unsigned store of the same schema."""
    path = tmp_path / "evidence.sqlite3"
    store_of(path, base_report, None)
    assert "head_key" not in head_meta(path)
    with EvidenceStore(path) as store:
        assert store.head_key() is None
        assert store.verify_chain().ok
        assert not store.verify_chain(key.public_key_hex()).ok  # a signed head was demanded
        store.append(variant(base_report, started=100), signer=key)
        verdict = store.verify_chain(key.public_key_hex())
    assert (verdict.ok, verdict.rows, verdict.signed_by) == (True, ROWS + 1, key.public_key_hex()), verdict
