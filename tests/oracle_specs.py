"""The spec shape every oracle runs its workload under: the workload launched with its stdout
and stderr captured (its own report, channel B), plus what the oracle declares. One builder,
so each oracle states only the requirements it tests."""

from bvisor import (
    BoundarySpec,
    BudgetRequirements,
    Capability,
    EnvEntry,
    EnvPolicy,
    HostControl,
    MinGuarantee,
    StdStreams,
    Workload,
)
from bvisor.contract import BudgetDimension, BudgetRequest

SEED_BUDGETS = BudgetRequirements.uniform(8, MinGuarantee.Mediated)  # the seed's budgets
MIB = 1 << 20
# Generous limits for the dimensions an oracle does not look at; only watched (Mediated).
GENEROUS = {
    BudgetDimension.Wall: 600_000_000,
    BudgetDimension.Cpu: 600_000_000,
    BudgetDimension.ResidentMemory: 4096 * MIB,
    BudgetDimension.ProcessCount: 4096,
    BudgetDimension.HandleCount: 4096,
    BudgetDimension.Storage: 1024 * MIB,
    BudgetDimension.Network: 1024 * MIB,
}


def oracle_spec(argv, capabilities=(), controls=(), budgets: BudgetRequirements = SEED_BUDGETS) -> BoundarySpec:
    """``argv`` under ``capabilities``; launched, its stdout and stderr captured, and
    ``controls``."""
    return BoundarySpec(
        workload=Workload.Process(exe=argv[0], args=list(argv[1:])),
        capabilities=list(capabilities),
        controls=[HostControl.LaunchWorkload(), HostControl.CaptureStreams(streams=StdStreams.capture_out_err()), *controls],
        budgets=budgets,
    )


def watched_budgets(**asked) -> BudgetRequirements:
    """GENEROUS watched limits, with ``dimension=(limit, guarantee)`` for the ones under test."""
    requests = {d.value: BudgetRequest(limit=GENEROUS[d], guarantee=MinGuarantee.Mediated) for d in BudgetDimension}
    for name, (limit, guarantee) in asked.items():
        requests[BudgetDimension(name).value] = BudgetRequest(limit=limit, guarantee=guarantee)
    return BudgetRequirements(**requests)


def exact_environment(pairs=()) -> Capability.Environment:
    """An exact environment of ``(name, value)`` pairs, in their order."""
    return Capability.Environment(policy=EnvPolicy.Exact([EnvEntry.literal(name, value) for name, value in pairs]))
