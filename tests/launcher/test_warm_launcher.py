"""The warm launcher (``bvisor.launcher.server`` + ``bvisor.backends.linux.warm``) against the real
launcher, as the caller and as uid 65534: the same plans and frames give the same verdicts,
transcripts and workload exits as the one-shot path; many sequential and concurrent runs
succeed through one server; a killed or wedged server ends its run with ``HarnessError``
(the backend's SupervisorFault), leaves no process of the run, and is replaced by the next
run; a dying host takes server and runs along; ``close`` leaves no server. Its latency and
memory are measured by ``make bench`` (benchmarks/bench.py), not here.
"""

import errno
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from bvisor.backends.linux import launch, warm
from bvisor.capture import RunIO
from bvisor.wire import vocabulary
from bvisor.wire import warm as protocol
from bvisor.wire.frame import EXIT_REFUSED, HEADER_LEN
from bvisor.wire.plan import encode_frame
from helpers import (
    EXE_SLOT,
    IDENTITIES,
    entry,
    host_find_child,
    launcher_as,
    loud_skip,
    plan,
    sh_authority,
    unique_marker,
    unprivileged_userns_available,
)

GONE_WAIT = 5.0  # seconds a killed run gets to disappear (the kernel's kill is asynchronous)
RETURN_WAIT = 15.0  # a run whose server died must have returned by then: never a hang


@pytest.fixture(scope="module", params=IDENTITIES)
def warm_as(request):
    """``(identity, WarmLauncher)``: one server per identity for the whole module."""
    launcher = warm.WarmLauncher(launcher_as(request.param))
    yield request.param, launcher
    launcher.close()


# --- host readers -------------------------------------------------------------------------


def stat_of(pid):
    """``(state, ppid, start time)`` from ``/proc/<pid>/stat``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), fields[19]


def alive(pid: int, start: str) -> bool:
    """Whether that very process still runs (a zombie is dead; a reused pid is another)."""
    found = stat_of(pid)
    return found is not None and found[2] == start and found[0] not in ("Z", "X")


def ancestry(pid: int, stop: int) -> list:
    """``pid`` and its parents up to ``stop`` (included when reached), at most four deep."""
    chain = [pid]
    while len(chain) < 4 and chain[-1] != stop and (found := stat_of(chain[-1])) is not None:
        chain.append(found[1])
    return chain


def gone_within(tree: list, seconds: float) -> list:
    """The members of ``tree`` (``(pid, start)``) still alive after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := [p for p, s in tree if alive(p, s)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def exe_authority(path: str) -> launch.AuthorityFd:
    return launch.AuthorityFd(EXE_SLOT, os.open(path, os.O_RDONLY | os.O_CLOEXEC))


# --- parity with the one-shot launcher ------------------------------------------------------


def shape(notes: list) -> list:
    """Notes with every number blanked: pids, rusage and the scrub's count of fds the host
    leaked into a one-shot launcher differ run to run; the mechanisms attested may not."""
    return [re.sub(r"\d+", "N", note) for note in notes]


def one_shot_and_warm(identity: str, launcher, frame: bytes, authorities, io=None):
    """The same frame through ``run_launcher_frame`` and through the warm launcher."""
    cold = launch.run_launcher_frame(launcher_as(identity), frame, authorities(), io)
    hot = launcher.run(frame, authorities(), io)
    return cold, hot


def parity_failures(cold, hot) -> list:
    failures = []
    for what, a, b in (
        ("terminal", cold.terminal, hot.terminal),
        ("transcript", cold.transcript, hot.transcript),
        ("notes", shape(cold.notes), shape(hot.notes)),
        ("launcher exit", cold.launcher_exit, hot.launcher_exit),
        ("stdout", cold.captured_stdout, hot.captured_stdout),
        ("stderr", cold.captured_stderr, hot.captured_stderr),
        ("workload exit", repr(cold.workload_exit()), repr(hot.workload_exit())),
        ("held open", cold.held_open, hot.held_open),
    ):
        if a != b:
            failures.append(f"{what}: one-shot {a!r} != warm {b!r}")
    return failures


def _frame(argv, deny_network=False, entries=None, identity="caller") -> bytes:
    return encode_frame(plan(argv, deny_network, entries=entries, identity=identity))


PLANS = {
    "exit_code_and_both_streams": lambda identity: _frame(["sh", "-c", "echo out; echo err >&2; exit 7"]),
    "killed_by_a_signal": lambda identity: _frame(["sh", "-c", "kill -TERM $$"]),
    "deny_network": lambda identity: _frame(["sh", "-c", "cat /proc/self/net/dev"], deny_network=True, identity=identity),
    "unknown_primitive": lambda identity: _frame(
        ["sh", "-c", "echo never"], entries=[entry(vocabulary.ID_AMBIENT_SCRUB, 3), entry("linux.teleport.v1", 4), entry(vocabulary.ID_EXEC, 5)]
    ),
    "primitive_in_the_wrong_phase": lambda identity: _frame(["sh", "-c", "true"], entries=[entry(vocabulary.ID_AMBIENT_SCRUB, 4), entry(vocabulary.ID_EXEC, 5)]),
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_the_same_plans_give_the_same_verdicts_as_the_one_shot_launcher(warm_as, name):
    identity, launcher = warm_as
    if name == "deny_network" and not unprivileged_userns_available():
        loud_skip("warm parity, deny_network: this host forbids unprivileged user+network namespaces")
    cold, hot = one_shot_and_warm(identity, launcher, PLANS[name](identity), lambda: [sh_authority()])
    print(f"{name} [{identity}]: one-shot {cold.transcript[-1:]} warm {hot.transcript[-1:]}", file=sys.stderr)
    assert not parity_failures(cold, hot), f"warm vs one-shot [{identity}] {name}: {parity_failures(cold, hot)}"
    if name == "exit_code_and_both_streams":
        assert [s.value for s in hot.transcript] == list(vocabulary.STATES[:11]) and hot.workload_exit().code == 7


MANGLES = {
    "Truncated": lambda f: f[: HEADER_LEN - 1],
    "BadMagic": lambda f: b"BVZLNCH2" + f[8:],
    "UnsupportedVersion": lambda f: f[:8] + struct.pack("<H", 2) + f[10:],
    "LengthMismatch": lambda f: f + b"\x00",
    "DigestMismatch": lambda f: f[:-1] + bytes([f[-1] ^ 1]),
}


@pytest.mark.parametrize("reason", sorted(MANGLES))
def test_a_bad_frame_is_refused_the_same_way(warm_as, reason):
    identity, launcher = warm_as
    frame = MANGLES[reason](_frame(["sh", "-c", "true"]))
    cold, hot = one_shot_and_warm(identity, launcher, frame, lambda: [sh_authority()])
    assert not parity_failures(cold, hot), f"warm vs one-shot [{identity}] {reason}: {parity_failures(cold, hot)}"
    assert hot.terminal is launch.LauncherState.SetupRefused and launch.LauncherState.ChildCreated not in hot.transcript
    assert any(reason in note for note in hot.notes), hot.notes
    assert hot.launcher_exit == EXIT_REFUSED


def test_a_handle_of_the_wrong_shape_is_refused_the_same_way(warm_as):
    identity, launcher = warm_as

    def directory():
        return [launch.AuthorityFd(EXE_SLOT, os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))]

    cold, hot = one_shot_and_warm(identity, launcher, _frame(["sh", "-c", "true"]), directory)
    assert not parity_failures(cold, hot), f"warm vs one-shot [{identity}]: {parity_failures(cold, hot)}"
    assert any("HandleMismatch" in note and "not a regular" in note for note in hot.notes), hot.notes


def test_a_missing_handle_is_refused_the_same_way(warm_as):
    """Same verdict; the detail may differ: posix_spawn hands a one-shot launcher every fd
    the host left inheritable, so it may find one of the host's own at the empty slot, where
    a warm coordinator finds nothing."""
    identity, launcher = warm_as
    cold, hot = one_shot_and_warm(identity, launcher, _frame(["sh", "-c", "true"]), list)
    assert (hot.terminal, hot.transcript, hot.launcher_exit) == (cold.terminal, cold.transcript, cold.launcher_exit)
    assert hot.terminal is launch.LauncherState.SetupRefused
    assert any(f"HandleMismatch slot {EXE_SLOT}" in note for note in hot.notes), hot.notes
    print(f"missing handle [{identity}]: one-shot {cold.notes[-1]!r}, warm {hot.notes[-1]!r}", file=sys.stderr)


@pytest.mark.parametrize("host_sigint", ["handled", "ignored"])
def test_the_workload_gets_the_signal_dispositions_a_one_shot_launcher_gives(warm_as, host_sigint):
    """The server ignores SIGINT itself; each coordinator gets back what a freshly started
    launcher would have inherited from the host at that moment."""
    identity, launcher = warm_as
    frame = _frame(["grep", "-E", "^Sig(Ign|Blk|Cgt):", "/proc/self/status"])
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN if host_sigint == "ignored" else signal.default_int_handler)
    try:
        cold, hot = one_shot_and_warm(identity, launcher, frame, lambda: [exe_authority("/bin/grep")])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert hot.captured_stdout == cold.captured_stdout, (cold.captured_stdout, hot.captured_stdout)
    ignored = int(re.search(rb"SigIgn:\s*([0-9a-f]+)", hot.captured_stdout).group(1), 16)
    assert bool(ignored & (1 << (signal.SIGINT - 1))) == (host_sigint == "ignored"), hot.captured_stdout


# --- many runs through one server ------------------------------------------------------------


def _echo_run(launcher, text: str) -> str | None:
    """One run printing ``text``; None when it went as expected, else what went wrong."""
    obs = launcher.run(_frame(["sh", "-c", f"echo {text}"]), [sh_authority()])
    exit_status = obs.workload_exit()
    if obs.exec_succeeded() and obs.captured_stdout == f"{text}\n".encode() and exit_status and exit_status.code == 0:
        return None
    return f"{text}: terminal={obs.terminal} stdout={obs.captured_stdout!r} exit={exit_status} notes={obs.notes}"


def test_fifty_sequential_runs_through_one_server(warm_as):
    identity, launcher = warm_as
    assert _echo_run(launcher, "warm-up") is None
    server = launcher.server_pid()
    failures = [f for f in (_echo_run(launcher, f"seq-{i}") for i in range(50)) if f]
    assert not failures, f"[{identity}] {failures}"
    assert launcher.server_pid() == server, "one server must carry every run"


def test_two_threads_of_twenty_five_runs_at_once(warm_as):
    identity, launcher = warm_as
    assert _echo_run(launcher, "warm-up") is None
    server = launcher.server_pid()
    failures = []

    def caller(tag: str) -> None:
        for i in range(25):
            try:
                if failure := _echo_run(launcher, f"{tag}-{i}"):
                    failures.append(failure)
            except Exception as exc:  # recorded; the other thread keeps going
                failures.append(f"{tag}-{i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=caller, args=(tag,)) for tag in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, f"[{identity}] {failures}"
    assert launcher.server_pid() == server, "one server must carry every run"


def test_a_server_started_from_a_short_lived_thread_outlives_that_thread():
    """PR_SET_PDEATHSIG follows the thread that started a process: the server is started from
    the launcher's own spawner thread, so a caller's thread ending takes nothing along."""
    launcher = warm.WarmLauncher(launcher_as("caller"))
    try:
        first = []
        thread = threading.Thread(target=lambda: first.append(_echo_run(launcher, "from-a-thread")))
        thread.start()
        thread.join()
        server = launcher.server_pid()
        time.sleep(0.2)  # a pdeathsig would have landed by now
        assert first == [None] and _echo_run(launcher, "after-the-thread") is None
        assert launcher.server_pid() == server, "the server died with the thread that happened to start it"
    finally:
        launcher.close()


def test_a_forked_host_gets_its_own_server():
    """A fork of the owner must not use the parent's server (its runs would die with the
    parent, not with the fork): the server refuses a foreign pid, and the client starts the
    fork's own server instead."""
    launcher = warm.WarmLauncher(launcher_as("caller"))
    try:
        assert _echo_run(launcher, "parent") is None
        parent_server = launcher.server_pid()
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - reported through the pipe
            try:
                failure = _echo_run(launcher, "forked")
                os.write(write_end, f"{failure} {launcher.server_pid()}".encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as reply:
            failure, child_server = reply.read().decode().rsplit(" ", 1)
        os.waitpid(child, 0)
        assert failure == "None", failure
        assert child_server != str(parent_server)
        assert launcher.server_pid() == parent_server and _echo_run(launcher, "parent-again") is None
    finally:
        launcher.close()


# --- a dying or wedged server ----------------------------------------------------------------


def _parked_run(launcher, marker: str, gate_r: int, outcome: dict) -> threading.Thread:
    """A run whose workload carries ``marker`` and waits on ``gate_r`` (the host holds the
    write end), on its own thread; its observation or error lands in ``outcome``."""

    def drive():
        frame = _frame(["sh", "-c", f": {marker}; read -r _gate"])
        try:
            outcome["observation"] = launcher.run(frame, [sh_authority()], RunIO(stdin_fd=gate_r))
        except launch.HarnessError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=drive, name=f"parked-{marker}")
    thread.start()
    return thread


@pytest.mark.parametrize("identity", IDENTITIES)
def test_killing_the_server_mid_run_ends_the_run_with_a_harness_error_and_leaves_nothing(identity):
    """SIGKILL the server while its workload waits: the run returns ``HarnessError`` (the
    backend's SupervisorFault) instead of hanging; the workload and its coordinator die with
    the server; the next run starts a new server and succeeds."""
    launcher = warm.WarmLauncher(launcher_as(identity))
    marker = unique_marker("BVISOR-WARM-KILL")
    gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
    outcome = {}
    thread = _parked_run(launcher, marker, gate_r, outcome)
    try:
        workload = host_find_child(marker, time.monotonic() + 10.0)
        assert workload is not None, f"the parked workload never appeared: {outcome}"
        server = launcher.server_pid()
        coordinator = stat_of(workload)[1]
        assert stat_of(coordinator)[1] == server, "the workload's parent must be a coordinator the server forked"
        tree = [(pid, stat_of(pid)[2]) for pid in (workload, coordinator)]
        os.kill(server, signal.SIGKILL)
        thread.join(RETURN_WAIT)
        returned = not thread.is_alive()
        survivors = gone_within(tree, GONE_WAIT)
        after = _echo_run(launcher, "after-the-kill")
        new_server = launcher.server_pid()
    finally:
        os.close(gate_w)  # releases a survivor, so the join below cannot hang
        thread.join()
        os.close(gate_r)
        launcher.close()
    print(f"server SIGKILL [{identity}]: outcome={outcome} survivors={survivors}", file=sys.stderr)
    assert returned, f"the run did not return within {RETURN_WAIT}s of its server's death"
    assert "error" in outcome, f"the run must end with HarnessError; got {outcome}"
    assert not survivors, f"processes of the run outlived its server: {survivors}"
    assert after is None, after
    assert new_server not in (None, server), "the next run must start a new server"


def children_of(pid: int) -> list:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


def one_spare(server: int) -> int:
    """The server's one child while no run is in flight: its spare coordinator."""
    deadline = time.monotonic() + GONE_WAIT
    while len(children := children_of(server)) != 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(children) == 1, f"an idle server must hold exactly one spare, has children {children}"
    return children[0]


@pytest.mark.parametrize("identity", IDENTITIES)
def test_an_idle_server_holds_one_spare_that_keeps_only_its_socket_and_dies_with_the_server(identity):
    """The next run's coordinator is forked ahead: it must hold nothing of the server's (not
    the host's socket, not another run's pidfd) until its request brings the run's fds, take
    exactly one request, be replaced after it, not be waited on when it has died, and die
    with the server."""
    launcher = warm.WarmLauncher(launcher_as(identity))
    try:
        assert _echo_run(launcher, "first") is None
        server = launcher.server_pid()
        spare = one_spare(server)
        held = [os.readlink(f"/proc/{spare}/fd/{fd}") for fd in os.listdir(f"/proc/{spare}/fd")]
        assert len(held) == 1 and held[0].startswith("socket:"), f"the spare holds {held}"
        assert _echo_run(launcher, "second") is None
        assert stat_of(spare) is None, "the spare must have carried the second run and been reaped"
        replacement = one_spare(server)
        assert replacement != spare
        os.kill(replacement, signal.SIGKILL)  # a dead spare: the next run forks on demand
        deadline = time.monotonic() + GONE_WAIT
        while stat_of(replacement)[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.005)  # dead (its socket closed), not yet reaped: the server has not looked
        assert _echo_run(launcher, "third") is None
        assert stat_of(replacement) is None, "the dead spare must be reaped"
        last = one_spare(server)
        tree = [(last, stat_of(last)[2])]
        os.kill(server, signal.SIGKILL)
        survivors = gone_within(tree, GONE_WAIT)
    finally:
        launcher.close()
    assert not survivors, f"the spare outlived its server: {survivors}"


CRASHING_HOST = """
import sys
sys.path.insert(0, sys.argv[1])
from helpers import EXE_SLOT, launcher_as, plan
from bvisor.backends.linux import launch
from bvisor.wire.plan import encode_frame
from bvisor.backends.linux.warm import WarmLauncher
import os

bash = launch.AuthorityFd(EXE_SLOT, os.open("/bin/bash", os.O_RDONLY | os.O_CLOEXEC))
marker = os.environ["BVISOR_TEST_MARKER"]  # not in argv: only the workload may carry it there
frame = encode_frame(plan(["bash", "-c", 'exec -a "$0" /bin/sleep 300', marker], False))
WarmLauncher(launcher_as(sys.argv[2])).run(frame, [bash])
"""


@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_host_dying_takes_the_server_and_its_runs_along(identity):
    """SIGKILL the host process mid-run: the server (tied to the host), its coordinator (tied
    to the server) and the workload (tied to the coordinator) all die."""
    marker = unique_marker("BVISOR-WARM-HOST")
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "BVISOR_TEST_MARKER": marker}
    host = subprocess.Popen([sys.executable, "-c", CRASHING_HOST, tests_dir, identity], env=env, stderr=subprocess.PIPE)
    tree = []
    try:
        workload = host_find_child(marker, time.monotonic() + 15.0)
        chain = ancestry(workload, host.pid) if workload is not None else []
        tree = [(pid, stat_of(pid)[2]) for pid in chain if pid != host.pid]
        host.kill()
        host.wait()
        survivors = gone_within(tree, GONE_WAIT)
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        for pid, start in tree:
            if alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        host_stderr = host.stderr.read().decode(errors="replace")
        host.stderr.close()
    assert workload is not None, f"the host never started its workload; its stderr: {host_stderr!r}"
    assert len(chain) == 4 and chain[-1] == host.pid, f"workload, coordinator, server, host expected; got {chain}"
    assert not survivors, f"processes of the run outlived their host: {survivors}"


def test_a_wedged_server_ends_the_run_after_the_reply_timeout(monkeypatch):
    """A stopped server cannot report the exit of a run that is over: the run ends with
    HarnessError once the reply is overdue, the server is killed, the next run gets a new one."""
    monkeypatch.setattr(warm, "REPLY_TIMEOUT", 0.5)
    launcher = warm.WarmLauncher(launcher_as("caller"))
    marker = unique_marker("BVISOR-WARM-STOP")
    gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
    outcome = {}
    thread = _parked_run(launcher, marker, gate_r, outcome)
    try:
        assert host_find_child(marker, time.monotonic() + 10.0) is not None, outcome
        server = launcher.server_pid()
        os.kill(server, signal.SIGSTOP)
        os.close(gate_w)  # the workload ends; the stopped server cannot say so
        gate_w = None
        thread.join(RETURN_WAIT)
        returned = not thread.is_alive()
        server_left = stat_of(server)
        after = _echo_run(launcher, "after-the-stall")
        new_server = launcher.server_pid()
    finally:
        if gate_w is not None:
            os.close(gate_w)
        thread.join()
        os.close(gate_r)
        launcher.close()
    assert returned, f"the run did not return within {RETURN_WAIT}s of a stalled server"
    assert "no reply" in str(outcome.get("error")), outcome
    assert server_left is None, f"the wedged server must be killed and reaped; /proc says {server_left}"
    assert after is None and new_server not in (None, server)


def test_close_leaves_no_server_and_no_spawner_thread_and_a_later_run_starts_anew():
    """The spawner thread must be gone from the kernel's task list when ``close`` returns, not
    only joined by Python (the task exits a moment after ``join``): a caller that counts
    threads, or needs a single-threaded process for ``unshare``, must not see it."""
    threads = set(threading.enumerate())
    tasks = sorted(os.listdir("/proc/self/task"))
    launcher = warm.WarmLauncher(launcher_as("caller"))
    assert _echo_run(launcher, "before-close") is None
    server = launcher.server_pid()
    start = stat_of(server)[2]
    launcher.close()
    assert not alive(server, start) and stat_of(server) is None, "close must kill and reap the server"
    assert set(threading.enumerate()) == threads, "close must end the spawner thread"
    assert sorted(os.listdir("/proc/self/task")) == tasks, "the spawner's task outlived close"
    assert launcher.server_pid() is None
    try:
        assert _echo_run(launcher, "after-close") is None
        assert launcher.server_pid() not in (None, server)
    finally:
        launcher.close()
    assert set(threading.enumerate()) == threads
    assert sorted(os.listdir("/proc/self/task")) == tasks


def test_a_backend_adopts_a_prestarted_probe_and_the_server_it_started():
    from bvisor.backends.linux.backend import LinuxBackend

    prestarted = warm.PrestartedLauncher(launcher_as("caller"))
    try:
        server = prestarted.warm.server_pid()
        assert server is not None, "the server starts at once, before any run"
        start = stat_of(server)[2]
        backend = LinuxBackend(prestarted=prestarted)
        assert backend.warm_launcher_pid() == server
        facts = {f.name: f.value for f in backend.probe().facts}
        assert facts["launcher.launcher_probe"] == "ok" and facts["launcher.seccomp_filter"] == "ok"
        assert _echo_run(prestarted.warm, "prestarted") is None
        assert backend.warm_launcher_pid() == server, "the first run uses the prestarted server"
    finally:
        prestarted.close()
    assert not alive(server, start)


def test_a_probe_nobody_read_is_finished_and_reaped_by_close():
    probe = launch.LauncherProbe(launcher_as("caller"))
    pid = probe._process.pid
    probe.close()
    assert stat_of(pid) is None, "close must reap the probe, not leave a zombie or a runner"
    assert probe.facts()["launcher_probe"] == "ok", "the probe ran to its end (its own children reaped by it)"


# --- the message format ------------------------------------------------------------------------


def test_a_request_round_trips_with_the_plan_and_control_channel_first():
    placement = {0: 40, 1: 41, 2: 42, 11: 43, 12: 44, EXE_SLOT: 45}
    data, passed = protocol.encode_request(9, 1234, True, 11, 12, placement)
    request = protocol.decode_request(data, passed, 0, 1234)
    assert (request.request_id, request.sigint_ignored, request.plan_at, request.control_at) == (9, True, 11, 12)
    assert request.placement == placement and passed[:2] == [43, 44]


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda data, fds: (data, fds, 0, 999), "EPERM"),  # a fork of the host, or anyone else
        (lambda data, fds: (data, fds[:-1], 0, 1234), "EBADMSG"),
        (lambda data, fds: (b"BVZWARM2" + data[8:], fds, 0, 1234), "EBADMSG"),
        (lambda data, fds: (data[:-2], fds, 0, 1234), "EBADMSG"),
        (lambda data, fds: (data, fds, socket.MSG_CTRUNC, 1234), "EBADMSG"),
    ],
)
def test_a_request_the_server_cannot_honour_is_refused(mangle, code):
    data, passed = protocol.encode_request(9, 1234, False, 11, 12, {0: 40, 1: 41, 2: 42, 11: 43, 12: 44})
    with pytest.raises(protocol.RequestRefused) as refused:
        protocol.decode_request(*mangle(data, passed))
    assert refused.value.errno == getattr(errno, code)


def test_a_backend_whose_warm_server_is_killed_mid_run_reports_a_supervisor_fault_and_recovers():
    """Through the whole backend: SIGKILL the warm server while its run is parked. That run
    is sealed as SupervisorFault (never a hang, never Completed), nothing of it survives, and
    the next run on the same backend starts a new server and completes."""
    from bvisor import LinuxBackend, Outcome
    from helpers import deny_all_spec, planned, run_gated, scan_proc_cmdline, unique_marker

    backend = LinuxBackend(launcher_as("caller"), warm=True)
    try:
        marker = unique_marker("BVISOR-WARM-BACKEND-KILL")
        spec = deny_all_spec("/bin/sh", ["-c", "printf 'BVISOR-PARKED\\n'; sleep 30", marker])
        run = planned(backend, spec)[1]

        def kill_server(pid):
            server = backend.warm_launcher_pid()
            os.kill(server, signal.SIGKILL)
            return server

        gated = run_gated(run, marker, kill_server, timeout=15.0)
        killed = gated.inspected
        deadline = time.monotonic() + 5.0
        while scan_proc_cmdline(marker) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        survivor = scan_proc_cmdline(marker)
        again = planned(backend, deny_all_spec())[1](RunIO())
        failures = []
        if killed is None:
            failures.append("the host never saw the parked workload, so the server was not killed mid-run")
        if gated.result.body.outcome is not Outcome.SupervisorFault:
            failures.append(f"the interrupted run must be a SupervisorFault; got {gated.result.body.outcome} {gated.result.body.observed[-3:]}")
        if survivor is not None:
            failures.append(f"a process of the interrupted run survived: pid {survivor}")
        if again.body.outcome is not Outcome.Completed or backend.warm_launcher_pid() in (None, killed):
            failures.append(f"the next run must start a new server and complete; got {again.body.outcome}, server {backend.warm_launcher_pid()} (killed {killed})")
        assert not failures, f"warm backend kill failures: {failures}"
    finally:
        backend.close()
