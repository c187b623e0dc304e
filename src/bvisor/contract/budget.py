"""Budgets: seven fixed dimensions, each a finite limit.

Three separate authorities meet here: the caller's request (``BudgetRequirements``), the
backend's declared availability (``BudgetProfile``) and the adjudicated contract
(``AdmittedBudget``, produced only by the planner). Units: wall and cpu in µs, resident
memory, storage and network in bytes, process and handle counts in items. A limit of 0 is a
legitimate deny-all; there is no "unlimited".
"""

import enum
from typing import Annotated, Generic, Self, TypeVar

import msgspec

from bvisor.contract.annotate import doc
from bvisor.contract.enforcement import Enforcement, MinGuarantee
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.identity import CanonicalEnum


class BudgetDimension(CanonicalEnum):
    """The seven budget dimensions. Declaration order is the canonical order: admission
    adjudicates in it."""

    Wall = "wall"
    Cpu = "cpu"
    ResidentMemory = "resident_memory"
    ProcessCount = "process_count"
    HandleCount = "handle_count"
    Storage = "storage"
    Network = "network"


_MAX_MICROS = 365 * 24 * 3600 * 1_000_000
_MAX_BYTES = 2**50
_MAX_COUNT = 2**22
# No limit is "unlimited", but some are absurd enough to be typos: contract/validate.py
# refuses them as input. (ceiling, its unit)
LIMIT_CEILING = {
    BudgetDimension.Wall: (_MAX_MICROS, "µs (365 days)"),
    BudgetDimension.Cpu: (_MAX_MICROS, "µs (365 days)"),
    BudgetDimension.ResidentMemory: (_MAX_BYTES, "bytes (1 PiB)"),
    BudgetDimension.ProcessCount: (_MAX_COUNT, "processes"),
    BudgetDimension.HandleCount: (_MAX_COUNT, "handles"),
    BudgetDimension.Storage: (_MAX_BYTES, "bytes (1 PiB)"),
    BudgetDimension.Network: (_MAX_BYTES, "bytes (1 PiB)"),
}

# What each dimension measures, in which unit, and what a cap on it does on Linux.
DIMENSION_MEANING = {
    BudgetDimension.Wall: "Wall-clock time of the run, in µs. A cap kills the whole run tree at the deadline (outcome `timeout`).",
    BudgetDimension.Cpu: "CPU time of the whole run tree, user and system, in µs. A cap kills the tree once its cgroup's usage reaches the limit (outcome `killed`).",
    BudgetDimension.ResidentMemory: "Peak memory of the whole run tree (its cgroup's, the init included), in bytes. A cap is the cgroup's memory limit: the kernel's OOM killer ends the run (outcome `killed`).",
    BudgetDimension.ProcessCount: "Processes and threads of the run tree at once (the init bvisor adds not counted), a count. A cap is the cgroup's pids.max: a fork beyond it fails with EAGAIN.",
    BudgetDimension.HandleCount: "Open file descriptors per process, a count. A cap is each process's RLIMIT_NOFILE (not tree-wide); not observed.",
    BudgetDimension.Storage: "Bytes stored in the run's private temp root (observed only where it is the one place the run can write). A cap is the temp root's size (and one inode per 4 KiB, at least 64), admitted only where the temp root is the only place the run can write.",
    BudgetDimension.Network: "Bytes received and sent on the run's network interfaces but loopback, observed only in the run's own network namespace (`deny_all`). Enforced only at 0, by that empty namespace.",
}


def _requested(dimension: BudgetDimension) -> msgspec.Meta:
    ceiling, unit = LIMIT_CEILING[dimension]
    return doc(
        f"{DIMENSION_MEANING[dimension]} Limit 0..{ceiling} {unit}.",
        properties={"limit": {"minimum": 0, "maximum": ceiling}},
    )


def _available(dimension: BudgetDimension) -> msgspec.Meta:
    return doc(f"What this host can supply on {dimension.value}.")


class BudgetFinding(enum.Enum):
    """How a run's usage compares with a limit. ``within_limit``; ``limit_reached``: a cap
    was reached (the cap's counter stops there); ``exceeded_mediated``: a watched limit was
    exceeded (never capped); ``observation_unavailable``: not observed on this host."""

    WithinLimit = "within_limit"
    LimitReached = "limit_reached"
    ExceededMediated = "exceeded_mediated"
    ObservationUnavailable = "observation_unavailable"


# The one type of a _PerDimension's seven fields.
_DimensionValue = TypeVar("_DimensionValue")


class _PerDimension(msgspec.Struct, Generic[_DimensionValue], frozen=True, forbid_unknown_fields=True):
    """One field per dimension, named by the dimension's value, each of one type."""

    def get(self, dimension: BudgetDimension) -> _DimensionValue:
        value: _DimensionValue = getattr(self, dimension.value)
        return value

    def items(self) -> list[tuple[BudgetDimension, _DimensionValue]]:
        """``(dimension, value)`` pairs in canonical order."""
        return [(dimension, self.get(dimension)) for dimension in BudgetDimension]

    @classmethod
    def filled(cls, value: _DimensionValue) -> Self:
        """The same value on every dimension."""
        return cls(**{dimension.value: value for dimension in BudgetDimension})


class BudgetRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A ``Mediated`` request is watched and witnessed, never capped; an ``Enforced`` one
    is a hard cap. ``evidence`` lists the claims the witness must be able to back."""

    limit: Annotated[int, doc("The limit, in the dimension's unit; 0 is a legitimate deny-all, there is no \"unlimited\". Each dimension's upper bound is on its field.", minimum=0)]
    guarantee: Annotated[MinGuarantee, doc("`enforced`: a hard cap, refused at plan where this host cannot install it; `mediated`: watched and reported, never capped.")]
    evidence: Annotated[frozenset[EvidenceClaim], doc("Claims this dimension's witness must back: only `resource_usage` can be, and only where the host observes the dimension (never handle_count).")] = frozenset()


class BudgetRequirements(_PerDimension[BudgetRequest], frozen=True):
    """The caller's budget: all seven dimensions, each required."""

    wall: Annotated[BudgetRequest, _requested(BudgetDimension.Wall)]
    cpu: Annotated[BudgetRequest, _requested(BudgetDimension.Cpu)]
    resident_memory: Annotated[BudgetRequest, _requested(BudgetDimension.ResidentMemory)]
    process_count: Annotated[BudgetRequest, _requested(BudgetDimension.ProcessCount)]
    handle_count: Annotated[BudgetRequest, _requested(BudgetDimension.HandleCount)]
    storage: Annotated[BudgetRequest, _requested(BudgetDimension.Storage)]
    network: Annotated[BudgetRequest, _requested(BudgetDimension.Network)]

    @classmethod
    def uniform(cls, limit: int, guarantee: MinGuarantee) -> "BudgetRequirements":
        return cls.filled(BudgetRequest(limit=limit, guarantee=guarantee))


class BudgetAvailability(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """What a backend can supply on one dimension on this host. ``enforced_up_to``: the
    mechanism caps only limits up to this (an empty network namespace caps at 0 bytes); a
    larger limit can be watched but not enforced. None: every limit up to ``available``."""

    available: Annotated[int, doc("The largest limit this host admits, in the dimension's unit.")]
    enforcement: Annotated[Enforcement, doc("The strongest guarantee this host gives on the dimension.")]
    evidence: Annotated[frozenset[EvidenceClaim], doc("The claims its witness can back.")]
    mechanism: Annotated[str, doc("How the dimension is capped or watched here, e.g. `cgroup_v2_pids.max(...)`.")]
    enforced_up_to: Annotated[int | None, doc("Caps hold only up to this limit (a larger one can be watched, not enforced); absent: every limit up to `available`.")] = None


class BudgetProfile(_PerDimension[BudgetAvailability], frozen=True):
    """What this host can supply on each budget dimension."""

    wall: Annotated[BudgetAvailability, _available(BudgetDimension.Wall)]
    cpu: Annotated[BudgetAvailability, _available(BudgetDimension.Cpu)]
    resident_memory: Annotated[BudgetAvailability, _available(BudgetDimension.ResidentMemory)]
    process_count: Annotated[BudgetAvailability, _available(BudgetDimension.ProcessCount)]
    handle_count: Annotated[BudgetAvailability, _available(BudgetDimension.HandleCount)]
    storage: Annotated[BudgetAvailability, _available(BudgetDimension.Storage)]
    network: Annotated[BudgetAvailability, _available(BudgetDimension.Network)]


class BudgetUsage(_PerDimension[int | None], frozen=True):
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

    dimension: Annotated[BudgetDimension, doc("The dimension.")]
    limit: Annotated[int, doc("The admitted limit, in the dimension's unit.")]
    required: Annotated[MinGuarantee, doc("The guarantee the caller asked.")]
    supplied: Annotated[Enforcement, doc("The guarantee this run applies: `enforced` exactly where a cap was asked.")]
    required_evidence: Annotated[frozenset[EvidenceClaim], doc("The claims the caller asked the witness to back.")]
    mechanism: Annotated[str, doc("How the host caps or watches the dimension.")]

    @property
    def capped(self) -> bool:
        return self.required is MinGuarantee.Enforced


class BudgetWitness(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One budget dimension as the run used it."""

    dimension: Annotated[BudgetDimension, doc("The dimension.")]
    limit: Annotated[int, doc("The admitted limit, in the dimension's unit.")]
    required: Annotated[MinGuarantee, doc("The guarantee the caller asked.")]
    supplied: Annotated[Enforcement, doc("The guarantee the run applied: `enforced` is a cap, `mediated` only watched.")]
    mechanism: Annotated[str, doc("How the host capped or watched it.")]
    observed: Annotated[int | None, doc("What the run used, in the dimension's unit (a peak for memory and processes); null: not observed, never the same as 0.")]
    finding: Annotated[BudgetFinding, doc("How `observed` compares with `limit`.")]


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
