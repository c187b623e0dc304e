"""Registers the same-run ledger gate for every test run (it acts only with BVISOR_LEDGER_GATE=1),
the shipped ledger as a fixture (tests/ledger_rows.py) and the evidence store's sealed report
and path as fixtures (tests/evidence_reports.py), marks each test with its tier,
and gives the session its own BVISOR_HOME, so every `bvisor run` a test makes is stored in a
throwaway evidence store instead of the user's; uid 65534's store goes with the session."""

import os
import shutil
from pathlib import Path

import pytest

from helpers import UNPRIVILEGED_HOME

pytest_plugins = ["ledger_gate", "ledger_rows", "evidence_reports"]

TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items):
    """Each directory under tests/ is a tier, by what its tests cost, and its name is the
    tier's marker (``pytest -m unit``: the pure tier). pyproject.toml registers the markers,
    so with --strict-markers a test outside a registered tier is an error, not unmarked."""
    for item in items:
        item.add_marker(item.path.relative_to(TESTS).parts[0])


@pytest.fixture(autouse=True, scope="session")
def _private_bvisor_home(tmp_path_factory):
    previous = os.environ.get("BVISOR_HOME")
    os.environ["BVISOR_HOME"] = str(tmp_path_factory.mktemp("bvisor-home"))
    yield
    if previous is None:
        os.environ.pop("BVISOR_HOME", None)
    else:
        os.environ["BVISOR_HOME"] = previous


@pytest.fixture(autouse=True, scope="session")
def _unprivileged_home_removed():
    yield
    shutil.rmtree(UNPRIVILEGED_HOME, ignore_errors=True)
