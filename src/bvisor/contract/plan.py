"""The admitted plan: inert typed data bound to one backend and one probed profile."""

from typing import Literal

import msgspec

from bvisor.contract.budget import AdmittedBudget
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.identity import (
    AdmissionHashField,
    BackendId,
    BoundaryPlanHash,
    PlanIdField,
    ProfileHashField,
    domain_digest,
)
from bvisor.contract.spec import BoundarySpec, Requirement, RequirementKind
from bvisor.contract.support import BackendProfileSnapshot, profile_hash


class AdmittedRequirement(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One requirement as admitted: never ``Unsupported``; ``mechanism`` names how the
    backend realizes it; ``grants`` lists concretely what it will allow on this host,
    implicit grants included (e.g. every filesystem root, system roots marked)."""

    kind: RequirementKind
    enforcement: Enforcement
    mechanism: str
    requirement: Requirement
    grants: list[str] = []


class BoundaryPlan(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    schema_version: Literal[1] = 1
    plan_id: PlanIdField
    backend: BackendId
    profile: BackendProfileSnapshot
    profile_hash: ProfileHashField
    admission_hash: AdmissionHashField
    spec: BoundarySpec
    admitted: list[AdmittedRequirement]
    budgets: list[AdmittedBudget]


def compute_plan_id(plan: BoundaryPlan) -> BoundaryPlanHash:
    """The hash of everything in the plan but the id itself."""
    return BoundaryPlanHash(domain_digest("bvisor.plan.v1", msgspec.structs.replace(plan, plan_id="")))


def plan_integrity_problem(plan: BoundaryPlan) -> str | None:
    """Why a plan's own hashes do not hold, or None when they do."""
    if compute_plan_id(plan) != plan.plan_id:
        return f"plan_id {plan.plan_id} does not match the plan's content"
    if profile_hash(plan.profile) != plan.profile_hash:
        return f"profile_hash {plan.profile_hash} does not match the plan's profile"
    return None
