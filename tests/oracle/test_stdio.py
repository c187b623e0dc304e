"""Stdio — no socket and no terminal reaches the workload, not even as its stdin.

The caller's stdin used to be handed over as it was: a socket as stdin was a network
endpoint under ``--net none`` (``send`` on fd 0 reached its peer), a terminal let the
workload change the caller's terminal settings. Now the host relays any stdin but a
read-only pipe, a read-only regular file or /dev/null through a fresh pipe it pumps.

(a) stdin is a connected datagram socket (UDP to a host listener on loopback, or one end of
a unix socketpair). Channel A: the host listener receives nothing. Channel B: the workload
reports ``send`` on fd 0 failing with ENOTSOCK, and that its fd 0, 1 and 2 are pipes.
Control: the same workload as a plain subprocess with the same socket as stdin reaches the
listener. (b) stdin is a pty slave. Channel A: the host reads the pty's termios after the
run, unchanged. Channel B: the workload reports tcsetattr on fd 0 failing with ENOTTY.
Control: the plain subprocess clears ECHO on the pty. (c) bytes still arrive intact, as-is
from a pipe and a regular file, relayed from a stream socket and a terminal. Each as the
caller and as uid 65534; the suite also runs them through the warm launcher.
"""

import errno
import os
import socket
import subprocess
import sys
import termios
import threading

import blake3
import msgspec
import pytest

from bvisor import Capability, LinuxBackend, RunIO
from bvisor.capture import CHUNK
from helpers import (
    IDENTITIES,
    check_completed,
    deny_all_spec,
    facts_of,
    launcher_as,
    runner_for,
    unique_marker,
)
from stdio_oracles import DatagramPeer, attack_argv


def stdio_spec(argv: list, deny_network: bool):
    """``argv`` under ``--net none`` when ``deny_network``, else with only an exact environment."""
    spec = deny_all_spec(argv[0], argv[1:])
    if deny_network:
        return spec
    return msgspec.structs.replace(spec, capabilities=[c for c in spec.capabilities if not isinstance(c, Capability.Network)])


def confined(identity: str, argv: list, stdin_fd: int, deny_network: bool = False):
    """Run ``stdio_spec(argv, deny_network)`` with ``stdin_fd`` as the caller's stdin:
    (report, stdout bytes)."""
    backend = LinuxBackend(launcher_as(identity))
    out = bytearray()
    report = runner_for(backend, stdio_spec(argv, deny_network))(RunIO(stdin_fd=stdin_fd, stdout_sink=out.extend))
    return report, bytes(out)


def unconfined(argv: list, stdin_fd: int) -> str:
    """The control: the same workload as a plain subprocess with the same stdin."""
    return subprocess.run(argv, stdin=stdin_fd, capture_output=True, timeout=60, check=True).stdout.decode()


@pytest.fixture(params=["udp", "unix_dgram"])
def datagram_peer(request):
    peer = DatagramPeer(request.param)
    yield peer
    peer.close()


def check_stdin_relayed(failures: list, report, stdout: str, source: str, call: str, refused: int) -> None:
    """The attack ran to its end; channel B: ``call`` on fd 0 failed with ``refused`` and the
    workload's fd 0, 1 and 2 are pipes (no socket, no terminal); the report says stdin was
    relayed from ``source``."""
    check_completed(failures, report)
    if f"{call} errno={refused}" not in stdout.splitlines():
        failures.append(f"CHANNEL B: {call} on fd 0 must fail with {errno.errorcode[refused]}; stdout={stdout!r}")
    for fd in (0, 1, 2):
        if f"fd{fd}=pipe" not in stdout.splitlines():
            failures.append(f"CHANNEL B: the workload's fd {fd} must be a pipe; stdout={stdout!r}")
    if facts_of(report, "stdin") != [f"relayed from={source} bytes=0"]:
        failures.append(f"the report must say stdin was relayed from a {source}; facts={facts_of(report, 'stdin')}")


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_socket_as_stdin_is_no_network_under_net_none(identity, datagram_peer):
    marker = unique_marker("BVISOR-STDIN-SEND")
    report, out = confined(identity, attack_argv(marker), datagram_peer.stdin.fileno(), deny_network=True)
    stdout = out.decode(errors="replace")
    received = datagram_peer.received()
    print(f"Stdio socket [{identity}]: stdout={stdout!r} received={received}", file=sys.stderr)
    failures = []
    if received:
        failures.append(f"CHANNEL A: the host listener received {received} from inside the boundary")
    check_stdin_relayed(failures, report, stdout, "socket", "send", errno.ENOTSOCK)
    assert not failures, f"socket-as-stdin oracle failures [{identity}]: {failures}"


def test_control_a_socket_as_stdin_reaches_the_listener_without_the_boundary(datagram_peer):
    marker = unique_marker("BVISOR-STDIN-SEND-CONTROL")
    stdout = unconfined(attack_argv(marker), datagram_peer.stdin.fileno())
    received = datagram_peer.received()
    failures = []
    if received != [marker.encode()]:
        failures.append(f"CONTROL CHANNEL A: the listener must receive the marker; got {received}")
    if "send=ok" not in stdout.splitlines() or "fd0=socket" not in stdout.splitlines():
        failures.append(f"CONTROL CHANNEL B: the workload must send through its socket fd 0; stdout={stdout!r}")
    assert not failures, f"socket-as-stdin control failures (the oracle would be vacuous): {failures}"


@pytest.fixture
def pty_pair():
    main, secondary = os.openpty()
    attrs = termios.tcgetattr(secondary)
    attrs[3] |= termios.ECHO
    termios.tcsetattr(secondary, termios.TCSANOW, attrs)
    yield main, secondary
    os.close(main)
    os.close(secondary)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_terminal_as_stdin_keeps_its_settings(identity, pty_pair):
    _, secondary = pty_pair
    before = termios.tcgetattr(secondary)
    report, out = confined(identity, attack_argv(unique_marker("BVISOR-STDIN-TTY")), secondary)
    stdout = out.decode(errors="replace")
    after = termios.tcgetattr(secondary)
    print(f"Stdio tty [{identity}]: stdout={stdout!r}", file=sys.stderr)
    failures = []
    if after != before:
        failures.append(f"CHANNEL A: the caller's terminal settings changed: before={before} after={after}")
    check_stdin_relayed(failures, report, stdout, "tty", "tcsetattr", errno.ENOTTY)
    assert not failures, f"terminal-as-stdin oracle failures [{identity}]: {failures}"


def test_control_a_terminal_as_stdin_is_changed_without_the_boundary(pty_pair):
    _, secondary = pty_pair
    stdout = unconfined(attack_argv(unique_marker("BVISOR-STDIN-TTY-CONTROL")), secondary)
    after = termios.tcgetattr(secondary)
    failures = []
    if after[3] & termios.ECHO:
        failures.append("CONTROL CHANNEL A: the workload must have cleared ECHO on the caller's terminal")
    if "tcsetattr=ok" not in stdout.splitlines() or "fd0=/dev/pts/" not in stdout:
        failures.append(f"CONTROL CHANNEL B: the workload must set its terminal fd 0; stdout={stdout!r}")
    assert not failures, f"terminal-as-stdin control failures (the oracle would be vacuous): {failures}"


DATA = os.urandom(1 << 20)  # more than a pipe holds: the relay must carry it in turns


def _feed_pipe():
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    return read_end, (lambda: (_write_all(write_end, DATA), os.close(write_end))), lambda: os.close(read_end)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _feed_file(tmp_path):
    path = tmp_path / "stdin.bin"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return fd, lambda: None, lambda: os.close(fd)


def _feed_socket():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return theirs.fileno(), lambda: (ours.sendall(DATA), ours.close()), theirs.close


TTY_LINE = b"a line typed at the terminal\n"


def _feed_tty():
    main, secondary = os.openpty()
    # One line then end-of-file (^D at the start of a line), as typed; the echo is not read.
    return secondary, lambda: _write_all(main, TTY_LINE + b"\x04"), lambda: (os.close(main), os.close(secondary))


# source → (what the workload must read, the report's stdin fact)
SOURCES = {
    "pipe": (DATA, "as_is from=pipe"),
    # A file is relayed too: handed as it is, its owner could chmod or utime it through
    # /proc/self/fd.
    "file": (DATA, f"relayed from=file bytes={len(DATA)}"),
    "socket": (DATA, f"relayed from=socket bytes={len(DATA)}"),
    "tty": (TTY_LINE, f"relayed from=tty bytes={len(TTY_LINE)}"),
}


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("source", SOURCES)
def test_stdin_bytes_arrive_intact(identity, source, tmp_path):
    fd, feed, close = {"pipe": _feed_pipe, "file": lambda: _feed_file(tmp_path), "socket": _feed_socket, "tty": _feed_tty}[source]()
    expected, fact = SOURCES[source]
    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        report, captured = confined(identity, ["/bin/cat"], fd)
    finally:
        # A run that never read its stdin (a launcher that could not start) leaves the feeder
        # blocked on a full pipe or socket: closing our end then ends it, instead of a hang.
        feeder.join(timeout=60)
        close()
        feeder.join()
    failures = []
    check_completed(failures, report)
    if captured != expected:
        failures.append(f"the workload must read exactly what was fed: {len(captured)} bytes of {len(expected)}")
    hashed = [ref.blake3 for ref in report.body.captured if ref.stream == "stdout"]
    if hashed != [blake3.blake3(expected).hexdigest()]:
        failures.append(f"the report's stdout hash must be the fed bytes' hash; got {hashed}")
    if facts_of(report, "stdin") != [fact]:
        failures.append(f"the report must say {fact!r}; facts={facts_of(report, 'stdin')}")
    assert not failures, f"stdin integrity failures [{source}, {identity}]: {failures}"


def _open_fds() -> set:
    return {(n, os.readlink(f"/proc/self/fd/{n}")) for n in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{n}")}


def test_a_relay_whose_source_never_ends_leaves_no_fd_and_no_thread_behind(pty_pair):
    """The pty never reaches end-of-file: the run still ends, and takes its relay along."""
    _, secondary = pty_pair
    backend = LinuxBackend(launcher_as("caller"))
    run = runner_for(backend, stdio_spec(["/bin/true"], deny_network=False))
    run(RunIO(stdin_fd=secondary))  # a warm launcher's server and threads start with the first run
    fds, threads = _open_fds(), threading.active_count()
    report = run(RunIO(stdin_fd=secondary))
    failures = []
    check_completed(failures, report)
    if _open_fds() != fds:
        failures.append(f"the run left fds behind: {_open_fds() - fds}")
    if threading.active_count() != threads:
        failures.append(f"the run left threads behind: {threading.enumerate()}")
    backend.close()
    assert not failures, f"relay teardown failures: {failures}"


def test_the_relay_takes_no_more_than_the_workload_reads():
    """A workload that never reads its stdin: what the caller offered stays with the caller
    but for one read (the relay reads again only once the workload has emptied its pipe)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    offered = 0
    try:
        while True:
            offered += ours.send(DATA)
    except BlockingIOError:
        pass
    report, _ = confined("caller", ["/bin/sh", "-c", "exec 0<&-; sleep 0.2"], theirs.fileno())
    left = _drain(theirs.fileno())
    ours.close()
    theirs.close()
    failures = []
    check_completed(failures, report)
    [fact] = facts_of(report, "stdin")
    relayed = int(fact.rpartition("bytes=")[2])
    if relayed > os.sysconf("SC_PAGE_SIZE"):
        failures.append(f"the relay wrote {relayed} bytes into a pipe nobody read: more than its one page")
    if offered - len(left) > CHUNK:
        failures.append(f"the relay took {offered - len(left)} of {offered} offered bytes from the caller's socket")
    assert not failures, f"relay bound failures: {failures}"


def test_typed_ahead_lines_a_workload_never_reads_stay_with_the_caller(pty_pair):
    """The caller typed two lines; the workload reads none: at most the first is gone."""
    main, secondary = pty_pair
    _write_all(main, b"first\nsecond\n")
    report, _ = confined("caller", ["/bin/true"], secondary)
    left = _drain(secondary)
    failures = []
    check_completed(failures, report)
    if left not in (b"first\nsecond\n", b"second\n"):
        failures.append(f"the caller's terminal must still hold the unread line(s); it holds {left!r}")
    assert not failures, f"relay read-ahead failures: {failures}"


def _drain(fd: int) -> bytes:
    """What ``fd`` holds now, read without waiting (the fd is this test's own)."""
    os.set_blocking(fd, False)
    got = bytearray()
    try:
        while chunk := os.read(fd, 1 << 20):
            got += chunk
    except BlockingIOError:
        pass
    return bytes(got)
