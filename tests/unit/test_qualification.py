"""The coupling law: what the ceiling advertises as Enforced must be proven in the committed
ledger (or waived, by someone, until a date), on a floor the host meets, by the backend's own
mechanism, by tests that exist; and under the same-run gate, by tests that ran and passed in
this session. Each planted lie below must be caught, so the gate itself is not vacuous.

Pure: the host is a canned snapshot (PROVEN_HOST). This host's live ceiling against the
ledger, and `bvisor probe`, are tests/launcher/test_qualification_live.py."""

import datetime
from pathlib import Path

import msgspec
import pytest

from bvisor import LinuxBackend
from bvisor.backends.linux.budgets import linux_budget_profile
from bvisor.backends.linux.facts import parse_facts
from bvisor.contract import BackendProfileSnapshot, BudgetDimension, RequirementKind
from bvisor.qualification import (
    LEDGER,
    Floor,
    Ledger,
    LedgerRow,
    Status,
    coupling_problems,
    gate_problems,
    parse_ledger,
    qualifications,
)
from ledger_gate import fold
from ledger_rows import REPO, with_budget_row, with_row
from test_linux_facts import PROBED

TODAY = datetime.date(2026, 6, 1)

# The probe of a host that meets every floor the ledger names: test_linux_facts' capable
# (rootless) host, with the cpu controller delegated too.
PROVEN_HOST = {**PROBED, "cgroup.cpu": "v2"}


def _snapshot_of(facts: dict) -> BackendProfileSnapshot:
    return BackendProfileSnapshot.of("linux", facts, linux_budget_profile(parse_facts(facts)))


@pytest.fixture(scope="module")
def backend() -> LinuxBackend:
    """The Linux backend unconstructed: its constructor probes the launcher and reconciles
    cgroups, while id() and profile() read nothing but the snapshot they are given."""
    return object.__new__(LinuxBackend)


@pytest.fixture(scope="module")
def snapshot() -> BackendProfileSnapshot:
    return _snapshot_of(PROVEN_HOST)


def _problems(ledger, backend, snapshot, prefix: str) -> list:
    return [p for p in coupling_problems(ledger, backend, snapshot, REPO, TODAY).problems if p.startswith(prefix)]


def test_the_ledger_ships_inside_the_package():
    assert LEDGER.name == "ledger.toml" and LEDGER.is_file()
    assert Path(str(LEDGER)).parent == REPO / "src" / "bvisor"


def test_every_requirement_kind_has_a_linux_row_and_each_mechanism_one_at_most(ledger):
    kinds = {row.kind for row in ledger.row if row.backend == "linux"}
    assert kinds == set(RequirementKind)
    keys = [(row.backend, row.kind, row.mechanism) for row in ledger.row]
    assert len(keys) == len(set(keys))


DUPLICATE = """
[[row]]
backend = "linux"
kind = "kill"
status = "fail-closed"
mechanism = "none"

[[row]]
backend = "linux"
kind = "kill"
status = "fail-closed"
mechanism = "none"
"""


def test_two_rows_for_one_kind_and_mechanism_are_rejected_at_load_but_two_mechanisms_load():
    with pytest.raises(msgspec.ValidationError, match="two linux rows for kill by mechanism 'none'"):
        parse_ledger(DUPLICATE)
    two = parse_ledger(DUPLICATE.replace('mechanism = "none"\n', 'mechanism = "run_tree_kill:freezer"\n', 1))
    assert sorted(r.mechanism for r in two.row) == ["none", "run_tree_kill:freezer"]
    budget = DUPLICATE.replace("[[row]]", "[[budget]]").replace('kind = "kill"', 'dimension = "wall"')
    with pytest.raises(msgspec.ValidationError, match="two linux rows for budget wall"):
        parse_ledger("row = []\n" + budget)


def test_an_advertised_cell_without_a_proven_row_fails_the_gate(backend, snapshot, ledger):
    planted = with_row(ledger, RequirementKind.NetworkDenyAll, status=Status.FailClosed)
    assert _problems(planted, backend, snapshot, "network_deny_all: advertised enforced without a proven")
    missing = Ledger(row=[r for r in ledger.row if r.kind is not RequirementKind.Environment], budget=ledger.budget)
    assert _problems(missing, backend, snapshot, "environment:")


def test_a_receipt_naming_a_missing_test_fails_the_gate(backend, snapshot, ledger):
    planted = with_row(ledger, RequirementKind.Environment, tests=["tests/oracle/test_environment.py::test_that_was_never_written"])
    assert any("test_that_was_never_written does not exist" in p for p in _problems(planted, backend, snapshot, "environment:"))


def test_a_host_below_the_proofs_floor_fails_the_gate(backend, snapshot, ledger):
    planted = with_row(ledger, RequirementKind.NetworkDenyAll, floor=Floor(userns_netns=True, landlock_abi_min=99))
    assert any("below the row's floor (landlock_abi>=99)" in p for p in _problems(planted, backend, snapshot, "network_deny_all:"))


def test_a_different_mechanism_fails_the_gate(backend, snapshot, ledger):
    planted = with_row(ledger, RequirementKind.InheritedFdsNone, mechanism="close_some_fds")
    assert _problems(planted, backend, snapshot, "inherited_fds_none: no ledger row for the mechanism this host installs, fd_scrub (rows are for close_some_fds)")


def _host_without_a_killable_leaf(snapshot) -> BackendProfileSnapshot:
    """The snapshot's facts with no cgroup kill (as for uid 65534): the run tree then dies by
    its pid namespace init, a different mechanism under the same kinds and wall budget."""
    return _snapshot_of({**{f.name: f.value for f in snapshot.facts}, "cgroup.kill": "unavailable: planted", "launcher.userns_pid": "ok"})


def _without_pid_namespace_rows(ledger) -> Ledger:
    """The shipped ledger less its rows for the pid namespace init's mechanisms."""
    return Ledger(
        row=[r for r in ledger.row if "pid_namespace_init" not in r.mechanism],
        budget=[r for r in ledger.budget if "pid_namespace_init" not in r.mechanism],
    )


def test_the_mechanism_is_the_live_cells_so_a_pid_namespace_host_is_not_covered_by_the_cgroup_kill_row(backend, snapshot, ledger):
    elsewhere = _host_without_a_killable_leaf(snapshot)
    # The shipped ledger proves the pid namespace's kill, descendants and wall cap by rows of
    # their own ...
    shipped = coupling_problems(ledger, backend, elsewhere, REPO, TODAY).problems
    assert not [p for p in shipped if p.startswith(("kill:", "child_spawn_allow_descendants:", "budget wall:"))], shipped
    # ... and without them, the cgroup.kill rows do not stand in for that mechanism.
    problems = coupling_problems(_without_pid_namespace_rows(ledger), backend, elsewhere, REPO, TODAY).problems
    assert "kill: no ledger row for the mechanism this host installs, run_tree_kill:pid_namespace_init (rows are for run_tree_kill:cgroup.kill)" in problems
    assert any(p.startswith("child_spawn_allow_descendants: no ledger row for the mechanism this host installs, run_tree:pid_namespace_init") for p in problems)
    assert any(p.startswith("budget wall: no ledger row for the mechanism this host installs, supervisor_deadline+pid_namespace_init") for p in problems)
    # The same row, relabelled for the pid namespace, is caught on a cgroup.kill host instead.
    planted = with_row(_without_pid_namespace_rows(ledger), RequirementKind.Kill, mechanism="run_tree_kill:pid_namespace_init")
    assert _problems(planted, backend, snapshot, "kill: no ledger row for the mechanism this host installs, run_tree_kill:cgroup.kill")


def test_a_kind_may_carry_one_row_per_mechanism_each_judged_on_its_own_floor(backend, snapshot, ledger):
    ledger = _without_pid_namespace_rows(ledger)
    (kill,) = [r for r in ledger.row if r.kind is RequirementKind.Kill]
    pidns = msgspec.structs.replace(kill, mechanism="run_tree_kill:pid_namespace_init", floor=Floor(userns_pid=True, landlock_abi_min=99))
    both = Ledger(row=[*ledger.row, pidns], budget=ledger.budget)
    elsewhere = _host_without_a_killable_leaf(snapshot)
    kill_problems = [p for p in coupling_problems(both, backend, elsewhere, REPO, TODAY).problems if p.startswith("kill:")]
    assert kill_problems == ["kill: advertised enforced on a host below the row's floor (landlock_abi>=99)"]
    # On a cgroup.kill host the cgroup.kill row still speaks for the cell, untouched by the
    # other row.
    assert _problems(both, backend, snapshot, "kill:") == []
    met = Ledger(row=[*ledger.row, msgspec.structs.replace(pidns, floor=Floor(userns_pid=True))], budget=ledger.budget)
    assert [p for p in coupling_problems(met, backend, elsewhere, REPO, TODAY).problems if p.startswith("kill:")] == []


def test_every_budget_dimension_has_a_linux_row_and_one_per_mechanism(ledger):
    keys = [(row.dimension, row.mechanism) for row in ledger.budget if row.backend == "linux"]
    assert {dimension for dimension, _ in keys} == set(BudgetDimension) and len(keys) == len(set(keys))


def test_an_enforced_budget_without_its_proof_fails_the_gate(backend, snapshot, ledger):
    planted = with_budget_row(ledger, BudgetDimension.ProcessCount, status=Status.FailClosed)
    assert _problems(planted, backend, snapshot, "budget process_count: advertised enforced")
    other = with_budget_row(ledger, BudgetDimension.ResidentMemory, mechanism="rusage_maxrss:kill")
    assert _problems(other, backend, snapshot, "budget resident_memory: no ledger row for the mechanism this host installs")
    below = with_budget_row(ledger, BudgetDimension.Wall, floor=Floor(landlock_abi_min=99))
    assert _problems(below, backend, snapshot, "budget wall: advertised enforced on a host below")


# Waivers and fault injection -----------------------------------------------------------

WAIVED = """
[[row]]
backend = "linux"
kind = "network_allow_list"
status = "waived"
mechanism = "linux:none:unsupported"
owner = "alice"
reason = "the broker lands in 0.2"
expires = 2027-01-31
"""


def _waive(**changes) -> dict:
    return dict(status=Status.Waived, tests=[], owner="alice", reason="the oracle is being rewritten", **changes)


def test_a_waiver_loads_with_its_owner_reason_and_date():
    (row,) = parse_ledger(WAIVED).row
    assert (row.status, row.owner, row.expires) == (Status.Waived, "alice", datetime.date(2027, 1, 31))


@pytest.mark.parametrize("field", ["owner", "reason", "expires"])
def test_a_waiver_missing_its_owner_reason_or_date_is_rejected_at_load(field):
    planted = "\n".join(line for line in WAIVED.splitlines() if not line.startswith(f"{field} ="))
    with pytest.raises(msgspec.ValidationError, match=f"a waived row needs {field}"):
        parse_ledger(planted)


def test_waiver_fields_on_a_row_that_is_not_waived_are_rejected_at_load():
    with pytest.raises(msgspec.ValidationError, match="belong only to a waived row, not a proven one"):
        parse_ledger(WAIVED.replace('status = "waived"', 'status = "proven"'))


def test_an_expired_waiver_fails_the_gate(backend, snapshot, ledger):
    planted = with_row(ledger, RequirementKind.NetworkDenyAll, **_waive(expires=datetime.date(2026, 5, 31)))
    assert _problems(planted, backend, snapshot, "network_deny_all:") == [
        "network_deny_all: the waiver by alice expired on 2026-05-31 (the oracle is being rewritten)"
    ]
    budget = with_budget_row(ledger, BudgetDimension.HandleCount, **_waive(expires=datetime.date(2026, 5, 31)))
    assert _problems(budget, backend, snapshot, "budget handle_count: the waiver by alice expired on 2026-05-31")


def test_a_live_waiver_passes_the_gate_with_a_warning(backend, snapshot, ledger):
    planted = with_row(ledger, RequirementKind.NetworkDenyAll, **_waive(expires=datetime.date(2026, 6, 1)))
    findings = coupling_problems(planted, backend, snapshot, REPO, TODAY)
    assert [p for p in findings.problems if p.startswith("network_deny_all:")] == []
    assert findings.warnings == (
        "network_deny_all: advertised enforced on a waiver, not a proof, until 2026-06-01 (owner alice: the oracle is being rewritten)",
    )
    budget = with_budget_row(ledger, BudgetDimension.Storage, **_waive(expires=datetime.date(2027, 1, 31)))
    assert [w.split(":")[0] for w in coupling_problems(budget, backend, snapshot, REPO, TODAY).warnings] == ["budget storage"]


def test_a_fault_injected_row_counts_as_proven_but_must_cite_tests(backend, snapshot, ledger):
    proven = with_row(ledger, RequirementKind.NetworkDenyAll, status=Status.FaultInjected)
    assert _problems(proven, backend, snapshot, "network_deny_all:") == []
    bare = with_row(ledger, RequirementKind.NetworkDenyAll, status=Status.FaultInjected, tests=[])
    assert _problems(bare, backend, snapshot, "network_deny_all:") == ["network_deny_all: a fault-injected row cites no test"]
    budget = with_budget_row(ledger, BudgetDimension.Network, status=Status.FaultInjected, tests=[])
    assert _problems(budget, backend, snapshot, "budget network:") == ["budget network: a fault-injected row cites no test"]


# The same-run gate ---------------------------------------------------------------------

ORACLE = "tests/oracle/test_network_deny_all.py::test_workload_cannot_reach_the_network_from_the_empty_netns_or_skip"


def _all_passed(ledger: Ledger) -> dict:
    return {t: "passed" for row in ledger.rows() for t in row.tests}


def _gate(ledger, backend, snapshot, results, prefix: str) -> list:
    return [p for p in gate_problems(ledger, backend, snapshot, REPO, results, TODAY).problems if p.startswith(prefix)]


def test_the_gate_passes_a_row_whose_every_cited_test_passed(backend, snapshot, ledger):
    assert _gate(ledger, backend, snapshot, _all_passed(ledger), "network_deny_all") == []


@pytest.mark.parametrize(
    "result, fate", [("failed", "failed"), ("skipped", "was skipped"), (None, "did not run")]
)
def test_a_cited_test_that_did_not_pass_in_this_session_fails_the_gate(backend, snapshot, ledger, result, fate):
    results = {**_all_passed(ledger), ORACLE: result}
    if result is None:
        del results[ORACLE]
    assert _gate(ledger, backend, snapshot, results, "network_deny_all") == [f"network_deny_all cites {ORACLE} which {fate} in this session"]


def test_the_gate_reruns_an_advertised_budget_row(backend, snapshot, ledger):
    cited = next(r.tests for r in ledger.budget if r.dimension is BudgetDimension.Network)
    results = {t: r for t, r in _all_passed(ledger).items() if t not in cited}
    expected = [f"budget network cites {t} which did not run in this session" for t in cited]
    assert _gate(ledger, backend, snapshot, results, "budget network") == expected


def test_only_the_row_for_the_advertised_mechanism_is_rerun_whatever_its_floor(backend, snapshot, ledger):
    # A fail-closed row for another mechanism of an advertised kind is not behind the cell.
    cited = ["tests/unit/test_qualification.py::test_the_ledger_ships_inside_the_package"]
    other = LedgerRow(backend="linux", kind=RequirementKind.Environment, status=Status.FailClosed, mechanism="other_envp", tests=cited)
    results = {t: r for t, r in _all_passed(ledger).items() if t not in cited}
    assert _gate(Ledger(row=[*ledger.row, other], budget=ledger.budget), backend, snapshot, results, "environment") == []


@pytest.mark.parametrize("status", [Status.Proven, Status.FaultInjected])
def test_a_proof_is_rerun_where_its_floor_holds_even_unadvertised_and_not_below_it(backend, snapshot, ledger, status):
    # commit_artifact is never advertised, so only the row's own claim and floor gate it.
    cited = ["tests/unit/test_qualification.py::test_the_ledger_ships_inside_the_package"]
    results = {t: r for t, r in _all_passed(ledger).items() if t not in cited}
    transfers = with_row(ledger, RequirementKind.CommitArtifact, status=status, tests=cited)
    assert _gate(transfers, backend, snapshot, results, "commit_artifact") == [f"commit_artifact cites {cited[0]} which did not run in this session"]
    below = with_row(ledger, RequirementKind.CommitArtifact, status=status, tests=cited, floor=Floor(landlock_abi_min=99))
    assert _gate(below, backend, snapshot, results, "commit_artifact") == []


def test_parametrized_instances_fold_into_one_result_where_the_worst_wins():
    outcomes = [
        ("t.py::a[1]", "passed"),
        ("t.py::a[2]", "passed"),
        ("t.py::b[1]", "passed"),
        ("t.py::b[2]", "skipped"),
        ("t.py::c[x::y]", "failed"),
        ("t.py::c[z]", "passed"),
        ("t.py::d", "passed"),
        ("t.py::d", "failed"),  # a teardown error after a passing call
    ]
    assert fold(outcomes) == {"t.py::a": "passed", "t.py::b": "skipped", "t.py::c": "failed", "t.py::d": "failed"}


# Labels for `bvisor probe` ---------------------------------------------------------------


def _labels(ledger, backend, snapshot) -> dict:
    return {cell: q.label for cell, q in qualifications(ledger, backend, snapshot, TODAY).items()}


def test_each_cell_has_a_short_qualification_label(backend, snapshot, ledger):
    labels = _labels(ledger, backend, snapshot)
    assert labels[RequirementKind.NetworkDenyAll] == "proven (20 tests; floor userns_netns, seccomp_filter, unix_gate)"
    assert labels[RequirementKind.Filesystem] == "proven (26 tests; floor userns_pid, landlock_abi>=3)"
    assert labels[BudgetDimension.HandleCount] == "proven (2 tests)"
    assert labels[RequirementKind.NetworkAllowList] == "fail-closed"
    assert set(labels) == {*RequirementKind, *BudgetDimension}
    other = Ledger(row=[msgspec.structs.replace(r, backend="gvisor") for r in ledger.row])
    assert _labels(other, backend, snapshot)[RequirementKind.NetworkAllowList] == "no ledger row"
    waived = with_row(ledger, RequirementKind.Environment, **_waive(expires=datetime.date(2027, 1, 31)))
    assert _labels(waived, backend, snapshot)[RequirementKind.Environment] == "waived until 2027-01-31 by alice: the oracle is being rewritten"
    expired = with_row(ledger, RequirementKind.Environment, **_waive(expires=datetime.date(2026, 5, 31)))
    assert _labels(expired, backend, snapshot)[RequirementKind.Environment].startswith("waiver expired on 2026-05-31")
    single = with_row(ledger, RequirementKind.Environment, status=Status.FaultInjected, tests=["tests/x.py::test_y"])
    assert _labels(single, backend, snapshot)[RequirementKind.Environment] == "fault-injected (1 test)"


def test_a_label_says_proven_only_where_the_rows_floor_and_mechanism_hold_here(backend, snapshot, ledger):
    below = with_row(ledger, RequirementKind.NetworkDenyAll, floor=Floor(userns_netns=True, landlock_abi_min=99))
    (q,) = [q for c, q in qualifications(below, backend, snapshot, TODAY).items() if c is RequirementKind.NetworkDenyAll]
    assert (q.applies, q.status, q.label) == (False, Status.Proven, "row floor not met: landlock_abi>=99 (a proven row)")
    other = with_row(ledger, RequirementKind.InheritedFdsNone, mechanism="close_some_fds")
    q = qualifications(other, backend, snapshot, TODAY)[RequirementKind.InheritedFdsNone]
    assert (q.applies, q.status, q.mechanism) == (False, None, "fd_scrub")
    assert q.label == "no row for mechanism fd_scrub (rows are for close_some_fds)"
    lying = with_row(ledger, RequirementKind.Environment, status=Status.FailClosed)
    assert qualifications(lying, backend, snapshot, TODAY)[RequirementKind.Environment].label == "fail-closed row, yet the cell is advertised enforced"
    elsewhere = qualifications(_without_pid_namespace_rows(ledger), backend, _host_without_a_killable_leaf(snapshot), TODAY)
    assert elsewhere[RequirementKind.Kill].label == "no row for mechanism run_tree_kill:pid_namespace_init (rows are for run_tree_kill:cgroup.kill)"
    assert not elsewhere[BudgetDimension.Wall].applies
    shipped = qualifications(ledger, backend, _host_without_a_killable_leaf(snapshot), TODAY)
    assert shipped[RequirementKind.Kill].applies and shipped[BudgetDimension.Wall].applies
    # On a host that proved everything every advertised cell's row applies (this host's live
    # cells: tests/launcher/test_qualification_live.py).
    advertised = set(backend.profile(snapshot).enforced_kinds())
    assert all(q.applies for c, q in qualifications(ledger, backend, snapshot).items() if c in advertised)

