"""The same-run ledger gate, a pytest plugin (registered by tests/conftest.py).

A ledger row is only as good as its tests passing on this code and this host, so with
``BVISOR_LEDGER_GATE=1`` the session fails unless every test the gated rows cite ran in this
very session and passed (``bvisor.qualification.gate_problems``). Without the variable the
plugin does nothing, so a partial run (``pytest -k ...``) is not failed for what it skipped.

Two seams, so the plugin itself can be tested with a planted ledger in an inner session
(tests/tooling/test_ledger_gate_plugin.py): ``BVISOR_LEDGER`` names the ledger file to check
(default: the packaged ``bvisor/ledger.toml``), and ``BVISOR_LEDGER_BACKEND=inert`` weighs
the rows against the InertBackend's ceiling (four kinds, nothing probed, no budget
enforced) instead of the LinuxBackend's live probe. Both are reported in the summary
whenever they are set, so a real gate run cannot be quietly pointed elsewhere.
"""

import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from bvisor.qualification import Findings, TestResult

# The backends the gate can weigh the ledger against (the inert one only for testing the gate).
_BACKENDS = ("linux", "inert")

# Worst wins: one failed instance fails the test, one skipped instance keeps it from passing.
_RANK = {"passed": 0, "skipped": 1, "failed": 2}

# Sessions that got as far as running their tests; an interrupted one has nothing to weigh.
_COMPLETED = (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED)


def fold(outcomes: Iterable[tuple[str, TestResult]]) -> dict[str, TestResult]:
    """Per-phase outcomes by node id -> one result per test, parameters folded away:
    ``file::name[param]`` counts under ``file::name``."""
    results: dict[str, TestResult] = {}
    for node_id, outcome in outcomes:
        # No path or function name holds "[", so the first one opens the parameter id.
        test_id = node_id.split("[", 1)[0]
        if _RANK[outcome] >= _RANK[results.get(test_id, "passed")]:
            results[test_id] = outcome
    return results


class LedgerGate:
    def __init__(self, repo_root, ledger=None, backend: str = "linux"):
        self.repo_root = repo_root
        self.ledger = ledger  # None: the packaged ledger
        self.backend = backend
        self.outcomes: list[tuple[str, TestResult]] = []
        self.findings: Findings | None = None

    def pytest_runtest_logreport(self, report):
        # A passing setup or teardown says nothing alone; only a passing call is a pass. A
        # failing or skipping phase (an error in a fixture, a skip in setup) always counts.
        if report.when == "call" or not report.passed:
            self.outcomes.append((report.nodeid, report.outcome))

    def pytest_sessionfinish(self, session):
        from bvisor.qualification import LEDGER, gate_problems, load_ledger

        # An interrupted session (a collection error, Ctrl-C) already fails; listing every
        # cited test that never ran would only bury the reason it stopped.
        if session.exitstatus not in _COMPLETED:
            return
        backend = _backend(self.backend)
        self.findings = gate_problems(load_ledger(self.ledger or LEDGER), backend, backend.probe(), self.repo_root, fold(self.outcomes))
        if self.findings.problems and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter, exitstatus):
        # Printed here, not at session finish, so the lines follow pytest's own report.
        terminalreporter.section("ledger gate")
        if self.ledger is not None or self.backend != "linux":
            terminalreporter.write_line(f"ledger gate: planted: ledger {self.ledger or 'packaged'}, backend {self.backend}")
        if self.findings is None:
            terminalreporter.write_line(f"ledger gate: not checked, the session did not complete (exit status {exitstatus})")
            return
        for problem in self.findings.problems:
            terminalreporter.write_line(f"ledger gate: {problem}")
        for warning in self.findings.warnings:
            terminalreporter.write_line(f"ledger gate: warning: {warning}")
        if not self.findings.problems:
            terminalreporter.write_line("ledger gate: every test a gated ledger row cites ran in this session and passed")


def _backend(name: str):
    """The backend whose live ceiling the ledger is weighed against."""
    if name == "inert":
        from bvisor import InertBackend

        return InertBackend()
    from bvisor import LinuxBackend
    from helpers import launcher_path

    return LinuxBackend(launcher_path())


def pytest_configure(config):
    if os.environ.get("BVISOR_LEDGER_GATE") != "1":
        return
    ledger = Path(os.environ["BVISOR_LEDGER"]) if os.environ.get("BVISOR_LEDGER") else None
    if ledger is not None and not ledger.is_file():
        raise pytest.UsageError(f"BVISOR_LEDGER names no file: {ledger}")
    backend = os.environ.get("BVISOR_LEDGER_BACKEND") or "linux"
    if backend not in _BACKENDS:
        raise pytest.UsageError(f"BVISOR_LEDGER_BACKEND must be one of {', '.join(_BACKENDS)}; got {backend!r}")
    config.pluginmanager.register(LedgerGate(config.rootpath, ledger, backend), "ledger_gate_session")
