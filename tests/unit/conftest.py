"""Fixtures for the contract/planner/runner unit tests: a fresh fake backend, registered."""

import pytest

from bvisor.registry import BackendRegistry
from fake_backend import FakeBackend


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def registry(backend) -> BackendRegistry:
    registry = BackendRegistry()
    registry.register(backend)
    return registry

