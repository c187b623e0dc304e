"""Fixtures the command-line tests share."""

import pytest


@pytest.fixture
def home(tmp_path):
    """A BVISOR_HOME of the test's own (``bvisor(home, ...)`` in test_reports_cli), so stores
    never mix."""
    return tmp_path / "home"
