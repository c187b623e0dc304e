"""``bvisor.run`` and ``bvisor.Session`` (issue 13, point 2): a run shaped like
``subprocess.run`` on the CLI's own path (spec builder, planner, runner). Output and input
round-trip as bytes; an exit code is the workload's, a signal ``-N``; the wall timeout, a
refused plan, a non-zero exit under ``check=True`` and a run with no exit status raise typed
errors carrying the sealed report; ``net="none"`` really denies; a warm Session gives the
same results through one launcher server."""

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import blake3
import pytest

import bvisor
from bvisor.contract import Outcome, ReportVerdict, encode_report_json, verify_report_json
from helpers import shared_host_dir

MIXED = ("sh", "-c", "printf 'out\\000bytes\\n'; printf 'err line\\n' >&2; exit 3")
CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10).close()\n"
    "except OSError as e:\n"
    "    print('failed', e.errno); sys.exit(1)\n"
    "print('connected')\n"
)


@pytest.fixture
def shared_dir():
    path = shared_host_dir("bvisor-api-")  # the run's transient id may traverse it
    yield Path(path)
    shutil.rmtree(path)


def test_output_round_trips_as_bytes_and_the_exit_code_is_the_workloads():
    done = bvisor.run(list(MIXED))
    assert isinstance(done, bvisor.CompletedRun)
    assert (done.args, done.returncode, done.stdout, done.stderr) == (MIXED, 3, b"out\x00bytes\n", b"err line\n")
    assert done.report.body.outcome is Outcome.Failed and done.report.body.exit.code == 3


def test_input_feeds_stdin_and_without_it_stdin_is_empty():
    data = os.urandom(1 << 20)  # more than a pipe holds: relayed as the workload reads
    fed = bvisor.run(["cat"], input=data)
    assert (fed.returncode, fed.stdout == data) == (0, True), fed.stderr
    assert bvisor.run(["cat"]).stdout == b""


def test_a_signal_is_a_negative_returncode_as_in_subprocess():
    done = bvisor.run(["sh", "-c", "kill -TERM $$"])
    assert done.returncode == -signal.SIGTERM and done.report.body.exit.signal == signal.SIGTERM


def test_the_wall_timeout_raises_timeout_expired_with_the_output_and_the_report():
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        bvisor.run(["sh", "-c", "echo before; exec sleep 60"], timeout=2)
    error = caught.value
    assert isinstance(error, bvisor.RunTimeout) and error.timeout == 2
    assert error.stdout == b"before\n" and error.report.body.outcome is Outcome.Timeout


def test_check_raises_called_process_error_carrying_the_run_and_passes_a_zero_exit():
    with pytest.raises(subprocess.CalledProcessError) as caught:
        bvisor.run(list(MIXED), check=True)
    error = caught.value
    assert isinstance(error, bvisor.CalledRunError)
    assert (error.returncode, error.cmd, error.stdout, error.stderr) == (3, MIXED, b"out\x00bytes\n", b"err line\n")
    assert error.report.body.exit.code == 3 and error.result.report is error.report
    assert bvisor.run(["true"], check=True).returncode == 0


def test_a_refused_plan_raises_the_planners_refusal_naming_the_requirement_and_runs_nothing(shared_dir):
    marker = shared_dir / "ran"
    with pytest.raises(bvisor.PlanError) as caught:
        bvisor.run(["sh", "-c", f"touch {marker}"], net=["allow=example.com:443"], rw=shared_dir)
    assert caught.value.requirement == "network_allow_list" and caught.value.remediation
    assert not marker.exists()
    # The control: the same run without the refused flag does run.
    assert bvisor.run(["sh", "-c", f"touch {marker}"], rw=shared_dir).returncode == 0 and marker.exists()


def test_the_report_is_sealed_verifies_and_hashes_the_output_returned():
    done = bvisor.run(list(MIXED))
    verdict = verify_report_json(encode_report_json(done.report))
    assert isinstance(verdict, ReportVerdict.Valid) and verdict.report.body_hash == done.report.body_hash
    captured = {ref.stream: ref for ref in done.report.body.captured}
    assert captured["stdout"].blake3 == blake3.blake3(done.stdout).hexdigest()
    assert captured["stderr"].blake3 == blake3.blake3(done.stderr).hexdigest()


def test_net_none_denies_a_connect_the_host_network_otherwise_allows():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = str(listener.getsockname()[1])
        control = bvisor.run(["python3", "-c", CONNECT, port])
        assert (control.returncode, control.stdout) == (0, b"connected\n"), control.stderr
        denied = bvisor.run(["python3", "-c", CONNECT, port], net="none")
    assert denied.returncode == 1 and denied.stdout.startswith(b"failed "), (denied.stdout, denied.stderr)


def test_bad_arguments_raise_value_errors_naming_the_option_and_a_missing_command_file_not_found():
    with pytest.raises(ValueError, match="--memory"):
        bvisor.run(["true"], memory=0)
    with pytest.raises(ValueError, match="--timeout"):
        bvisor.run(["true"], timeout="soon")
    with pytest.raises(FileNotFoundError, match="bvisor-no-such-command"):
        bvisor.run(["bvisor-no-such-command"])


def test_a_run_with_no_exit_status_raises_run_failed_with_the_report(shared_dir):
    data_file = shared_dir / "not-a-program"
    data_file.write_text("just data\n")
    with pytest.raises(bvisor.RunFailed, match="exe_not_executable") as caught:
        bvisor.run([str(data_file)], ro=shared_dir)
    assert caught.value.report.body.exit is None


def test_a_warm_session_gives_the_same_results_through_one_launcher_server():
    cases = [(list(MIXED), {}), (["cat"], {"input": b"fed\n"}), (["sh", "-c", "kill -TERM $$"], {}), (["/usr/bin/env"], {"env": {"A": "1"}})]
    cold = [bvisor.run(argv, **options) for argv, options in cases]
    with bvisor.Session() as session:
        warm = [session.run(argv, **options) for argv, options in cases]
        server = session._backend.warm_launcher_pid()  # reached into: which server carried the runs
        assert server is not None and session.run(["true"]).returncode == 0 and session._backend.warm_launcher_pid() == server
    assert session._backend.warm_launcher_pid() is None  # closed with the session
    assert [(r.returncode, r.stdout, r.stderr) for r in warm] == [(r.returncode, r.stdout, r.stderr) for r in cold]
    assert [r.returncode for r in warm] == [3, 0, -signal.SIGTERM, 0]


def test_env_extends_the_baseline_and_cwd_places_the_run():
    done = bvisor.run(["/usr/bin/env"], env={"A": "1", "LANG": "C"}, cwd="/usr/bin")
    assert done.stdout.decode().splitlines() == ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C", "HOME=/tmp", "A=1"]
    assert bvisor.run(["pwd"], cwd="/usr/bin").stdout == b"/usr/bin\n"
    assert bvisor.run(["/usr/bin/env"], clear_env=True).stdout == b""
