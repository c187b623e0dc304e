"""The evidence store: every sealed report, appended to one SQLite file and chained.

A report is kept as the exact JSON bytes ``bvisor verify`` reads (``encode_report_json``),
so an export is byte-identical to what was stored. Each row's chain hash binds the previous
row's chain hash, the report's body hash and its stored bytes, so ``verify_chain`` finds a
changed, deleted or reordered row. The store's head (last seq and chain hash) is kept in
``meta`` and appends chain from it, so rows cut from the end are found too — unless whoever
cut them also reset the head, which anyone who can write the file can do.

A signed store closes that: from its first append with the host's signing key on, every
append signs the head (``signing.head_message``) and ``verify_chain`` checks that the
signature holds and that the rows reach exactly the signed head. Writing the file without
the key can no longer cut, delete or replace rows, reset the head or sign it with another
key unseen. What a signature kept inside the file cannot show is a rollback of the whole
file (rows and head together) to an older signed state: that needs a counter kept outside
it. An unsigned store says it is unsigned.

Captured streams live apart, content-addressed in ``blobs``. The index tables (``reports``,
``report_streams``, ``meta``) hold only ids, hashes, outcome, exe, backend, times and stream
names and sizes — never stream content.

There is no update or delete: the store is append-only by API.
"""

from __future__ import annotations  # the method named ``list`` would shadow ``list[...]``

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import blake3
import msgspec

from bvisor.evidence.home import evidence_home

from bvisor.contract.decode import ReportVerdict, encode_report_json, verify_report_json
from bvisor.contract.report import BoundaryReport, verify_report
from bvisor.evidence.signing import HostSigningKey, head_signature_holds

DEFAULT_STREAM_CAP = 16 * 1024 * 1024  # bytes kept per captured stream
SCHEMA_VERSION = 1
STORE_FORMAT = "bvisor.evidence"

_CHAIN_DOMAIN = b"bvisor.evidence.chain.v1\0"
_GENESIS = bytes(32)
# Long enough for a burst of concurrent runs to queue on the write lock rather than fail.
_BUSY_TIMEOUT_S = 30.0
_MIN_PREFIX = 4
_HEX = frozenset("0123456789abcdef")
_NO_STREAMS: Mapping[str, bytes] = MappingProxyType({})

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value NOT NULL)",
    """CREATE TABLE reports (
        seq INTEGER PRIMARY KEY,
        report_id TEXT NOT NULL UNIQUE,
        chain_hash TEXT NOT NULL,
        stored_unix_ns INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        exe TEXT NOT NULL,
        started_unix_ns INTEGER NOT NULL,
        backend TEXT NOT NULL
    )""",
    # Apart from the index, so listing never pages through report bodies.
    "CREATE TABLE documents (seq INTEGER PRIMARY KEY REFERENCES reports (seq), json BLOB NOT NULL)",
    "CREATE TABLE blobs (digest TEXT PRIMARY KEY, data BLOB NOT NULL)",
    """CREATE TABLE report_streams (
        seq INTEGER NOT NULL REFERENCES reports (seq),
        name TEXT NOT NULL,
        digest TEXT NOT NULL REFERENCES blobs (digest),
        kept INTEGER NOT NULL,
        total INTEGER NOT NULL,
        truncated INTEGER NOT NULL,
        PRIMARY KEY (seq, name)
    ) WITHOUT ROWID""",
)

_REPORT_COLUMNS = "seq, report_id, chain_hash, stored_unix_ns, outcome, exe, started_unix_ns, backend"


class StoreError(Exception):
    """A store operation failed; the message is one line naming the path or report id."""


class StoredReport(msgspec.Struct, frozen=True):
    """One row of the index; ``report_id`` is the report's ``body_hash``."""

    seq: int
    report_id: str
    chain_hash: str
    stored_unix_ns: int
    outcome: str
    exe: str
    started_unix_ns: int
    backend: str


class StreamRef(msgspec.Struct, frozen=True):
    """A stored stream: ``digest`` is blake3 of the ``kept`` bytes (its content address);
    ``total`` is how many bytes were given to the store."""

    name: str
    digest: str
    kept: int
    total: int
    truncated: bool


class ChainVerdict(msgspec.Struct, frozen=True):
    """``first_bad_seq`` is None when the chain is intact or only the head is bad;
    ``signed_by`` is the key whose head signature held, None for an unsigned store."""

    ok: bool
    rows: int
    first_bad_seq: int | None
    reason: str
    signed_by: str | None = None


def default_store_path() -> Path:
    return Path(evidence_home()) / "evidence.sqlite3"


def _chain_hash(prev: bytes, report_id: str, document: bytes) -> str:
    """Binds the previous row's chain hash, the report's seal and the exact stored bytes
    (a re-encoding that keeps the seal still breaks the chain)."""
    return blake3.blake3(
        _CHAIN_DOMAIN + prev + bytes.fromhex(report_id) + blake3.blake3(document).digest()
    ).hexdigest()


def _digest_bytes(text: object) -> bytes | None:
    """A stored hex digest as 32 bytes, or None when tampering left it malformed."""
    if not isinstance(text, str):
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


def _kept_stream(name: str, data: bytes, cap: int) -> tuple[StreamRef, bytes]:
    kept = bytes(data[:cap])
    ref = StreamRef(
        name=name, digest=blake3.blake3(kept).hexdigest(), kept=len(kept), total=len(data), truncated=len(data) > cap
    )
    return ref, kept


def _document_verdict(document: object, report_id: str) -> ReportVerdict.Valid | ReportVerdict.Tampered:
    """Whether stored bytes are still the sealed report ``report_id``."""
    if not isinstance(document, bytes):
        return ReportVerdict.Tampered("its stored report is not bytes (changed)")
    verdict = verify_report_json(document)
    if not isinstance(verdict, ReportVerdict.Valid):
        return ReportVerdict.Tampered(f"its stored report does not verify (changed): {verdict.reason}")
    if verdict.report.body_hash != report_id:
        return ReportVerdict.Tampered("its stored report is another report (changed)")
    return verdict


def _index_problem(indexed: tuple, report: BoundaryReport) -> str | None:
    """The index columns are copies of report fields; a disagreement means someone edited
    the index (say, to hide a failure from ``list``)."""
    body = report.body
    expected = (body.outcome.value, body.workload.exe, body.started_unix_ns, body.backend)
    for column, stored, wanted in zip(("outcome", "exe", "started_unix_ns", "backend"), indexed, expected):
        if stored != wanted:
            return f"its index {column} disagrees with its report (changed)"
    return None


class EvidenceStore:
    """An append-only store of sealed reports in one SQLite file; several processes may
    append to the same file at once."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        _create_private_file(self.path)
        try:
            # isolation_level=None: this class issues every BEGIN itself.
            self._db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open evidence store {self.path}: {error}") from None
        try:
            self._open_schema()
        except BaseException:
            self._db.close()
            raise

    def __enter__(self) -> EvidenceStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    # -- opening ------------------------------------------------------------------------

    def _open_schema(self) -> None:
        with self._errors(f"cannot open evidence store {self.path}"):
            if not self._is_store():
                with self._transaction():
                    # Another process may have created it while this one waited.
                    if not self._is_store():
                        self._create_schema()
            # Only now, once the file is known to be ours: WAL lets readers run beside the
            # one writer, and the mode is persistent, so a foreign file is never touched.
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"cannot open evidence store {self.path}: journal mode stays {mode!r}, not WAL")
            # Evidence must survive a power cut once append has returned.
            self._db.execute("PRAGMA synchronous=FULL")

    def _is_store(self) -> bool:
        """True for a store of this schema, False for an empty file; StoreError otherwise."""
        tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return False
        try:
            meta = dict(self._db.execute("SELECT key, value FROM meta WHERE key IN ('format', 'schema_version')"))
        except sqlite3.OperationalError:
            meta = {}
        if meta.get("format") != STORE_FORMAT:
            held = ", ".join(sorted(tables))
            raise StoreError(f"{self.path} is not a bvisor evidence store (it holds tables: {held})")
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has evidence schema version {meta.get('schema_version')!r}; "
                f"this bvisor reads version {SCHEMA_VERSION}"
            )
        return True

    def _create_schema(self) -> None:
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [
                ("format", STORE_FORMAT),
                ("schema_version", SCHEMA_VERSION),
                ("head_seq", 0),
                ("head_chain", _GENESIS.hex()),
            ],
        )

    # -- writing ------------------------------------------------------------------------

    def append(
        self,
        report: BoundaryReport,
        streams: Mapping[str, bytes] = _NO_STREAMS,
        stream_cap: int = DEFAULT_STREAM_CAP,
        signer: HostSigningKey | None = None,
    ) -> StoredReport:
        """Append ``report``; with ``signer`` the head is signed (an unsigned store becomes
        signed, trusting the rows it holds now). A signed store needs its own key."""
        if stream_cap < 0:
            raise ValueError(f"stream_cap must be at least 0, not {stream_cap}")
        report_id = report.body_hash
        if not verify_report(report):
            raise StoreError(f"report {report_id} does not verify: its body_hash does not match its body")
        # Everything costly happens before the write lock is taken.
        document = encode_report_json(report)
        kept_streams = [_kept_stream(name, data, stream_cap) for name, data in streams.items()]
        body = report.body
        with self._errors(f"cannot append report {report_id} to {self.path}"), self._transaction():
            if self._db.execute("SELECT 1 FROM reports WHERE report_id = ?", (report_id,)).fetchone():
                raise StoreError(f"report {report_id} is already in {self.path}")
            self._check_signer(signer)
            head_seq, head_chain = self._head()
            stored = StoredReport(
                seq=head_seq + 1,
                report_id=report_id,
                chain_hash=_chain_hash(head_chain, report_id, document),
                stored_unix_ns=time.time_ns(),
                outcome=body.outcome.value,
                exe=body.workload.exe,
                started_unix_ns=body.started_unix_ns,
                backend=body.backend,
            )
            self._db.execute(
                f"INSERT INTO reports ({_REPORT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                msgspec.structs.astuple(stored),
            )
            self._db.execute("INSERT INTO documents (seq, json) VALUES (?, ?)", (stored.seq, document))
            for ref, kept in kept_streams:
                self._db.execute("INSERT OR IGNORE INTO blobs (digest, data) VALUES (?, ?)", (ref.digest, kept))
                self._db.execute(
                    "INSERT INTO report_streams (seq, name, digest, kept, total, truncated) VALUES (?, ?, ?, ?, ?, ?)",
                    (stored.seq, ref.name, ref.digest, ref.kept, ref.total, ref.truncated),
                )
            self._db.executemany(
                "UPDATE meta SET value = ? WHERE key = ?",
                [(stored.seq, "head_seq"), (stored.chain_hash, "head_chain")],
            )
            if signer is not None:
                signature = signer.sign_head(stored.seq, bytes.fromhex(stored.chain_hash))
                self._db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("head_key", signer.public_key_hex()), ("head_signature", signature)],
                )
        return stored

    def head_key(self) -> str | None:
        """The key the head is signed with (hex), or None for an unsigned store."""
        with self._errors(f"cannot read the head of {self.path}"):
            row = self._db.execute("SELECT value FROM meta WHERE key = 'head_key'").fetchone()
        return None if row is None else str(row[0])

    def _check_signer(self, signer: HostSigningKey | None) -> None:
        """A signed store stays signed, by the same key: an append that would leave the
        head unsigned or signed by another key is refused."""
        held = self.head_key()
        if held is None:
            return
        if signer is None:
            raise StoreError(f"the head of {self.path} is signed by key {held}: appending needs that key")
        if signer.public_key_hex() != held:
            raise StoreError(f"the head of {self.path} is signed by key {held}, not by key {signer.public_key_hex()}")

    def _head(self) -> tuple[int, bytes]:
        """The head as recorded by the last append — not the last row present, so an
        append after rows were cut from the end leaves the cut visible."""
        head = self._head_record()
        if head is None:
            raise StoreError(f"the head record of {self.path} is malformed")
        return head

    def _head_record(self) -> tuple[int, bytes] | None:
        meta = dict(self._db.execute("SELECT key, value FROM meta WHERE key IN ('head_seq', 'head_chain')"))
        head_seq, head_chain = meta.get("head_seq"), _digest_bytes(meta.get("head_chain"))
        if not isinstance(head_seq, int) or head_chain is None:
            return None
        return head_seq, head_chain

    # -- reading ------------------------------------------------------------------------

    def list(
        self,
        outcome: str | None = None,
        since_unix_ns: int | None = None,
        exe: str | None = None,
        limit: int | None = None,
    ) -> list[StoredReport]:
        """Newest (highest seq) first; ``since_unix_ns`` compares the run's start time."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be at least 0, not {limit}")
        filters = [("outcome = ?", outcome), ("started_unix_ns >= ?", since_unix_ns), ("exe = ?", exe)]
        clauses = [clause for clause, value in filters if value is not None]
        params = [value for _, value in filters if value is not None]
        sql = f"SELECT {_REPORT_COLUMNS} FROM reports"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._errors(f"cannot list reports in {self.path}"):
            return [StoredReport(*row) for row in self._db.execute(sql, params)]

    def resolve(self, prefix: str) -> str:
        wanted = prefix.lower()
        if not _MIN_PREFIX <= len(wanted) <= 64 or not set(wanted) <= _HEX:
            raise StoreError(f"report id prefix {prefix!r} is not {_MIN_PREFIX} to 64 hex digits")
        with self._errors(f"cannot resolve report {prefix} in {self.path}"):
            # Ids are lowercase hex and "g" sorts after every hex digit: a range on the
            # unique index, where LIKE would scan.
            rows = self._db.execute(
                "SELECT report_id FROM reports WHERE report_id >= ? AND report_id < ? ORDER BY report_id LIMIT 2",
                (wanted, wanted + "g"),
            ).fetchall()
        if not rows:
            raise StoreError(f"no report {prefix} in {self.path}")
        if len(rows) > 1:
            raise StoreError(f"report id prefix {prefix} is ambiguous in {self.path}: {rows[0][0]}, {rows[1][0]}, …")
        return rows[0][0]

    def get(self, report_id: str) -> BoundaryReport:
        """The stored report, re-verified: a changed row is an error, never a report."""
        verdict = _document_verdict(self.export_json(report_id), report_id)
        if isinstance(verdict, ReportVerdict.Tampered):
            raise StoreError(f"report {report_id} in {self.path}: {verdict.reason}")
        return verdict.report

    def export_json(self, report_id: str) -> bytes:
        with self._errors(f"cannot read report {report_id} from {self.path}"):
            row = self._db.execute(
                "SELECT d.json FROM reports AS r JOIN documents AS d USING (seq) WHERE r.report_id = ?", (report_id,)
            ).fetchone()
        if row is None:
            raise StoreError(f"no report {report_id} in {self.path}")
        return row[0]

    def streams(self, report_id: str) -> list[StreamRef]:
        with self._errors(f"cannot read the streams of report {report_id} from {self.path}"):
            seq = self._seq(report_id)
            rows = self._db.execute(
                "SELECT name, digest, kept, total, truncated FROM report_streams WHERE seq = ? ORDER BY name", (seq,)
            ).fetchall()
        return [
            StreamRef(name=name, digest=digest, kept=kept, total=total, truncated=bool(truncated))
            for name, digest, kept, total, truncated in rows
        ]

    def stream(self, report_id: str, name: str) -> bytes:
        """The kept bytes, checked against their content address."""
        with self._errors(f"cannot read stream {name!r} of report {report_id} from {self.path}"):
            seq = self._seq(report_id)
            row = self._db.execute(
                "SELECT s.digest, b.data FROM report_streams AS s JOIN blobs AS b USING (digest)"
                " WHERE s.seq = ? AND s.name = ?",
                (seq, name),
            ).fetchone()
        if row is None:
            raise StoreError(f"report {report_id} in {self.path} has no stream {name!r}")
        digest, data = row
        if not isinstance(data, bytes) or blake3.blake3(data).hexdigest() != digest:
            raise StoreError(f"stream {name!r} of report {report_id} in {self.path} does not match its digest (changed)")
        return data

    def _seq(self, report_id: str) -> int:
        row = self._db.execute("SELECT seq FROM reports WHERE report_id = ?", (report_id,)).fetchone()
        if row is None:
            raise StoreError(f"no report {report_id} in {self.path}")
        return row[0]

    # -- verifying ----------------------------------------------------------------------

    def verify_chain(self, trusted_key: str | None = None) -> ChainVerdict:
        """Walk every row in seq order and name the first that is not what was appended,
        then check the head's signature. With ``trusted_key`` (hex) the head must be signed
        by that key: a stripped signature or another key's is then a broken chain."""
        with self._errors(f"cannot verify {self.path}"), self._transaction("DEFERRED"):  # one snapshot
            (rows,) = self._db.execute("SELECT count(*) FROM reports").fetchone()
            found = self._first_problem()
            signed = self._head_signature()
        if found is None:
            found = _signature_problem(signed, trusted_key)
        if found is None:
            signed_by = None if signed is None else signed[0]
            return ChainVerdict(ok=True, rows=rows, first_bad_seq=None, reason=f"{rows} rows, chain intact", signed_by=signed_by)
        seq, reason = found
        where = "head" if seq is None else f"seq {seq}"
        return ChainVerdict(ok=False, rows=rows, first_bad_seq=seq, reason=f"{where}: {reason}")

    def _first_problem(self) -> tuple[int | None, str] | None:
        """The first bad seq (None when only the head record is bad) and why."""
        prev, last_seq, verified_blobs = _GENESIS, 0, set()
        rows = self._db.execute(
            "SELECT r.seq, r.report_id, r.chain_hash, r.outcome, r.exe, r.started_unix_ns, r.backend, d.json"
            " FROM reports AS r LEFT JOIN documents AS d USING (seq) ORDER BY r.seq"
        )
        for seq, report_id, stored_chain, *indexed, document in rows:
            expected = last_seq + 1
            if seq != expected:
                return expected, ("missing (deleted)" if seq > expected else f"found seq {seq} in its place (changed)")
            problem = self._row_problem(seq, report_id, stored_chain, tuple(indexed), document, prev, verified_blobs)
            if problem is not None:
                return seq, problem
            prev, last_seq = bytes.fromhex(stored_chain), seq
        return self._head_problem(last_seq, prev)

    def _row_problem(
        self,
        seq: int,
        report_id: str,
        stored_chain: str,
        indexed: tuple,
        document: bytes | None,
        prev: bytes,
        verified_blobs: set[str],
    ) -> str | None:
        if document is None:
            return "its stored report is missing (deleted)"
        verdict = _document_verdict(document, report_id)
        if isinstance(verdict, ReportVerdict.Tampered):
            return verdict.reason
        problem = _index_problem(indexed, verdict.report)
        if problem is not None:
            return problem
        if _chain_hash(prev, report_id, document) != stored_chain:
            return self._chain_problem(seq, report_id, stored_chain, document)
        return self._streams_problem(seq, verified_blobs)

    def _chain_problem(self, seq: int, report_id: str, stored_chain: str, document: bytes) -> str:
        """Tell a row moved from elsewhere in the chain from one whose link was broken."""
        if seq != 1 and _chain_hash(_GENESIS, report_id, document) == stored_chain:
            return "its chain starts the store, yet it is not seq 1 (reordered)"
        for other_seq, other_chain in self._db.execute("SELECT seq, chain_hash FROM reports WHERE seq != ?", (seq,)):
            other = _digest_bytes(other_chain)
            if other is not None and _chain_hash(other, report_id, document) == stored_chain:
                return f"its chain follows seq {other_seq}, not seq {seq - 1} (reordered)"
        return f"its chain hash does not follow from seq {seq - 1} (changed, or a row before it deleted)"

    def _streams_problem(self, seq: int, verified_blobs: set[str]) -> str | None:
        rows = self._db.execute(
            "SELECT s.name, s.digest, s.kept, s.total, s.truncated, b.data"
            " FROM report_streams AS s LEFT JOIN blobs AS b USING (digest) WHERE s.seq = ? ORDER BY s.name",
            (seq,),
        )
        for name, digest, kept, total, truncated, data in rows:
            if data is None:
                return f"its stream {name!r} has no content (deleted)"
            if digest not in verified_blobs:
                if not isinstance(data, bytes) or blake3.blake3(data).hexdigest() != digest:
                    return f"its stream {name!r} does not match its digest (changed)"
                verified_blobs.add(digest)
            if kept != len(data) or kept > total or bool(truncated) != (total > kept):
                return f"its stream {name!r} sizes disagree with its content (changed)"
        return None

    def _head_signature(self) -> tuple[str, bool] | None:
        """(key, whether its signature holds for the recorded head), None when unsigned."""
        meta = dict(self._db.execute("SELECT key, value FROM meta WHERE key IN ('head_key', 'head_signature')"))
        if not meta:
            return None
        key, signature, head = meta.get("head_key"), meta.get("head_signature"), self._head_record()
        holds = (
            isinstance(key, str)
            and isinstance(signature, str)
            and head is not None
            and head_signature_holds(key, *head, signature)
        )
        return str(key), holds

    def _head_problem(self, last_seq: int, last_chain: bytes) -> tuple[int | None, str] | None:
        head = self._head_record()
        if head is None:
            return None, "the store's head record is malformed (changed)"
        head_seq, head_chain = head
        if last_seq < head_seq:
            return last_seq + 1, f"missing (deleted from the end; the store's head is seq {head_seq})"
        if last_seq > head_seq:
            return head_seq + 1, f"beyond the store's head (seq {head_seq}): added outside append"
        if last_chain != head_chain:
            return last_seq, "its chain hash is not the store's head (changed)"
        return None

    # -- plumbing -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """SQLite's failures as StoreError, one line naming what failed."""
        try:
            yield
        except sqlite3.Error as error:
            raise StoreError(f"{what}: {error}") from None

    @contextlib.contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[None]:
        """IMMEDIATE takes the write lock at BEGIN, so concurrent appenders queue on the busy
        timeout instead of failing when a read would have to become a write."""
        self._db.execute(f"BEGIN {mode}")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _signature_problem(signed: tuple[str, bool] | None, trusted_key: str | None) -> tuple[None, str] | None:
    """What is wrong with the head's signature, once the rows are known to reach the head."""
    if signed is None:
        if trusted_key is None:
            return None
        return None, f"it is not signed, yet key {trusted_key} is expected (its signature stripped, or never signed)"
    key, holds = signed
    if not holds:
        return None, (
            f"its signature by key {key} does not hold for the recorded head "
            "(rows cut or replaced and the head reset, or an older signature put back)"
        )
    if trusted_key is not None and key != trusted_key:
        return None, f"it is signed by key {key}, not by the trusted key {trusted_key}"
    return None


def _create_private_file(path: Path) -> None:
    """The directory (when created here) is the owner's alone, and so is the file: SQLite
    would create it 0644, and it gives its -wal and -shm files the database file's mode."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as error:
        raise StoreError(f"cannot create evidence store {path}: {error.strerror or error}") from None
