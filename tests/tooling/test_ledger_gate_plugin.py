"""The same-run ledger gate as pytest runs it: tests/ledger_gate.py is what fails the build,
so each case below runs an inner pytest session with the plugin, a planted ledger
(``BVISOR_LEDGER``) and the InertBackend's ceiling (``BVISOR_LEDGER_BACKEND=inert``: four
kinds advertised Enforced, nothing probed, so the inner session takes well under a second),
and reads the inner session's exit status and its ledger gate lines. The good ledger's
session passes, so every failure below is the planted lie's."""

import pytest

pytest_plugins = ["pytester"]

INNER = """
import pytest

def test_passes():
    pass

def test_fails():
    assert False, "planted failure"

def test_skips():
    pytest.skip("planted skip")

@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    if n == 2:
        pytest.skip("planted skip of one instance")
"""

# The InertBackend advertises these four kinds Enforced, by these live mechanisms.
INERT = {"launch_workload": "spawn", "capture_streams": "pipe_capture", "environment": "spawn_envp", "inherited_fds_none": "spawn_close_fds"}


def _ledger(**tests) -> str:
    """One proven inert row per advertised kind, citing ``test_passes`` unless ``tests`` says
    otherwise (kind=None drops the kind's row)."""
    rows = []
    for kind, mechanism in INERT.items():
        cited = tests.get(kind, "test_inner.py::test_passes")
        if cited is not None:
            rows.append(f'[[row]]\nbackend = "inert"\nkind = "{kind}"\nstatus = "proven"\nmechanism = "{mechanism}"\ntests = ["{cited}"]\n')
    return "\n".join(rows)


@pytest.fixture
def inner(pytester, monkeypatch):
    """Runs an inner session under the gate with the given ledger; returns its result and its
    ledger gate lines."""
    pytester.makepyfile(test_inner=INNER)

    def run(ledger: str, *args):
        path = pytester.path / "planted-ledger.toml"
        path.write_text(ledger)
        monkeypatch.setenv("BVISOR_LEDGER_GATE", "1")
        monkeypatch.setenv("BVISOR_LEDGER", str(path))
        monkeypatch.setenv("BVISOR_LEDGER_BACKEND", "inert")
        result = pytester.runpytest("-p", "ledger_gate", "-p", "no:cacheprovider", *args)
        gate = [line for line in result.outlines if line.startswith("ledger gate: ")]
        return result, gate

    return run


ONLY_PASSING = ("-k", "test_passes")


def test_a_good_ledger_whose_cited_tests_pass_passes(inner):
    result, gate = inner(_ledger(), *ONLY_PASSING)
    assert result.ret == pytest.ExitCode.OK, result.outlines
    assert gate[-1] == "ledger gate: every test a gated ledger row cites ran in this session and passed"
    assert gate[0].startswith("ledger gate: planted: ledger ") and gate[0].endswith("backend inert")


def test_a_cited_test_that_does_not_exist_fails_the_session(inner):
    result, gate = inner(_ledger(environment="test_inner.py::test_never_written"), *ONLY_PASSING)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "ledger gate: environment: cited test test_inner.py::test_never_written does not exist" in gate
    assert "ledger gate: environment cites test_inner.py::test_never_written which did not run in this session" in gate


def test_a_cited_test_that_fails_fails_the_session_by_the_gate_too(inner):
    result, gate = inner(_ledger(capture_streams="test_inner.py::test_fails"), "-k", "test_passes or test_fails")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert gate == [gate[0], "ledger gate: capture_streams cites test_inner.py::test_fails which failed in this session"]


@pytest.mark.parametrize("cited", ["test_inner.py::test_skips", "test_inner.py::test_param"])
def test_a_cited_test_that_is_skipped_fails_a_session_that_otherwise_passes(inner, cited):
    result, gate = inner(_ledger(launch_workload=cited), "-k", "test_passes or test_skips or test_param")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.outlines
    assert f"ledger gate: launch_workload cites {cited} which was skipped in this session" in gate


def test_a_cited_test_left_out_of_the_run_fails_the_session(inner):
    result, gate = inner(_ledger(inherited_fds_none="test_inner.py::test_param"), *ONLY_PASSING)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "ledger gate: inherited_fds_none cites test_inner.py::test_param which did not run in this session" in gate


def test_a_cell_advertised_without_a_row_fails_the_session(inner):
    result, gate = inner(_ledger(environment=None), *ONLY_PASSING)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "ledger gate: environment: advertised enforced without a proven ledger row" in gate


def test_a_row_for_another_mechanism_fails_the_session(inner):
    result, gate = inner(_ledger().replace('"spawn_envp"', '"envp_from_elsewhere"'), *ONLY_PASSING)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "ledger gate: environment: no ledger row for the mechanism this host installs, spawn_envp (rows are for envp_from_elsewhere)" in gate


def test_a_missing_ledger_file_is_a_usage_error(pytester, monkeypatch):
    monkeypatch.setenv("BVISOR_LEDGER_GATE", "1")
    monkeypatch.setenv("BVISOR_LEDGER", str(pytester.path / "absent.toml"))
    result = pytester.runpytest("-p", "ledger_gate", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
