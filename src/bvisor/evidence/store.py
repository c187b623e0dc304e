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

Captured streams live apart, content-addressed in ``blobs`` (by the hash of the kept bytes;
zlib-compressed when that makes them smaller, which the row's ``codec`` says). The index
tables (``reports``, ``report_streams``, ``meta``) hold only ids, hashes, outcome, exe,
backend, times and stream names and sizes — never stream content.

There is no update, and one delete: ``prune`` drops the oldest rows, a prefix of the chain,
and records where the chain now starts (the last pruned seq and its chain hash) as the
store's checkpoint, signed like the head in a signed store. ``verify_chain`` walks from the
checkpoint, so a pruned store still verifies, and a checkpoint moved to hide kept rows is
found by its signature.
"""

from __future__ import annotations  # the method named ``list`` would shadow ``list[...]``

import contextlib
import os
import sqlite3
import time
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import blake3
import msgspec

from bvisor.contract.decode import ReportVerdict, encode_report_json, verify_report_json
from bvisor.contract.report import BoundaryReport, CaptureRef, verify_report
from bvisor.evidence.home import evidence_home
from bvisor.evidence.signing import (
    HostSigningKey,
    checkpoint_message,
    head_message,
    store_signature_holds,
)

DEFAULT_STREAM_CAP = 16 * 1024 * 1024  # bytes kept per captured stream
# 2: blobs carry a codec (zlib-compressed streams). A version-1 store is migrated on open:
# its blobs get codec 'raw', what they are; an older bvisor refuses a version-2 store rather
# than take compressed streams for changed ones.
SCHEMA_VERSION = 2
STORE_FORMAT = "bvisor.evidence"

_CHAIN_DOMAIN = b"bvisor.evidence.chain.v1\0"
_GENESIS = bytes(32)
# Long enough for a burst of concurrent runs to queue on the write lock rather than fail.
_BUSY_TIMEOUT_S = 30.0
_MIN_PREFIX = 4
_HEX = frozenset("0123456789abcdef")
_NO_STREAMS: Mapping[str, bytes] = MappingProxyType({})
# Level 1: it runs after every stored run; level 6 saves 5-10% more of typical text output
# at two to three times the time.
_ZLIB_LEVEL = 1

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
    "CREATE TABLE blobs (digest TEXT PRIMARY KEY, data BLOB NOT NULL, codec TEXT NOT NULL DEFAULT 'raw')",
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
    ``total`` is how many bytes were given to the store. What the workload wrote in all, and
    its hash, are the sealed report's (``CaptureRef``)."""

    name: str
    digest: str
    kept: int
    total: int
    truncated: bool


class ChainVerdict(msgspec.Struct, frozen=True):
    """``first_bad_seq`` is None when the chain is intact or only a record is bad, and then
    ``bad_record`` names it ("head" or "checkpoint"); ``signed_by`` is the key whose head
    (and checkpoint) signature held, None for an unsigned store; ``pruned`` is how many rows
    were pruned before the chain's start."""

    ok: bool
    rows: int
    first_bad_seq: int | None
    reason: str
    signed_by: str | None = None
    pruned: int = 0
    bad_record: str | None = None


class Checkpoint(msgspec.Struct, frozen=True):
    """Where the chain starts: every row up to ``seq`` was pruned (at ``pruned_unix_ns``)
    and row ``seq + 1`` chains from ``chain``. A store never pruned starts at seq 0."""

    seq: int
    chain: bytes
    pruned_unix_ns: int


_NEVER_PRUNED = Checkpoint(seq=0, chain=_GENESIS, pruned_unix_ns=0)
_CHECKPOINT_KEYS = ("checkpoint_seq", "checkpoint_chain", "checkpoint_unix_ns")


class PruneResult(msgspec.Struct, frozen=True):
    """``bytes_freed``: how much smaller the store's files (with its -wal) are afterwards."""

    pruned: int
    kept: int
    bytes_freed: int


class _Signatures(msgspec.Struct, frozen=True):
    """A signed store's key, and whether its head and checkpoint signatures hold."""

    key: str
    head_holds: bool
    checkpoint_holds: bool


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


def _is_u64(value: object) -> bool:
    return isinstance(value, int) and 0 <= value < 2**64


def _kept_stream(name: str, data: bytes, cap: int) -> tuple[StreamRef, str, bytes]:
    """The stream's ref, and its kept bytes as stored: (codec, data)."""
    kept = bytes(data[:cap])
    ref = StreamRef(
        name=name, digest=blake3.blake3(kept).hexdigest(), kept=len(kept), total=len(data), truncated=len(data) > cap
    )
    packed = zlib.compress(kept, _ZLIB_LEVEL)
    # Output that does not shrink (tiny, or already compressed) is kept as it is.
    return (ref, "zlib", packed) if len(packed) < len(kept) else (ref, "raw", kept)


def _unpacked(codec: object, data: object, size: int) -> bytes | None:
    """A blob's content, or None when it cannot be what was stored (tampering): no bytes, an
    unknown codec, or zlib data that does not end within ``size`` + 1 bytes (so a planted
    decompression bomb costs no more than a real stream)."""
    if not isinstance(data, bytes):
        return None
    if codec == "raw":
        return data
    if codec != "zlib":
        return None
    inflater = zlib.decompressobj()
    try:
        content = inflater.decompress(data, size + 1)
    except zlib.error:
        return None
    return content if inflater.eof else None


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
    for column, stored, wanted in zip(("outcome", "exe", "started_unix_ns", "backend"), indexed, expected, strict=True):
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
            if self._schema_version() != SCHEMA_VERSION:
                with self._transaction():
                    # Another process may have created or migrated it while this one waited.
                    version = self._schema_version()
                    if version is None:
                        self._create_schema()
                    elif version == 1:
                        self._migrate_from_1()
            # Only now, once the file is known to be ours: WAL lets readers run beside the
            # one writer, and the mode is persistent, so a foreign file is never touched.
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"cannot open evidence store {self.path}: journal mode stays {mode!r}, not WAL")
            # Evidence must survive a power cut once append has returned.
            self._db.execute("PRAGMA synchronous=FULL")

    def _schema_version(self) -> int | None:
        """The version of a store this bvisor reads (this one, or 1 to migrate), None for an
        empty file; StoreError otherwise."""
        tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return None
        try:
            meta = dict(self._db.execute("SELECT key, value FROM meta WHERE key IN ('format', 'schema_version')"))
        except sqlite3.OperationalError:
            meta = {}
        if meta.get("format") != STORE_FORMAT:
            held = ", ".join(sorted(tables))
            raise StoreError(f"{self.path} is not a bvisor evidence store (it holds tables: {held})")
        version = meta.get("schema_version")
        if version not in (1, SCHEMA_VERSION):
            raise StoreError(
                f"{self.path} has evidence schema version {version!r}; this bvisor reads version {SCHEMA_VERSION}"
            )
        return version

    def _migrate_from_1(self) -> None:
        """Version 1 kept every blob as it is: they all get codec 'raw' (no data rewritten)."""
        self._db.execute("ALTER TABLE blobs ADD COLUMN codec TEXT NOT NULL DEFAULT 'raw'")
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))

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
            held = self._check_signer(signer, "appending")
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
            for ref, codec, data in kept_streams:
                self._db.execute(
                    "INSERT OR IGNORE INTO blobs (digest, data, codec) VALUES (?, ?, ?)", (ref.digest, data, codec)
                )
                self._db.execute(
                    "INSERT INTO report_streams (seq, name, digest, kept, total, truncated) VALUES (?, ?, ?, ?, ?, ?)",
                    (stored.seq, ref.name, ref.digest, ref.kept, ref.total, ref.truncated),
                )
            self._db.executemany(
                "UPDATE meta SET value = ? WHERE key = ?",
                [(stored.seq, "head_seq"), (stored.chain_hash, "head_chain")],
            )
            if signer is not None:
                # A store signed from now on trusts its checkpoint as it trusts its rows;
                # later appends never re-sign it (that would vouch for a moved one).
                self._sign(signer, checkpoint=held is None)
        return stored

    def prune(
        self,
        *,
        keep: int | None = None,
        stored_before_unix_ns: int | None = None,
        signer: HostSigningKey | None = None,
    ) -> PruneResult:
        """Drop the oldest rows: all but the newest ``keep``, or those stored before
        ``stored_before_unix_ns`` (oldest first, up to the first stored later: only a prefix
        of the chain can go). Stream blobs no other row uses go with them, and the file is
        compacted. The chain must verify first — a checkpoint must never vouch for tampering —
        and a signed store needs its own key, which signs the new checkpoint."""
        if (keep is None) == (stored_before_unix_ns is None):
            raise ValueError("prune takes exactly one of keep and stored_before_unix_ns")
        if keep is not None and keep < 0:
            raise ValueError(f"keep must be at least 0, not {keep}")
        before = self._disk_bytes()
        with self._errors(f"cannot prune {self.path}"), self._transaction():
            held = self._check_signer(signer, "pruning")
            verdict = self._verdict(held)
            if not verdict.ok:
                raise StoreError(f"{self.path} does not verify ({verdict.reason}): nothing pruned")
            start = self._chain_start()
            cut = self._cut(start.seq, keep, stored_before_unix_ns)
            if cut > start.seq:
                self._drop_through(cut)
            if signer is not None:
                self._sign(signer, checkpoint=True)
            (kept,) = self._db.execute("SELECT count(*) FROM reports").fetchone()
        with self._errors(f"pruned {cut - start.seq} reports from {self.path}, but cannot compact it"):
            self._db.execute("VACUUM")
            # Fold the WAL back so the file itself shrinks now, not at some later checkpoint.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return PruneResult(pruned=cut - start.seq, kept=kept, bytes_freed=before - self._disk_bytes())

    def _cut(self, start_seq: int, keep: int | None, stored_before_unix_ns: int | None) -> int:
        """The last seq to prune (``start_seq`` when none)."""
        head_seq, _ = self._head()
        if keep is not None:
            return max(start_seq, head_seq - keep)
        (first_newer,) = self._db.execute(
            "SELECT min(seq) FROM reports WHERE stored_unix_ns >= ?", (stored_before_unix_ns,)
        ).fetchone()
        return head_seq if first_newer is None else first_newer - 1

    def _drop_through(self, cut: int) -> None:
        """Delete rows up to ``cut`` and make it the checkpoint (unsigned until ``_sign``)."""
        (chain,) = self._db.execute("SELECT chain_hash FROM reports WHERE seq = ?", (cut,)).fetchone()
        for table in ("report_streams", "documents", "reports"):
            self._db.execute(f"DELETE FROM {table} WHERE seq <= ?", (cut,))
        self._db.execute("DELETE FROM blobs WHERE digest NOT IN (SELECT digest FROM report_streams)")
        self._db.execute("DELETE FROM meta WHERE key = 'checkpoint_signature'")
        self._db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            zip(_CHECKPOINT_KEYS, (cut, chain, time.time_ns()), strict=True),
        )

    def _sign(self, signer: HostSigningKey, checkpoint: bool) -> None:
        """Sign the head as recorded, and with ``checkpoint`` the checkpoint (if pruned)."""
        head_seq, head_chain = self._head()
        signed = [("head_key", signer.public_key_hex()), ("head_signature", signer.sign_head(head_seq, head_chain))]
        start = self._chain_start()
        if checkpoint and start.seq:
            signed.append(("checkpoint_signature", signer.sign_checkpoint(start.seq, start.chain, start.pruned_unix_ns)))
        self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", signed)

    def _disk_bytes(self) -> int:
        files = (self.path, Path(f"{self.path}-wal"))
        return sum(file.stat().st_size for file in files if file.exists())

    def head_key(self) -> str | None:
        """The key the head is signed with (hex), or None for an unsigned store."""
        with self._errors(f"cannot read the head of {self.path}"):
            row = self._db.execute("SELECT value FROM meta WHERE key = 'head_key'").fetchone()
        return None if row is None else str(row[0])

    def _check_signer(self, signer: HostSigningKey | None, writing: str) -> str | None:
        """A signed store stays signed, by the same key: a write that would leave the head
        unsigned or signed by another key is refused. Returns the key held before."""
        held = self.head_key()
        if held is None:
            return None
        if signer is None:
            raise StoreError(f"the head of {self.path} is signed by key {held}: {writing} needs that key")
        if signer.public_key_hex() != held:
            raise StoreError(f"the head of {self.path} is signed by key {held}, not by key {signer.public_key_hex()}")
        return held

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

    def _chain_start(self) -> Checkpoint:
        start = self._checkpoint_record()
        if start is None:
            raise StoreError(f"the checkpoint record of {self.path} is malformed")
        return start

    def _checkpoint_record(self) -> Checkpoint | None:
        """The last prune's checkpoint (``_NEVER_PRUNED`` when there was none), or None when
        the record is malformed."""
        meta = dict(self._db.execute("SELECT key, value FROM meta WHERE key IN (?, ?, ?)", _CHECKPOINT_KEYS))
        if not meta:
            return _NEVER_PRUNED
        seq, chain, pruned_unix_ns = (meta.get(key) for key in _CHECKPOINT_KEYS)
        chain = _digest_bytes(chain)
        if not (_is_u64(seq) and seq > 0 and _is_u64(pruned_unix_ns)) or chain is None:
            return None
        return Checkpoint(seq=seq, chain=chain, pruned_unix_ns=pruned_unix_ns)

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
                "SELECT s.digest, s.kept, b.codec, b.data FROM report_streams AS s JOIN blobs AS b USING (digest)"
                " WHERE s.seq = ? AND s.name = ?",
                (seq, name),
            ).fetchone()
        if row is None:
            raise StoreError(f"report {report_id} in {self.path} has no stream {name!r}")
        digest, kept, codec, packed = row
        data = _unpacked(codec, packed, kept)
        if data is None or blake3.blake3(data).hexdigest() != digest:
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
            return self._verdict(trusted_key)

    def _verdict(self, trusted_key: str | None) -> ChainVerdict:
        (rows,) = self._db.execute("SELECT count(*) FROM reports").fetchone()
        start = self._checkpoint_record()
        pruned = 0 if start is None else start.seq
        found = self._first_problem(start)
        signed = self._signatures(start)
        if found is None:
            found = _signature_problem(signed, trusted_key)
        if found is None:
            signed_by = None if signed is None else signed.key
            reason = f"{rows} rows, chain intact" + (f" ({pruned} pruned before them)" if pruned else "")
            return ChainVerdict(ok=True, rows=rows, first_bad_seq=None, reason=reason, signed_by=signed_by, pruned=pruned)
        where, reason = found
        if isinstance(where, str):
            return ChainVerdict(
                ok=False, rows=rows, first_bad_seq=None, reason=f"{where}: {reason}", pruned=pruned, bad_record=where
            )
        return ChainVerdict(ok=False, rows=rows, first_bad_seq=where, reason=f"seq {where}: {reason}", pruned=pruned)

    def _first_problem(self, start: Checkpoint | None) -> tuple[int | str, str] | None:
        """The first bad seq, or the bad record ("head", "checkpoint"), and why."""
        if start is None:
            return "checkpoint", "the store's checkpoint record is malformed (changed)"
        prev, last_seq, verified_blobs = start.chain, start.seq, {}
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
        verified_blobs: dict[str, int],
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
        return self._streams_problem(seq, verdict.report.body.captured, verified_blobs)

    def _chain_problem(self, seq: int, report_id: str, stored_chain: str, document: bytes) -> str:
        """Tell a row moved from elsewhere in the chain from one whose link was broken."""
        if seq != 1 and _chain_hash(_GENESIS, report_id, document) == stored_chain:
            return "its chain starts the store, yet it is not seq 1 (reordered)"
        for other_seq, other_chain in self._db.execute("SELECT seq, chain_hash FROM reports WHERE seq != ?", (seq,)):
            other = _digest_bytes(other_chain)
            if other is not None and _chain_hash(other, report_id, document) == stored_chain:
                return f"its chain follows seq {other_seq}, not seq {seq - 1} (reordered)"
        return f"its chain hash does not follow from seq {seq - 1} (changed, or a row before it deleted)"

    def _streams_problem(self, seq: int, captured: list[CaptureRef], verified_blobs: dict[str, int]) -> str | None:
        """Each stream's content against its digest and sizes, and against the report: the
        ``report_streams`` row is outside the chain, so a stream kept whole must hash to what
        the report sealed (a part kept has no sealed hash to meet)."""
        sealed = {capture.stream: capture for capture in captured}
        rows = self._db.execute(
            "SELECT s.name, s.digest, s.kept, s.total, s.truncated, b.codec, b.data"
            " FROM report_streams AS s LEFT JOIN blobs AS b USING (digest) WHERE s.seq = ? ORDER BY s.name",
            (seq,),
        )
        for name, digest, kept, total, truncated, codec, packed in rows:
            if packed is None:
                return f"its stream {name!r} has no content (deleted)"
            if digest not in verified_blobs:
                data = _unpacked(codec, packed, kept)
                if data is None or blake3.blake3(data).hexdigest() != digest:
                    return f"its stream {name!r} does not match its digest (changed)"
                verified_blobs[digest] = len(data)
            if kept != verified_blobs[digest] or kept > total or bool(truncated) != (total > kept):
                return f"its stream {name!r} sizes disagree with its content (changed)"
            capture = sealed.get(name)
            if capture is not None and (kept > capture.bytes or (kept == capture.bytes and digest != capture.blake3)):
                return f"its stream {name!r} is not what the report sealed (changed)"
        return None

    def _signatures(self, start: Checkpoint | None) -> _Signatures | None:
        """The key and whether its signatures hold for the recorded head and checkpoint (one
        never pruned needs none), None when unsigned."""
        meta = dict(
            self._db.execute(
                "SELECT key, value FROM meta WHERE key IN ('head_key', 'head_signature', 'checkpoint_signature')"
            )
        )
        if "head_key" not in meta and "head_signature" not in meta:
            return None
        key, head = meta.get("head_key"), self._head_record()
        if not isinstance(key, str):
            return _Signatures(key=str(key), head_holds=False, checkpoint_holds=False)

        def holds(signature: object, message: bytes) -> bool:
            return isinstance(signature, str) and store_signature_holds(key, message, signature)

        checkpoint_holds = start is not None and (
            start.seq == 0
            or holds(meta.get("checkpoint_signature"), checkpoint_message(start.seq, start.chain, start.pruned_unix_ns))
        )
        return _Signatures(
            key=key,
            head_holds=head is not None and holds(meta.get("head_signature"), head_message(*head)),
            checkpoint_holds=checkpoint_holds,
        )

    def _head_problem(self, last_seq: int, last_chain: bytes) -> tuple[int | str, str] | None:
        head = self._head_record()
        if head is None:
            return "head", "the store's head record is malformed (changed)"
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


def _signature_problem(signed: _Signatures | None, trusted_key: str | None) -> tuple[str, str] | None:
    """What is wrong with the head's or the checkpoint's signature, once the rows are known
    to run from the checkpoint to the head."""
    if signed is None:
        if trusted_key is None:
            return None
        return "head", f"it is not signed, yet key {trusted_key} is expected (its signature stripped, or never signed)"
    if not signed.head_holds:
        return "head", (
            f"its signature by key {signed.key} does not hold for the recorded head "
            "(rows cut or replaced and the head reset, or an older signature put back)"
        )
    if not signed.checkpoint_holds:
        return "checkpoint", (
            f"its signature by key {signed.key} does not hold for the recorded checkpoint "
            "(moved past rows to hide them, or never signed)"
        )
    if trusted_key is not None and signed.key != trusted_key:
        return "head", f"it is signed by key {signed.key}, not by the trusted key {trusted_key}"
    return None


def _create_private_file(path: Path) -> None:
    """The directory (when created here) is the owner's alone, and so is the file: SQLite
    would create it 0644, and it gives its -wal and -shm files the database file's mode."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as error:
        raise StoreError(f"cannot create evidence store {path}: {error.strerror or error}") from None
