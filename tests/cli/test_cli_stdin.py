"""``bvisor run`` with a socket as its stdin: the workload reads the bytes through a pipe the
host relays, and never holds the socket (the oracles and their controls for the API are
in tests/oracle/test_stdio.py; here the same, through the command). And ``bvisor run`` in
a terminal: the workload cannot reach it as /dev/tty either."""

import errno
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import IDENTITIES, cli_prefix, shared_host_dir, unique_marker
from stdio_oracles import PYTHON, TTY_ATTACK, DatagramPeer, attack_argv, under_terminal

BVISOR = str(Path(sys.executable).parent / "bvisor")


@pytest.fixture
def report_dir():
    path = shared_host_dir("bvisor-cli-stdin-", mode=0o777)  # the unprivileged CLI writes its report here
    yield Path(path)
    shutil.rmtree(path)


def run_cli(identity: str, report: Path, stdin, argv: list, flags=(), data=None):
    """``bvisor run FLAGS -- ARGV`` as ``identity`` with ``stdin`` (or ``data`` piped in)."""
    command = [*cli_prefix(identity), BVISOR, "run", "--quiet", "--no-store", *flags, "--report", str(report), "--", *argv]
    return subprocess.run(command, stdin=stdin, input=data, capture_output=True, timeout=60, check=False)


def stdin_facts(report: Path) -> list:
    return [f["detail"] for f in json.loads(report.read_text())["observed"] if f["kind"] == "stdin"]


@pytest.mark.parametrize("identity", IDENTITIES)
def test_cat_reads_a_socket_stdin_through_the_relay(identity, report_dir):
    data = b"bytes from a socket\n" * 1000
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.sendall(data)
    ours.close()  # the workload then reads end-of-file
    report = report_dir / "cat.json"
    with theirs:
        done = run_cli(identity, report, theirs.fileno(), ["cat"])
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == data
    assert stdin_facts(report) == [f"relayed from=socket bytes={len(data)}"]


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_socket_stdin_sends_nothing_through_the_command(identity, report_dir):
    peer = DatagramPeer("udp")
    report = report_dir / "send.json"
    try:
        argv = attack_argv(unique_marker("BVISOR-CLI-STDIN-SEND"))
        done = run_cli(identity, report, peer.stdin.fileno(), argv, flags=("--net", "none"))
        received = peer.received()
    finally:
        peer.close()
    assert done.returncode == 0, done.stderr.decode()
    assert received == [], "CHANNEL A: the host listener received datagrams from inside the boundary"
    lines = done.stdout.decode().splitlines()
    assert f"send errno={errno.ENOTSOCK}" in lines and {"fd0=pipe", "fd1=pipe", "fd2=pipe"} <= set(lines), lines
    assert stdin_facts(report) == ["relayed from=socket bytes=0"]


def test_stdin_from_a_pipe_is_handed_over_as_it_is(report_dir):
    report = report_dir / "pipe.json"
    done = run_cli("caller", report, None, ["cat"], data=b"piped")
    assert done.returncode == 0 and done.stdout == b"piped"
    assert stdin_facts(report) == ["as_is from=pipe"]


@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_callers_controlling_terminal_is_out_of_reach(identity):
    """Whatever its stdio, a workload sharing the caller's controlling terminal opens it as
    /dev/tty. Channel A: the pty still echoes after the run. Channel B: the workload reports
    ENOENT opening /dev/tty (the run's own /dev has none) or ENXIO (it gave the terminal up).
    The control is the next test."""
    argv = [*cli_prefix(identity), BVISOR, "run", "--quiet", "--no-store", "--no-tty", "--", PYTHON, "-I", "-c", TTY_ATTACK]
    output, code, echo, _ = under_terminal(argv)
    lines = output.decode(errors="replace").splitlines()
    assert code == 0, output
    assert echo, f"CHANNEL A: the workload changed the caller's terminal settings; it wrote {lines}"
    assert {f"devtty errno={errno.ENOENT}", f"devtty errno={errno.ENXIO}"} & set(lines), lines


@pytest.mark.parametrize("identity", IDENTITIES)
def test_with_a_terminal_of_its_own_the_run_reaches_only_that(identity):
    """On a terminal the run gets a pty of its own: /dev/tty opens, but names that pty, never
    the caller's. Channel A: the caller's pty still echoes after the workload cleared ECHO on
    its /dev/tty. Channel B: the device the workload opened is not the caller's."""
    argv = [*cli_prefix(identity), BVISOR, "run", "--quiet", "--no-store", "--", PYTHON, "-I", "-c", TTY_ATTACK]
    output, code, echo, callers = under_terminal(argv)
    lines = output.decode(errors="replace").splitlines()
    assert code == 0, output
    assert echo, f"CHANNEL A: the workload changed the caller's terminal settings; it wrote {lines}"
    opened = [int(line.split("=")[1]) for line in lines if line.startswith("devtty_rdev=")]
    assert "devtty=ok" in lines and opened and opened[0] != callers, lines


def test_control_the_controlling_terminal_is_changed_without_the_boundary():
    output, code, echo, _ = under_terminal([PYTHON, "-I", "-c", TTY_ATTACK])
    assert code == 0 and "devtty=ok" in output.decode().splitlines(), output
    assert not echo, "CONTROL CHANNEL A: the workload must clear ECHO on its controlling terminal"
