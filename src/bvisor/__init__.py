"""bvisor: run a Linux process inside a declared boundary and prove what was enforced.

The public names are resolved lazily (PEP 562) so that ``import bvisor.launcher`` — the
launcher program — never pays for the host-side contract (msgspec) it does not use.
"""

from importlib import import_module

_EXPORTS = {
    # contract
    "AdmissionProgramHash": "bvisor.contract",
    "AttemptId": "bvisor.contract",
    "BackendId": "bvisor.contract",
    "BackendProfileHash": "bvisor.contract",
    "BoundaryPlanHash": "bvisor.contract",
    "BoundaryPlan": "bvisor.contract",
    "BoundaryReport": "bvisor.contract",
    "BoundaryReportBody": "bvisor.contract",
    "BoundarySpec": "bvisor.contract",
    "BudgetRequirements": "bvisor.contract",
    "Capability": "bvisor.contract",
    "EnvEntry": "bvisor.contract",
    "EnvPolicy": "bvisor.contract",
    "EvidenceRequirements": "bvisor.contract",
    "Enforcement": "bvisor.contract",
    "FdPolicy": "bvisor.contract",
    "HostControl": "bvisor.contract",
    "MinGuarantee": "bvisor.contract",
    "NetDest": "bvisor.contract",
    "NetPolicy": "bvisor.contract",
    "Outcome": "bvisor.contract",
    "RequirementKind": "bvisor.contract",
    "SpawnPolicy": "bvisor.contract",
    "StdStreams": "bvisor.contract",
    "Workload": "bvisor.contract",
    "PlanError": "bvisor.contract",
    # pipeline
    "Backend": "bvisor.backend",
    "BackendRegistry": "bvisor.backend",
    "BoundaryPlanner": "bvisor.planner",
    "BoundaryRunner": "bvisor.runner",
    "RunIO": "bvisor.capture",
    "InertBackend": "bvisor.backends.inert",
    "LinuxBackend": "bvisor.backends.linux.backend",
    # subprocess-like
    "run": "bvisor.api",
    "Session": "bvisor.api",
    "CompletedRun": "bvisor.api",
    "CalledRunError": "bvisor.api",
    "RunTimeout": "bvisor.api",
    "RunFailed": "bvisor.api",
    "FlagError": "bvisor.flags",
    "CommandNotFound": "bvisor.flags",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 (the lazy exports above, one list to keep)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bvisor' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
