"""The shipped ledger and rows planted in it, for the coupling-law tests of both tiers: on a
canned host (tests/unit/test_qualification.py) and on this host's live probe
(tests/launcher/test_qualification_live.py). tests/conftest.py registers this module as a
plugin, so the ``ledger`` fixture needs no import."""

from pathlib import Path

import msgspec
import pytest

from bvisor.contract import BudgetDimension, RequirementKind
from bvisor.qualification import Ledger, load_ledger

REPO = Path(__file__).resolve().parents[1]  # the checkout the ledger's cited tests are found in


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return load_ledger()


def with_row(ledger: Ledger, kind: RequirementKind, **changes) -> Ledger:
    """``ledger`` with its rows for ``kind`` changed by ``changes``: a planted row."""
    rows = [msgspec.structs.replace(r, **changes) if r.kind is kind else r for r in ledger.row]
    return Ledger(row=rows, budget=ledger.budget)


def with_budget_row(ledger: Ledger, dimension: BudgetDimension, **changes) -> Ledger:
    """``ledger`` with its budget rows for ``dimension`` changed by ``changes``."""
    rows = [msgspec.structs.replace(r, **changes) if r.dimension is dimension else r for r in ledger.budget]
    return Ledger(row=ledger.row, budget=rows)
