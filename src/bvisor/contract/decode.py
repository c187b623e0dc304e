"""Specs in (JSON or TOML, strict) and reports out and back (flat JSON, strict).

Strict means an unknown field, a wrong type or a missing field is an error naming its
path, and a decoded spec must also pass ``spec_problems``.
"""

import os
from typing import Annotated, TypeAlias

import msgspec

from bvisor.contract.annotate import doc
from bvisor.contract.errors import SpecError
from bvisor.contract.identity import ReportHashField
from bvisor.contract.input_file import InputFileError, read_input_file
from bvisor.contract.report import (
    BoundaryReport,
    BoundaryReportBody,
    ReportSignature,
    verify_report,
)
from bvisor.contract.spec import BoundarySpec
from bvisor.contract.validate import SpecProblem, problem_from_validation, spec_problems

_spec_decoder = msgspec.json.Decoder(BoundarySpec)


def _spec_error(problem: SpecProblem) -> SpecError:
    return SpecError(f"$.{problem.field}" if problem.field else "$", problem.message)


def _checked(spec: BoundarySpec) -> BoundarySpec:
    problems = spec_problems(spec)
    if problems:
        raise _spec_error(problems[0])
    return spec


def decode_spec_json(data: bytes) -> BoundarySpec:
    try:
        spec = _spec_decoder.decode(data)
    except msgspec.ValidationError as error:
        raise _spec_error(problem_from_validation(error)) from None
    except msgspec.DecodeError as error:
        raise SpecError("$", f"invalid JSON: {error}") from None
    return _checked(spec)


def decode_spec_toml(text: str) -> BoundarySpec:
    import tomllib  # only TOML specs pay for it

    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError("$", f"invalid TOML: {error}") from None
    try:
        spec = msgspec.convert(document, BoundarySpec)
    except msgspec.ValidationError as error:
        raise _spec_error(problem_from_validation(error)) from None
    return _checked(spec)


def load_spec(path: str | os.PathLike[str]) -> BoundarySpec:
    """Read a spec file, choosing the format by extension (``.toml`` or ``.json``).

    The one file read in the contract package: a spec path is caller input, and reading it
    here keeps every spec error, unreadable file included, a ``SpecError``. Only a regular
    file of at most ``MAX_INPUT_BYTES`` is read (see ``read_input_file``).
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".toml", ".json"):
        raise SpecError("$", f"cannot tell the format of {path!r}: name it *.toml or *.json")
    try:
        data = read_input_file(path)
    except InputFileError as error:
        raise SpecError("$", str(error)) from None
    if suffix == ".json":
        return decode_spec_json(data)
    try:
        text = data.decode()
    except UnicodeDecodeError as error:
        raise SpecError("$", f"invalid TOML: not UTF-8 ({error.reason} at byte {error.start})") from None
    return decode_spec_toml(text)


class ReportDocument(BoundaryReportBody, kw_only=True):
    """The report's JSON shape: every body field at top level, then ``body_hash``, then
    ``signature`` only when the report is signed."""

    body_hash: Annotated[ReportHashField, doc("The seal: blake3 over the domain tag `bvisor.report.v1`, a NUL and the canonical msgpack bytes of every field above; `bvisor verify` recomputes it.")]
    # UNSET, not None: an unsigned report has no signature key at all (its bytes predate
    # signatures), and an explicit null is not a report.
    signature: Annotated[ReportSignature | msgspec.UnsetType, doc("Present only on a signed report (`bvisor run --sign`).")] = msgspec.UNSET


_report_encoder = msgspec.json.Encoder(order="deterministic")
_report_decoder = msgspec.json.Decoder(ReportDocument)


class ReportDecodeError(ValueError):
    """JSON that is not a strictly well-formed report."""


def encode_report_json(report: BoundaryReport) -> bytes:
    signature = msgspec.UNSET if report.signature is None else report.signature
    document = ReportDocument(**msgspec.structs.asdict(report.body), body_hash=report.body_hash, signature=signature)
    return _report_encoder.encode(document)


def decode_report_json(data: bytes) -> BoundaryReport:
    """Strictly decode a report; the seal is not checked here (see ``verify_report_json``)."""
    try:
        flat = _report_decoder.decode(data)
    except msgspec.DecodeError as error:
        raise ReportDecodeError(str(error)) from None
    fields = msgspec.structs.asdict(flat)
    body_hash = fields.pop("body_hash")
    signature = fields.pop("signature")
    return BoundaryReport(
        body=BoundaryReportBody(**fields),
        body_hash=body_hash,
        signature=None if signature is msgspec.UNSET else signature,
    )


class ReportVerdict:
    """What ``verify_report_json`` concluded about a document."""

    class Valid(msgspec.Struct, frozen=True):
        report: BoundaryReport

    class Tampered(msgspec.Struct, frozen=True):
        """Shaped like a report, but its seal does not hold or its content is malformed."""

        reason: str

    class NotAReport(msgspec.Struct, frozen=True):
        reason: str

    Any: TypeAlias = Valid | Tampered | NotAReport


def verify_report_json(data: bytes) -> ReportVerdict.Any:
    """Recompute the seal of a JSON report.

    A JSON object carrying ``body_hash`` claims to be a report, so once it parses, any
    failure of strict decoding counts as tampering, not as "not a report".
    """
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError as error:
        return ReportVerdict.NotAReport(f"not JSON: {error}")
    if not isinstance(document, dict) or "body_hash" not in document:
        return ReportVerdict.NotAReport("not a JSON object with a body_hash")
    try:
        report = decode_report_json(data)
    except ReportDecodeError as error:
        return ReportVerdict.Tampered(f"malformed report: {error}")
    if not verify_report(report):
        return ReportVerdict.Tampered("body_hash does not match the report body")
    return ReportVerdict.Valid(report)
