"""The workload's environment (issue 13, point 5): a small baseline every flag-built run
declares (PATH, LANG, HOME; the caller's TERM with a terminal), ``--env NAME=VALUE`` over it,
``--env NAME`` for the caller's value, ``--clear-env`` for none; every entry is in the spec
and so in the report, nothing of the caller's environment arrives otherwise. A bare command
name is found on the workload's PATH inside its view, never on the caller's."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bvisor.contract import Capability
from bvisor.flags import BASELINE_PATH, CommandNotFound, build_spec
from helpers import shared_host_dir

BVISOR = str(Path(sys.executable).parent / "bvisor")
BASELINE = ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]
SENTINEL = "BVISOR_ENV_SENTINEL"


def bvisor(*args, extra_env=None):
    env = {**os.environ, SENTINEL: "the caller's own", **(extra_env or {})}
    return subprocess.run([BVISOR, "run", "--quiet", "--no-store", *args], capture_output=True, stdin=subprocess.DEVNULL, env=env, timeout=60)


def declared(report_path) -> list:
    """The environment entries the sealed report's admitted Environment requirement holds."""
    report = json.loads(Path(report_path).read_text())
    (env,) = [a for a in report["admitted"] if a["kind"] == "environment"]
    return [f"{e['name']}={e['source']['value']}" for e in env["requirement"]["policy"]["entries"]]


@pytest.fixture
def shared_dir():
    path = shared_host_dir("bvisor-env-")  # the run's transient id may traverse it
    yield Path(path)
    shutil.rmtree(path)


def test_the_baseline_is_the_whole_environment_and_is_in_the_report(tmp_path):
    report = tmp_path / "r.json"
    done = bvisor("--report", str(report), "--", "/usr/bin/env")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == [*BASELINE, "HOME=/tmp"]
    assert declared(report) == [*BASELINE, "HOME=/tmp"]
    assert SENTINEL.encode() not in done.stdout and SENTINEL.encode() not in report.read_bytes()


def test_home_is_a_directory_the_run_has(shared_dir):
    """With the private /tmp, HOME is it (writable); with --ro and no --tmp, it is /."""
    done = bvisor("--", "/bin/sh", "-c", 'cd "$HOME" && touch cache && pwd')
    assert (done.returncode, done.stdout) == (0, b"/tmp\n"), done.stderr.decode()
    rooted = bvisor("--ro", str(shared_dir), "--", "/bin/sh", "-c", 'cd "$HOME" && pwd')
    assert (rooted.returncode, rooted.stdout) == (0, b"/\n"), rooted.stderr.decode()


def test_env_values_override_the_baseline_in_place_and_extend_it(tmp_path):
    report = tmp_path / "r.json"
    done = bvisor("--report", str(report), "--env", "X=1", "--env", "LANG=C", "--env", "PATH=/bin", "--", "/usr/bin/env")
    assert done.returncode == 0, done.stderr.decode()
    want = ["PATH=/bin", "LANG=C", "HOME=/tmp", "X=1"]
    assert done.stdout.decode().splitlines() == want and declared(report) == want


def test_env_name_alone_overrides_the_baseline_with_the_callers_value():
    done = bvisor("--env", "LANG", "--env", SENTINEL, "--", "/usr/bin/env", extra_env={"LANG": "xx_YY.UTF-8"})
    assert done.stdout.decode().splitlines() == [BASELINE[0], "LANG=xx_YY.UTF-8", "HOME=/tmp", f"{SENTINEL}=the caller's own"]


def test_clear_env_gives_an_empty_environment_or_exactly_the_env_flags():
    empty = bvisor("--clear-env", "--", "/usr/bin/env")
    assert (empty.returncode, empty.stdout) == (0, b""), empty.stderr.decode()
    only = bvisor("--clear-env", "--env", "A=1", "--", "/usr/bin/env")
    assert (only.returncode, only.stdout) == (0, b"A=1\n"), only.stderr.decode()


def test_a_terminal_declares_the_callers_term_and_nothing_without_one(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")

    def names(**options) -> list:
        (env,) = [c for c in build_spec(["/bin/true"], **options).capabilities if isinstance(c, Capability.Environment)]
        return [f"{e.name}={e.source.value}" for e in env.policy.entries]

    assert names(terminal=True) == [*BASELINE, "HOME=/tmp", "TERM=xterm-256color"]
    assert names() == [*BASELINE, "HOME=/tmp"]
    assert names(terminal=True, clear_env=True) == []
    assert names(terminal=True, env={"TERM": "dumb"})[-1] == "TERM=dumb"
    monkeypatch.delenv("TERM")
    assert names(terminal=True) == [*BASELINE, "HOME=/tmp"]


def test_a_bare_name_is_found_on_the_workloads_path_not_a_shim_on_the_callers(shared_dir, tmp_path):
    """A fake python3 first on the caller's PATH (as a pyenv shim is) is not what runs: the
    workload's own PATH finds the one in its view, and the report's exe says which."""
    (shared_dir / "python3").write_text("#!/bin/sh\necho shim\n")
    (shared_dir / "python3").chmod(0o755)
    report = tmp_path / "r.json"
    caller_path = f"{shared_dir}:{os.environ['PATH']}"
    assert shutil.which("python3", path=caller_path) == str(shared_dir / "python3")  # the control: the caller's PATH picks the shim
    done = bvisor("--report", str(report), "--", "python3", "-c", "import sys; print(sys.executable)", extra_env={"PATH": caller_path})
    expected = shutil.which("python3", path=BASELINE_PATH)
    assert (done.returncode, done.stdout) == (0, f"{expected}\n".encode()), done.stderr.decode()
    assert json.loads(report.read_text())["workload"]["exe"] == expected


def test_a_command_only_outside_the_view_is_not_found_and_granting_it_finds_it(shared_dir):
    (shared_dir / "bvisor-env-tool").write_text("#!/bin/sh\necho tool ran\n")
    (shared_dir / "bvisor-env-tool").chmod(0o755)
    on_path = f"PATH={shared_dir}:/usr/bin:/bin"
    outside = bvisor("--env", on_path, "--", "bvisor-env-tool")  # on its PATH, but not in its view
    assert outside.returncode == 127 and b"bvisor-env-tool: command not found on the workload's PATH" in outside.stderr
    assert len(outside.stderr.splitlines()) == 1 and b"Traceback" not in outside.stderr
    granted = bvisor("--ro", str(shared_dir), "--env", on_path, "--", "bvisor-env-tool")
    assert (granted.returncode, granted.stdout) == (0, b"tool ran\n"), granted.stderr.decode()
    bound = bvisor("--bind", f"{shared_dir}:/opt/tools:ro", "--env", "PATH=/opt/tools:/usr/bin", "--", "bvisor-env-tool")
    assert (bound.returncode, bound.stdout) == (0, b"tool ran\n"), bound.stderr.decode()


def test_the_hosts_tmp_is_not_the_runs_and_a_link_out_of_the_view_is_not_picked(shared_dir):
    """The private /tmp starts empty, so a PATH directory in the host's /tmp finds nothing;
    a granted directory's link to a program outside the view is skipped for the next one."""
    outside = Path(shared_host_dir("bvisor-env-outside-"))
    try:
        (outside / "sh").write_text("#!/bin/sh\necho outside\n")
        (outside / "sh").chmod(0o755)
        (shared_dir / "sh").symlink_to(outside / "sh")
        inside_tmp = bvisor("--env", f"PATH={shared_dir}", "--", "sh")
        assert inside_tmp.returncode == 127, inside_tmp.stderr.decode()
        path = f"PATH={shared_dir}:/usr/bin:/bin"
        linked = bvisor("--ro", str(shared_dir), "--env", path, "--report", "-", "--", "sh", "-c", "echo in the view")
        assert (linked.returncode, linked.stderr) == (0, b"in the view\n"), linked.stderr.decode()
        assert json.loads(linked.stdout)["workload"]["exe"] == "/usr/bin/sh"
        # The control: with its target granted too, the link is what runs.
        both = bvisor("--ro", str(shared_dir), "--ro", str(outside), "--env", path, "--", "sh")
        assert (both.returncode, both.stdout) == (0, b"outside\n"), both.stderr.decode()
    finally:
        shutil.rmtree(outside)


def test_no_path_and_a_bare_name_is_one_line_naming_it():
    with pytest.raises(CommandNotFound, match="no PATH"):
        build_spec(["sh"], clear_env=True)
    done = bvisor("--clear-env", "--", "sh")
    assert done.returncode == 127 and done.stderr.decode().count("\n") == 1 and "sh: the workload has no PATH" in done.stderr.decode()
