"""The coupling law: what the live ceiling advertises as Enforced must be proven in the
committed ledger, on a floor this host meets, by the backend's own mechanism, by tests that
exist. Each planted lie below must be caught, so the gate itself is not vacuous."""

from pathlib import Path

import msgspec
import pytest

from bvisor import LinuxBackend
from bvisor.contract import BudgetDimension, RequirementKind
from bvisor.qualification import Floor, Ledger, Status, coupling_problems, load_ledger
from helpers import launcher_path

REPO = Path(__file__).resolve().parents[2]
LEDGER = REPO / "qualification" / "ledger.toml"


@pytest.fixture(scope="module")
def backend():
    return LinuxBackend(launcher_path())


@pytest.fixture(scope="module")
def ledger():
    return load_ledger(LEDGER)


def test_the_live_ceiling_is_covered_by_the_committed_ledger(backend, ledger):
    assert coupling_problems(ledger, backend, backend.probe(), REPO) == []


def test_every_requirement_kind_has_exactly_one_linux_row(ledger):
    kinds = [row.kind for row in ledger.row if row.backend == "linux"]
    assert sorted(kinds) == sorted(RequirementKind) and len(kinds) == len(set(kinds))


def _with_row(ledger: Ledger, kind: RequirementKind, **changes) -> Ledger:
    rows = [msgspec.structs.replace(r, **changes) if r.kind is kind else r for r in ledger.row]
    return Ledger(row=rows, budget=ledger.budget)


def _with_budget_row(ledger: Ledger, dimension: BudgetDimension, **changes) -> Ledger:
    rows = [msgspec.structs.replace(r, **changes) if r.dimension is dimension else r for r in ledger.budget]
    return Ledger(row=ledger.row, budget=rows)


def test_an_advertised_cell_without_a_proven_row_fails_the_gate(backend, ledger):
    planted = _with_row(ledger, RequirementKind.NetworkDenyAll, status=Status.FailClosed)
    assert any("network_deny_all: advertised enforced without a proven" in p for p in coupling_problems(planted, backend, backend.probe(), REPO))
    missing = Ledger(row=[r for r in ledger.row if r.kind is not RequirementKind.Environment], budget=ledger.budget)
    assert any(p.startswith("environment:") for p in coupling_problems(missing, backend, backend.probe(), REPO))


def test_a_receipt_naming_a_missing_test_fails_the_gate(backend, ledger):
    planted = _with_row(ledger, RequirementKind.Environment, tests=["tests/oracle/test_environment.py::test_that_was_never_written"])
    assert any("test_that_was_never_written does not exist" in p for p in coupling_problems(planted, backend, backend.probe(), REPO))


def test_a_host_below_the_proofs_floor_fails_the_gate(backend, ledger):
    planted = _with_row(ledger, RequirementKind.NetworkDenyAll, floor=Floor(userns_netns=True, landlock_abi_min=99))
    assert any("below the proof's floor (landlock_abi>=99)" in p for p in coupling_problems(planted, backend, backend.probe(), REPO))


def test_a_different_mechanism_fails_the_gate(backend, ledger):
    planted = _with_row(ledger, RequirementKind.InheritedFdsNone, mechanism="linux:close_some_fds:enforced")
    assert any("inherited_fds_none: ledger proves linux:close_some_fds" in p for p in coupling_problems(planted, backend, backend.probe(), REPO))


def test_every_budget_dimension_has_exactly_one_linux_row(ledger):
    dimensions = [row.dimension for row in ledger.budget if row.backend == "linux"]
    assert sorted(dimensions) == sorted(BudgetDimension) and len(dimensions) == len(set(dimensions))


def test_an_enforced_budget_without_its_proof_fails_the_gate(backend, ledger):
    snapshot = backend.probe()
    planted = _with_budget_row(ledger, BudgetDimension.ProcessCount, status=Status.FailClosed)
    assert any(p.startswith("budget process_count: advertised enforced") for p in coupling_problems(planted, backend, snapshot, REPO))
    other = _with_budget_row(ledger, BudgetDimension.ResidentMemory, mechanism="rusage_maxrss:kill")
    assert any("budget resident_memory: ledger proves rusage_maxrss:kill" in p for p in coupling_problems(other, backend, snapshot, REPO))
    below = _with_budget_row(ledger, BudgetDimension.Wall, floor=Floor(landlock_abi_min=99))
    assert any(p.startswith("budget wall: advertised enforced on a host below") for p in coupling_problems(below, backend, snapshot, REPO))
