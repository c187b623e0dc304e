"""The README's Python examples run as written (issue 13, point 2's acceptance in part):
each ```python block is executed in a fresh interpreter and must exit 0."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_a_python_example():
    assert BLOCKS


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_readme_python_block_runs_as_written(block, tmp_path):
    done = subprocess.run([sys.executable, "-c", block], capture_output=True, timeout=120, cwd=tmp_path, env={"BVISOR_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr.decode()
    assert b"Outcome.Completed" in done.stdout and b"lo:" in done.stdout, done.stdout
