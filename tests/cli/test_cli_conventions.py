"""CLI conventions (issue 13, points 3-5, in part): ``--version``; ``--store`` accepted after the
``reports`` action too; a read-only command never makes a store (a mistyped path is an
error naming it, and nothing appears there); an unknown ``--outcome`` is an error, not an
empty list; a budget kill says which budget, its limit and what was observed; ``--env NAME``
passes the caller's value."""

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from helpers import shared_host_dir

BVISOR = str(Path(sys.executable).parent / "bvisor")


def bvisor(home, *args):
    env = {**os.environ, "BVISOR_HOME": str(home)}
    return subprocess.run([BVISOR, *args], capture_output=True, timeout=120, env=env, stdin=subprocess.DEVNULL, cwd="/")


def test_version_prints_the_installed_version(tmp_path):
    done = bvisor(tmp_path, "--version")
    assert (done.returncode, done.stdout) == (0, f"bvisor {version('bvisor')}\n".encode())


def test_a_read_only_command_on_a_missing_store_is_an_error_and_makes_nothing(tmp_path):
    typo = tmp_path / "typo" / "ev.sqlite3"
    for args in (["reports", "--store", str(typo), "list"], ["reports", "list", "--store", str(typo)], ["reports", "--store", str(typo), "verify"]):
        done = bvisor(tmp_path / "home", *args)
        assert done.returncode == 2 and str(typo).encode() in done.stderr and b"Traceback" not in done.stderr, (args, done.stderr)
    assert not (tmp_path / "typo").exists() and not typo.exists()


def test_store_is_accepted_after_the_action_and_reads_that_store(tmp_path):
    store = tmp_path / "elsewhere" / "ev.sqlite3"
    ran = bvisor(tmp_path / "home", "run", "--quiet", "--store", str(store), "--", "/bin/true")
    assert ran.returncode == 0, ran.stderr
    after = bvisor(tmp_path / "home", "reports", "list", "--store", str(store), "--json")
    before = bvisor(tmp_path / "home", "reports", "--store", str(store), "list", "--json")
    assert after.returncode == 0 and after.stdout == before.stdout and b"/bin/true" in after.stdout, after.stderr


def test_an_unknown_outcome_is_an_error_naming_the_known_ones(tmp_path):
    assert bvisor(tmp_path / "home", "run", "--quiet", "--", "/bin/true").returncode == 0
    done = bvisor(tmp_path / "home", "reports", "list", "--outcome", "kiled")
    assert done.returncode == 2 and b"'kiled'" in done.stderr and b"killed" in done.stderr
    control = bvisor(tmp_path / "home", "reports", "list", "--outcome", "completed")
    assert control.returncode == 0 and control.stdout.count(b"completed") == 1


def test_a_budget_kill_names_the_dimension_its_limit_and_what_was_observed(tmp_path):
    done = bvisor(tmp_path / "home", "run", "--no-store", "--timeout", "0.5", "--", "/bin/sleep", "5")
    first = done.stderr.decode().splitlines()[0]
    assert done.returncode == 124 and first.startswith("bvisor: outcome timeout") and "wall limit_reached (limit 0.5s, observed " in first, first
    control = bvisor(tmp_path / "home", "run", "--no-store", "--timeout", "5", "--", "/bin/true")
    assert control.stderr.decode().splitlines() == ["bvisor: outcome completed (exit code 0); not stored"]


def test_the_default_summary_is_one_line_verbose_adds_the_table_and_quiet_none(tmp_path):
    home = tmp_path / "home"
    done = bvisor(home, "run", "--", "/bin/true")
    [line] = done.stderr.decode().splitlines()
    assert re.fullmatch(r"bvisor: outcome completed \(exit code 0\); stored [0-9a-f]{12}", line), line
    listed = bvisor(home, "reports", "list").stdout.decode()
    assert line[-12:] in listed, listed
    verbose = bvisor(home, "run", "-v", "--report", str(tmp_path / "r.json"), "--", "/bin/true").stderr.decode().splitlines()
    assert re.fullmatch(rf"bvisor: outcome completed \(exit code 0\); report {re.escape(str(tmp_path / 'r.json'))}; stored [0-9a-f]{{12}}", verbose[0]), verbose
    assert any(row.startswith("  admitted  ") for row in verbose) and any(row.startswith("  sealed    body_hash ") for row in verbose), verbose
    assert bvisor(home, "run", "--quiet", "--", "/bin/true").stderr == b""


def test_env_name_alone_passes_the_callers_value_and_an_unset_one_is_bad_input(tmp_path):
    env = {**os.environ, "BVISOR_HOME": str(tmp_path), "BVISOR_PASSED": "from the caller"}
    done = subprocess.run([BVISOR, "run", "--quiet", "--no-store", "--clear-env", "--env", "BVISOR_PASSED", "--", "/usr/bin/env"], capture_output=True, env=env, timeout=60)
    assert done.stdout == b"BVISOR_PASSED=from the caller\n", done.stderr
    unset = bvisor(tmp_path, "run", "--quiet", "--no-store", "--env", "BVISOR_NOT_SET_ANYWHERE", "--", "/usr/bin/env")
    assert unset.returncode == 2 and b"BVISOR_NOT_SET_ANYWHERE is not set" in unset.stderr and not unset.stdout


def test_run_help_describes_every_flag_the_command_form_and_the_exit_codes(tmp_path):
    from bvisor.cli.parser import build_parser

    run = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "run")[1]
    flags = [a for a in run._actions if a.option_strings and a.dest != "help"]
    undescribed = [a.option_strings[0] for a in flags if not a.help]
    assert not undescribed, f"flags without help: {undescribed}"
    done = bvisor(tmp_path, "run", "--help")
    text = done.stdout.decode()
    assert done.returncode == 0 and "-- EXE [ARGS...]" in text
    assert all(a.option_strings[0] in text for a in flags)
    for code in ("124", "125", "126", "127", "137", "128+N"):
        assert code in text.split("exit status:", 1)[1], code


def test_bind_shows_a_host_path_at_a_new_place_read_only_or_writable(tmp_path):
    # Not under tmp_path: pytest's 0700 directory is no place a transient id may enter.
    source = Path(shared_host_dir("bvisor-bind-", 0o777))
    try:
        (source / "f").write_text("hello\n")
        (source / "f").chmod(0o644)
        read_only = bvisor(tmp_path / "home", "run", "--quiet", "--no-store", "--bind", f"{source}:/data:ro", "--", "/bin/sh", "-c", "cat /data/f; echo x > /data/g")
        assert read_only.stdout == b"hello\n" and b"Read-only file system" in read_only.stderr and not (source / "g").exists()
        writable = bvisor(tmp_path / "home", "run", "--quiet", "--no-store", "--bind", f"{source}:/data", "--", "/bin/sh", "-c", "echo x > /data/g")
        assert writable.returncode == 0 and (source / "g").read_text() == "x\n", writable.stderr
        control = bvisor(tmp_path / "home", "run", "--quiet", "--no-store", "--", "/bin/cat", "/data/f")  # without it, /data is not there
        assert control.returncode != 0 and b"No such file" in control.stderr
        for bad in (f"{source}", f"{source}:data", f"{tmp_path}/missing:/data"):
            done = bvisor(tmp_path / "home", "run", "--quiet", "--no-store", "--bind", bad, "--", "/bin/true")
            assert done.returncode == 2 and b"--bind" in done.stderr, (bad, done.stderr)
    finally:
        shutil.rmtree(source)


def test_binding_a_path_inside_the_evidence_home_is_refused(tmp_path):
    (tmp_path / "inside").mkdir()
    done = bvisor(tmp_path, "run", "--quiet", "--no-store", "--bind", f"{tmp_path}/inside:/data:ro", "--", "/bin/true")
    assert done.returncode == 125 and b"evidence_in_exposed_path" in done.stderr, done.stderr


def _spec_with_cwd(tmp_path, cwd: str) -> str:
    example = bvisor(tmp_path / "home", "spec", "--example").stdout.decode()
    text = re.sub(r'(?m)^args = .*$', 'args = ["-c", "pwd"]', example)
    text = re.sub(r'(?m)^cwd = .*$', f'cwd = "{cwd}"', text)
    path = tmp_path / f"cwd-{len(cwd)}.toml"
    path.write_text(text)
    return str(path)


def test_workload_cwd_is_where_the_run_starts_and_a_missing_one_fails_by_name(tmp_path):
    done = bvisor(tmp_path / "home", "run", "--no-store", "--quiet", _spec_with_cwd(tmp_path, "/proc/self"))
    assert done.returncode == 0 and done.stdout.decode().strip().startswith("/proc/"), done
    missing = bvisor(tmp_path / "home", "run", "--no-store", _spec_with_cwd(tmp_path, "/nowhere"))
    first = missing.stderr.decode().splitlines()[0]
    assert missing.returncode == 125 and missing.stdout == b"" and first == "bvisor: failed: cwd_missing: workload.cwd /nowhere: No such file or directory", first
    relative = bvisor(tmp_path / "home", "run", "--no-store", _spec_with_cwd(tmp_path, "tmp"))
    assert relative.returncode == 2 and b"$.workload.cwd: expected absolute path" in relative.stderr, relative.stderr


def test_cwd_flag_starts_the_run_there_and_a_directory_the_view_lacks_fails(tmp_path):
    done = bvisor(tmp_path / "home", "run", "--quiet", "--no-store", "--cwd", "/proc", "--", "/bin/pwd")
    assert done.returncode == 0 and done.stdout == b"/proc\n", done
    control = bvisor(tmp_path / "home", "run", "--quiet", "--no-store", "--", "/bin/pwd")
    assert control.returncode == 0 and control.stdout != b"/proc\n", control
    missing = bvisor(tmp_path / "home", "run", "--no-store", "--cwd", str(tmp_path), "--", "/bin/pwd")
    assert missing.returncode == 125 and missing.stdout == b"" and b"cwd_missing: workload.cwd " + str(tmp_path).encode() in missing.stderr, missing.stderr


def test_as_root_a_read_only_root_under_a_private_directory_is_shown_and_read_as_the_runs_own_id(tmp_path):
    """A root launcher clones every tree from the host's fds while still root (the transient
    id of the run could not even reach a path under a 0700 directory to find it): the run
    starts, sees the root, and reads it as the run's own id, which a 0700 root-owned
    directory keeps out (never a supervisor fault, never host root's reach)."""
    if os.geteuid() != 0:
        pytest.skip("the transient run identity exists only when bvisor runs as root")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "inner").mkdir(mode=0o755)
    (private / "inner" / "open").write_text("readable\n")
    os.chmod(private / "inner" / "open", 0o644)
    done = bvisor(tmp_path / "home", "run", "--no-store", "--ro", str(private / "inner"), "--", "/bin/cat", str(private / "inner" / "open"))
    assert done.returncode == 0 and done.stdout == b"readable\n", done.stderr
    closed = bvisor(tmp_path / "home", "run", "--no-store", "--ro", str(private), "--", "/bin/ls", str(private))
    assert closed.returncode == 2 and b"Permission denied" in closed.stderr and b"supervisor_fault" not in closed.stderr, closed.stderr
