"""What happened: a backend's execution record and the sealed report built from it."""

import enum
from typing import Annotated, Literal

import msgspec

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
    Completed = "completed"
    Failed = "failed"
    Timeout = "timeout"
    Killed = "killed"
    Denied = "denied"
    Unsupported = "unsupported"
    SupervisorFault = "supervisor_fault"


class ExitStatus(msgspec.Struct, omit_defaults=True, **_STRUCT):
    """The workload's real exit: ``{"code": N}`` or ``{"signal": N}``, exactly one."""

    code: int | None = None
    signal: int | None = None

    def __post_init__(self):
        if (self.code is None) == (self.signal is None):
            raise ValueError("an exit status is either a code or a signal")


class ObservedFact(msgspec.Struct, **_STRUCT):
    kind: str
    detail: str


class CaptureRef(msgspec.Struct, **_STRUCT):
    """A captured stream by reference: every byte counted and hashed, ``kept`` retained."""

    stream: str
    bytes: int
    kept: int
    truncated: bool
    blake3: str


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

    schema_version: Literal[1] = 1
    attempt_id: AttemptIdField
    plan_id: PlanIdField
    backend: BackendId
    profile_hash: ProfileHashField
    admission_hash: AdmissionHashField
    profile: BackendProfileSnapshot | None
    workload: Workload.Any
    outcome: Outcome
    exit: ExitStatus | None
    admitted: list[AdmittedRequirement]
    observed: list[ObservedFact]
    budget: list[BudgetWitness]
    captured: list[CaptureRef]
    started_unix_ns: int
    finished_unix_ns: int


# The signed message is this tag and the 32 raw bytes of ``body_hash``: the hash already
# binds every body field, and the tag keeps a report signature from standing in for any
# other signature made with the same key.
SIGNATURE_DOMAIN = b"bvisor.report-signature.v1\0"


def signature_message(body_hash: str) -> bytes:
    return SIGNATURE_DOMAIN + bytes.fromhex(body_hash)


class ReportSignature(msgspec.Struct, **_STRUCT):
    """A host's Ed25519 signature over ``signature_message(body_hash)``."""

    alg: Literal["ed25519"]
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
