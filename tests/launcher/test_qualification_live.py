"""The coupling law on this host: its live ceiling, from the launcher's probe, against the
committed ledger, and `bvisor probe` saying per live cell whether a ledger row applies here
and why not. The law itself, its planted lies caught on a canned host, is
tests/unit/test_qualification.py."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bvisor import LinuxBackend
from bvisor.contract import BudgetDimension, RequirementKind
from bvisor.qualification import Floor, coupling_problems
from helpers import launcher_path
from ledger_rows import REPO, with_row


@pytest.fixture(scope="module")
def backend():
    return LinuxBackend(launcher_path())


@pytest.fixture(scope="module")
def snapshot(backend):
    return backend.probe()


def test_the_live_ceiling_is_covered_by_the_committed_ledger(backend, snapshot, ledger):
    assert coupling_problems(ledger, backend, snapshot, REPO).problems == ()


def test_probe_json_carries_each_live_cells_qualification_on_this_host():
    done = subprocess.run([str(Path(sys.executable).parent / "bvisor"), "probe", "--json"], capture_output=True, timeout=120, check=True)
    probed = json.loads(done.stdout)
    kinds, budget = probed["qualification"]["kinds"], probed["qualification"]["budget"]
    assert set(kinds) == {k.value for k in RequirementKind} and set(budget) == {d.value for d in BudgetDimension}
    for cell in probed["profile"]["cells"]:
        q = kinds[cell["kind"]]
        assert q["mechanism"] == cell["mechanism"]
        if cell["verdict"]["enforcement"] == "enforced":
            assert q["applies"] and q["status"] in ("proven", "fault-injected") and q["tests"], (cell, q)
    for dimension, availability in probed["snapshot"]["budget"].items():
        assert budget[dimension]["mechanism"] == availability["mechanism"]
        if availability["enforcement"] == "enforced":
            assert budget[dimension]["applies"], (dimension, budget[dimension])


def test_probe_says_why_a_row_does_not_apply_here(monkeypatch, capsys, ledger):
    import bvisor.qualification
    from bvisor.cli import main

    planted = with_row(ledger, RequirementKind.NetworkDenyAll, floor=Floor(landlock_abi_min=99))
    planted = with_row(planted, RequirementKind.InheritedFdsNone, mechanism="close_some_fds")
    monkeypatch.setattr(bvisor.qualification, "load_ledger", lambda: planted)
    assert main(["probe"]) == 0
    lines = capsys.readouterr().out.splitlines()
    after = {lines[i].split()[0]: lines[i + 1].strip() for i in range(len(lines) - 1) if lines[i + 1].strip().startswith("ledger: ")}
    assert after["network_deny_all"] == "ledger: row floor not met: landlock_abi>=99 (a proven row)"
    assert after["inherited_fds_none"] == "ledger: no row for mechanism fd_scrub (rows are for close_some_fds)"
    assert after["environment"] == "ledger: proven (5 tests)"
    assert main(["probe", "--json"]) == 0
    qualification = json.loads(capsys.readouterr().out)["qualification"]
    assert qualification["kinds"]["network_deny_all"]["applies"] is False
    assert qualification["kinds"]["inherited_fds_none"] == {
        "mechanism": "fd_scrub",
        "applies": False,
        "label": "no row for mechanism fd_scrub (rows are for close_some_fds)",
        "status": None,
        "tests": [],
    }
