"""Pruning the evidence store: the oldest rows go, the chain still verifies from a checkpoint
of what went, and that checkpoint, signed in a signed store, cannot be moved to hide kept
rows. Controls: the same moves on an unsigned store go unseen (so the signature is what
catches them), and an untampered pruned store verifies."""

import sqlite3
import time
from pathlib import Path

import pytest

from bvisor.evidence import EvidenceStore, StoreError
from bvisor.evidence.signing import HostSigningKey
from evidence_reports import raw, variant

ROWS = 8
SHARED = b"the same output in every run\n" * 100


def store_of(path: Path, base, signer: HostSigningKey | None, rows: int = ROWS) -> list[str]:
    """``rows`` reports, each with a stream of its own and one they all share."""
    with EvidenceStore(path) as store:
        return [
            store.append(
                variant(base, started=n), {"stdout": b"run %d\n" % n * 500, "stderr": SHARED}, signer=signer
            ).report_id
            for n in range(rows)
        ]


def blob_count(path: Path) -> int:
    with raw(path) as db:
        return db.execute("SELECT count(*) FROM blobs").fetchone()[0]


def test_prune_keep_drops_the_oldest_and_the_chain_still_verifies(tmp_path, base_report, key):
    path = tmp_path / "evidence.sqlite3"
    ids = store_of(path, base_report, key)
    assert blob_count(path) == ROWS + 1
    with EvidenceStore(path) as store:
        result = store.prune(keep=3, signer=key)
        assert (result.pruned, result.kept) == (ROWS - 3, 3)
        assert result.bytes_freed > 0
        assert [row.report_id for row in store.list()] == ids[:-4:-1]
        assert [row.seq for row in store.list()] == [ROWS, ROWS - 1, ROWS - 2]
        with pytest.raises(StoreError, match=f"no report {ids[0]}"):
            store.get(ids[0])
        assert store.stream(ids[-1], "stderr") == SHARED  # a shared blob stays while a row uses it
        verdict = store.verify_chain(key.public_key_hex())
        assert (verdict.ok, verdict.rows, verdict.pruned, verdict.signed_by) == (True, 3, ROWS - 3, key.public_key_hex())
        # Appends chain on from the head, and a second prune from the first one's checkpoint.
        store.append(variant(base_report, started=100), signer=key)
        assert store.prune(keep=1, signer=key).pruned == 3
        verdict = store.verify_chain(key.public_key_hex())
        assert (verdict.ok, verdict.rows, verdict.pruned) == (True, 1, ROWS), verdict
        assert store.prune(keep=5, signer=key).pruned == 0  # fewer than that: nothing to drop
        assert store.prune(keep=0, signer=key).pruned == 1
        verdict = store.verify_chain(key.public_key_hex())
        assert (verdict.ok, verdict.rows, verdict.pruned) == (True, 0, ROWS + 1), verdict
    assert blob_count(path) == 0  # streams of pruned rows go with them


def set_stored_days_ago(path: Path, days_by_seq: dict[int, int]) -> None:
    now = time.time_ns()
    with raw(path) as db:
        for seq, days in days_by_seq.items():
            db.execute("UPDATE reports SET stored_unix_ns = ? WHERE seq = ?", (now - days * 86_400 * 10**9, seq))


def test_prune_by_age_drops_only_the_oldest_prefix(tmp_path, base_report):
    path = tmp_path / "evidence.sqlite3"
    store_of(path, base_report, None)
    # Rows 1-3 are 40 days old, row 4 is new, row 5 is old again (a clock set back): only a
    # prefix of the chain can go, so row 5 stays.
    set_stored_days_ago(path, {1: 40, 2: 40, 3: 35, 5: 50})
    with EvidenceStore(path) as store:
        result = store.prune(stored_before_unix_ns=time.time_ns() - 30 * 86_400 * 10**9)
        assert (result.pruned, result.kept) == (3, ROWS - 3)
        assert min(row.seq for row in store.list()) == 4
        verdict = store.verify_chain()
        assert (verdict.ok, verdict.pruned) == (True, 3), verdict
        assert store.prune(stored_before_unix_ns=time.time_ns() + 1).kept == 0  # all stored before now


def test_prune_refuses_bad_arguments_and_a_signed_store_without_its_key(tmp_path, base_report, key, attacker_key):
    path = tmp_path / "evidence.sqlite3"
    store_of(path, base_report, key)
    with EvidenceStore(path) as store:
        for arguments in ({}, {"keep": 1, "stored_before_unix_ns": 1}, {"keep": -1}):
            with pytest.raises(ValueError):
                store.prune(**arguments)
        with pytest.raises(StoreError, match="pruning needs that key"):
            store.prune(keep=1)
        with pytest.raises(StoreError, match=f"not by key {attacker_key.public_key_hex()}"):
            store.prune(keep=1, signer=attacker_key)
        assert store.verify_chain(key.public_key_hex()).rows == ROWS  # nothing pruned


def test_a_broken_chain_is_never_pruned(tmp_path, base_report):
    """A checkpoint must not vouch for tampering: the changed row stays, and verify keeps
    naming it."""
    path = tmp_path / "evidence.sqlite3"
    store_of(path, base_report, None)
    with raw(path) as db:
        db.execute("UPDATE reports SET outcome = 'failed' WHERE seq = 2")
    with EvidenceStore(path) as store:
        with pytest.raises(StoreError, match=r"does not verify .*seq 2.*nothing pruned"):
            store.prune(keep=1)
        verdict = store.verify_chain()
        assert (verdict.ok, verdict.first_bad_seq, verdict.rows) == (False, 2, ROWS), verdict


# -- tampering after a prune -----------------------------------------------------------

KEPT = 5  # rows ROWS - KEPT + 1 .. ROWS stay; the checkpoint is at seq ROWS - KEPT
CUT = ROWS - KEPT


def delete_rows(db: sqlite3.Connection, where: str) -> None:
    for table in ("report_streams", "documents", "reports"):
        db.execute(f"DELETE FROM {table} WHERE {where}")


def checkpoint_at(db: sqlite3.Connection, seq: int) -> None:
    (chain,) = db.execute("SELECT chain_hash FROM reports WHERE seq = ?", (seq,)).fetchone()
    db.executemany(
        "UPDATE meta SET value = ? WHERE key = ?", [(seq, "checkpoint_seq"), (chain, "checkpoint_chain")]
    )


def delete_a_kept_row(db, _attacker):
    delete_rows(db, f"seq = {CUT + 2}")


def delete_the_first_kept_row(db, _attacker):
    delete_rows(db, f"seq = {CUT + 1}")


def change_a_kept_row(db, _attacker):
    db.execute(f"UPDATE reports SET outcome = 'killed' WHERE seq = {CUT + 3}")


def move_the_checkpoint_past_two_kept_rows(db, _attacker):
    """Hide the two oldest kept rows as if pruned: the rows after still chain from it."""
    checkpoint_at(db, CUT + 2)
    delete_rows(db, f"seq <= {CUT + 2}")


def move_the_checkpoint_and_sign_it_with_another_key(db, attacker):
    move_the_checkpoint_past_two_kept_rows(db, attacker)
    meta = dict(db.execute("SELECT key, value FROM meta"))
    signature = attacker.sign_checkpoint(
        meta["checkpoint_seq"], bytes.fromhex(meta["checkpoint_chain"]), meta["checkpoint_unix_ns"]
    )
    db.execute("UPDATE meta SET value = ? WHERE key = 'checkpoint_signature'", (signature,))


def strip_the_checkpoint(db, _attacker):
    db.execute("DELETE FROM meta WHERE key LIKE 'checkpoint_%'")


def reset_the_head_after_cutting_the_last_row(db, _attacker):
    delete_rows(db, f"seq = {ROWS}")
    (chain,) = db.execute("SELECT chain_hash FROM reports WHERE seq = ?", (ROWS - 1,)).fetchone()
    db.executemany("UPDATE meta SET value = ? WHERE key = ?", [(ROWS - 1, "head_seq"), (chain, "head_chain")])


SIGNED_PRUNED_STORE_ATTACKS = {
    "a kept row deleted": (delete_a_kept_row, CUT + 2, None),
    "the first kept row deleted": (delete_the_first_kept_row, CUT + 1, None),
    "a kept row changed": (change_a_kept_row, CUT + 3, None),
    "checkpoint moved past kept rows": (move_the_checkpoint_past_two_kept_rows, None, "checkpoint"),
    "checkpoint moved, signed with another key": (move_the_checkpoint_and_sign_it_with_another_key, None, "checkpoint"),
    "checkpoint record deleted": (strip_the_checkpoint, 1, None),
    "last row cut, head reset": (reset_the_head_after_cutting_the_last_row, None, "head"),
}


@pytest.mark.parametrize(
    "attack, bad_seq, bad_record", SIGNED_PRUNED_STORE_ATTACKS.values(), ids=SIGNED_PRUNED_STORE_ATTACKS.keys()
)
def test_every_attack_on_a_pruned_signed_store_fails_verification(
    tmp_path, base_report, key, attacker_key, attack, bad_seq, bad_record
):
    path = tmp_path / "evidence.sqlite3"
    store_of(path, base_report, key)
    with EvidenceStore(path) as store:
        assert store.prune(keep=KEPT, signer=key).pruned == CUT
        assert store.verify_chain(key.public_key_hex()).ok  # the control: untampered, it verifies
    with raw(path) as db:
        attack(db, attacker_key)
    with EvidenceStore(path) as store:
        verdict = store.verify_chain(key.public_key_hex())
    assert not verdict.ok, verdict
    assert (verdict.first_bad_seq, verdict.bad_record) == (bad_seq, bad_record), verdict


def test_control_a_moved_checkpoint_goes_unseen_in_an_unsigned_store(tmp_path, base_report, attacker_key):
    path = tmp_path / "evidence.sqlite3"
    store_of(path, base_report, None)
    with EvidenceStore(path) as store:
        store.prune(keep=KEPT)
    with raw(path) as db:
        move_the_checkpoint_past_two_kept_rows(db, attacker_key)
    with EvidenceStore(path) as store:
        verdict = store.verify_chain()
    assert (verdict.ok, verdict.rows, verdict.pruned, verdict.signed_by) == (True, KEPT - 2, CUT + 2, None), verdict


def test_an_old_head_signature_cannot_stand_in_for_a_checkpoint(tmp_path, base_report, key):
    """Every append signed the head over (row count, last chain hash): the signature made when
    the store held CUT + 2 rows covers exactly the pair a checkpoint moved there names. The
    checkpoint's own domain keeps it from holding."""
    path = tmp_path / "evidence.sqlite3"
    store_of(path, base_report, key, rows=CUT + 2)
    with raw(path) as db:
        (old_head_signature,) = db.execute("SELECT value FROM meta WHERE key = 'head_signature'").fetchone()
    with EvidenceStore(path) as store:
        for n in range(CUT + 2, ROWS):
            store.append(variant(base_report, started=n), signer=key)
        store.prune(keep=KEPT, signer=key)
    with raw(path) as db:
        move_the_checkpoint_past_two_kept_rows(db, None)
        db.execute("UPDATE meta SET value = ? WHERE key = 'checkpoint_signature'", (old_head_signature,))
    with EvidenceStore(path) as store:
        verdict = store.verify_chain(key.public_key_hex())
    assert (verdict.ok, verdict.bad_record) == (False, "checkpoint"), verdict
    assert "does not hold for the recorded checkpoint" in verdict.reason


def test_a_pruned_unsigned_store_signs_its_checkpoint_at_its_first_signed_append(tmp_path, base_report, key, attacker_key):
    path = tmp_path / "evidence.sqlite3"
    store_of(path, base_report, None)
    with EvidenceStore(path) as store:
        store.prune(keep=KEPT)
        store.append(variant(base_report, started=100), signer=key)
        verdict = store.verify_chain(key.public_key_hex())
        assert (verdict.ok, verdict.rows, verdict.pruned) == (True, KEPT + 1, CUT), verdict
    with raw(path) as db:
        move_the_checkpoint_past_two_kept_rows(db, attacker_key)
    with EvidenceStore(path) as store:
        assert store.verify_chain(key.public_key_hex()).bad_record == "checkpoint"


def test_a_malformed_checkpoint_is_a_broken_chain(tmp_path, base_report):
    path = tmp_path / "evidence.sqlite3"
    store_of(path, base_report, None)
    with EvidenceStore(path) as store:
        store.prune(keep=KEPT)
    with raw(path) as db:
        db.execute("UPDATE meta SET value = 'not a hash' WHERE key = 'checkpoint_chain'")
    with EvidenceStore(path) as store:
        verdict = store.verify_chain()
        assert (verdict.ok, verdict.bad_record) == (False, "checkpoint"), verdict
        with pytest.raises(StoreError, match="does not verify"):
            store.prune(keep=1)
