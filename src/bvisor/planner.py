"""Admission: admit a spec only if this host enforces every requirement at the level asked.

Membranes run in a fixed order and the first failure is the refusal: contract gate →
workload → support → evidence → budgets (derived minimums for every dimension first, then
capacity → guarantee → evidence per dimension, in canonical order). Nothing runs on a
refusal; every refusal is a ``PlanError``.
"""

import msgspec

from bvisor.backend import Backend, BackendRegistry
from bvisor.contract import (
    AdmittedBudget,
    AdmittedRequirement,
    BackendId,
    BackendProfile,
    BoundaryPlan,
    BoundaryPlanHash,
    BoundarySpec,
    BudgetAvailability,
    BudgetDimension,
    BudgetFailure,
    BudgetProfile,
    BudgetRefused,
    BudgetRequest,
    Capability,
    Enforcement,
    EvidenceRequirements,
    EvidenceUnsatisfiable,
    FdPolicy,
    HostControl,
    InvalidPolicy,
    MinGuarantee,
    NetPolicy,
    Requirement,
    SpawnPolicy,
    SupportMatrix,
    SupportVerdict,
    UnsupportedRequirement,
    WorkloadIncompatible,
    admission_hash,
    compute_plan_id,
    profile_hash,
    requirement_kind,
    spec_problems,
    workload_kind,
)
from bvisor.contract.evidence import claim_names
from bvisor.contract.storage import has_temp_root, uncapped_writable_places

# Bound into every plan's admission hash: change it whenever these rules change meaning.
ADMISSION_RULES_VERSION = 2

_LAUNCH_NEEDS_ONE = (BudgetDimension.Wall, BudgetDimension.Cpu, BudgetDimension.ResidentMemory, BudgetDimension.ProcessCount)

_MINIMUM_BASIS = {
    BudgetDimension.Wall: "launching the workload takes time",
    BudgetDimension.Cpu: "launching the workload takes CPU time",
    BudgetDimension.ResidentMemory: "a launched workload occupies memory",
    BudgetDimension.ProcessCount: "the workload counts itself, and allowing descendants needs 2",
    BudgetDimension.HandleCount: "3 standard streams, plus one per captured stream and per inherited fd",
    BudgetDimension.Storage: "a temp root, committed artifact or writable exposed path needs storage",
    BudgetDimension.Network: "an allow-list needs to transfer at least 1 byte",
}


def derive_minimums(spec: BoundarySpec) -> dict[BudgetDimension, int]:
    """The structural floor each dimension's limit must reach for the spec to make sense
    (refused below it, never clamped up). Not a sizing estimate."""
    floor = dict.fromkeys(BudgetDimension, 0)
    extra_handles = 0

    def at_least(dimension: BudgetDimension, value: int) -> None:
        floor[dimension] = max(floor[dimension], value)

    for requirement in spec.requirements():
        match requirement:
            case HostControl.LaunchWorkload():
                for dimension in _LAUNCH_NEEDS_ONE:
                    at_least(dimension, 1)
                at_least(BudgetDimension.HandleCount, 3)
            case HostControl.CaptureStreams(streams=streams):
                extra_handles += streams.count()
            case HostControl.TempRoot() | HostControl.CommitArtifact():
                at_least(BudgetDimension.Storage, 1)
            case HostControl.ExposePath(access=access) if access.writes:
                at_least(BudgetDimension.Storage, 1)
            case Capability.ChildSpawn(policy=SpawnPolicy.AllowDescendantsWithinBoundary()):
                at_least(BudgetDimension.ProcessCount, 2)
            case Capability.InheritedFds(policy=FdPolicy.Only(fds=fds)):
                extra_handles += len(fds)
            case Capability.Network(policy=NetPolicy.AllowList()):
                at_least(BudgetDimension.Network, 1)
    # Captured streams and inherited fds add to the launch's standard streams.
    floor[BudgetDimension.HandleCount] += extra_handles
    return floor


def admit_budgets(spec: BoundarySpec, profile: BudgetProfile) -> list[AdmittedBudget]:
    """The budget membrane: every dimension's derived minimum first, then each dimension
    in canonical order; the first failure is raised as ``BudgetRefused``."""
    floor = derive_minimums(spec)
    for dimension, request in spec.budgets.items():
        if request.limit < floor[dimension]:
            raise BudgetRefused(
                dimension,
                BudgetFailure.BelowDerivedMinimum,
                f"limit {request.limit} is below the minimum {floor[dimension]} this spec needs ({_MINIMUM_BASIS[dimension]})",
                f"raise budgets.{dimension.value}.limit to at least {floor[dimension]}",
            )
    return [_admit_dimension(spec, dimension, request, profile.get(dimension)) for dimension, request in spec.budgets.items()]


def storage_cap_problem(spec: BoundarySpec) -> tuple[str, str] | None:
    """Why an Enforced storage cap would not hold for ``spec``, and the remedy; None when it
    would. The cap is the temp root's size, so it holds only where the temp root is the
    only writable place in the view."""
    temp_root, uncapped = has_temp_root(spec), uncapped_writable_places(spec)
    if temp_root and not uncapped:
        return None
    reasons = [] if temp_root else ["an Enforced storage cap is the temp root's size, and this spec has no temp root"]
    if uncapped:
        reasons.append(f"the workload could write uncapped to {'; '.join(place for place, _ in uncapped)}")
    remedies = ([] if temp_root else ["add a TempRoot control (--tmp)"]) + [remedy for _, remedy in uncapped]
    return "; ".join(reasons), f"make the temp root the only writable place: {', '.join(remedies)}; or ask Mediated on budgets.storage"


# The `bvisor run` flag that asks each dimension Enforced (the CLI parses by it), and the
# dimensions a delegated cgroup can cap for an unprivileged caller.
BUDGET_FLAGS = {
    BudgetDimension.Wall: "--timeout",
    BudgetDimension.Cpu: "--cpu",
    BudgetDimension.ResidentMemory: "--memory",
    BudgetDimension.ProcessCount: "--pids",
    BudgetDimension.HandleCount: "--fds",
    BudgetDimension.Storage: "--storage",
    BudgetDimension.Network: "--net none",
}
_CGROUP_CAPPED = (BudgetDimension.Cpu, BudgetDimension.ResidentMemory, BudgetDimension.ProcessCount)


def _weaker_guarantee_remedy(dimension: BudgetDimension) -> str:
    where = (
        "; or give bvisor a cgroup delegated to your user (e.g. `systemd-run --user --scope -p Delegate=yes "
        "bvisor run ...`; `bvisor probe` shows whether the cap is then enforced)"
        if dimension in _CGROUP_CAPPED
        else ", or use a host that can enforce it"
    )
    return f"drop {BUDGET_FLAGS[dimension]} (in a spec: ask mediated on budgets.{dimension.value}){where}"


def _admit_dimension(spec: BoundarySpec, dimension: BudgetDimension, request: BudgetRequest, availability: BudgetAvailability) -> AdmittedBudget:
    if request.limit > availability.available:
        raise BudgetRefused(
            dimension,
            BudgetFailure.CapacityExceeded,
            f"limit {request.limit} exceeds the {availability.available} this host can supply ({availability.mechanism})",
            f"lower budgets.{dimension.value}.limit to at most {availability.available}",
        )
    if not availability.enforcement.satisfies(request.guarantee):
        raise BudgetRefused(
            dimension,
            BudgetFailure.GuaranteeInsufficient,
            f"{request.guarantee.value} was asked but this host supplies {availability.enforcement.value} ({availability.mechanism})",
            _weaker_guarantee_remedy(dimension),
        )
    ceiling = availability.enforced_up_to
    if request.guarantee is MinGuarantee.Enforced and ceiling is not None and request.limit > ceiling:
        raise BudgetRefused(
            dimension,
            BudgetFailure.GuaranteeInsufficient,
            f"Enforced was asked for {request.limit} but this host can enforce at most {ceiling} ({availability.mechanism})",
            f"lower budgets.{dimension.value}.limit to {ceiling}, or ask Mediated",
        )
    uncovered = storage_cap_problem(spec) if dimension is BudgetDimension.Storage and request.guarantee is MinGuarantee.Enforced else None
    if uncovered is not None:
        raise BudgetRefused(dimension, BudgetFailure.UncappedWritablePlace, *uncovered)
    missing = request.evidence - availability.evidence
    if missing:
        raise BudgetRefused(
            dimension,
            BudgetFailure.EvidenceMissing,
            f"this host cannot back {claim_names(missing)} ({availability.mechanism})",
            f"drop those claims from budgets.{dimension.value}.evidence",
        )
    return AdmittedBudget(
        dimension=dimension,
        limit=request.limit,
        required=request.guarantee,
        # Capped only where the caller asked for a cap; a Mediated request is watched.
        supplied=request.guarantee.enforcement,
        required_evidence=request.evidence,
        mechanism=availability.mechanism,
    )


def classify_requirement(support: SupportMatrix, profile: BackendProfile, requirement: Requirement) -> SupportVerdict:
    """The family's best case met with this host's ceiling: neither side can claim more
    than the other allows. The planner's alone, so no backend can weaken it."""
    kind = requirement_kind(requirement)
    return support.best_case(kind).meet(profile.ceiling(kind).verdict)


def _support_membrane(requirements: list[Requirement], verdicts: list[SupportVerdict], profile: BackendProfile, backend_id: BackendId) -> None:
    for requirement, verdict in zip(requirements, verdicts, strict=True):
        if verdict.enforcement is not Enforcement.Unsupported:
            continue
        kind = requirement_kind(requirement)
        cell = profile.ceiling(kind)
        if cell.verdict.enforcement is Enforcement.Unsupported:
            raise UnsupportedRequirement(kind, backend_id, cell.reason, cell.remediation)
        # The host could, but the backend family never implements it.
        raise UnsupportedRequirement(kind, backend_id, "not supported by this backend family", "use a backend that supports it")


def _evidence_membrane(evidence: EvidenceRequirements, verdicts: list[SupportVerdict], backend_id: BackendId) -> None:
    available = frozenset().union(*(verdict.evidence for verdict in verdicts))
    missing = evidence.required_claims() - available
    if missing:
        raise EvidenceUnsatisfiable(missing, backend_id)


class BoundaryPlanner:
    def __init__(self, registry: BackendRegistry):
        self._registry = registry

    def plan(self, spec: BoundarySpec, backend_id: BackendId) -> BoundaryPlan:
        """Admit ``spec`` on the named backend or raise the first refusal (a ``PlanError``).

        Probes the backend exactly once.
        """
        backend = self._registry.get(backend_id)
        problems = spec_problems(spec)
        if problems:
            raise InvalidPolicy(problems[0].field, problems[0].message)
        support = backend.support()
        workload = workload_kind(spec.workload)
        if workload not in support.workloads:
            raise WorkloadIncompatible(workload, backend_id)
        snapshot = backend.probe()
        profile = backend.profile(snapshot)
        requirements = spec.requirements()
        verdicts = [classify_requirement(support, profile, requirement) for requirement in requirements]
        _support_membrane(requirements, verdicts, profile, backend_id)
        _evidence_membrane(spec.evidence, verdicts, backend_id)
        budgets = admit_budgets(spec, snapshot.budget)
        unsealed = BoundaryPlan(
            plan_id=BoundaryPlanHash(""),
            backend=backend_id,
            profile=snapshot,
            profile_hash=profile_hash(snapshot),
            admission_hash=admission_hash(ADMISSION_RULES_VERSION, support, profile, snapshot.budget),
            spec=spec,
            admitted=[_admitted(backend, spec, snapshot, req, verdict) for req, verdict in zip(requirements, verdicts, strict=True)],
            budgets=budgets,
        )
        return msgspec.structs.replace(unsealed, plan_id=compute_plan_id(unsealed))


def _admitted(backend: Backend, spec: BoundarySpec, snapshot, requirement: Requirement, verdict: SupportVerdict) -> AdmittedRequirement:
    kind = requirement_kind(requirement)
    return AdmittedRequirement(
        kind=kind,
        enforcement=verdict.enforcement,
        mechanism=backend.mechanism(kind, verdict.enforcement),
        requirement=requirement,
        grants=backend.grants(requirement, spec, snapshot),
    )
