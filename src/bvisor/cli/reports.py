"""The evidence side of ``bvisor``: where runs are kept (``run --store/--no-store/--sign``),
``reports list|show|verify|export|output|prune``, ``key`` and ``verify --key`` (their
arguments are declared with every other in ``bvisor.cli.parser``).

Imported only by the commands that need it, so ``bvisor run --no-store`` never loads SQLite.
"""

import datetime
import os
import sys

from bvisor.cli.common import BadInput, ReportTarget, pass_through, write_out
from bvisor.explain import amount

EXIT_CHAIN_BROKEN = 1
STREAMS = ("stdout", "stderr")
_NS_PER_DAY = 86_400 * 1_000_000_000


def store_path(args) -> str:
    from bvisor.evidence.store import default_store_path

    return args.store if getattr(args, "store", None) else os.fspath(default_store_path())


def key_home(args) -> str:
    """Where the host's signing key lives: beside the store."""
    return os.path.dirname(os.path.abspath(store_path(args)))


def open_store(args):
    """The store a command works on; a store that cannot be opened is the caller's to fix."""
    from bvisor.evidence.store import EvidenceStore, StoreError

    try:
        return EvidenceStore(store_path(args))
    except StoreError as exc:
        raise BadInput(f"--store: {exc} (set BVISOR_HOME or --store PATH, or run with --no-store)") from None


def signing_key(args):
    from bvisor.evidence.signing import HostSigningKey, SigningError

    try:
        return HostSigningKey.load_or_create(key_home(args))
    except SigningError as exc:
        raise BadInput(f"signing key: {exc}") from None


def run_signer(args):
    """Checked before anything runs: the store opens, and the key that will sign the report
    (``--sign``) and the store's head (``--sign``, or a store whose head is signed) is the
    store's own. None when nothing is signed."""
    with open_store(args) as store:
        held = store.head_key()
    if getattr(args, "store", None):  # every later run masks it too, not only those that name it
        from bvisor.evidence.home import remember_store

        remember_store(key_home(args))
    return _store_signer(args, held, args.sign)


def _store_signer(args, held: str | None, sign: bool):
    """The host's key when asked to ``sign`` or when the store is signed already (``held``),
    and then it must be the store's own; None when nothing is signed."""
    if not sign and held is None:
        return None
    key = signing_key(args)
    if held is not None and key.public_key_hex() != held:
        raise BadInput(f"--store: its head is signed by key {held}, not by this host's key {key.public_key_hex()}")
    return key


def stream_cap() -> int:
    from bvisor.evidence.store import DEFAULT_STREAM_CAP

    return DEFAULT_STREAM_CAP


class KeptStreams:
    """What the CLI keeps of a run's streams for the store while passing them through:
    up to the store's cap plus one byte, so the store can tell a truncated stream."""

    def __init__(self, cap: int):
        self.cap = cap
        self.kept = {name: bytearray() for name in STREAMS}

    def sink(self, name: str, fd: int):
        kept = self.kept[name]

        def feed(data: bytes) -> None:
            room = self.cap + 1 - len(kept)
            if room > 0:
                kept.extend(data[:room])
            pass_through(fd, data)

        return feed


def cmd_reports(args) -> int:
    from bvisor.evidence.store import StoreError

    # Reading never makes a store: a mistyped --store is an error, not an empty list.
    path = store_path(args)
    if not os.path.exists(path):
        raise BadInput(f"--store: no evidence store at {path} (`bvisor run` makes it with the first stored run)")
    if getattr(args, "outcome", None) is not None:
        from bvisor.contract import Outcome

        known = [o.value for o in Outcome]
        if args.outcome not in known:
            raise BadInput(f"reports list: --outcome: {args.outcome!r} is not one of {', '.join(known)}")
    with open_store(args) as store:
        try:
            return _REPORT_ACTIONS[args.action](store, args)
        except StoreError as exc:
            raise BadInput(f"reports {args.action}: {exc}") from None


def _since_ns(text: str | None):
    if text is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"reports list: --since: {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1_000_000_000)


def _when(unix_ns: int) -> str:
    return datetime.datetime.fromtimestamp(unix_ns / 1e9, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _list(store, args) -> int:
    import msgspec

    rows = store.list(outcome=args.outcome, since_unix_ns=_since_ns(args.since), exe=args.exe, limit=args.limit)
    if args.json:
        print(msgspec.json.encode(rows).decode())
        return 0
    for row in rows:
        print(f"{row.seq:>6}  {row.report_id[:16]}  {_when(row.started_unix_ns)}  {row.outcome:<16} {row.exe}")
    return 0


def _show(store, args) -> int:
    report_id = store.resolve(args.id)
    if args.json:
        write_out(1, store.export_json(report_id) + b"\n")
        return 0
    report = store.get(report_id)
    body = report.body
    exit_text = "none" if body.exit is None else (f"code {body.exit.code}" if body.exit.code is not None else f"signal {body.exit.signal}")
    lines = [
        f"report    {report_id}",
        f"outcome   {body.outcome.value} (exit {exit_text})",
        f"workload  {getattr(body.workload, 'exe', '?')} {' '.join(getattr(body.workload, 'args', []))}",
        f"plan      {body.plan_id}",
        f"started   {_when(body.started_unix_ns)}",
        f"signed    {'ed25519 ' + report.signature.public_key if report.signature else 'no'}",
    ]
    lines += [f"admitted  {item.kind.value:<30} {item.enforcement.value:<9} {item.mechanism}" for item in body.admitted]
    lines += [
        f"budget    {w.dimension.value:<16} limit {amount(w.dimension.value, w.limit)} {w.supplied.value}, observed {amount(w.dimension.value, w.observed)}: {w.finding.value}"
        for w in body.budget
    ]
    lines += _stream_lines(body.captured, store.streams(report_id))
    print("\n".join(lines))
    return 0


def _stream_lines(captured, stored) -> list:
    """Each stream as the sealed report counts and hashes it (every byte the workload wrote)
    beside what the store kept of it; the kept bytes' own hash is shown when it is not the
    sealed one (a part was kept)."""
    kept = {ref.name: ref for ref in stored}
    lines = []
    for capture in captured:
        ref = kept.pop(capture.stream, None)
        count = 0 if ref is None else ref.kept
        note = " (not stored)" if ref is None else " (truncated)" if count < capture.bytes else ""
        lines.append(f"stream    {capture.stream}: kept {count} of {capture.bytes} bytes{note}")
        lines.append(f"          blake3 of all {capture.bytes} bytes (sealed in the report): {capture.blake3}")
        if ref is not None and ref.digest != capture.blake3:
            what = "the store's content address" if count < capture.bytes else "NOT the sealed hash: changed, see reports verify"
            lines.append(f"          blake3 of the {count} kept bytes ({what}): {ref.digest}")
    for ref in kept.values():  # a stream stored beside a report that sealed none by that name
        lines.append(f"stream    {ref.name}: kept {ref.kept} bytes, not counted in the report")
        lines.append(f"          blake3 of the {ref.kept} kept bytes (the store's content address): {ref.digest}")
    return lines


def _verify_chain(store, args) -> int:
    verdict = store.verify_chain(_trusted_key(store, args))
    pruned = f" ({verdict.pruned} pruned before them)" if verdict.pruned else ""
    if verdict.ok and verdict.signed_by is not None:
        signed = "head and checkpoint" if verdict.pruned else "head"
        print(f"chain intact: {verdict.rows} reports{pruned}, {signed} signed by ed25519 {verdict.signed_by}")
        return 0
    if verdict.ok:
        print(f"chain intact: {verdict.rows} reports{pruned}")
        cut = "from the end together with the head" + (", or from the start together with the checkpoint," if verdict.pruned else "")
        print(f"unsigned store: rows cut {cut} cannot be detected (run --sign signs the head from then on)")
        return 0
    where = f"the {verdict.bad_record}" if verdict.first_bad_seq is None else f"row {verdict.first_bad_seq}"
    print(f"CHAIN BROKEN at {where}: {verdict.reason}")
    return EXIT_CHAIN_BROKEN


def _trusted_key(store, args) -> str | None:
    """The key the head must be signed by: ``--key``, else this host's key when the store is
    signed (the key recorded in the file is the tamperer's to choose), else none."""
    from bvisor.evidence.signing import HostSigningKey, SigningError, public_key_hex

    try:
        if args.key:
            with open(args.key, "rb") as f:
                return public_key_hex(f.read())
        if store.head_key() is None:
            return None
        return HostSigningKey.load(key_home(args)).public_key_hex()
    except FileNotFoundError:
        if args.key:
            raise BadInput(f"--key: {args.key}: no such file") from None
        raise BadInput(f"reports verify: the store's head is signed, but there is no host key in {key_home(args)}: pass --key PEM") from None
    except OSError as exc:
        raise BadInput(f"--key: {args.key}: {exc.strerror}") from None
    except SigningError as exc:
        raise BadInput(f"--key: {exc}" if args.key else f"signing key: {exc}") from None


def _export(store, args) -> int:
    data = store.export_json(store.resolve(args.id))
    if args.output:
        ReportTarget(args.output).write(data)
    else:
        write_out(1, data + b"\n")
    return 0


def _output(store, args) -> int:
    write_out(1, store.stream(store.resolve(args.id), args.stream))
    return 0


def _prune(store, args) -> int:
    import time

    signer = _store_signer(args, store.head_key(), sign=False)
    if args.keep is not None:
        result = store.prune(keep=args.keep, signer=signer)
    else:
        # Never before the epoch: SQLite's integers end at -2**63 and no run is stored earlier.
        cutoff = max(0, time.time_ns() - args.older_than * _NS_PER_DAY)
        result = store.prune(stored_before_unix_ns=cutoff, signer=signer)
    print(f"pruned {result.pruned} reports, kept {result.kept}, freed {result.bytes_freed} bytes")
    return 0


_REPORT_ACTIONS = {
    "list": _list,
    "show": _show,
    "verify": _verify_chain,
    "export": _export,
    "output": _output,
    "prune": _prune,
}


def cmd_key(args) -> int:
    key = signing_key(args)
    write_out(1, key.public_key_pem())
    sys.stderr.write(f"bvisor: signing key ed25519 {key.public_key_hex()} ({key_home(args)})\n")
    return 0


def signature_verdict(report, key_path: str):
    """The signature check of ``verify --key``: (ok, one line)."""
    from bvisor.contract import InputFileError, read_input_file
    from bvisor.evidence.signing import SignatureVerdict, SigningError, verify_signed

    try:
        verdict = verify_signed(report, read_input_file(key_path))
    except InputFileError as exc:
        raise BadInput(f"--key: {exc}") from None
    except SigningError as exc:
        raise BadInput(f"--key: {exc}") from None
    return isinstance(verdict, SignatureVerdict.Valid), verdict.reason


def pin_home(args) -> tuple:
    """The identity of the directory the store and key are kept in, before the run."""
    st = os.stat(key_home(args))
    return st.st_dev, st.st_ino


def store_run(args, report, kept: KeptStreams, signer, pinned: tuple) -> str | None:
    """Keep the run (its head signed by ``signer`` when there is one); returns the stored id,
    or None after saying why not. Nothing is kept where the store's directory is no longer
    the one ``pin_home`` saw: a run that holds the caller's rights (rootless, no Filesystem
    requirement) may have moved it and left its own in its place."""
    from bvisor.evidence.store import StoreError

    if pin_home(args) != pinned:
        sys.stderr.write(
            f"bvisor: cannot store the report: {key_home(args)} is no longer the directory it was before the run "
            "(the run could change it: it held your rights over your files); find the real store and key, and move them back\n"
        )
        return None
    try:
        with open_store(args) as store:
            streams = {name: bytes(data) for name, data in kept.kept.items()}
            return store.append(report, streams, kept.cap, signer).report_id
    except (StoreError, BadInput) as exc:
        sys.stderr.write(f"bvisor: cannot store the report: {exc}\n")
        return None

