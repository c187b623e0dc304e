"""Errors as types: admission refusals (``PlanError``) and malformed input (``SpecError``).

A refusal names the requirement (a kind, a budget dimension or a spec field), the reason
and a remediation; nothing has run when one is raised.
"""

import enum

import msgspec

from bvisor.contract.budget import BudgetDimension
from bvisor.contract.evidence import EvidenceClaim, claim_names
from bvisor.contract.spec import RequirementKind, WorkloadKind


class Refusal(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A refusal as data, e.g. for ``{"refused": {...}}`` documents."""

    requirement: str
    reason: str
    remediation: str


class PlanError(Exception):
    def __init__(self, requirement: str, reason: str, remediation: str):
        super().__init__(requirement, reason, remediation)
        self.requirement = requirement
        self.reason = reason
        self.remediation = remediation

    def __str__(self) -> str:
        return f"{self.requirement}: {self.reason}"

    def refusal(self) -> Refusal:
        return Refusal(self.requirement, self.reason, self.remediation)


class UnknownBackend(PlanError):
    def __init__(self, backend: str, known: list[str]):
        self.backend = backend
        listed = ", ".join(known) or "none"
        super().__init__("backend", f"no backend named {backend!r} is registered (registered: {listed})", "register it, or choose a registered backend")


class InvalidPolicy(PlanError):
    """The spec breaks a contract rule; ``field`` is its path, e.g. ``workload.exe``."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(field or "spec", message, "fix this field of the spec")


class WorkloadIncompatible(PlanError):
    def __init__(self, workload: WorkloadKind, backend: str):
        self.workload = workload
        self.backend = backend
        super().__init__("workload", f"backend {backend!r} cannot run a {workload.value} workload", "choose a backend that runs this kind of workload")


class UnsupportedRequirement(PlanError):
    def __init__(self, kind: RequirementKind, backend: str, reason: str, remediation: str):
        self.kind = kind
        self.backend = backend
        super().__init__(kind.value, f"unsupported by backend {backend!r}: {reason}", remediation)


class EvidenceUnsatisfiable(PlanError):
    def __init__(self, missing: frozenset[EvidenceClaim], backend: str):
        self.missing = missing
        self.backend = backend
        super().__init__(
            "evidence",
            f"backend {backend!r} cannot back the claims {claim_names(missing)} for the admitted requirements",
            "drop those claims, or add requirements whose mechanisms supply them",
        )


class BudgetFailure(enum.Enum):
    BelowDerivedMinimum = "below_derived_minimum"
    CapacityExceeded = "capacity_exceeded"
    GuaranteeInsufficient = "guarantee_insufficient"
    EvidenceMissing = "evidence_missing"
    UncappedWritablePlace = "uncapped_writable_place"


class BudgetRefused(PlanError):
    def __init__(self, dimension: BudgetDimension, failure: BudgetFailure, reason: str, remediation: str):
        self.dimension = dimension
        self.failure = failure
        super().__init__(dimension.value, f"{failure.value}: {reason}", remediation)


class SpecError(ValueError):
    """Malformed spec input. ``field_path`` is JSONPath-like (``$.workload.exe``); the
    message is one line so a CLI can print it as is."""

    def __init__(self, field_path: str, message: str):
        super().__init__(field_path, message)
        self.field_path = field_path
        self.message = message

    def __str__(self) -> str:
        return f"spec: {self.field_path}: {self.message}"
