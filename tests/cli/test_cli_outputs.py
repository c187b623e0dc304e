"""Where the run's output and its report go (issue 13, points 4 and 1 of its findings).

A closed stdout reader (``bvisor run -- seq ... | head``) is the workload's SIGPIPE, as in a
shell pipeline: exit 141, never a supervisor fault. Control: the same pipeline without
bvisor ends the same way.

``--report`` targets: ``-`` is stdout (the workload's stdout then goes to stderr); a pipe or
device, named directly or through a link (``/dev/stdout``, ``/dev/fd/N``), is written as a
stream and the link stays (host channel: it is still a link); a link to a regular file is
refused before anything runs (the file is untouched and the workload did not run); a FIFO
with no reader is refused at once instead of hanging.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from helpers import IDENTITIES, cli_prefix, shared_host_dir

BVISOR = str(Path(sys.executable).parent / "bvisor")
PIPELINE = "{run}/usr/bin/seq 1 1000000 | head -2; echo status=${{PIPESTATUS[0]}}"


def _bash(script: str, **kwargs):
    return subprocess.run(["/bin/bash", "-c", script], capture_output=True, timeout=120, cwd="/", **kwargs)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_closed_stdout_reader_is_the_workloads_sigpipe_not_a_fault(identity):
    run = shlex.join([*cli_prefix(identity), BVISOR, "run", "--no-store", "--"]) + " "
    done = _bash(PIPELINE.format(run=run))
    print(f"pipeline [{identity}]: out={done.stdout!r} err={done.stderr[-600:]!r}", file=sys.stderr)
    assert done.stdout == b"1\n2\nstatus=141\n", done.stderr
    assert b"supervisor_fault" not in done.stderr and b"exit signal 13" in done.stderr


def test_control_the_same_pipeline_without_bvisor_ends_with_sigpipe():
    assert _bash(PIPELINE.format(run="")).stdout == b"1\n2\nstatus=141\n"


@pytest.fixture
def place():
    made = shared_host_dir("bvisor-report-target-", 0o777)
    yield made
    shutil.rmtree(made, ignore_errors=True)


def _run(*args, **kwargs):
    return subprocess.run([BVISOR, "run", "--quiet", "--no-store", *args], capture_output=True, timeout=120, cwd="/", **kwargs)


def _verifies(document: bytes) -> bool:
    with tempfile.NamedTemporaryFile(suffix=".json") as saved:
        saved.write(document)
        saved.flush()
        verified = subprocess.run([BVISOR, "verify", saved.name], capture_output=True, timeout=60)
    return json.loads(document)["outcome"] == "completed" and verified.returncode == 0


def test_report_dash_writes_the_report_to_stdout_and_the_workloads_stdout_to_stderr():
    done = _run("--report", "-", "--", "/bin/echo", "from-the-workload")
    assert done.returncode == 0 and _verifies(done.stdout), done.stderr
    assert done.stderr == b"from-the-workload\n"


def test_report_to_dev_stdout_is_written_through_the_stream_and_the_link_stays():
    done = _run("--report", "/dev/stdout", "--", "/bin/echo", "first")
    assert done.returncode == 0 and done.stdout.startswith(b"first\n") and _verifies(done.stdout[len(b"first\n"):]), done.stderr
    assert os.path.islink("/dev/stdout") and os.readlink("/dev/stdout") == "/proc/self/fd/1", "CHANNEL A: /dev/stdout is still the link"


def test_report_to_a_pipe_by_dev_fd_is_written_as_a_stream():
    read_end, write_end = os.pipe()
    try:
        done = _run("--report", f"/dev/fd/{write_end}", "--", "/bin/true", pass_fds=(write_end,))
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            document = pipe.read()
    finally:
        for fd in (read_end, write_end):
            try:
                os.close(fd)
            except OSError:
                pass
    assert done.returncode == 0 and _verifies(document), done.stderr


def test_a_link_to_a_file_as_the_report_is_refused_and_nothing_runs(place):
    victim = os.path.join(place, "victim")
    Path(victim).write_text("untouched\n")
    link = os.path.join(place, "report.json")
    os.symlink(victim, link)
    marker = os.path.join(place, "ran")
    done = _run("--report", link, "--", "/bin/sh", "-c", f"touch {marker}")
    assert done.returncode == 2 and b"--report" in done.stderr and b"link" in done.stderr and b"Traceback" not in done.stderr
    assert Path(victim).read_text() == "untouched\n" and os.path.islink(link) and not os.path.exists(marker)
    with open(link, "w") as f:  # control: a writer that follows the name writes the victim
        f.write("redirected\n")
    assert Path(victim).read_text() == "redirected\n"


def test_a_fifo_with_no_reader_as_the_report_is_refused_at_once(place):
    fifo = os.path.join(place, "fifo")
    os.mkfifo(fifo)
    done = _run("--report", fifo, "--", "/bin/true")
    assert done.returncode == 2 and b"no reader" in done.stderr, done.stderr
