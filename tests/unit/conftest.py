"""Fixtures for the unit tests: a fresh fake backend, registered; the host's signing key and
an attacker's, each made anew."""

import pytest

from bvisor.backend import BackendRegistry
from bvisor.evidence.signing import HostSigningKey
from fake_backend import FakeBackend


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def registry(backend) -> BackendRegistry:
    registry = BackendRegistry()
    registry.register(backend)
    return registry


@pytest.fixture
def key(tmp_path) -> HostSigningKey:
    return HostSigningKey.load_or_create(tmp_path / "host")


@pytest.fixture
def attacker_key(tmp_path) -> HostSigningKey:
    return HostSigningKey.load_or_create(tmp_path / "attacker")
