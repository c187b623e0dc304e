"""A real sealed report and its variants, the store's path, and the store's file opened behind
its back, for the evidence-store tests of both tiers (tests/unit/test_evidence_*.py and
tests/launcher/test_evidence_store_writers.py). tests/conftest.py registers this module as a
plugin, so the ``base_report`` and ``store_path`` fixtures need no import."""

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from bvisor.backend import BackendRegistry
from bvisor.contract import BoundaryReport, Outcome, Workload, fresh_attempt_id, seal
from bvisor.planner import BoundaryPlanner
from bvisor.runner import BoundaryRunner
from fake_backend import FakeBackend, seed_spec


@pytest.fixture(scope="module")
def base_report() -> BoundaryReport:
    """A real sealed report: the seed spec planned and run on the fake backend."""
    registry = BackendRegistry()
    registry.register(FakeBackend())
    return BoundaryRunner(registry).run(BoundaryPlanner(registry).plan(seed_spec(), "fake"))


def variant(base: BoundaryReport, *, outcome=Outcome.Completed, exe="/bin/sh", started=1) -> BoundaryReport:
    body = msgspec.structs.replace(
        base.body,
        attempt_id=fresh_attempt_id(),
        outcome=outcome,
        workload=Workload.Process(exe=exe, args=["-c", "true"]),
        started_unix_ns=started,
    )
    return seal(body)


@pytest.fixture
def store_path(tmp_path) -> Path:
    return tmp_path / "home" / "evidence.sqlite3"


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """The file opened behind the store's back, as a tamperer would."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        yield db
    finally:
        db.close()
