"""Execution: the runner seals what the backend reports, and refuses to execute a
tampered plan or one whose host has drifted since admission."""

import json

import msgspec
import pytest

from bvisor.backend import BackendRegistry
from bvisor.capture import RunIO
from bvisor.contract import (
    BudgetDimension,
    BudgetFinding,
    Capability,
    EnvPolicy,
    ExecutionRecord,
    ExitStatus,
    FsAccess,
    HostControl,
    KillGuarantee,
    NetDest,
    NetPolicy,
    Outcome,
    PlanError,
    ReportVerdict,
    RequirementKind,
    StdStreams,
    UnknownBackend,
    UnsupportedRequirement,
    encode_report_json,
    verify_report,
    verify_report_json,
)
from bvisor.planner import BoundaryPlanner
from bvisor.runner import BoundaryRunner
from fake_backend import FakeBackend, seed_spec, unsupported_cell


def run_execute(registry, spec, backend_id="fake"):
    """The seed's ``run_execute``: plan, and on admission run and return the body."""
    try:
        plan = BoundaryPlanner(registry).plan(spec, backend_id)
    except PlanError:
        return None
    return BoundaryRunner(registry).run(plan).body


def facts(body) -> dict[str, str]:
    return {fact.kind: fact.detail for fact in body.observed}


def test_the_seed_flow_runs_deny_all_and_refuses_allow_list(registry, backend):
    backend.ceiling[RequirementKind.NetworkAllowList] = unsupported_cell(RequirementKind.NetworkAllowList)
    body = run_execute(registry, seed_spec(NetPolicy.DenyAll()))
    assert body is not None and body.outcome is Outcome.Completed
    assert "stream_captured" in facts(body)
    assert run_execute(registry, seed_spec(NetPolicy.AllowList([NetDest(host="example", port=443)]))) is None
    assert len(backend.executions) == 1


def test_a_run_seals_the_backend_record_with_the_plan(registry, backend):
    plan = BoundaryPlanner(registry).plan(seed_spec(), "fake")
    report = BoundaryRunner(registry).run(plan)
    assert verify_report(report)
    body = report.body
    [(executed_plan, attempt_id, io)] = backend.executions
    assert executed_plan is plan and isinstance(io, RunIO)
    assert body.attempt_id == attempt_id
    assert (body.plan_id, body.backend, body.profile_hash, body.admission_hash) == (
        plan.plan_id, "fake", plan.profile_hash, plan.admission_hash,
    )
    assert body.profile == plan.profile and body.workload == plan.spec.workload
    assert body.admitted == plan.admitted
    assert (body.outcome, body.exit, body.observed) == (backend.record.outcome, backend.record.exit, backend.record.observed)
    assert (body.started_unix_ns, body.finished_unix_ns) == (1, 2)
    findings = {witness.dimension: witness.finding for witness in body.budget}
    assert findings[BudgetDimension.Wall] is BudgetFinding.WithinLimit  # 5 of 8
    assert findings[BudgetDimension.Cpu] is BudgetFinding.ObservationUnavailable
    assert backend.probe_count == 2  # once to plan, once to re-check before executing


def test_a_mediated_overshoot_completes_with_it_on_record(registry, backend):
    backend.record = msgspec.structs.replace(
        backend.record, usage=msgspec.structs.replace(backend.record.usage, process_count=12)
    )
    plan = BoundaryPlanner(registry).plan(seed_spec(), "fake")
    body = BoundaryRunner(registry).run(plan).body
    [processes] = [w for w in body.budget if w.dimension is BudgetDimension.ProcessCount]
    assert body.outcome is Outcome.Completed
    assert (processes.observed, processes.limit, processes.finding) == (12, 8, BudgetFinding.ExceededMediated)


def test_each_run_is_a_fresh_attempt(registry, backend):
    plan = BoundaryPlanner(registry).plan(seed_spec(), "fake")
    first, second = BoundaryRunner(registry).run(plan), BoundaryRunner(registry).run(plan)
    assert first.body.attempt_id != second.body.attempt_id
    assert first.body.plan_id == second.body.plan_id


def test_the_caller_io_reaches_the_backend(registry, backend):
    io = RunIO(capture_limit=10)
    BoundaryRunner(registry).run(BoundaryPlanner(registry).plan(seed_spec(), "fake"), io)
    assert backend.executions[0][2] is io


def test_drift_refuses_without_executing(registry, backend):
    plan = BoundaryPlanner(registry).plan(seed_spec(), "fake")
    backend.facts = {**backend.facts, "userns": "0"}
    report = BoundaryRunner(registry).run(plan)
    assert backend.executions == []
    assert verify_report(report)
    body = report.body
    assert body.outcome is Outcome.Unsupported and body.exit is None
    assert "userns: '1' -> '0'" in facts(body)["profile_drift"]
    assert body.profile.fact("userns") == "0"  # the report shows the host as it is now
    assert body.profile_hash == plan.profile_hash
    assert {w.finding for w in body.budget} == {BudgetFinding.ObservationUnavailable}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda plan: msgspec.structs.replace(plan, spec=seed_spec(args=["-c", "curl evil"])),
        lambda plan: msgspec.structs.replace(plan, budgets=[
            msgspec.structs.replace(budget, limit=10**9) for budget in plan.budgets
        ]),
        lambda plan: msgspec.structs.replace(plan, profile_hash="0" * 64),
    ],
)
def test_a_tampered_plan_is_refused_without_executing(registry, backend, tamper):
    plan = tamper(BoundaryPlanner(registry).plan(seed_spec(), "fake"))
    probes_before = backend.probe_count
    report = BoundaryRunner(registry).run(plan)
    assert backend.executions == [] and backend.probe_count == probes_before
    assert verify_report(report)
    assert report.body.outcome is Outcome.Unsupported
    assert "plan_integrity_failed" in facts(report.body)
    assert report.body.profile is None


def test_a_backend_that_raises_becomes_a_supervisor_fault(registry, backend):
    backend.execute_error = RuntimeError("launcher exploded")
    report = BoundaryRunner(registry).run(BoundaryPlanner(registry).plan(seed_spec(), "fake"))
    assert verify_report(report)
    assert report.body.outcome is Outcome.SupervisorFault
    assert facts(report.body)["backend_raised"] == "RuntimeError: launcher exploded"


def test_a_probe_that_raises_becomes_a_supervisor_fault(registry, backend):
    plan = BoundaryPlanner(registry).plan(seed_spec(), "fake")

    def broken_probe():
        raise OSError("proc unmounted")

    backend.probe = broken_probe
    report = BoundaryRunner(registry).run(plan)
    assert backend.executions == []
    assert report.body.outcome is Outcome.SupervisorFault and "probe_raised" in facts(report.body)


def test_a_plan_for_an_unregistered_backend_is_refused(registry):
    plan = BoundaryPlanner(registry).plan(seed_spec(), "fake")
    with pytest.raises(UnknownBackend):
        BoundaryRunner(BackendRegistry()).run(plan)


def test_the_report_json_carries_the_design_fields(registry, backend):
    backend.record = ExecutionRecord(
        outcome=Outcome.Killed,
        exit=ExitStatus(signal=9),
        started_unix_ns=1,
        finished_unix_ns=3,
    )
    report = BoundaryRunner(registry).run(BoundaryPlanner(registry).plan(seed_spec(), "fake"))
    data = encode_report_json(report)
    document = json.loads(data)
    assert document["outcome"] == "killed" and document["exit"] == {"signal": 9}
    assert document["admitted"][0]["kind"] == "network_deny_all"
    assert {"kind", "enforcement", "mechanism"} <= set(document["admitted"][0])
    assert document["budget"][0] == {
        "dimension": "wall", "limit": 8, "required": "mediated", "supplied": "mediated",
        "mechanism": "fake_watch", "observed": None, "finding": "observation_unavailable",
    }
    assert isinstance(verify_report_json(data), ReportVerdict.Valid)


def test_two_backends_are_kept_apart():
    registry = BackendRegistry()
    first, second = FakeBackend("one"), FakeBackend("two")
    registry.register(first)
    registry.register(second)
    assert registry.ids() == ["one", "two"]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(FakeBackend("one"))
    report = BoundaryRunner(registry).run(BoundaryPlanner(registry).plan(seed_spec(), "two"))
    assert report.body.backend == "two"
    assert (len(first.executions), len(second.executions)) == (0, 1)


# --- the inert backend admits only what it gives ---------------------------------------------


@pytest.mark.parametrize(
    ("requirement", "kind"),
    [
        pytest.param(Capability.Network(policy=NetPolicy.DenyAll()), "network_deny_all", id="deny-all"),
        pytest.param(Capability.Filesystem(access=FsAccess.Read, roots=["/usr"]), "filesystem", id="filesystem"),
        pytest.param(HostControl.TempRoot(), "temp_root", id="temp-root"),
        pytest.param(HostControl.Kill(guarantee=KillGuarantee.Atomic), "kill", id="kill"),
    ],
)
def test_the_inert_backend_refuses_what_it_does_not_give(requirement, kind):
    """It launches unconfined: every confinement requirement is refused at plan, naming the
    requirement and the backend, and nothing runs."""
    from bvisor import InertBackend

    registry = BackendRegistry()
    registry.register(InertBackend())
    capabilities = [Capability.Environment(policy=EnvPolicy.Exact([]))]
    controls = [HostControl.LaunchWorkload(), HostControl.CaptureStreams(streams=StdStreams.capture_out_err())]
    if isinstance(requirement, HostControl.TempRoot | HostControl.Kill):
        controls.append(requirement)
    else:
        capabilities.append(requirement)
    with pytest.raises(UnsupportedRequirement) as refused:
        BoundaryPlanner(registry).plan(seed_spec(capabilities=capabilities, controls=controls), "inert")
    assert (refused.value.requirement, refused.value.backend) == (kind, "inert")
    # Control: without it, the same spec is admitted.
    plain = seed_spec(capabilities=[Capability.Environment(policy=EnvPolicy.Exact([]))])
    assert {a.kind.value for a in BoundaryPlanner(registry).plan(plain, "inert").admitted} == {"environment", "launch_workload", "capture_streams"}
