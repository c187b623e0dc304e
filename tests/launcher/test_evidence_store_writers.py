"""The evidence store with real writer processes: two append to one store at once, and a
writer killed by SIGKILL inside an append's write transaction leaves a sound store."""

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bvisor.contract import BoundaryReport, encode_report_json
from bvisor.evidence import EvidenceStore, StoreError
from evidence_reports import raw, variant

# Appends reports varied from the base report in argv[2] (exe argv[3]) to the store in
# argv[1], argv[4] of them (0: until killed), printing "seq report_id" once each append has
# returned; with argv[5] == "wait" it first says "ready" and waits for a line on stdin, so
# that several writers start together.
WRITER = """
import sys
import msgspec
from bvisor.contract import Workload, decode_report_json, fresh_attempt_id, seal
from bvisor.evidence import EvidenceStore

store_path, base_path, exe, count, start = sys.argv[1:6]
base = decode_report_json(open(base_path, "rb").read())
with EvidenceStore(store_path) as store:
    if start == "wait":
        print("ready", flush=True)
        sys.stdin.readline()
    n = 0
    while int(count) == 0 or n < int(count):
        body = msgspec.structs.replace(base.body, attempt_id=fresh_attempt_id(), workload=Workload.Process(exe=exe))
        stored = store.append(seal(body), {"stdout": b"run %d" % n, "stderr": b"shared"})
        print(stored.seq, stored.report_id, flush=True)
        n += 1
"""


def write_base(tmp_path: Path, base: BoundaryReport) -> Path:
    path = tmp_path / "base.json"
    path.write_bytes(encode_report_json(base))
    return path


def writer(store_path: Path, base_path: Path, exe: str, count: int, start: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store_path), str(base_path), exe, str(count), start],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )


def test_two_processes_append_to_one_store_at_once(tmp_path, store_path, base_report):
    base_path = write_base(tmp_path, base_report)
    writers = [writer(store_path, base_path, f"/bin/writer{n}", 200, "wait") for n in range(2)]
    for process in writers:
        assert process.stdout.readline() == "ready\n"
    for process in writers:  # both have opened the (fresh) store; now append together
        process.stdin.write("go\n")
        process.stdin.flush()
    seqs = [[int(line.split()[0]) for line in process.communicate()[0].splitlines()] for process in writers]
    assert [process.returncode for process in writers] == [0, 0]
    assert sorted(seqs[0] + seqs[1]) == list(range(1, 401))

    with EvidenceStore(store_path) as store:
        assert [row.seq for row in store.list()] == list(range(400, 0, -1))
        assert len(store.list(exe="/bin/writer0")) == len(store.list(exe="/bin/writer1")) == 200
        verdict = store.verify_chain()
        assert (verdict.ok, verdict.rows, verdict.first_bad_seq) == (True, 400, None)
        assert store.stream(store.list(limit=1)[0].report_id, "stderr") == b"shared"


# Put before WRITER, this wraps the writer's own sqlite3 connection (the store opens it with
# sqlite3.connect, which is swapped for one that makes a Tripwire): inside the argv[6]-th
# append, before or after (argv[8]) the first statement starting with argv[7], it prints
# "inside SEQ REPORT_ID" and how many rows of that seq its own open transaction holds in
# reports, documents and report_streams, then blocks until it is killed.
TRIPWIRE = """
import sqlite3
import sys

trip_append, trip_statement, trip_when = int(sys.argv[6]), sys.argv[7], sys.argv[8]


class Tripwire(sqlite3.Connection):
    appends = 0

    def execute(self, sql, parameters=(), /):
        if sql.startswith("INSERT INTO reports "):
            Tripwire.appends += 1
            self.half_written = parameters[:2]  # seq, report_id
        tripped = Tripwire.appends == trip_append and sql.startswith(trip_statement)
        if tripped and trip_when == "before":
            self.trip()
        cursor = super().execute(sql, parameters)
        if tripped and trip_when == "after":
            self.trip()
        return cursor

    def trip(self):
        seq, report_id = self.half_written
        held = super().execute(
            "SELECT (SELECT count(*) FROM reports WHERE seq = ?), (SELECT count(*) FROM documents WHERE seq = ?),"
            " (SELECT count(*) FROM report_streams WHERE seq = ?)",
            (seq, seq, seq),
        ).fetchone()
        print("inside", seq, report_id, *held, flush=True)
        sys.stdin.read()  # the parent never writes: it kills


_connect = sqlite3.connect
sqlite3.connect = lambda *args, **kwargs: _connect(*args, factory=Tripwire, **kwargs)
"""

TRIP_AT = 25  # the append the writer is killed inside; the 24 before it have returned

# (statement, before/after it runs, rows of the half-written seq in reports, documents and
# report_streams that the writer's open transaction holds at that moment)
KILL_POINTS = {
    "after its index row": ("INSERT INTO reports ", "after", (1, 0, 0)),
    "after its first stream row": ("INSERT INTO report_streams ", "after", (1, 1, 1)),
    "at its commit": ("COMMIT", "before", (1, 1, 2)),
}


@pytest.mark.parametrize("statement, when, held", KILL_POINTS.values(), ids=KILL_POINTS.keys())
def test_a_writer_killed_mid_append_leaves_a_sound_store(tmp_path, store_path, base_report, statement, when, held):
    """Attacks the store with a kill -9 that lands inside an append's write transaction (the
    writer blocks itself there and the write lock is seen held), at three points from the
    first row written to the commit. Checks that the store opens and its chain verifies,
    that every report the writer saw stored is there under the same seq and body hash, and
    that nothing of the half-written report survives: no index, document or stream row, no
    blob, no orphan row anywhere, head unchanged. The control: the writer's own transaction
    held the half-written rows just before the kill, and the blob query finds the previous
    report's blob."""
    process = subprocess.Popen(
        [sys.executable, "-c", TRIPWIRE + WRITER, str(store_path), str(write_base(tmp_path, base_report)),
         "/bin/doomed", "0", "go", str(TRIP_AT), statement, when],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        lines = [process.stdout.readline().split() for _ in range(TRIP_AT)]
        *stored_lines, inside = lines
        assert inside[0] == "inside", lines
        committed = {int(seq): report_id for seq, report_id in stored_lines}
        half_seq, half_id = int(inside[1]), inside[2]
        assert (half_seq, tuple(map(int, inside[3:]))) == (TRIP_AT, held)  # the rows exist, uncommitted
        with raw(store_path) as db:
            db.execute("PRAGMA busy_timeout = 0")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                db.execute("BEGIN IMMEDIATE")  # the writer is inside its write transaction
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert sorted(committed) == list(range(1, TRIP_AT))

    with EvidenceStore(store_path) as store:
        verdict = store.verify_chain()
        assert (verdict.ok, verdict.rows) == (True, TRIP_AT - 1), verdict
        assert {row.seq: row.report_id for row in store.list()} == committed
        for seq, report_id in committed.items():
            assert store.get(report_id).body_hash == report_id
            assert store.stream(report_id, "stdout") == b"run %d" % (seq - 1)
        with pytest.raises(StoreError, match=f"no report {half_id}"):
            store.get(half_id)
    with raw(store_path) as db:
        for table in ("reports", "documents", "report_streams"):
            assert db.execute(f"SELECT count(*) FROM {table} WHERE seq = ?", (half_seq,)).fetchone() == (0,), table
        assert db.execute("SELECT count(*) FROM reports WHERE report_id = ?", (half_id,)).fetchone() == (0,)
        orphans = {
            "documents": "SELECT count(*) FROM documents WHERE seq NOT IN (SELECT seq FROM reports)",
            "report_streams": "SELECT count(*) FROM report_streams WHERE seq NOT IN (SELECT seq FROM reports)",
            "blobs": "SELECT count(*) FROM blobs WHERE digest NOT IN (SELECT digest FROM report_streams)",
        }
        for table, query in orphans.items():
            assert db.execute(query).fetchone() == (0,), f"orphan rows in {table}"
        blob_count = "SELECT count(*) FROM blobs WHERE data = ?"
        assert db.execute(blob_count, (b"run %d" % (half_seq - 1),)).fetchone() == (0,)
        assert db.execute(blob_count, (b"run %d" % (half_seq - 2),)).fetchone() == (1,)  # the query finds a blob
        assert dict(db.execute("SELECT key, value FROM meta WHERE key = 'head_seq'")) == {"head_seq": TRIP_AT - 1}

    with EvidenceStore(store_path) as store:
        after = store.append(variant(base_report), {"stdout": b"after the crash"})
        assert after.seq == TRIP_AT
        assert store.verify_chain().ok
