"""Execution: run an admitted plan on its backend and seal what happened.

A plan whose own hashes do not hold, or whose host has drifted since admission, is not
executed: the report says why, with an ``Unsupported`` outcome. Whatever a backend does,
the caller gets a sealed report, never an exception from the backend.
"""

import time
from typing import TYPE_CHECKING

from bvisor.backend import Backend, BackendRegistry
from bvisor.contract import (
    BackendProfileSnapshot,
    BoundaryPlan,
    BoundaryReport,
    BoundaryReportBody,
    ExecutionRecord,
    ObservedFact,
    Outcome,
    fresh_attempt_id,
    plan_integrity_problem,
    profile_hash,
    seal,
    snapshot_drift,
    witness_budgets,
)

if TYPE_CHECKING:
    from bvisor.capture import RunIO


def _runner_record(outcome: Outcome, fact_kind: str, detail: str, started_unix_ns: int) -> ExecutionRecord:
    """The record of an attempt that ended without one from the backend."""
    return ExecutionRecord(
        outcome=outcome,
        exit=None,
        observed=[ObservedFact(fact_kind, detail)],
        started_unix_ns=started_unix_ns,
        finished_unix_ns=time.time_ns(),
    )


def _described(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


class BoundaryRunner:
    def __init__(self, registry: BackendRegistry):
        self._registry = registry

    def run(self, plan: BoundaryPlan, io: "RunIO | None" = None) -> BoundaryReport:
        """Execute ``plan`` once (a fresh attempt) and return the sealed report.

        Raises only ``UnknownBackend`` (the plan names no registered backend).
        """
        backend = self._registry.get(plan.backend)
        attempt_id = fresh_attempt_id()
        started = time.time_ns()
        probed, record = self._attempt(backend, plan, attempt_id, io, started)
        body = BoundaryReportBody(
            attempt_id=attempt_id,
            plan_id=plan.plan_id,
            backend=plan.backend,
            profile_hash=plan.profile_hash,
            admission_hash=plan.admission_hash,
            profile=probed,
            workload=plan.spec.workload,
            outcome=record.outcome,
            exit=record.exit,
            admitted=plan.admitted,
            observed=record.observed,
            budget=witness_budgets(plan.budgets, record.usage),
            captured=record.captured,
            started_unix_ns=record.started_unix_ns,
            finished_unix_ns=record.finished_unix_ns,
        )
        return seal(body)

    @staticmethod
    def _attempt(
        backend: Backend, plan: BoundaryPlan, attempt_id: str, io: "RunIO | None", started: int
    ) -> tuple[BackendProfileSnapshot | None, ExecutionRecord]:
        """The re-probed snapshot (None if there was none) and how the attempt ended."""
        integrity = plan_integrity_problem(plan)
        if integrity is not None:
            return None, _runner_record(Outcome.Unsupported, "plan_integrity_failed", integrity, started)
        try:
            probed = backend.probe()
        except Exception as error:
            return None, _runner_record(Outcome.SupervisorFault, "probe_raised", _described(error), started)
        if profile_hash(probed) != plan.profile_hash:
            drift = "; ".join(snapshot_drift(plan.profile, probed))
            return probed, _runner_record(Outcome.Unsupported, "profile_drift", f"host changed since admission: {drift}", started)
        if io is None:
            from bvisor.capture import RunIO  # the capture machinery loads only for real runs

            io = RunIO()
        try:
            return probed, backend.execute(plan, attempt_id, io)
        except Exception as error:
            # A backend must not raise; if one does, the report says so instead.
            return probed, _runner_record(Outcome.SupervisorFault, "backend_raised", _described(error), started)
