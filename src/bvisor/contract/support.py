"""What a backend can do: the family's best case, this host's probed facts, and the
typed per-kind ceiling derived from them.

The three layers stay separate so that a raw probe string never becomes a security
decision: admission reads only the typed ceiling, while the snapshot travels in the plan
and the report for audit and drift detection.
"""

import itertools
from collections.abc import Mapping
from typing import Annotated, Protocol, TypeVar

import msgspec

from bvisor.contract.annotate import doc
from bvisor.contract.budget import BudgetAvailability, BudgetProfile
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.identity import (
    AdmissionProgramHash,
    BackendId,
    BackendProfileHash,
    domain_digest,
)
from bvisor.contract.spec import RequirementKind, WorkloadKind

_STRUCT = {"frozen": True, "forbid_unknown_fields": True}


class SupportVerdict(msgspec.Struct, **_STRUCT):
    enforcement: Enforcement
    evidence: frozenset[EvidenceClaim] = frozenset()

    def meet(self, other: "SupportVerdict") -> "SupportVerdict":
        """Both must hold: the weaker enforcement, and only evidence both can back."""
        return SupportVerdict(self.enforcement.meet(other.enforcement), self.evidence & other.evidence)


UNSUPPORTED = SupportVerdict(Enforcement.Unsupported)


class _HasKind(Protocol):
    """A support or ceiling cell, as ``_by_kind`` sees it."""

    @property
    def kind(self) -> RequirementKind: ...


_Cell = TypeVar("_Cell", bound=_HasKind)


def _by_kind(cells: list[_Cell], table: str) -> list[_Cell]:
    """Cells sorted by kind, one per kind, so equal tables encode (and hash) equally."""
    ordered = sorted(cells, key=lambda cell: cell.kind)
    for before, after in itertools.pairwise(ordered):
        if before.kind is after.kind:
            raise ValueError(f"{table}: two cells for {after.kind.value}")
    return ordered


class SupportCell(msgspec.Struct, **_STRUCT):
    kind: RequirementKind
    verdict: SupportVerdict


class SupportMatrix(msgspec.Struct, **_STRUCT):
    """A backend family's best case per kind, whatever the host; an absent kind is
    unsupported. ``workloads`` are the workload kinds the family can run at all."""

    cells: list[SupportCell] = []
    workloads: frozenset[WorkloadKind] = frozenset({WorkloadKind.Process})

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "cells", _by_kind(self.cells, "support matrix"))

    @classmethod
    def of(cls, verdicts: Mapping[RequirementKind, SupportVerdict], **fields: frozenset[WorkloadKind]) -> "SupportMatrix":
        return cls(cells=[SupportCell(kind, verdict) for kind, verdict in verdicts.items()], **fields)

    def best_case(self, kind: RequirementKind) -> SupportVerdict:
        return next((cell.verdict for cell in self.cells if cell.kind is kind), UNSUPPORTED)


class CeilingCell(msgspec.Struct, kw_only=True, **_STRUCT):
    """What this host gives one kind. ``reason`` explains every cell short of Enforced
    (e.g. "unprivileged user namespaces disabled (user.max_user_namespaces=0)") and
    ``remediation`` says what would lift it."""

    kind: RequirementKind
    verdict: SupportVerdict
    mechanism: str
    reason: str = ""
    remediation: str = ""

    def __post_init__(self) -> None:
        if self.verdict.enforcement is not Enforcement.Enforced and not self.reason:
            raise ValueError(f"ceiling cell {self.kind.value}: a {self.verdict.enforcement.value} cell needs a reason")


def _not_implemented(kind: RequirementKind) -> CeilingCell:
    return CeilingCell(
        kind=kind,
        verdict=UNSUPPORTED,
        mechanism="none",
        reason="not implemented by this backend",
        remediation="use a backend that implements it",
    )


class BackendProfile(msgspec.Struct, **_STRUCT):
    """The typed machine ceiling, derived deterministically from a snapshot."""

    backend: BackendId
    cells: list[CeilingCell]

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "cells", _by_kind(self.cells, "backend profile"))

    def ceiling(self, kind: RequirementKind) -> CeilingCell:
        return next((cell for cell in self.cells if cell.kind is kind), None) or _not_implemented(kind)

    def enforced_kinds(self) -> list[RequirementKind]:
        return [cell.kind for cell in self.cells if cell.verdict.enforcement is Enforcement.Enforced]


class ProbeFact(msgspec.Struct, **_STRUCT):
    """One host fact the probe proved, e.g. `launcher.userns_netns` = `ok`."""

    name: Annotated[str, doc("The fact's name.")]
    value: Annotated[str, doc("What the probe found.")]


class BackendProfileSnapshot(msgspec.Struct, **_STRUCT):
    """Every probed host fact, sorted by name, plus the budget profile. It is bound into
    ``plan_id``; execution re-probes and refuses if it has drifted."""

    backend: Annotated[BackendId, doc("The backend probed.")]
    facts: Annotated[list[ProbeFact], doc("Every probed fact, sorted by name.")]
    budget: Annotated[BudgetProfile, doc("What this host can supply on each budget dimension.")]

    def __post_init__(self) -> None:
        ordered = sorted(self.facts, key=lambda fact: fact.name)
        for before, after in itertools.pairwise(ordered):
            if before.name == after.name:
                raise ValueError(f"profile snapshot: fact {after.name!r} appears twice")
        msgspec.structs.force_setattr(self, "facts", ordered)

    @classmethod
    def of(cls, backend: BackendId, facts: Mapping[str, str], budget: BudgetProfile) -> "BackendProfileSnapshot":
        return cls(backend=backend, facts=[ProbeFact(name, value) for name, value in facts.items()], budget=budget)

    def fact(self, name: str) -> str | None:
        return next((fact.value for fact in self.facts if fact.name == name), None)


def profile_hash(snapshot: BackendProfileSnapshot) -> BackendProfileHash:
    return BackendProfileHash(domain_digest("bvisor.profile.v1", snapshot))


def admission_hash(
    rules_version: int, support: SupportMatrix, ceiling: BackendProfile, budget: BudgetProfile
) -> AdmissionProgramHash:
    """Identifies the exact rules and tables that admitted a plan: the same spec admitted
    under a different ceiling or rule set is a different admission."""
    return AdmissionProgramHash(domain_digest("bvisor.admission.v1", (rules_version, support, ceiling, budget)))


def snapshot_drift(planned: BackendProfileSnapshot, probed: BackendProfileSnapshot) -> list[str]:
    """What changed between two snapshots, one line per difference, in a stable order."""
    changes = []
    if planned.backend != probed.backend:
        changes.append(f"backend: {planned.backend!r} -> {probed.backend!r}")
    before = {fact.name: fact.value for fact in planned.facts}
    after = {fact.name: fact.value for fact in probed.facts}
    for name in sorted(before.keys() | after.keys()):
        if before.get(name) != after.get(name):
            changes.append(f"{name}: {_shown(before.get(name))} -> {_shown(after.get(name))}")
    for (dimension, was), (_, now) in zip(planned.budget.items(), probed.budget.items(), strict=True):
        if was != now:
            changes.append(f"budget.{dimension.value}: {_availability(was)} -> {_availability(now)}")
    return changes


def _shown(value: str | None) -> str:
    return "absent" if value is None else repr(value)


def _availability(availability: BudgetAvailability) -> str:
    return f"{availability.enforcement.value} {availability.available} via {availability.mechanism}"
