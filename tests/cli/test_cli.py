"""The ``bvisor`` command as a newcomer meets it: exit codes exactly as DESIGN §6, output
passed through byte for byte, one-line errors without tracebacks, reports that verify."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import left_behind

BVISOR = str(Path(sys.executable).parent / "bvisor")


def bvisor(*args, stdin=subprocess.DEVNULL, cwd=None):
    return subprocess.run([BVISOR, *args], capture_output=True, stdin=stdin, cwd=cwd, timeout=60, check=False)


def _no_traceback(done):
    assert b"Traceback" not in done.stderr and b"Traceback" not in done.stdout, done.stderr.decode()


@pytest.mark.parametrize(
    ("script", "expected"),
    [("exit 0", 0), ("exit 7", 7), ("exit 2", 2), ("kill -TERM $$", 143), ("kill -KILL $$", 137)],
)
def test_exit_status_passes_through(script, expected):
    done = bvisor("run", "--quiet", "--", "sh", "-c", script)
    assert done.returncode == expected, done.stderr.decode()


def test_output_passes_through_byte_for_byte_and_quiet_silences_only_bvisor():
    payload = "printf 'out\\000bytes\\n'; printf 'err line\\n' >&2"
    done = bvisor("run", "--quiet", "--", "sh", "-c", payload)
    assert done.stdout == b"out\x00bytes\n"
    assert done.stderr == b"err line\n"
    loud = bvisor("run", "--", "sh", "-c", payload)
    assert loud.stdout == b"out\x00bytes\n"
    assert loud.stderr.startswith(b"err line\n") and b"bvisor: outcome completed" in loud.stderr


def test_stdin_passes_through_unless_no_stdin():
    done = subprocess.run([BVISOR, "run", "--quiet", "--", "cat"], input=b"hello stdin", capture_output=True, timeout=60)
    assert done.stdout == b"hello stdin"
    closed = subprocess.run(
        [BVISOR, "run", "--quiet", "--no-stdin", "--", "cat"], input=b"hello stdin", capture_output=True, timeout=60
    )
    assert closed.returncode == 0 and closed.stdout == b""


def test_with_clear_env_the_environment_is_exactly_the_env_flags():
    done = bvisor("run", "--quiet", "--clear-env", "--env", "A=1", "--env", "EMPTY=", "--env", "EQ=x=y", "--", "/usr/bin/env")
    assert done.returncode == 0
    assert done.stdout == b"A=1\nEMPTY=\nEQ=x=y\n"


def test_refused_plan_exits_125_with_one_line_reason_and_writes_a_refusal_document(tmp_path):
    report = tmp_path / "refusal.json"
    marker = tmp_path / "ran"
    done = bvisor("run", "--net", "allow=example.com:443", "--report", str(report), "--", "sh", "-c", f"touch {marker}")
    assert done.returncode == 125
    _no_traceback(done)
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "network_allow_list" in lines[0], lines
    refused = json.loads(report.read_text())["refused"]
    assert refused["requirement"] == "network_allow_list" and refused["reason"] and refused["remediation"]
    assert not marker.exists(), "a refused plan must not run the workload"


@pytest.mark.parametrize(
    "flags",
    [
        ["--net", "allow=example.com:443"],
    ],
)
def test_flags_of_capabilities_not_yet_enforced_refuse_never_ignore(flags):
    done = bvisor("run", *flags, "--", "true")
    assert done.returncode == 125, (flags, done.stderr.decode())
    assert b"refused" in done.stderr
    _no_traceback(done)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["run", "--timeout", "0", "--", "true"], "--timeout"),
        (["run", "--timeout", "-1", "--", "true"], "--timeout"),
        (["run", "--memory", "lots", "--", "true"], "--memory"),
        (["run", "--pids", "0", "--", "true"], "--pids"),
        (["run", "--cpu", "1e30", "--", "true"], "--cpu"),
        (["run", "--env", "A=1", "--env", "A=2", "--", "true"], "--env"),
        (["run", "--env", "NOEQUALS", "--", "true"], "--env"),
        (["run", "--net", "none", "--net", "allow=a:1", "--", "true"], "--net"),
        (["run", "--net", "allow=nohostport", "--", "true"], "--net"),
        (["run", "--no-spawn", "--threads-only", "--", "true"], "--threads-only"),
        (["run"], "run"),
        (["run", "--bogus-flag", "--", "true"], "--bogus-flag"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_field_and_writes_nothing(tmp_path, args, names):
    report = tmp_path / "report.json"
    if args[0] == "run" and "--" in args:
        split = args.index("--")
        args = args[:split] + ["--report", str(report)] + args[split:]
    done = bvisor(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr.decode()
    _no_traceback(done)
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and names in lines[0], lines
    assert list(tmp_path.iterdir()) == [], "bad input must leave nothing behind"


def test_bad_spec_files_exit_2_naming_the_field(tmp_path):
    unknown_field = '{"workload": {"kind": "process", "exe": "/bin/true", "args": []}, "surprise": 1}'
    good = json.loads(bvisor("spec", "--example", "--format", "json").stdout)
    bad_exe = dict(good, workload={"kind": "process", "exe": "bin/sh", "args": []})
    bad_nul = dict(good, workload={"kind": "process", "exe": "/bin/sh", "args": ["a\u0000b"]})
    bad_budget = json.loads(json.dumps(good))
    bad_budget["budgets"]["wall"]["limit"] = -5
    for name, document, field in [
        ("unknown.json", unknown_field, "surprise"),
        ("exe.json", json.dumps(bad_exe), "workload.exe"),
        ("nul.json", json.dumps(bad_nul), "workload.args"),
        ("budget.json", json.dumps(bad_budget), "budgets.wall"),
        ("notes.txt", "{}", "toml"),
        ("broken.toml", "workload = [", "TOML"),
    ]:
        path = tmp_path / name
        path.write_text(document)
        done = bvisor("run", str(path))
        assert done.returncode == 2, (name, done.stderr.decode())
        _no_traceback(done)
        lines = done.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and field in lines[0], (name, lines)


def test_exe_not_found_is_127_and_not_executable_is_126(tmp_path):
    assert bvisor("run", "--quiet", "--", "no-such-command-bvisor").returncode == 127
    assert bvisor("run", "--quiet", "--", str(tmp_path / "missing")).returncode == 127
    text = tmp_path / "data.txt"
    text.write_text("not a program\n")
    assert bvisor("run", "--quiet", "--", str(text)).returncode == 126
    text.chmod(0o755)
    assert bvisor("run", "--quiet", "--", str(text)).returncode == 126
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho from-script \"$@\"\n")
    script.chmod(0o755)
    done = bvisor("run", "--quiet", "--", str(script), "arg1")
    assert done.returncode == 0 and done.stdout == b"from-script arg1\n"


def test_example_spec_plans_and_runs(tmp_path):
    for fmt in ("toml", "json"):
        path = tmp_path / f"example.{fmt}"
        path.write_bytes(bvisor("spec", "--example", "--format", fmt).stdout)
        planned = bvisor("plan", str(path))
        assert planned.returncode == 0, planned.stdout.decode() + planned.stderr.decode()
        ran = bvisor("run", "--quiet", str(path))
        assert ran.returncode == 0 and b"hello from inside the boundary" in ran.stdout


def test_a_refused_plan_exits_125_under_plan_and_run_alike(tmp_path):
    good = json.loads(bvisor("spec", "--example", "--format", "json").stdout)
    # A non-zero network budget cannot be a hard cap: only 0 bytes (an empty netns) can.
    good["budgets"]["network"] = {"limit": 1000, "guarantee": "enforced", "evidence": []}
    path = tmp_path / "network.json"
    path.write_text(json.dumps(good))
    planned = bvisor("plan", str(path))
    assert planned.returncode == 125 and b"network" in planned.stdout and b"at most 0" in planned.stdout
    ran = bvisor("run", "--no-store", str(path))
    assert ran.returncode == 125 and b"refused: network" in ran.stderr, ran.stderr


def test_verify_accepts_a_fresh_report_and_rejects_one_changed_byte(tmp_path):
    report = tmp_path / "report.json"
    done = bvisor("run", "--quiet", "--net", "none", "--report", str(report), "--", "sh", "-c", "echo sealed")
    assert done.returncode == 0
    document = json.loads(report.read_text())
    for key in ("outcome", "exit", "observed", "plan_id", "body_hash", "admitted", "budget"):
        assert key in document, key
    assert document["outcome"] == "completed" and document["exit"] == {"code": 0}
    assert bvisor("verify", str(report)).returncode == 0

    raw = report.read_bytes()
    position = raw.index(b'"plan_id":"') + len(b'"plan_id":"') + 5
    flipped = b"0" if raw[position : position + 1] != b"0" else b"1"
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(raw[:position] + flipped + raw[position + 1 :])
    assert bvisor("verify", str(tampered)).returncode == 1

    changed_outcome = tmp_path / "outcome.json"
    changed_outcome.write_bytes(raw.replace(b'"outcome":"completed"', b'"outcome":"completef"'))
    assert bvisor("verify", str(changed_outcome)).returncode == 1

    not_report = tmp_path / "not.json"
    not_report.write_text("[1, 2, 3]")
    assert bvisor("verify", str(not_report)).returncode == 2
    assert bvisor("verify", str(tmp_path / "absent.json")).returncode == 2


def test_probe_lists_every_requirement_kind_with_a_reason_for_each_unsupported_cell():
    done = bvisor("probe", "--json")
    assert done.returncode == 0
    cells = json.loads(done.stdout)["profile"]["cells"]
    assert len(cells) == 17
    for cell in cells:
        if cell["verdict"]["enforcement"] != "enforced":
            assert cell["reason"] and cell["remediation"], cell
    text = bvisor("probe")
    assert text.returncode == 0 and b"network_deny_all" in text.stdout


def test_no_report_and_no_temp_file_left_on_a_refusal_without_report_flag(tmp_path):
    done = bvisor("run", "--net", "allow=example.com:443", "--", "true", cwd=tmp_path)
    assert done.returncode == 125
    assert os.listdir(tmp_path) == []


def test_the_whole_command_runs_rootless():
    """Rootless is the real case: an unprivileged user runs bvisor itself, end to end."""
    import tempfile

    from helpers import cli_prefix

    prefix = list(cli_prefix("unprivileged"))
    tmp_path = Path(tempfile.mkdtemp(prefix="bvisor-rootless-"))
    try:
        _run_rootless(prefix, tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _run_rootless(prefix, tmp_path):
    tmp_path.chmod(0o777)  # the unprivileged uid writes its report here
    report = tmp_path / "rootless.json"
    done = subprocess.run(
        [*prefix, BVISOR, "run", "--quiet", "--net", "none", "--report", str(report), "--", "cat", "/proc/self/net/dev"],
        capture_output=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    interfaces = [line.split(":")[0].strip() for line in done.stdout.decode().splitlines()[2:]]
    assert interfaces == ["lo"]
    document = json.loads(report.read_text())
    assert document["outcome"] == "completed"
    # In-run root is the user who ran bvisor: uid 65534 through the prefix, else this
    # (non-root) user.
    runner = 65534 if prefix else os.geteuid()
    mapped = [f["detail"] for f in document["observed"] if f["kind"] == "launcher_note" and f["detail"].startswith("user_namespace=mapped ")]
    assert mapped and all(f" uid0={runner} " in detail for detail in mapped), mapped


def test_an_unwritable_report_path_is_bad_input_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    done = bvisor("run", "--report", str(tmp_path / "missing-dir" / "r.json"), "--", "sh", "-c", f"touch {marker}")
    assert done.returncode == 2 and b"--report" in done.stderr
    _no_traceback(done)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["run", "--quiet", "--no-store", "--net", "none", "--", "/bin/true"], 0),
        (["run", "--memory", "lots", "--", "/bin/true"], 2),  # after the launcher was prestarted
        (["run", "--no-store", "--", "/nonexistent/exe"], 127),
    ],
)
def test_run_leaves_no_launcher_probe_or_server_behind(args, code):
    # `run` starts the launcher's probe and a warm server before it reads its flags.
    left = left_behind(BVISOR, *args)
    assert (left["code"], left["children"]) == (code, [])


def test_control_the_subreaper_sees_what_a_command_leaves_behind():
    left = left_behind("sh", "-c", "sleep 5 & exit 2")
    assert left["code"] == 2 and len(left["children"]) == 1
    os.kill(int(left["children"][0]), 9)
