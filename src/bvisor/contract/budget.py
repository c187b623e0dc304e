"""Budgets: seven fixed dimensions, each a finite limit.

Three separate authorities meet here: the caller's request (``BudgetRequirements``), the
backend's declared availability (``BudgetProfile``) and the adjudicated contract
(``AdmittedBudget``, produced only by the planner). Units: wall and cpu in µs, resident
memory, storage and network in bytes, process and handle counts in items. A limit of 0 is a
legitimate deny-all; there is no "unlimited".
"""

import enum

import msgspec

from bvisor.contract.enforcement import Enforcement, MinGuarantee
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.identity import CanonicalEnum


class BudgetDimension(CanonicalEnum):
    """Declaration order is the canonical order: admission adjudicates in it."""

    Wall = "wall"
    Cpu = "cpu"
    ResidentMemory = "resident_memory"
    ProcessCount = "process_count"
    HandleCount = "handle_count"
    Storage = "storage"
    Network = "network"


class BudgetFinding(enum.Enum):
    WithinLimit = "within_limit"
    LimitReached = "limit_reached"
    ExceededMediated = "exceeded_mediated"
    ObservationUnavailable = "observation_unavailable"


class _PerDimension(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One field per dimension, named by the dimension's value."""

    def get(self, dimension: BudgetDimension):
        return getattr(self, dimension.value)

    def items(self) -> list:
        """``(dimension, value)`` pairs in canonical order."""
        return [(dimension, getattr(self, dimension.value)) for dimension in BudgetDimension]

    @classmethod
    def filled(cls, value):
        """The same value on every dimension."""
        return cls(**{dimension.value: value for dimension in BudgetDimension})


class BudgetRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A ``Mediated`` request is watched and witnessed, never capped; an ``Enforced`` one
    is a hard cap. ``evidence`` lists the claims the witness must be able to back."""

    limit: int
    guarantee: MinGuarantee
    evidence: frozenset[EvidenceClaim] = frozenset()


class BudgetRequirements(_PerDimension):
    wall: BudgetRequest
    cpu: BudgetRequest
    resident_memory: BudgetRequest
    process_count: BudgetRequest
    handle_count: BudgetRequest
    storage: BudgetRequest
    network: BudgetRequest

    @classmethod
    def uniform(cls, limit: int, guarantee: MinGuarantee) -> "BudgetRequirements":
        return cls.filled(BudgetRequest(limit=limit, guarantee=guarantee))


class BudgetAvailability(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """What a backend can supply on one dimension on this host. ``enforced_up_to``: the
    mechanism caps only limits up to this (an empty network namespace caps at 0 bytes); a
    larger limit can be watched but not enforced. None: every limit up to ``available``."""

    available: int
    enforcement: Enforcement
    evidence: frozenset[EvidenceClaim]
    mechanism: str
    enforced_up_to: int | None = None


class BudgetProfile(_PerDimension):
    wall: BudgetAvailability
    cpu: BudgetAvailability
    resident_memory: BudgetAvailability
    process_count: BudgetAvailability
    handle_count: BudgetAvailability
    storage: BudgetAvailability
    network: BudgetAvailability


class BudgetUsage(_PerDimension):
    """What a run used; ``None`` means not observed (never the same as 0)."""

    wall: int | None = None
    cpu: int | None = None
    resident_memory: int | None = None
    process_count: int | None = None
    handle_count: int | None = None
    storage: int | None = None
    network: int | None = None


class AdmittedBudget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One dimension of the adjudicated contract.

    ``supplied`` is the enforcement this run applies: ``Enforced`` exactly where the caller
    asked for a cap. A ``Mediated`` request is only watched, even on a host able to cap it,
    so the witness never claims a cap that was not installed.
    """

    dimension: BudgetDimension
    limit: int
    required: MinGuarantee
    supplied: Enforcement
    required_evidence: frozenset[EvidenceClaim]
    mechanism: str

    @property
    def capped(self) -> bool:
        return self.required is MinGuarantee.Enforced


class BudgetWitness(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    dimension: BudgetDimension
    limit: int
    required: MinGuarantee
    supplied: Enforcement
    mechanism: str
    observed: int | None
    finding: BudgetFinding


def capped_limit(admitted: list[AdmittedBudget], dimension: BudgetDimension) -> int | None:
    """The admitted limit of ``dimension`` where the caller asked for a cap, else None."""
    budget = next((b for b in admitted if b.dimension is dimension), None)
    return budget.limit if budget is not None and budget.capped else None


def budget_finding(admitted: AdmittedBudget, observed: int | None) -> BudgetFinding:
    """A cap's counter stops at the cap (a memory peak, a pid count), so a capped dimension
    that got there has reached its limit (a zero cap with nothing used has not); a watched
    one has only when it went past."""
    if observed is None:
        return BudgetFinding.ObservationUnavailable
    if admitted.capped:
        reached = observed >= admitted.limit and observed > 0
        return BudgetFinding.LimitReached if reached else BudgetFinding.WithinLimit
    return BudgetFinding.ExceededMediated if observed > admitted.limit else BudgetFinding.WithinLimit


def witness_budgets(admitted: list[AdmittedBudget], usage: BudgetUsage) -> list[BudgetWitness]:
    return [
        BudgetWitness(
            dimension=budget.dimension,
            limit=budget.limit,
            required=budget.required,
            supplied=budget.supplied,
            mechanism=budget.mechanism,
            observed=usage.get(budget.dimension),
            finding=budget_finding(budget, usage.get(budget.dimension)),
        )
        for budget in admitted
    ]
