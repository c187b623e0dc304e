"""What happened: a backend's execution record and the sealed report built from it."""

import enum
from typing import Annotated, Literal

import msgspec

from bvisor.contract.annotate import doc
from bvisor.contract.budget import BudgetUsage, BudgetWitness
from bvisor.contract.identity import (
    AdmissionHashField,
    AttemptIdField,
    BackendId,
    PlanIdField,
    ProfileHashField,
    ReportBodyHash,
    ReportHashField,
    domain_digest,
)
from bvisor.contract.plan import AdmittedRequirement
from bvisor.contract.spec import Workload
from bvisor.contract.support import BackendProfileSnapshot

_STRUCT = {"frozen": True, "forbid_unknown_fields": True}


class Outcome(enum.Enum):
    """How a run ended. ``completed``: exit code 0; ``failed``: another exit code, a signal,
    or a cause the caller can fix (exe not found, cwd missing); ``timeout``: killed at its
    wall cap; ``killed``: killed for another budget; ``unsupported``: the host could not
    apply the plan (drift since admission, confinement unavailable), so nothing ran;
    ``supervisor_fault``: bvisor itself failed; ``denied``: reserved, never reported by this
    version."""

    Completed = "completed"
    Failed = "failed"
    Timeout = "timeout"
    Killed = "killed"
    Denied = "denied"
    Unsupported = "unsupported"
    SupervisorFault = "supervisor_fault"


class ExitStatus(msgspec.Struct, omit_defaults=True, **_STRUCT):
    """The workload's real exit: ``{"code": N}`` or ``{"signal": N}``, exactly one."""

    code: Annotated[int | None, doc("The exit code, 0..255.")] = None
    signal: Annotated[int | None, doc("The number of the signal that ended it.")] = None

    def __post_init__(self) -> None:
        if (self.code is None) == (self.signal is None):
            raise ValueError("an exit status is either a code or a signal")


class ObservedFact(msgspec.Struct, **_STRUCT):
    """Something the host observed or the launcher attested, e.g. `namespaces_lowered`,
    `launcher_note`, `budget_enforced`, `stream_captured`."""

    kind: Annotated[str, doc("What the fact is about.")]
    detail: Annotated[str, doc("The fact, one line.")]


class CaptureRef(msgspec.Struct, **_STRUCT):
    """A captured stream by reference: every byte counted and hashed, ``kept`` retained."""

    stream: Annotated[str, doc("`stdout` or `stderr` (with a terminal, stdout holds what the terminal showed).")]
    bytes: Annotated[int, doc("Every byte the stream carried.")]
    kept: Annotated[int, doc("The bytes retained: the first 16 MiB at most.")]
    truncated: Annotated[bool, doc("Whether fewer bytes were kept than carried.")]
    blake3: Annotated[str, doc("blake3-256 of every byte carried (not only the kept ones), lowercase hex.")]


class ExecutionRecord(msgspec.Struct, kw_only=True, **_STRUCT):
    """What a backend's ``execute`` returns, for every controlled ending."""

    outcome: Outcome
    exit: ExitStatus | None
    observed: list[ObservedFact] = []
    usage: BudgetUsage = BudgetUsage()
    captured: list[CaptureRef] = []
    started_unix_ns: int
    finished_unix_ns: int


class BoundaryReportBody(msgspec.Struct, kw_only=True, **_STRUCT):
    """``profile`` is the snapshot re-probed at execution (None when the run ended before
    a probe); ``profile_hash`` and ``admission_hash`` are the plan's."""

    schema_version: Annotated[Literal[1], doc("The report format version.")] = 1
    attempt_id: Annotated[AttemptIdField, doc("This run's identity: 32 random bytes, hex; two runs of one plan are two attempts.")]
    plan_id: Annotated[PlanIdField, doc("The admitted plan's identity.")]
    backend: Annotated[BackendId, doc("The backend that ran it.")]
    profile_hash: Annotated[ProfileHashField, doc("The plan's profile hash.")]
    admission_hash: Annotated[AdmissionHashField, doc("The plan's admission hash.")]
    profile: Annotated[BackendProfileSnapshot | None, doc("The host facts re-probed at execution; null when the run ended before a probe.")]
    workload: Annotated[Workload.Any, doc("What ran.")]
    outcome: Annotated[Outcome, doc("How the run ended.")]
    exit: Annotated[ExitStatus | None, doc("The workload's real exit; null when it never ran or its exit is unknown.")]
    admitted: Annotated[list[AdmittedRequirement], doc("The plan's admitted requirements.")]
    observed: Annotated[list[ObservedFact], doc("What the host observed and the launcher attested, in order.")]
    budget: Annotated[list[BudgetWitness], doc("Every budget dimension: limit, guarantee, mechanism, what was used, and the finding.")]
    captured: Annotated[list[CaptureRef], doc("The captured streams, by reference.")]
    started_unix_ns: Annotated[int, doc("When the run started, ns since the Unix epoch.")]
    finished_unix_ns: Annotated[int, doc("When it finished, ns since the Unix epoch.")]


# The signed message is this tag and the 32 raw bytes of ``body_hash``: the hash already
# binds every body field, and the tag keeps a report signature from standing in for any
# other signature made with the same key.
SIGNATURE_DOMAIN = b"bvisor.report-signature.v1\0"


def signature_message(body_hash: str) -> bytes:
    return SIGNATURE_DOMAIN + bytes.fromhex(body_hash)


class ReportSignature(msgspec.Struct, **_STRUCT):
    """A host's Ed25519 signature over ``signature_message(body_hash)``."""

    alg: Annotated[Literal["ed25519"], doc("The signature algorithm.")]
    public_key: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$", description="raw Ed25519 public key, lowercase hex")]
    value: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{128}$", description="Ed25519 signature, lowercase hex")]


class BoundaryReport(msgspec.Struct, omit_defaults=True, **_STRUCT):
    """A sealed body; ``signature`` is absent on unsigned reports, so signing never
    changes an unsigned report's bytes or its ``body_hash``."""

    body: BoundaryReportBody
    body_hash: ReportHashField
    signature: ReportSignature | None = None


def report_body_hash(body: BoundaryReportBody) -> ReportBodyHash:
    return ReportBodyHash(domain_digest("bvisor.report.v1", body))


def seal(body: BoundaryReportBody) -> BoundaryReport:
    return BoundaryReport(body=body, body_hash=report_body_hash(body))


def verify_report(report: BoundaryReport) -> bool:
    return report_body_hash(report.body) == report.body_hash
