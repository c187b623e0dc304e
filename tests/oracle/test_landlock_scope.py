"""Landlock scoping — a run cannot reach a host process through an abstract unix socket.

Abstract unix sockets have no file, so filesystem confinement never sees them, and without
``--net none`` the run shares the host's network namespace, where they live. Every Linux run
on a kernel with landlock ABI ≥ 6 is scoped: connecting to an abstract socket bound outside
its landlock domain fails with EPERM. The attack: the host binds and listens on a fresh
abstract name; the workload connects to it. Channel A: the host's listening socket never
gets a connection. Channel B: the workload reports the connect error. The control runs the
same workload unconfined (InertBackend) and the host accepts its connection.
"""

import errno
import os
import socket
import sys

import pytest

from bvisor import (
    BoundarySpec,
    BudgetRequirements,
    Capability,
    InertBackend,
    LinuxBackend,
    MinGuarantee,
    Outcome,
    RunIO,
)
from bvisor.contract import FdPolicy
from helpers import (
    IDENTITIES,
    check_completed,
    facts_of,
    launcher_as,
    loud_skip,
    planned,
    unique_marker,
)
from oracle_specs import exact_environment, oracle_spec

PYTHON = os.path.realpath(sys.executable)
CONNECT = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "try:\n"
    "    s.connect('\\0' + sys.argv[1])\n"
    "    print('connect=ok')\n"
    "except OSError as e:\n"
    "    print(f'connect=denied errno={e.errno}')\n"
)


def spec_for(name: str) -> BoundarySpec:
    return oracle_spec(
        [PYTHON, "-c", CONNECT, name],
        [exact_environment(), Capability.InheritedFds(policy=FdPolicy.Nothing())],
        budgets=BudgetRequirements.uniform(1_000_000, MinGuarantee.Mediated),
    )


class AbstractListener:
    """A host process's listening abstract socket; counts the connections that reached it."""

    def __init__(self, name: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind("\0" + name)
        self.sock.listen(8)
        self.sock.setblocking(False)

    def accepted(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener():
    name = unique_marker("bvisor-scope")
    held = AbstractListener(name)
    try:
        yield name, held
    finally:
        held.close()


def run(backend, name: str):
    out = bytearray()
    report = planned(backend, spec_for(name))[1](RunIO(stdout_sink=out.extend))
    return report, out.decode(errors="replace").strip()


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_run_cannot_connect_to_a_host_abstract_socket(identity, listener):
    backend = LinuxBackend(launcher_as(identity))
    abi = int(backend.probe().fact("launcher.landlock_abi") or 0)
    if abi < 6:
        loud_skip(f"landlock ABI {abi} has no scoping (needs 6)")
    name, held = listener
    report, said = run(backend, name)
    connections = held.accepted()
    print(f"LandlockScope [{identity}]: host accepted={connections} workload said {said!r}", file=sys.stderr)
    failures = []
    check_completed(failures, report)
    if connections != 0:
        failures.append(f"CHANNEL A: the host socket must accept nothing from the run; it accepted {connections}")
    if said != f"connect=denied errno={errno.EPERM}":
        failures.append(f"CHANNEL B: the workload must report connect=denied errno={errno.EPERM}; it said {said!r}")
    if not any(n.startswith("landlock_scope=signal,abstract_unix_socket installed=true") for n in facts_of(report, "launcher_note")):
        failures.append(f"the launcher must attest the scope; notes={facts_of(report, 'launcher_note')}")
    assert not failures, f"abstract-socket scope oracle failures [{identity}]: {failures}"


def test_control_unconfined_the_same_connect_reaches_the_host(listener):
    name, held = listener
    report, said = run(InertBackend(), name)
    connections = held.accepted()
    failures = []
    if report.body.outcome is not Outcome.Completed:
        failures.append(f"the control must complete; got {report.body.outcome}")
    if connections != 1 or said != "connect=ok":
        failures.append(f"CONTROL: the unconfined connect must reach the host; accepted={connections} said={said!r}")
    assert not failures, f"abstract-socket control failures (the oracle would be vacuous): {failures}"
