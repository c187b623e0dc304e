"""Admission: every refusal kind, the membrane order, one probe per attempt, and a
plan_id that moves with every input."""

import msgspec
import pytest

from bvisor.contract import (
    BackendProfileSnapshot,
    BudgetAvailability,
    BudgetDimension,
    BudgetFailure,
    BudgetRefused,
    BudgetRequest,
    BudgetRequirements,
    Capability,
    CeilingCell,
    Enforcement,
    EnvEntry,
    EnvPolicy,
    EvidenceClaim,
    EvidenceRequirements,
    EvidenceUnsatisfiable,
    FdPolicy,
    FsAccess,
    HostControl,
    InvalidPolicy,
    MinGuarantee,
    NetDest,
    NetPolicy,
    PlanError,
    Refusal,
    RequirementKind,
    SpawnPolicy,
    StdStreams,
    SupportMatrix,
    SupportVerdict,
    UnknownBackend,
    UnsupportedRequirement,
    Workload,
    WorkloadIncompatible,
    WorkloadKind,
    compute_plan_id,
    profile_hash,
)
from bvisor.planner import BoundaryPlanner, derive_minimums
from fake_backend import UNLIMITED_MEDIATED, seed_spec, unsupported_cell

MEDIATED_8 = BudgetRequirements.uniform(8, MinGuarantee.Mediated)


def plan(registry, spec, backend_id="fake"):
    return BoundaryPlanner(registry).plan(spec, backend_id)


def budgets_with(**requests) -> BudgetRequirements:
    return msgspec.structs.replace(MEDIATED_8, **requests)


def set_budget(backend, dimension: BudgetDimension, **changes) -> None:
    availability = msgspec.structs.replace(backend.budget.get(dimension), **changes)
    backend.budget = msgspec.structs.replace(backend.budget, **{dimension.value: availability})


# --- admission -------------------------------------------------------------------------


def test_seed_spec_admits_with_the_uniform_mediated_budget(registry, backend):
    admitted = plan(registry, seed_spec())
    assert admitted.backend == "fake"
    assert [a.kind for a in admitted.admitted] == [
        RequirementKind.NetworkDenyAll, RequirementKind.Environment,
        RequirementKind.LaunchWorkload, RequirementKind.CaptureStreams,
    ]
    assert all(a.enforcement is Enforcement.Enforced for a in admitted.admitted)
    assert admitted.admitted[0].mechanism == "fake:network_deny_all:enforced"
    assert [b.dimension for b in admitted.budgets] == list(BudgetDimension)
    for budget in admitted.budgets:
        assert (budget.limit, budget.required, budget.supplied) == (8, MinGuarantee.Mediated, Enforcement.Mediated)
        assert budget.mechanism == "fake_watch" and not budget.capped
    assert admitted.profile == BackendProfileSnapshot.of("fake", backend.facts, backend.budget)
    assert admitted.profile_hash == profile_hash(admitted.profile)
    assert admitted.plan_id == compute_plan_id(admitted)


def test_a_mediated_ceiling_admits_as_mediated(registry, backend):
    backend.ceiling[RequirementKind.NetworkDenyAll] = CeilingCell(
        kind=RequirementKind.NetworkDenyAll,
        verdict=SupportVerdict(Enforcement.Mediated),
        mechanism="broker",
        reason="namespaces unavailable; a broker filters instead",
    )
    admitted = plan(registry, seed_spec())
    assert admitted.admitted[0].enforcement is Enforcement.Mediated
    assert admitted.admitted[0].mechanism == "fake:network_deny_all:mediated"


def test_an_enforced_cap_is_supplied_where_asked(registry, backend):
    set_budget(backend, BudgetDimension.ProcessCount, enforcement=Enforcement.Enforced, mechanism="pids_max")
    admitted = plan(registry, seed_spec(budgets=budgets_with(process_count=BudgetRequest(4, MinGuarantee.Enforced))))
    [processes] = [b for b in admitted.budgets if b.dimension is BudgetDimension.ProcessCount]
    assert processes.capped and processes.supplied is Enforcement.Enforced and processes.mechanism == "pids_max"


# --- refusals --------------------------------------------------------------------------


def test_unknown_backend_names_the_registered_ones(registry):
    with pytest.raises(UnknownBackend) as raised:
        plan(registry, seed_spec(), "nope")
    assert raised.value.requirement == "backend"
    assert "'nope'" in raised.value.reason and "fake" in raised.value.reason


def test_allow_list_is_refused_naming_kind_backend_and_reason(registry, backend):
    backend.ceiling[RequirementKind.NetworkAllowList] = unsupported_cell(RequirementKind.NetworkAllowList, "no egress broker in v1")
    with pytest.raises(UnsupportedRequirement) as raised:
        plan(registry, seed_spec(NetPolicy.AllowList([NetDest(host="example", port=443)])))
    error = raised.value
    assert (error.kind, error.backend) == (RequirementKind.NetworkAllowList, "fake")
    assert error.requirement == "network_allow_list"
    assert error.remediation == "enable it on the fake host"
    assert str(error) == "network_allow_list: unsupported by backend 'fake': no egress broker in v1"
    assert error.refusal() == Refusal("network_allow_list", error.reason, error.remediation)


def test_an_absent_cell_is_refused_as_not_implemented(registry):
    with pytest.raises(UnsupportedRequirement, match="not implemented by this backend"):
        plan(registry, seed_spec(NetPolicy.AllowList([NetDest(host="example", port=443)])))


def test_the_family_can_veto_an_enforced_ceiling(registry, backend):
    backend.family = SupportMatrix.of({
        kind: SupportVerdict(Enforcement.Enforced) for kind in RequirementKind if kind is not RequirementKind.Environment
    })
    with pytest.raises(UnsupportedRequirement) as raised:
        plan(registry, seed_spec())
    assert raised.value.kind is RequirementKind.Environment
    assert "backend family" in raised.value.reason


def test_the_planner_meets_family_and_ceiling_whatever_a_backend_would_say(registry, backend):
    """The meet is the planner's: a backend cannot grade its own requirements up."""
    backend.ceiling[RequirementKind.Environment] = unsupported_cell(RequirementKind.Environment)
    backend.classify = lambda requirement, profile: SupportVerdict(Enforcement.Enforced, frozenset(EvidenceClaim))
    with pytest.raises(UnsupportedRequirement) as raised:
        plan(registry, seed_spec())
    assert raised.value.kind is RequirementKind.Environment and "the fake host lacks it" in raised.value.reason


@pytest.mark.parametrize(
    ("entries", "field"),
    [
        ([EnvEntry.literal("", "x")], "entries[0].name"),
        ([EnvEntry.literal("A=1", "x")], "entries[0].name"),
        ([EnvEntry.literal("A\0", "x")], "entries[0].name"),
        ([EnvEntry.literal("X\nY", "1")], "entries[0].name"),
        ([EnvEntry.lease("A\x01", "env:HOME")], "entries[0].name"),
        ([EnvEntry.literal("A", "1"), EnvEntry.literal("A", "2")], "entries[1].name"),
        ([EnvEntry.literal("A", "\0")], "entries[0].source.value"),
        ([EnvEntry.lease("A", "")], "entries[0].source.ref"),
        ([EnvEntry.literal(f"V{i}", "") for i in range(257)], "entries"),
        ([EnvEntry.literal("A", "x" * 65_536), EnvEntry.literal("B", "x" * 65_536)], "entries"),
        ([EnvEntry.literal("A", "x" * 131_070)], "entries[0].source.value"),
    ],
)
def test_each_env_rule_is_an_invalid_policy_before_any_probe(registry, backend, entries, field):
    spec = seed_spec(capabilities=[Capability.Environment(policy=EnvPolicy.Exact(entries))])
    with pytest.raises(InvalidPolicy) as raised:
        plan(registry, spec)
    assert raised.value.field == raised.value.requirement == f"capabilities[0].policy.{field}"
    assert str(raised.value).startswith(f"capabilities[0].policy.{field}: ")
    assert backend.probe_count == 0


def test_structural_problems_are_invalid_policy_too(registry):
    with pytest.raises(InvalidPolicy, match=r"^workload.exe: expected absolute path"):
        plan(registry, msgspec.structs.replace(seed_spec(), workload=msgspec.structs.replace(seed_spec().workload, exe="sh")))


def test_a_workload_the_family_cannot_run_is_incompatible(registry, backend):
    backend.family = msgspec.structs.replace(backend.family, workloads=frozenset())
    with pytest.raises(WorkloadIncompatible) as raised:
        plan(registry, seed_spec())
    assert raised.value.requirement == "workload" and "process" in raised.value.reason
    assert backend.probe_count == 0


def test_evidence_nobody_supplies_is_unsatisfiable(registry, backend):
    backend.ceiling[RequirementKind.CaptureStreams] = CeilingCell(
        kind=RequirementKind.CaptureStreams,
        verdict=SupportVerdict(Enforcement.Enforced, frozenset({EvidenceClaim.MechanismAttestation})),
        mechanism="pipes",
    )
    backend.ceiling[RequirementKind.LaunchWorkload] = CeilingCell(
        kind=RequirementKind.LaunchWorkload,
        verdict=SupportVerdict(Enforcement.Enforced, frozenset({EvidenceClaim.TerminalOutcome})),
        mechanism="spawn",
    )
    only_launch = seed_spec(capabilities=[], controls=[HostControl.LaunchWorkload()])
    asks = EvidenceRequirements(require_captured_streams=True, require_exit_status=True)
    with pytest.raises(EvidenceUnsatisfiable) as raised:
        plan(registry, msgspec.structs.replace(only_launch, evidence=asks))
    assert raised.value.missing == {EvidenceClaim.CapturedStreams}
    assert raised.value.requirement == "evidence" and "captured_streams" in raised.value.reason


def test_evidence_is_the_meet_of_family_and_ceiling(registry, backend):
    # The ceiling offers every claim; a family that promises none leaves none.
    backend.family = SupportMatrix.of({kind: SupportVerdict(Enforcement.Enforced) for kind in RequirementKind})
    assert plan(registry, seed_spec()).admitted
    with pytest.raises(EvidenceUnsatisfiable) as raised:
        plan(registry, msgspec.structs.replace(seed_spec(), evidence=EvidenceRequirements(require_exit_status=True)))
    assert raised.value.missing == {EvidenceClaim.TerminalOutcome}


@pytest.mark.parametrize(
    ("budgets", "dimension", "failure"),
    [
        (budgets_with(handle_count=BudgetRequest(4, MinGuarantee.Mediated)), BudgetDimension.HandleCount, BudgetFailure.BelowDerivedMinimum),
        (budgets_with(wall=BudgetRequest(0, MinGuarantee.Mediated)), BudgetDimension.Wall, BudgetFailure.BelowDerivedMinimum),
        (budgets_with(cpu=BudgetRequest(8, MinGuarantee.Enforced)), BudgetDimension.Cpu, BudgetFailure.GuaranteeInsufficient),
        (budgets_with(storage=BudgetRequest(8, MinGuarantee.Mediated, frozenset({EvidenceClaim.ResourceUsage}))), BudgetDimension.Storage, BudgetFailure.EvidenceMissing),
    ],
)
def test_budget_refusals(registry, budgets, dimension, failure):
    with pytest.raises(BudgetRefused) as raised:
        plan(registry, seed_spec(budgets=budgets))
    assert (raised.value.dimension, raised.value.failure) == (dimension, failure)
    assert raised.value.requirement == dimension.value
    assert str(raised.value).startswith(f"{dimension.value}: {failure.value}: ")


@pytest.mark.parametrize(
    ("dimension", "field", "flag", "delegation"),
    [
        (BudgetDimension.Cpu, "cpu", "--cpu", True),
        (BudgetDimension.ResidentMemory, "resident_memory", "--memory", True),
        (BudgetDimension.HandleCount, "handle_count", "--fds", False),
    ],
)
def test_an_unenforceable_budget_is_refused_naming_the_flag_to_drop_and_how_to_get_the_cap(registry, dimension, field, flag, delegation):
    with pytest.raises(BudgetRefused) as raised:
        plan(registry, seed_spec(budgets=budgets_with(**{field: BudgetRequest(1 << 20, MinGuarantee.Enforced)})))
    remedy = raised.value.remediation
    assert raised.value.failure is BudgetFailure.GuaranteeInsufficient and f"drop {flag} " in remedy and f"budgets.{field}" in remedy
    assert ("Delegate=yes" in remedy) is delegation


def test_budget_capacity_refusal(registry, backend):
    set_budget(backend, BudgetDimension.ResidentMemory, available=4)
    with pytest.raises(BudgetRefused) as raised:
        plan(registry, seed_spec())
    assert (raised.value.dimension, raised.value.failure) == (BudgetDimension.ResidentMemory, BudgetFailure.CapacityExceeded)
    assert "at most 4" in raised.value.remediation


def test_a_zero_limit_is_a_legitimate_deny_all(registry):
    admitted = plan(registry, seed_spec(budgets=budgets_with(network=BudgetRequest(0, MinGuarantee.Mediated))))
    assert admitted.budgets[-1].limit == 0


# --- membrane order --------------------------------------------------------------------


def test_support_outranks_evidence_outranks_budget(registry):
    bad_budget = budgets_with(wall=BudgetRequest(0, MinGuarantee.Mediated))
    unsatisfiable = EvidenceRequirements(claims=frozenset({EvidenceClaim.NetworkActivity}))
    everything_wrong = seed_spec(NetPolicy.AllowList([NetDest(host="h", port=1)]), budgets=bad_budget, evidence=unsatisfiable)
    with pytest.raises(UnsupportedRequirement):
        plan(registry, everything_wrong)


def test_evidence_outranks_budget(registry, backend):
    for kind in backend.ceiling:
        backend.ceiling[kind] = CeilingCell(kind=kind, verdict=SupportVerdict(Enforcement.Enforced), mechanism="m")
    spec = seed_spec(
        budgets=budgets_with(wall=BudgetRequest(0, MinGuarantee.Mediated)),
        evidence=EvidenceRequirements(require_exit_status=True),
    )
    with pytest.raises(EvidenceUnsatisfiable):
        plan(registry, spec)


def test_every_derived_minimum_is_checked_before_any_dimension_is_adjudicated(registry):
    # wall fails its guarantee (first dimension), but network (last) is below its minimum.
    spec = seed_spec(
        NetPolicy.AllowList([NetDest(host="h", port=1)]),
        budgets=budgets_with(wall=BudgetRequest(8, MinGuarantee.Enforced), network=BudgetRequest(0, MinGuarantee.Mediated)),
    )
    registry.get("fake").ceiling[RequirementKind.NetworkAllowList] = CeilingCell(
        kind=RequirementKind.NetworkAllowList, verdict=SupportVerdict(Enforcement.Enforced), mechanism="broker"
    )
    with pytest.raises(BudgetRefused) as raised:
        plan(registry, spec)
    assert (raised.value.dimension, raised.value.failure) == (BudgetDimension.Network, BudgetFailure.BelowDerivedMinimum)


def test_the_first_failing_dimension_in_canonical_order_wins(registry):
    spec = seed_spec(budgets=budgets_with(
        storage=BudgetRequest(8, MinGuarantee.Enforced),
        cpu=BudgetRequest(8, MinGuarantee.Enforced),
        handle_count=BudgetRequest(8, MinGuarantee.Mediated, frozenset({EvidenceClaim.ResourceUsage})),
    ))
    with pytest.raises(BudgetRefused) as raised:
        plan(registry, spec)
    assert raised.value.dimension is BudgetDimension.Cpu


def test_within_a_dimension_capacity_then_guarantee_then_evidence(registry, backend):
    set_budget(backend, BudgetDimension.Wall, available=7)
    failing_all = BudgetRequest(8, MinGuarantee.Enforced, frozenset({EvidenceClaim.ResourceUsage}))
    with pytest.raises(BudgetRefused) as raised:
        plan(registry, seed_spec(budgets=budgets_with(wall=failing_all)))
    assert raised.value.failure is BudgetFailure.CapacityExceeded
    set_budget(backend, BudgetDimension.Wall, available=8)
    with pytest.raises(BudgetRefused) as raised:
        plan(registry, seed_spec(budgets=budgets_with(wall=failing_all)))
    assert raised.value.failure is BudgetFailure.GuaranteeInsufficient
    set_budget(backend, BudgetDimension.Wall, enforcement=Enforcement.Enforced)
    with pytest.raises(BudgetRefused) as raised:
        plan(registry, seed_spec(budgets=budgets_with(wall=failing_all)))
    assert raised.value.failure is BudgetFailure.EvidenceMissing


def test_every_refusal_is_a_plan_error_with_a_one_line_message():
    for error in (
        UnknownBackend("x", []),
        InvalidPolicy("workload.exe", "expected absolute path"),
        WorkloadIncompatible(WorkloadKind.Process, "x"),
        UnsupportedRequirement(RequirementKind.Kill, "x", "no cgroup", "delegate a cgroup"),
        EvidenceUnsatisfiable(frozenset({EvidenceClaim.ProcessTree}), "x"),
        BudgetRefused(BudgetDimension.Cpu, BudgetFailure.CapacityExceeded, "too much", "less"),
    ):
        assert isinstance(error, PlanError)
        assert "\n" not in str(error) and error.requirement and error.reason and error.remediation


# --- derived minimums ------------------------------------------------------------------


def test_derived_minimums():
    floor = derive_minimums(seed_spec())
    assert floor == {
        BudgetDimension.Wall: 1, BudgetDimension.Cpu: 1, BudgetDimension.ResidentMemory: 1,
        BudgetDimension.ProcessCount: 1, BudgetDimension.HandleCount: 5,
        BudgetDimension.Storage: 0, BudgetDimension.Network: 0,
    }
    rich = seed_spec(
        capabilities=[
            Capability.ChildSpawn(policy=SpawnPolicy.AllowDescendantsWithinBoundary()),
            Capability.InheritedFds(policy=FdPolicy.Only([3, 4])),
            Capability.Network(policy=NetPolicy.AllowList([NetDest(host="h", port=1)])),
        ],
        controls=[
            HostControl.LaunchWorkload(),
            HostControl.CaptureStreams(streams=StdStreams(stdout=True, stderr=True, stdin=True)),
            HostControl.ExposePath(source="/a", dest="/a", access=FsAccess.Write),
        ],
    )
    assert derive_minimums(rich) == {
        BudgetDimension.Wall: 1, BudgetDimension.Cpu: 1, BudgetDimension.ResidentMemory: 1,
        BudgetDimension.ProcessCount: 2, BudgetDimension.HandleCount: 3 + 3 + 2,
        BudgetDimension.Storage: 1, BudgetDimension.Network: 1,
    }
    assert set(derive_minimums(seed_spec(controls=[])).values()) == {0}
    read_only = seed_spec(controls=[HostControl.ExposePath(source="/a", dest="/a", access=FsAccess.Read)])
    assert derive_minimums(read_only)[BudgetDimension.Storage] == 0
    for storage_needing in (HostControl.TempRoot(), HostControl.CommitArtifact()):
        assert derive_minimums(seed_spec(controls=[storage_needing]))[BudgetDimension.Storage] == 1


# --- probing and identity --------------------------------------------------------------


def test_exactly_one_probe_per_plan_attempt(registry, backend):
    plan(registry, seed_spec())
    assert backend.probe_count == 1
    with pytest.raises(BudgetRefused):
        plan(registry, seed_spec(budgets=budgets_with(wall=BudgetRequest(0, MinGuarantee.Mediated))))
    assert backend.probe_count == 2
    plan(registry, seed_spec())
    assert backend.probe_count == 3


def test_plan_id_is_stable_for_equal_inputs(registry):
    first, second = plan(registry, seed_spec()), plan(registry, seed_spec())
    assert first.plan_id == second.plan_id and first == second


def _env_a(value: str) -> list:
    return [Capability.Environment(policy=EnvPolicy.Exact([EnvEntry.literal("A", value)]))]


BASELINE = seed_spec(capabilities=_env_a("1"))


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(seed_spec(args=["-c", "exit 1"], capabilities=_env_a("1")), id="workload-arg"),
        pytest.param(seed_spec(capabilities=_env_a("2")), id="env-value"),
        pytest.param(seed_spec(capabilities=_env_a("1"), budgets=budgets_with(cpu=BudgetRequest(9, MinGuarantee.Mediated))), id="budget-limit"),
        pytest.param(seed_spec(capabilities=_env_a("1"), evidence=EvidenceRequirements(require_exit_status=True)), id="evidence"),
        pytest.param(msgspec.structs.replace(BASELINE, workload=Workload.Process(exe="/bin/dash", args=BASELINE.workload.args)), id="workload-exe"),
        pytest.param(seed_spec(capabilities=_env_a("1"), controls=[HostControl.LaunchWorkload()]), id="controls"),
        pytest.param(seed_spec(capabilities=_env_a("1") + [Capability.InheritedFds(policy=FdPolicy.Nothing())]), id="capability-set"),
    ],
)
def test_plan_id_moves_with_every_spec_input(registry, changed):
    baseline = plan(registry, BASELINE)
    assert plan(registry, changed).plan_id != baseline.plan_id
    assert plan(registry, BASELINE).plan_id == baseline.plan_id


def _kernel_upgraded(backend):
    backend.facts = {**backend.facts, "kernel": "6.2"}


def _kill_unsupported(backend):
    backend.ceiling[RequirementKind.Kill] = unsupported_cell(RequirementKind.Kill, "no cgroup.kill")


def _more_storage(backend):
    set_budget(backend, BudgetDimension.Storage, available=2**40)


@pytest.mark.parametrize("change_host", [_kernel_upgraded, _kill_unsupported, _more_storage])
def test_plan_id_moves_with_every_host_input(registry, backend, change_host):
    baseline = plan(registry, BASELINE)
    change_host(backend)
    changed = plan(registry, BASELINE)
    assert changed.plan_id != baseline.plan_id
    assert changed.plan_id == compute_plan_id(changed)


def test_admission_hash_binds_the_ceiling_not_just_the_facts(registry, backend):
    before = plan(registry, seed_spec())
    backend.ceiling[RequirementKind.Kill] = unsupported_cell(RequirementKind.Kill, "no cgroup.kill")
    after = plan(registry, seed_spec())
    assert before.profile_hash == after.profile_hash
    assert before.admission_hash != after.admission_hash


def test_budget_availability_is_bound_into_the_profile_hash(registry, backend):
    before = plan(registry, seed_spec())
    set_budget(backend, BudgetDimension.Wall, mechanism="other_clock")
    assert plan(registry, seed_spec()).profile_hash != before.profile_hash


def test_uniform_mediated_admits_on_an_all_mediated_unbounded_profile(registry, backend):
    assert backend.budget.wall == BudgetAvailability(2**63 - 1, Enforcement.Mediated, frozenset(), "fake_watch")
    assert backend.budget == backend.budget.filled(UNLIMITED_MEDIATED)
    admitted = plan(registry, seed_spec(budgets=BudgetRequirements.uniform(8, MinGuarantee.Mediated)))
    assert len(admitted.budgets) == 7


# --- storage: Enforced only where the temp root is the only writable place --------------

CONFINED_READ = Capability.Filesystem(access=FsAccess.Read, roots=["/srv/data"])
LAUNCH = [HostControl.LaunchWorkload(), HostControl.CaptureStreams(streams=StdStreams.capture_out_err())]
STORAGE_CAP = budgets_with(storage=BudgetRequest(1 << 20, MinGuarantee.Enforced))


def _storage_spec(capabilities, controls, budgets=STORAGE_CAP):
    return seed_spec(capabilities=[Capability.Environment(policy=EnvPolicy.Exact([])), *capabilities], controls=LAUNCH + controls, budgets=budgets)


@pytest.fixture
def storage_capping_host(backend):
    set_budget(backend, BudgetDimension.Storage, enforcement=Enforcement.Enforced, mechanism="fake_tmpfs_size")
    return backend


def test_an_enforced_storage_cap_is_admitted_when_the_temp_root_is_the_only_writable_place(registry, storage_capping_host):
    spec = _storage_spec(
        [CONFINED_READ, Capability.Filesystem(access=FsAccess.ReadWrite, roots=["/dev/null"])],
        [HostControl.TempRoot(), HostControl.ExposePath(source="/srv/in", dest="/tmp/in", access=FsAccess.Read)],
    )
    storage = next(b for b in plan(registry, spec).budgets if b.dimension is BudgetDimension.Storage)
    assert (storage.limit, storage.supplied, storage.mechanism) == (1 << 20, Enforcement.Enforced, "fake_tmpfs_size")


@pytest.mark.parametrize(
    ("capabilities", "controls", "names", "remedy"),
    [
        ([CONFINED_READ], [], ["no temp root"], "add a TempRoot control (--tmp);"),
        ([], [], ["no temp root", "the host's tree"], "add a TempRoot control (--tmp), confine the filesystem (--ro ROOT"),
        ([], [HostControl.TempRoot()], ["the host's tree (no Filesystem capability"], "place: confine the filesystem (--ro ROOT"),
        ([CONFINED_READ, Capability.Filesystem(access=FsAccess.ReadWrite, roots=["/srv/out"])], [HostControl.TempRoot()], ["read-write root /srv/out"], "drop --rw /srv/out;"),
        ([Capability.Filesystem(access=FsAccess.Write, roots=["/srv/out"])], [HostControl.TempRoot()], ["read-write root /srv/out"], "drop --rw /srv/out;"),
        (
            [CONFINED_READ],
            [HostControl.TempRoot(), HostControl.ExposePath(source="/srv/out", dest="/tmp/out", access=FsAccess.ReadWrite)],
            ["writable exposed path /srv/out (at /tmp/out)"],
            "expose /srv/out read-only;",
        ),
    ],
    ids=["no-temp-root", "no-temp-root-host-tree", "host-tree", "rw-root", "write-root", "writable-expose-inside-temp-root"],
)
def test_an_enforced_storage_cap_is_refused_where_a_writable_place_escapes_it(registry, storage_capping_host, capabilities, controls, names, remedy):
    with pytest.raises(BudgetRefused) as raised:
        plan(registry, _storage_spec(capabilities, controls))
    refusal = raised.value
    assert (refusal.dimension, refusal.failure, refusal.requirement) == (BudgetDimension.Storage, BudgetFailure.UncappedWritablePlace, "storage")
    for name in names:
        assert name in refusal.reason, refusal.reason
    assert remedy in refusal.remediation and "budgets.storage" in refusal.remediation, refusal.remediation
    assert "\n" not in str(refusal) + refusal.remediation


def test_a_host_that_cannot_cap_storage_refuses_for_that_reason_first(registry, backend):
    with pytest.raises(BudgetRefused) as raised:
        plan(registry, _storage_spec([], []))
    assert raised.value.failure is BudgetFailure.GuaranteeInsufficient


@pytest.mark.parametrize("controls", [[], [HostControl.TempRoot()]], ids=["no-temp-root", "temp-root"])
def test_a_mediated_storage_budget_is_admitted_with_writable_places_anywhere(registry, storage_capping_host, controls):
    spec = _storage_spec([Capability.Filesystem(access=FsAccess.ReadWrite, roots=["/srv/out"])], controls, budgets=MEDIATED_8)
    storage = next(b for b in plan(registry, spec).budgets if b.dimension is BudgetDimension.Storage)
    assert (storage.supplied, storage.capped) == (Enforcement.Mediated, False)
