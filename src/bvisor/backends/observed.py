"""What a backend without caps can honestly say about budgets and streams, shared by every
backend that runs a process and waits for it.

Budgets are observed, never capped: wall time from the host clock, cpu and peak resident
memory from the workload's ``wait4`` rusage (which covers descendants it reaped, not ones it
orphaned). The other dimensions are not observed at all: they are admitted as Mediated and
every report says ``observation_unavailable`` for them.
"""

import time

from bvisor.contract import (
    BudgetAvailability,
    BudgetDimension,
    BudgetProfile,
    BudgetUsage,
    CaptureRef,
    Enforcement,
    EvidenceClaim,
    ExecutionRecord,
    ObservedFact,
)

UNBOUNDED = 2**63 - 1

_OBSERVED = {
    BudgetDimension.Wall: "host_clock:observed-not-capped",
    BudgetDimension.Cpu: "wait4_rusage_cpu:observed-not-capped",
    BudgetDimension.ResidentMemory: "wait4_rusage_maxrss:observed-not-capped(largest-single-process)",
}


def _availability(dimension: BudgetDimension) -> BudgetAvailability:
    mechanism = _OBSERVED.get(dimension)
    return BudgetAvailability(
        available=UNBOUNDED,
        enforcement=Enforcement.Mediated,
        evidence=frozenset({EvidenceClaim.ResourceUsage}) if mechanism else frozenset(),
        mechanism=mechanism or "unobserved:not-capped",
    )


def uncapped_budget_profile() -> BudgetProfile:
    return BudgetProfile(**{d.value: _availability(d) for d in BudgetDimension})


class Rusage:
    """The workload's reaped resource usage: cpu in µs, peak resident set in KiB."""

    __slots__ = ("cpu_us", "maxrss_kib")

    def __init__(self, cpu_us: int, maxrss_kib: int):
        self.cpu_us, self.maxrss_kib = cpu_us, maxrss_kib


def observed_usage(clock_ns: int, rusage: Rusage | None = None) -> BudgetUsage:
    """Wall time since ``clock_ns`` (monotonic, when the run started) and, if the workload was
    reaped, its rusage: cpu, and the largest single process's peak resident set."""
    return BudgetUsage(
        wall=(time.monotonic_ns() - clock_ns) // 1000,
        cpu=rusage.cpu_us if rusage else None,
        resident_memory=rusage.maxrss_kib * 1024 if rusage else None,
    )


def execution_record(outcome, exit_status, facts, started_ns, usage: BudgetUsage, captures=()) -> ExecutionRecord:
    """Assemble what a backend returns."""
    facts = list(facts)
    if captures:
        facts.append(
            ObservedFact(kind="stream_captured", detail=" ".join(f"{c.name}={c.total}B blake3={c.digest}" for c in captures))
        )
    return ExecutionRecord(
        outcome=outcome,
        exit=exit_status,
        observed=facts,
        usage=usage,
        captured=[
            CaptureRef(stream=c.name, bytes=c.total, kept=len(c.kept), truncated=c.truncated, blake3=c.digest)
            for c in captures
        ],
        started_unix_ns=started_ns,
        finished_unix_ns=time.time_ns(),
    )
