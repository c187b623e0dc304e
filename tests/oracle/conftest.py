"""Fixtures the oracles share."""

import shutil

import pytest

from helpers import shared_host_dir


@pytest.fixture
def host_dir():
    """Makes fresh host directories uid 65534 can traverse (``helpers.shared_host_dir``: pytest's
    tmp_path sits under a 0700 directory) and removes each when the test ends."""
    made = []

    def make(prefix: str, mode: int = 0o755, parent: str = "/tmp") -> str:
        made.append(shared_host_dir(prefix, mode, parent))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)
