"""The guides' shell examples run as written: the ```sh blocks of each guide run in order, in
one directory of their own, and each exits 0 (a block that shows a failure ends with
`|| echo "exit $?"`); what the ```text block after it promises — each outcome, refusal,
verdict and `exit N` line — is in what it printed."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import loud_skip, shared_host_dir

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDES = ("getting-started.md", "reading-a-report.md")
# A block, and the text block that shows its output, if one follows.
_EXAMPLE = re.compile(r"```sh\n(.*?)```\n(?:\n```text\n(.*?)```)?", re.S)
# The part of a promised line that does not change from run to run.
_STABLE = (
    re.compile(r"^bvisor: outcome \w+ \([^)]*\)"),
    re.compile(r"^bvisor: refused: [^(]*"),
    re.compile(r"^exit \d+$"),
    re.compile(r"^valid: body_hash"),
    re.compile(r"^TAMPERED: .*"),
    re.compile(r"^the stored report is the same bytes$"),
)
TOOLS = ("jq", "make", "cc", "python3", "curl")


def examples(name: str) -> list[tuple[str, list[str]]]:
    """Each block with the stable parts of the lines its text block promises."""
    found = []
    for block, shown in _EXAMPLE.findall((DOCS / name).read_text()):
        promised = [m[0] for line in shown.splitlines() for pattern in _STABLE if (m := pattern.match(line))]
        found.append((block, promised))
    return found


def test_the_guides_have_examples_that_promise_outcomes():
    for name in GUIDES:
        assert any(promised for _, promised in examples(name)), name


@pytest.mark.parametrize("name", GUIDES)
def test_a_guide_runs_as_written(name, tmp_path):
    if os.geteuid() != 0:
        loud_skip("the guides' grader caps memory and processes: it needs root or a delegated cgroup")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        loud_skip(f"the guides' examples use {', '.join(missing)}")
    work = shared_host_dir("bvisor-docs-")  # a read-only root in it must be reachable by the run's id
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "BVISOR_HOME": str(tmp_path / "home"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
    }
    try:
        for block, promised in examples(name):
            done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
            printed = (done.stdout + done.stderr).decode()
            assert done.returncode == 0, f"{block}\n{printed}"
            for line in promised:
                assert line in printed, f"{block}\npromised {line!r}, printed:\n{printed}"
    finally:
        shutil.rmtree(work)
