"""The evidence store: round trips, content-addressed streams, the hash chain against raw
edits of the file, files that are not stores, and what the index may hold. Several writer
processes and a writer killed mid-append: tests/launcher/test_evidence_store_writers.py."""

import os
import shutil
import stat
import zlib
from pathlib import Path

import blake3
import msgspec
import platformdirs
import pytest

from bvisor.contract import (
    BoundaryReport,
    CaptureRef,
    Outcome,
    ReportVerdict,
    encode_report_json,
    seal,
    verify_report_json,
)
from bvisor.evidence import (
    ChainVerdict,
    EvidenceStore,
    StoredReport,
    StoreError,
    StreamRef,
    default_store_path,
)
from bvisor.evidence.store import SCHEMA_VERSION
from evidence_reports import raw, variant


@pytest.fixture
def store(store_path):
    with EvidenceStore(store_path) as store:
        yield store


def fill(store: EvidenceStore, base: BoundaryReport, count: int) -> list[StoredReport]:
    return [store.append(variant(base, started=n), {"stdout": b"out %d" % n}) for n in range(count)]


# -- round trips ---------------------------------------------------------------------


def test_append_list_get_export_round_trip(store, base_report):
    done = variant(base_report, started=100)
    failed = variant(base_report, outcome=Outcome.Failed, exe="/usr/bin/false", started=200)
    timed_out = variant(base_report, outcome=Outcome.Timeout, started=300)
    stored = [store.append(report) for report in (done, failed, timed_out)]

    assert [row.seq for row in stored] == [1, 2, 3]
    assert [row.report_id for row in stored] == [done.body_hash, failed.body_hash, timed_out.body_hash]
    assert (stored[1].outcome, stored[1].exe, stored[1].started_unix_ns, stored[1].backend) == (
        "failed", "/usr/bin/false", 200, "fake",
    )
    assert len({row.chain_hash for row in stored}) == 3
    assert store.list() == stored[::-1]
    assert store.list(outcome="failed") == [stored[1]]
    assert store.list(exe="/bin/sh") == [stored[2], stored[0]]
    assert store.list(since_unix_ns=200) == [stored[2], stored[1]]
    assert store.list(since_unix_ns=200, outcome="timeout", exe="/bin/sh") == [stored[2]]
    assert store.list(limit=2) == [stored[2], stored[1]]
    assert store.list(outcome="killed") == []

    for report in (done, failed, timed_out):
        assert store.get(report.body_hash) == report
        exported = store.export_json(report.body_hash)
        assert exported == encode_report_json(report)
        verdict = verify_report_json(exported)
        assert isinstance(verdict, ReportVerdict.Valid) and verdict.report == report


def test_a_report_whose_seal_does_not_hold_or_is_stored_already_is_refused(store, base_report):
    report = variant(base_report)
    changed_body = msgspec.structs.replace(report.body, outcome=Outcome.Failed)
    forged = BoundaryReport(body=changed_body, body_hash=report.body_hash)
    with pytest.raises(StoreError, match=f"report {report.body_hash} does not verify"):
        store.append(forged)
    store.append(report)
    with pytest.raises(StoreError, match="already in"):
        store.append(report, {"stdout": b"again"})
    assert [row.report_id for row in store.list()] == [report.body_hash]
    assert store.streams(report.body_hash) == []
    assert store.verify_chain().ok


def test_resolve_by_prefix(store, base_report):
    # Seal until two reports share a 4-digit prefix (about 300 seals): an ambiguous prefix.
    seen: dict[str, BoundaryReport] = {}
    while True:
        report = variant(base_report)
        twin = seen.setdefault(report.body_hash[:4], report)
        if twin is not report:
            break
    store.append(twin)
    store.append(report)
    shared = report.body_hash[:4]
    unknown = next(f"{n:04x}" for n in range(0x10000) if f"{n:04x}" not in seen)

    assert store.resolve(report.body_hash) == report.body_hash
    longer = report.body_hash[: len(os.path.commonprefix([report.body_hash, twin.body_hash])) + 1]  # noqa: RUF071 (hex digests, not paths)
    assert store.resolve(longer) == report.body_hash
    assert store.resolve(longer.upper()) == report.body_hash
    with pytest.raises(StoreError, match="ambiguous") as ambiguous:
        store.resolve(shared)
    assert twin.body_hash in str(ambiguous.value) and report.body_hash in str(ambiguous.value)
    with pytest.raises(StoreError, match=f"no report {unknown}"):
        store.resolve(unknown)
    for bad in (shared[:3], "xyz1", "", report.body_hash + "0"):
        with pytest.raises(StoreError, match="hex digits"):
            store.resolve(bad)


def test_unknown_ids_and_streams_are_store_errors(store, base_report):
    report = variant(base_report)
    store.append(report, {"stdout": b"x"})
    missing = variant(base_report).body_hash
    for call in (store.get, store.export_json, store.streams, lambda rid: store.stream(rid, "stdout")):
        with pytest.raises(StoreError, match=f"no report {missing}"):
            call(missing)
    with pytest.raises(StoreError, match="has no stream 'stderr'"):
        store.stream(report.body_hash, "stderr")


# -- streams -------------------------------------------------------------------------


def test_streams_are_byte_exact_and_content_addressed(store, store_path, base_report):
    binary = bytes(range(256)) * 40 + b"\x00\r\n"
    first, second = variant(base_report), variant(base_report)
    store.append(first, {"stdout": binary, "stderr": b""})
    store.append(second, {"stdout": binary, "stderr": b"only here"})

    assert store.stream(first.body_hash, "stdout") == binary
    assert store.stream(first.body_hash, "stderr") == b""
    assert store.stream(second.body_hash, "stderr") == b"only here"
    assert store.streams(first.body_hash) == [
        StreamRef(name="stderr", digest=blake3.blake3(b"").hexdigest(), kept=0, total=0, truncated=False),
        StreamRef(
            name="stdout", digest=blake3.blake3(binary).hexdigest(), kept=len(binary), total=len(binary), truncated=False
        ),
    ]
    with raw(store_path) as db:
        assert db.execute("SELECT count(*) FROM blobs").fetchone() == (3,)  # binary once, "", "only here"
        assert db.execute("SELECT count(*) FROM report_streams").fetchone() == (4,)


def test_a_stream_over_the_cap_is_truncated_and_says_so(store, base_report):
    report = variant(base_report)
    store.append(report, {"long": b"0123456789abcdef", "exact": b"0123456789", "short": b"01"}, stream_cap=10)
    refs = {ref.name: ref for ref in store.streams(report.body_hash)}
    assert (refs["long"].kept, refs["long"].total, refs["long"].truncated) == (10, 16, True)
    assert refs["long"].digest == blake3.blake3(b"0123456789").hexdigest()
    assert (refs["exact"].kept, refs["exact"].total, refs["exact"].truncated) == (10, 10, False)
    assert (refs["short"].kept, refs["short"].total, refs["short"].truncated) == (2, 2, False)
    assert store.stream(report.body_hash, "long") == b"0123456789"


def sql(statement):
    return lambda db: db.execute(statement)


def blob_rows(path: Path) -> dict[str, tuple[str, int]]:
    """digest -> (codec, stored length), as the file holds them."""
    with raw(path) as db:
        return {digest: (codec, size) for digest, codec, size in db.execute("SELECT digest, codec, length(data) FROM blobs")}


def test_streams_are_stored_compressed_when_that_is_smaller_and_read_back_exact(store, store_path, base_report):
    text = b"".join(b"line %d of a log\n" % n for n in range(50_000))
    noise = os.urandom(64 * 1024)  # does not shrink: kept as it is
    report = variant(base_report)
    store.append(report, {"stdout": text, "stderr": noise, "tiny": b"ok"})

    blobs = blob_rows(store_path)
    codec, size = blobs[blake3.blake3(text).hexdigest()]
    assert codec == "zlib" and size < len(text) // 4, (codec, size, len(text))
    assert blobs[blake3.blake3(noise).hexdigest()] == ("raw", len(noise))
    assert blobs[blake3.blake3(b"ok").hexdigest()] == ("raw", 2)
    assert store.stream(report.body_hash, "stdout") == text
    assert store.stream(report.body_hash, "stderr") == noise
    assert store.stream(report.body_hash, "tiny") == b"ok"
    kept = {ref.name: ref.kept for ref in store.streams(report.body_hash)}
    assert kept == {"stdout": len(text), "stderr": len(noise), "tiny": 2}
    assert store.verify_chain().ok


def plant_a_bomb(db):
    """In place of a small zlib blob, one that inflates to 64 MiB."""
    db.execute("UPDATE blobs SET data = ? WHERE codec = 'zlib'", (zlib.compress(bytes(64 << 20), 9),))


COMPRESSED_TAMPERING = {
    "unknown codec": sql("UPDATE blobs SET codec = 'lz4' WHERE codec = 'zlib'"),
    "raw codec on zlib data": sql("UPDATE blobs SET codec = 'raw' WHERE codec = 'zlib'"),
    "zlib data cut short": sql("UPDATE blobs SET data = substr(data, 1, length(data) - 8) WHERE codec = 'zlib'"),
    "not zlib data": sql("UPDATE blobs SET data = x'0102030405' WHERE codec = 'zlib'"),
    "a decompression bomb": plant_a_bomb,
}


@pytest.mark.parametrize("tamper", COMPRESSED_TAMPERING.values(), ids=COMPRESSED_TAMPERING.keys())
def test_a_changed_compressed_stream_is_found_and_never_returned(store_path, base_report, tamper):
    text = b"compressible " * 1000
    with EvidenceStore(store_path) as store:
        fill(store, base_report, 2)
        report = variant(base_report, started=7)
        store.append(report, {"stdout": text})
        assert store.stream(report.body_hash, "stdout") == text
    assert [codec for codec, _ in blob_rows(store_path).values()].count("zlib") == 1
    with raw(store_path) as db:
        tamper(db)
    with EvidenceStore(store_path) as store:
        verdict = store.verify_chain()
        assert (verdict.ok, verdict.first_bad_seq) == (False, 3), verdict
        assert "does not match its digest (changed)" in verdict.reason
        with pytest.raises(StoreError, match="does not match its digest"):
            store.stream(report.body_hash, "stdout")


def test_a_version_1_store_of_uncompressed_streams_is_migrated_and_still_reads(store_path, base_report):
    """Version 1 had no codec column and kept every blob as it is."""
    text = b"an old uncompressed stream\n" * 500
    with EvidenceStore(store_path) as store:
        old = variant(base_report, started=1)
        store.append(old, {"stdout": text})
    with raw(store_path) as db:  # made into what version 1 wrote
        db.execute("ALTER TABLE blobs DROP COLUMN codec")
        db.execute("UPDATE blobs SET data = ?", (text,))
        db.execute("UPDATE meta SET value = 1 WHERE key = 'schema_version'")
    with EvidenceStore(store_path) as store:
        assert store.stream(old.body_hash, "stdout") == text
        new = variant(base_report, started=2)
        store.append(new, {"stdout": text + b"and a new one\n"})
        assert store.stream(new.body_hash, "stdout") == text + b"and a new one\n"
        assert store.verify_chain().ok
    with raw(store_path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (SCHEMA_VERSION,)
        assert sorted(codec for (codec,) in db.execute("SELECT codec FROM blobs")) == ["raw", "zlib"]


def sealed_capture(stream: str, data: bytes, kept: int) -> CaptureRef:
    digest = blake3.blake3(data).hexdigest()
    return CaptureRef(stream=stream, bytes=len(data), kept=kept, truncated=kept < len(data), blake3=digest)


def swap_stream(db, name: str, data: bytes) -> None:
    """Replace a stream with other bytes, its digest, blob and sizes consistent."""
    digest = blake3.blake3(data).hexdigest()
    db.execute("INSERT INTO blobs (digest, data) VALUES (?, ?)", (digest, data))
    db.execute("UPDATE report_streams SET digest = ?, kept = ? WHERE name = ?", (digest, len(data), name))


def test_a_stream_kept_whole_must_be_the_one_the_report_sealed(store_path, base_report):
    """The stream rows are outside the chain: a whole stream swapped for other bytes with its
    digest, blob and sizes made consistent is found against the hash the report sealed. What
    this cannot find: a truncated stream's kept part swapped (the report seals the hash of
    every byte, not of the part kept). Control: untampered, the store verifies."""
    whole, long = b"real out\n", b"0123456789" * 3
    captured = [sealed_capture("stdout", whole, len(whole)), sealed_capture("stderr", long, 10)]
    report = seal(msgspec.structs.replace(variant(base_report).body, captured=captured))
    with EvidenceStore(store_path) as store:
        store.append(report, {"stdout": whole, "stderr": long}, stream_cap=10)
        assert store.verify_chain().ok
    with raw(store_path) as db:
        swap_stream(db, "stderr", b"9876543210")
    with EvidenceStore(store_path) as store:
        assert store.verify_chain().ok  # the limit: a part has no sealed hash
    with raw(store_path) as db:
        swap_stream(db, "stdout", b"fake out\n")
    with EvidenceStore(store_path) as store:
        verdict = store.verify_chain()
    assert (verdict.ok, verdict.first_bad_seq) == (False, 1), verdict
    assert "its stream 'stdout' is not what the report sealed (changed)" in verdict.reason


# -- the chain -----------------------------------------------------------------------


def test_an_intact_chain_verifies(store, base_report):
    assert store.verify_chain() == ChainVerdict(ok=True, rows=0, first_bad_seq=None, reason="0 rows, chain intact")
    fill(store, base_report, 25)
    verdict = store.verify_chain()
    assert (verdict.ok, verdict.rows, verdict.first_bad_seq) == (True, 25, None)


def change_a_byte(db):
    (document,) = db.execute("SELECT json FROM documents WHERE seq = 3").fetchone()
    at = document.index(b"/bin/sh") + len("/bin/s")
    db.execute("UPDATE documents SET json = ? WHERE seq = 3", (document[:at] + b"x" + document[at + 1:],))


def reformat_the_json(db):
    """Same report, same seal, different bytes: only the chain can tell."""
    (document,) = db.execute("SELECT json FROM documents WHERE seq = 3").fetchone()
    db.execute("UPDATE documents SET json = ? WHERE seq = 3", (document.replace(b",", b", "),))


def swap_rows_2_and_3(db):
    for table in ("reports", "documents", "report_streams"):
        db.execute(f"UPDATE {table} SET seq = -1 WHERE seq = 2")
        db.execute(f"UPDATE {table} SET seq = 2 WHERE seq = 3")
        db.execute(f"UPDATE {table} SET seq = 3 WHERE seq = -1")


def delete_row(seq):
    def delete(db):
        for table in ("reports", "documents", "report_streams"):
            db.execute(f"DELETE FROM {table} WHERE seq = ?", (seq,))

    return delete


def renumber_after_deleting_row_3(db):
    delete_row(3)(db)
    for table in ("reports", "documents", "report_streams"):
        db.execute(f"UPDATE {table} SET seq = seq - 1 WHERE seq > 3")
    db.execute("UPDATE meta SET value = value - 1 WHERE key = 'head_seq'")


TAMPERING = {
    "changed byte in a report": (change_a_byte, 3, "changed"),
    "reformatted report json": (reformat_the_json, 3, "changed"),
    "deleted middle row": (delete_row(3), 3, "deleted"),
    "deleted last row": (delete_row(6), 6, "deleted"),
    "deleted row, later rows renumbered": (renumber_after_deleting_row_3, 3, "deleted"),
    "two rows swapped": (swap_rows_2_and_3, 2, "reordered"),
    "changed chain hash": (sql(f"UPDATE reports SET chain_hash = '{'ab' * 32}' WHERE seq = 4"), 4, "changed"),
    "changed index outcome": (sql("UPDATE reports SET outcome = 'failed' WHERE seq = 5"), 5, "changed"),
    "changed stream content": (sql("UPDATE blobs SET data = x'00' WHERE data = CAST('out 1' AS BLOB)"), 2, "changed"),
}


@pytest.mark.parametrize("tamper, bad_seq, why", TAMPERING.values(), ids=TAMPERING.keys())
def test_verify_chain_names_the_first_bad_row(store_path, base_report, tamper, bad_seq, why):
    with EvidenceStore(store_path) as store:
        fill(store, base_report, 6)
        assert store.verify_chain().ok
    with raw(store_path) as db:
        tamper(db)
    with EvidenceStore(store_path) as store:
        verdict = store.verify_chain()
        assert (verdict.ok, verdict.first_bad_seq) == (False, bad_seq), verdict
        assert why in verdict.reason and f"seq {bad_seq}" in verdict.reason
        # The store still takes evidence after tampering, and the tampering stays on record.
        store.append(variant(base_report))
        assert store.verify_chain().first_bad_seq == bad_seq


def test_changed_content_is_never_returned(store_path, base_report):
    with EvidenceStore(store_path) as store:
        stored = fill(store, base_report, 3)
    with raw(store_path) as db:
        change_a_byte(db)
        db.execute("UPDATE blobs SET data = CAST('out 9' AS BLOB) WHERE data = CAST('out 1' AS BLOB)")
    with EvidenceStore(store_path) as store:
        with pytest.raises(StoreError, match=rf"report {stored[2].report_id} in .*\(changed\)"):
            store.get(stored[2].report_id)
        with pytest.raises(StoreError, match=rf"stream 'stdout' of report {stored[1].report_id} .*\(changed\)"):
            store.stream(stored[1].report_id, "stdout")
        assert store.stream(stored[0].report_id, "stdout") == b"out 0"


# -- the file ------------------------------------------------------------------------


def one_line_store_error(path: Path) -> str:
    with pytest.raises(StoreError) as error:
        EvidenceStore(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_file_of_random_bytes_is_not_a_store(tmp_path):
    path = tmp_path / "noise.sqlite3"
    noise = os.urandom(8192)
    path.write_bytes(noise)
    assert "not a database" in one_line_store_error(path)
    assert path.read_bytes() == noise


def test_another_sqlite_database_is_not_a_store_and_is_left_alone(tmp_path):
    path = tmp_path / "other.sqlite3"
    with raw(path) as db:
        db.execute("CREATE TABLE reports (id INTEGER PRIMARY KEY, note TEXT)")
        db.execute("INSERT INTO reports (note) VALUES ('theirs')")
    before = path.read_bytes()
    assert "not a bvisor evidence store" in one_line_store_error(path)
    assert path.read_bytes() == before  # not switched to WAL, no tables added
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.sqlite3"]


def test_a_store_of_a_newer_schema_is_refused(store_path):
    EvidenceStore(store_path).close()
    with raw(store_path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
    assert f"schema version {SCHEMA_VERSION + 1}" in one_line_store_error(store_path)


def test_the_store_is_private_to_its_owner(tmp_path, base_report):
    path = tmp_path / "a" / "b" / "evidence.sqlite3"
    with EvidenceStore(path) as store:
        store.append(variant(base_report), {"stdout": b"x"})
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert stat.S_IMODE(file.stat().st_mode) & 0o077 == 0, file
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_default_store_path_honours_bvisor_home(monkeypatch, tmp_path):
    monkeypatch.setenv("BVISOR_HOME", str(tmp_path))
    assert default_store_path() == tmp_path / "evidence.sqlite3"
    monkeypatch.delenv("BVISOR_HOME")
    assert default_store_path() == platformdirs.user_data_path("bvisor") / "evidence.sqlite3"


# -- what the index may hold ---------------------------------------------------------


INDEX_COLUMNS = {
    "meta": ["key", "value"],
    "reports": ["seq", "report_id", "chain_hash", "stored_unix_ns", "outcome", "exe", "started_unix_ns", "backend"],
    "report_streams": ["seq", "name", "digest", "kept", "total", "truncated"],
}


def test_stream_content_never_lands_in_the_index(tmp_path, store_path, base_report):
    secret = b"stream-secret-" + os.urandom(8).hex().encode()
    exe_marker = "/opt/exe-marker-" + os.urandom(8).hex()
    with EvidenceStore(store_path) as store:
        store.append(variant(base_report, exe=exe_marker), {"stdout": b"token=" + secret + b"\n", "stderr": secret * 3})
        store.append(variant(base_report), {"stdout": secret}, stream_cap=4)  # truncated: only a prefix kept
    with raw(store_path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {*INDEX_COLUMNS, "documents", "blobs"}
        for table, columns in INDEX_COLUMNS.items():
            assert [row[1] for row in db.execute(f"PRAGMA table_info({table})")] == columns
    assert secret in store_path.read_bytes()  # the scan below can see content where it is

    # Keep only the index: drop the content tables and rebuild the file, so no freed page
    # remains; the marker from the metadata must survive and the stream's must not.
    index_only = tmp_path / "index-only.sqlite3"
    shutil.copyfile(store_path, index_only)
    with raw(index_only) as db:
        db.execute("DROP TABLE blobs")
        db.execute("DROP TABLE documents")
        db.execute("VACUUM")
    index_bytes = index_only.read_bytes()
    assert exe_marker.encode() in index_bytes
    assert secret[-16:] not in index_bytes  # the random part: no copy of the content, whole or cut
