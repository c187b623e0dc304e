"""The admitted plan: inert typed data bound to one backend and one probed profile."""

from typing import Annotated, Literal

import msgspec

from bvisor.contract.annotate import doc
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

    kind: Annotated[RequirementKind, doc("The requirement's kind (its support cell).")]
    enforcement: Annotated[Enforcement, doc("The enforcement this host gives it.")]
    mechanism: Annotated[str, doc("How the backend realizes it, `backend:mechanism:enforcement`, e.g. `linux:landlock:enforced` (the host's ceiling cell adds how: `fresh_root+landlock`).")]
    requirement: Annotated[Requirement, doc("The requirement as the spec declared it.")]
    grants: Annotated[list[str], doc("What it allows on this host, one line each, implicit grants included.")] = []


class BoundaryPlan(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An admitted plan: the spec bound to one backend and one probed host profile, with
    every requirement and budget as admitted."""

    schema_version: Annotated[Literal[1], doc("The plan format version.")] = 1
    plan_id: Annotated[PlanIdField, doc("The plan's identity: blake3 over everything in it but this field.")]
    backend: Annotated[BackendId, doc("The backend that admitted it, e.g. `linux`.")]
    profile: Annotated[BackendProfileSnapshot, doc("The host facts admission read; a run re-probes and refuses on drift.")]
    profile_hash: Annotated[ProfileHashField, doc("blake3 of `profile`.")]
    admission_hash: Annotated[AdmissionHashField, doc("Identifies the rules and tables that admitted the plan.")]
    spec: Annotated[BoundarySpec, doc("The spec as given.")]
    admitted: Annotated[list[AdmittedRequirement], doc("Every capability and control as admitted, in the spec's order (capabilities first).")]
    budgets: Annotated[list[AdmittedBudget], doc("Every budget dimension as admitted, in canonical order.")]


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
