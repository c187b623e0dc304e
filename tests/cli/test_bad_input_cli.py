"""Bad input at the command line (issue 12, finding 11): a spec or report path that is not
a small regular file, and an environment name that is not a name. Each is refused before
anything is read or run: exit 2, one line naming the file or the field, no traceback, and
nothing left behind (no process, no evidence store, no temp file). As root and as uid 65534.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bvisor.contract import MAX_INPUT_BYTES
from helpers import UNPRIVILEGED_PREFIX, left_behind, shared_host_dir

BVISOR = str(Path(sys.executable).parent / "bvisor")
IDENTITIES = ("root", "unprivileged")


@pytest.fixture
def workdir():
    """A directory uid 65534 can read but not write: whatever appears in it after a
    command was made by the test itself, or leaked by bvisor running as root."""
    path = Path(shared_host_dir("bvisor-badinput-"))
    yield path
    shutil.rmtree(path)


def bvisor_in(workdir: Path, identity: str, *args, env=()) -> dict:
    """One bvisor command under a subreaper, with a BVISOR_HOME of its own in ``workdir``
    (and the ``NAME=VALUE`` strings of ``env``); a command that blocks is killed after
    20 s and reported as code "timeout"."""
    environment = ("/usr/bin/env", f"BVISOR_HOME={workdir / 'home'}", *env)
    prefix = UNPRIVILEGED_PREFIX if identity == "unprivileged" else ()
    return left_behind(*prefix, *environment, BVISOR, *args, cwd=workdir, timeout=20)


def assert_bad_input(left: dict, *names: str) -> None:
    assert left["code"] == 2, left
    assert "Traceback" not in left["stderr"], left["stderr"]
    lines = left["stderr"].strip().splitlines()
    assert len(lines) == 1 and all(name in lines[0] for name in names), lines
    assert left["children"] == [], "bad input must leave no process behind"


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _two_mib(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(2 * MAX_INPUT_BYTES)


def _directory(path: Path) -> None:
    path.mkdir()


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_fifo, "is a FIFO, not a regular file"),
        (_dev_zero, "is a character device, not a regular file"),
        (_two_mib, f"is {2 * MAX_INPUT_BYTES} bytes, over the {MAX_INPUT_BYTES}-byte limit"),
        (_directory, "is a directory, not a regular file"),
    ],
)
@pytest.mark.parametrize("command", ["plan", "run", "verify"])
def test_a_spec_or_report_path_must_be_a_small_regular_file(workdir, identity, make, why, command):
    make(workdir / "input.toml")
    args = [command, str(workdir / "input.toml")]
    if command == "run":
        args += ["--report", str(workdir / "report.json")]
    assert_bad_input(bvisor_in(workdir, identity, *args), "input.toml", why)
    assert os.listdir(workdir) == ["input.toml"], "bad input must leave no store, report or temp file"


def test_verify_key_must_be_a_small_regular_file_and_a_valid_report_still_verifies(workdir):
    ran = bvisor_in(workdir, "root", "run", "--quiet", "--no-store", "--report", str(workdir / "r.json"), "--", "/bin/true")
    assert (ran["code"], ran["children"]) == (0, []), ran
    verified = bvisor_in(workdir, "root", "verify", str(workdir / "r.json"))  # the control
    assert (verified["code"], verified["children"]) == (0, []), verified
    _fifo(workdir / "key.pem")
    assert_bad_input(bvisor_in(workdir, "root", "verify", "--key", str(workdir / "key.pem"), str(workdir / "r.json")), "--key", "key.pem", "FIFO")
    assert sorted(os.listdir(workdir)) == ["home", "key.pem", "r.json"]  # home: the run made its empty evidence home


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_spec_of_exactly_the_limit_is_read_and_one_byte_more_is_not(workdir, identity):
    example = subprocess.run([BVISOR, "spec", "--example"], capture_output=True, check=True).stdout
    padding = MAX_INPUT_BYTES - len(example) - 2
    (workdir / "limit.toml").write_bytes(example + b"#" + b" " * padding + b"\n")
    (workdir / "over.toml").write_bytes(example + b"#" + b" " * (padding + 1) + b"\n")
    assert os.path.getsize(workdir / "limit.toml") == MAX_INPUT_BYTES
    admitted = bvisor_in(workdir, identity, "plan", str(workdir / "limit.toml"))
    assert (admitted["code"], admitted["children"]) == (0, []), admitted
    ran = bvisor_in(workdir, identity, "run", "--no-store", str(workdir / "limit.toml"))
    assert (ran["code"], ran["children"]) == (0, []), ran
    assert_bad_input(bvisor_in(workdir, identity, "plan", str(workdir / "over.toml")), "over.toml", "over the")


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize(
    ("flag", "value", "shown"),
    [
        ("--env", "X\nY=1", r"'X\nY'"),
        ("--env", "X\x01=1", r"'X\x01'"),
        ("--env", "\x1b[31mX=1", r"'\x1b[31mX'"),
        ("--env", "X\x7f=1", r"'X\x7f'"),
        ("--env", "X\u0085=1", r"'X\x85'"),
        ("--env", "=1", "NAME=VALUE"),
        ("--env-secret", "X\nY=env:HOME", r"'X\nY'"),
        ("--env-secret", "X\tY=env:HOME", r"'X\tY'"),
    ],
)
def test_an_env_name_with_a_control_character_is_bad_input(workdir, identity, flag, value, shown):
    marker = workdir / "ran"
    left = bvisor_in(workdir, identity, "run", "--report", str(workdir / "r.json"), flag, value, "--", "/bin/sh", "-c", f"touch {marker}")
    assert_bad_input(left, flag, shown)
    assert os.listdir(workdir) == [], "bad input must leave no store, report or temp file, and run nothing"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_a_valid_env_name_is_accepted_and_its_value_may_span_lines(workdir, identity):
    args = ["run", "--quiet", "--no-store", "--clear-env", "--env", "X_Y=a\nb", "--env-secret", "S=env:BVISOR_TEST_SECRET", "--", "/usr/bin/env"]
    left = bvisor_in(workdir, identity, *args, env=["BVISOR_TEST_SECRET=leased"])
    assert (left["code"], left["children"]) == (0, []), left
    assert left["stdout"] == "X_Y=a\nb\nS=leased\n"
    left_behind = os.listdir(workdir)
    assert left_behind in ([], ["home"]) and not (left_behind and os.listdir(workdir / "home")), "at most the run's empty evidence home"


def test_an_env_name_with_a_control_character_in_a_spec_file_names_its_field(workdir):
    spec = json.loads(subprocess.run([BVISOR, "spec", "--example", "--format", "json"], capture_output=True, check=True).stdout)
    index = next(i for i, cap in enumerate(spec["capabilities"]) if cap["kind"] == "environment")
    spec["capabilities"][index]["policy"]["entries"][1]["name"] = "X\nY"
    (workdir / "spec.json").write_text(json.dumps(spec))
    for command in ("plan", "run"):
        left = bvisor_in(workdir, "root", command, str(workdir / "spec.json"))
        assert_bad_input(left, f"capabilities[{index}].policy.entries[1].name", "control character")
    assert os.listdir(workdir) == ["spec.json"]
