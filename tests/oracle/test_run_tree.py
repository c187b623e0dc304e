"""Run tree — one killable tree per run: nothing in it escapes, outlives, or reaches out of it.

Every Linux run lives in its own user+mount+pid namespace under a minimal init, in a cgroup
leaf the host made for it. Each test makes one attack on that boundary and reads the outcome
by two channels: the host reads kernel state from outside (``/proc/<pid>/{cmdline,status,
cgroup}``, the cgroup tree, its own fd table and mounts) and the workload reports what it did
and saw through its captured stdout. A control runs the same attack without the boundary
(the unconfined InertBackend, a plain setpriv'd shell, or an uncapped budget) and shows it
succeeds there, so no oracle is vacuous. Tests that involve a launcher run with it as the
caller (root here) and as uid 65534.

Workload processes carry a unique marker in their argv (``exec -a`` where the process must
be found by name) so the host can find every one of them, and prove none is left.

No assertion is about speed: durations are printed to stderr; the waits below are liveness
bounds (give up after N seconds), never a pass/fail criterion by themselves. The one time
bound asserted is the acceptance's "``sleep 30`` under a 1 s wall budget returns in under
3 s": a functional check that the deadline killed the run (an unkilled run takes 30 s), not
a speed measurement.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import msgspec
import pytest

from bvisor import (
    BoundarySpec,
    BudgetRequirements,
    Capability,
    HostControl,
    InertBackend,
    LinuxBackend,
    MinGuarantee,
    Outcome,
    RunIO,
)
from bvisor.contract import (
    BudgetDimension,
    BudgetFinding,
    Enforcement,
    KillGuarantee,
    KillTarget,
    RequirementKind,
    SpawnPolicy,
)
from bvisor.wire.frame import ENV_HOST_PID
from cgroup_oracles import bvisor_leaf_dirs
from helpers import (
    IDENTITIES,
    PARK,
    UNPRIVILEGED_PREFIX,
    cli_prefix,
    facts_of,
    identity_uid,
    launcher_as,
    loud_skip,
    planned,
    run_gated,
    shared_host_dir,
    status_of,
    unique_marker,
)
from oracle_specs import exact_environment, oracle_spec, watched_budgets

BVISOR = str(Path(sys.executable).parent / "bvisor")
TESTS_DIR = str(Path(__file__).resolve().parent.parent)
CGROUP_ROOT = "/sys/fs/cgroup"
LIVENESS = 10.0  # seconds to wait for something to appear or go: a liveness bound, not a timing assert
GONE_WAIT = 5.0  # seconds a killed tree gets to disappear (the kernel's kill is asynchronous)
SIGKILL = int(signal.SIGKILL)


# --- host readers ---------------------------------------------------------------------------


def argv_of(pid) -> list | None:
    """``/proc/<pid>/cmdline`` split at NULs (None if gone; [] for a zombie)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]] if raw else []


def all_pids() -> list:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def pids_carrying(marker: str) -> list:
    """Every live process with ``marker`` anywhere in its argv."""
    return sorted(p for p in all_pids() if any(marker in a for a in argv_of(p) or []))


def pids_named(argv0: str) -> list:
    """Every live process whose argv[0] is exactly ``argv0`` (an ``exec -a`` name)."""
    return sorted(p for p in all_pids() if (argv_of(p) or [None])[0] == argv0)


def pids_with_arg(arg: str) -> list:
    """Every live process with an argv element exactly ``arg``."""
    return sorted(p for p in all_pids() if arg in (argv_of(p) or []))


def wait_for(find, seconds: float = LIVENESS) -> list:
    """``find()`` once it returns something non-empty, or [] when the liveness bound passes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := find():
            return found
        time.sleep(0.01)
    return find()


def survivors(marker: str, seconds: float = GONE_WAIT) -> list:
    """The processes still carrying ``marker`` after waiting up to ``seconds`` for them to go."""
    deadline = time.monotonic() + seconds
    while (left := pids_carrying(marker)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def nspids(pid) -> list:
    """The ``NSpid`` chain: host pid first, then the pid in each nested namespace."""
    return [int(x) for x in status_of(pid).get("NSpid", "").split()]


def bvisor_leaf_of(pid) -> set:
    """The names of the bvisor leaves ``pid`` sits in, one per hierarchy that has one."""
    return {os.path.basename(d) for d in bvisor_leaf_dirs(pid)}


def bvisor_cgroup_dirs(owner: int | None = None) -> list:
    """Every ``bvisor-*`` directory under /sys/fs/cgroup (run leaves and probe leaves), or only
    those ``owner`` made (other bvisor hosts may run on this machine concurrently)."""
    found = []
    for directory, dirs, _ in os.walk(CGROUP_ROOT, onerror=lambda _: None):
        for name in dirs:
            if name.startswith("bvisor-"):
                found.append(os.path.join(directory, name))
    if owner is not None:
        mine = (f"bvisor-{owner}-", f"bvisor-probe-{owner}-")
        found = [d for d in found if os.path.basename(d).startswith(mine) or os.path.basename(d) == f"bvisor-probe-{owner}"]
    return sorted(found)


def alive(pid: int, start: str) -> bool:
    """Whether the process ``pid`` that started at ``start`` (stat field 22) still runs
    (a zombie is dead; a reused pid is another process)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[19] == start and fields[0] not in ("Z", "X")


PF_EXITING = 0x4  # the task flag (stat field 9) a process carries from the moment it starts to exit


def undisturbed(pid: int) -> bool:
    """Whether ``pid`` lives on untouched, read at once: running or asleep, not exiting, no
    signal pending. kill(2) marks a signal pending before it returns to the sender, and a
    process that takes a fatal one is exiting or gone, so a kill sent before this call shows
    here: a survival claim needs no grace period to let a wrong death happen."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return False
    pending = status_of(pid)
    return (
        fields[0] in ("R", "S", "D")
        and not int(fields[6]) & PF_EXITING
        and int(pending.get("SigPnd", "1"), 16) == 0
        and int(pending.get("ShdPnd", "1"), 16) == 0
    )


def start_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[19]
    except OSError:
        return None


def children_of(parent: int) -> list:
    """Every process whose parent is ``parent`` (zombies included: a leak is a leak)."""
    kids = []
    for pid in all_pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rpartition(")")[2].split()[1]) == parent:
                    kids.append(pid)
        except (OSError, ValueError, IndexError):
            continue
    return sorted(kids)


def kill_quietly(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, SIGKILL)
        except OSError:
            pass


# --- specs, runs and the workload's self-report ----------------------------------------------


def tree_spec(argv, *, run_tree: bool = True, budget: BudgetRequirements | None = None) -> BoundarySpec:
    """``argv`` under an empty exact environment; with ``run_tree``, descendants allowed within
    the boundary and the whole tree killable atomically (the InertBackend refuses both)."""
    capabilities, controls = [exact_environment()], []
    if run_tree:
        capabilities.append(Capability.ChildSpawn(policy=SpawnPolicy.AllowDescendantsWithinBoundary()))
        controls.append(HostControl.Kill(target=KillTarget.RunTree, guarantee=KillGuarantee.Atomic))
    return oracle_spec(argv, capabilities, controls, budget or watched_budgets())


def linux_backend(identity: str) -> LinuxBackend:
    """The backend with the launcher as ``identity``; a loud skip where this host cannot give a
    run its own pid namespace (every oracle here reads the nested namespace)."""
    backend = LinuxBackend(launcher_as(identity))
    proof = next((f.value for f in backend.probe().facts if f.name == "launcher.userns_pid"), None)
    if proof != "ok":
        loud_skip(f"run-tree oracle [{identity}]: the launcher cannot create a pid namespace here ({proof})")
    return backend


def linux_run(identity: str, spec: BoundarySpec):
    return planned(linux_backend(identity), spec)[1]


def run_parked_tree(run, marker: str, inspect, remaining, tree: str):
    """Run to the end, the host calling ``inspect`` while the workload is parked; then
    ``remaining()`` (what of the tree is left) and kill every process carrying ``tree``."""
    try:
        gated = run_gated(run, marker, inspect, timeout=LIVENESS)
        return gated, remaining()
    finally:
        kill_quietly(pids_carrying(tree))


def run_collecting(run):
    """Run to the end; return (report, stdout text, stderr text, seconds it took)."""
    out, err = bytearray(), bytearray()
    started = time.monotonic()
    report = run(RunIO(stdout_sink=out.extend, stderr_sink=err.extend))
    return report, out.decode(errors="replace"), err.decode(errors="replace"), time.monotonic() - started


def said(stdout, key: str):
    """The value of the workload's first ``key=value`` line, or None."""
    text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout
    for line in text.splitlines():
        if line.startswith(key + "="):
            return line[len(key) + 1 :]
    return None


def admitted_enforced(failures: list, report, *kinds) -> None:
    admitted = {a.kind: a for a in report.body.admitted}
    for kind in kinds:
        item = admitted.get(kind)
        if item is None or item.enforcement is not Enforcement.Enforced:
            failures.append(f"{kind.value} must be admitted Enforced; admitted={report.body.admitted}")


def witness(report, dimension: BudgetDimension):
    return next((w for w in report.body.budget if w.dimension is dimension), None)


def bvisor_cli(identity: str, *args, cwd: str = "/"):
    return subprocess.run(
        [*cli_prefix(identity), BVISOR, *args], capture_output=True, cwd=cwd, stdin=subprocess.DEVNULL, timeout=120, check=False
    )


# =============================================================================================
# 1. Wall timeout: the supervisor's deadline kills the whole tree.
# =============================================================================================

# bash: announce, run a marked sleep in a subshell (exec -a names it), then say it slept.
SLEEPER = 'echo started; (exec -a "$0-sleep" /bin/sleep "$1"); echo slept'


@pytest.mark.parametrize("identity", IDENTITIES)
def test_wall_timeout_kills_the_whole_tree_by_both_channels(identity):
    """Attack: outlive the wall budget (``sleep 30`` under a 1 s Enforced cap). The run must end
    as Timeout with SIGKILL, the report must name the wall budget and the kill, the workload
    must never get past its sleep, and no process of the tree may be left."""
    marker = unique_marker("BVISOR-RT-WALL")
    spec = tree_spec(["/bin/bash", "-c", SLEEPER, marker, "30"], budget=watched_budgets(wall=(1_000_000, MinGuarantee.Enforced)))
    report, stdout, stderr, took = run_collecting(linux_run(identity, spec))
    left = survivors(marker)
    kill_quietly(left)
    print(f"wall timeout [{identity}]: run returned after {took:.3f}s (budget 1s) stdout={stdout!r} stderr={stderr!r}", file=sys.stderr)
    failures = []
    body = report.body
    if body.outcome is not Outcome.Timeout:
        failures.append(f"outcome must be Timeout; got {body.outcome} exit={body.exit} facts={body.observed}")
    if body.exit is None or body.exit.signal != SIGKILL:
        failures.append(f"exit must be signal 9; got {body.exit}")
    wall = witness(report, BudgetDimension.Wall)
    if wall is None or wall.finding is not BudgetFinding.LimitReached or wall.supplied is not Enforcement.Enforced:
        failures.append(f"the wall witness must be Enforced and find limit_reached; got {wall}")
    enforced = facts_of(report, "budget_enforced")
    kill = wall.mechanism.rpartition("+")[2] if wall is not None else "?"
    wanted = f"dimension=wall action=run_tree_killed mechanism={kill}"
    if not any(f.startswith(wanted) for f in enforced):
        failures.append(f"a budget_enforced fact must say {wanted!r} (the profile's kill, {wall and wall.mechanism}); got {enforced}")
    admitted_enforced(failures, report, RequirementKind.Kill, RequirementKind.ChildSpawnAllowDescendants)
    if "started" not in stdout.splitlines():
        failures.append(f"CHANNEL B: the workload must report it started; stdout={stdout!r}")
    if "slept" in stdout.splitlines():
        failures.append(f"CHANNEL B: the workload got past its 30 s sleep; stdout={stdout!r}")
    if left:
        failures.append(f"CHANNEL A: processes of the killed tree outlived the run: {[(p, argv_of(p)) for p in left]}")
    # Not a speed measurement: the functional check that the deadline killed the run (an
    # unkilled run takes 30 s); 3 s is the acceptance's bound.
    if not took < 3.0:
        failures.append(f"the run must return within 3 s of a 1 s wall budget (acceptance); it took {took:.3f}s")
    assert not failures, f"wall-timeout oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_timeout_exits_124_and_leaves_nothing(identity):
    """Attack: the same overrun through ``bvisor run --timeout 1`` (the whole CLI running as the
    identity, so as uid 65534 no cgroup exists and the kill is the pid namespace's). Exit 124,
    the report says timeout by signal 9 with a wall budget_enforced fact, no process is left."""
    marker = unique_marker("BVISOR-RT-CLIWALL")
    done, took, left, written = cli_overrun(identity, marker, 'echo started; exec -a "$0" /bin/sleep 30')
    print(f"CLI --timeout 1 [{identity}]: exit {done.returncode} after {took:.3f}s stdout={done.stdout!r} stderr={done.stderr!r}", file=sys.stderr)
    failures = []
    if b"started" not in done.stdout:
        failures.append(f"CHANNEL B: the workload's output must pass through; stdout={done.stdout!r}")
    facts = check_cli_timed_out(failures, done, took, left, written)
    print(f"CLI --timeout 1 [{identity}]: budget_enforced={facts}", file=sys.stderr)
    assert not failures, f"CLI wall-timeout failures [{identity}]: {failures}"


def cli_overrun(identity: str, marker: str, script: str) -> tuple:
    """``bvisor run --timeout 1 --report … -- bash -c SCRIPT MARKER`` with the whole CLI as the
    identity: ``(done, seconds it took, processes carrying the marker that outlived it (then
    killed), the written report or {})``."""
    shared = shared_host_dir("bvisor-rt-cli-", mode=0o777)
    report_path = os.path.join(shared, "report.json")
    try:
        started = time.monotonic()
        done = bvisor_cli(
            identity, "run", "--quiet", "--no-stdin", "--timeout", "1", "--report", report_path, "--", "/bin/bash", "-c", script, marker
        )
        took = time.monotonic() - started
        left = survivors(marker)
        kill_quietly(left)
        try:
            with open(report_path) as f:
                written = json.load(f)
        except (OSError, ValueError):
            written = {}
    finally:
        subprocess.run(["rm", "-rf", shared], check=False)
    return done, took, left, written


def check_cli_timed_out(failures: list, done, took: float, left: list, written: dict) -> list:
    """A CLI run its 1 s wall budget ended: exit 124, a report saying timeout / signal 9 with a
    wall budget_enforced fact, nothing left behind, back within the acceptance's 3 s. Returns
    the report's budget_enforced facts."""
    facts = [f["detail"] for f in written.get("observed", []) if f.get("kind") == "budget_enforced"]
    if done.returncode != 124:
        failures.append(f"`bvisor run --timeout 1` of an overrun must exit 124; got {done.returncode} stderr={done.stderr!r}")
    if not written:
        failures.append("the --report file must hold the sealed report")
    elif written.get("outcome") != "timeout" or written.get("exit") != {"signal": 9}:
        failures.append(f"the report must say timeout / signal 9; got {written.get('outcome')} {written.get('exit')}")
    if written and not any(f.startswith("dimension=wall action=run_tree_killed") for f in facts):
        failures.append(f"the report must carry a wall budget_enforced fact; got {facts}")
    if left:
        failures.append(f"CHANNEL A: the CLI run left processes behind: {[(p, argv_of(p)) for p in left]}")
    # Not a speed measurement: the functional check that the deadline killed the run (an
    # unkilled `sleep 30` takes 30 s); 3 s is the acceptance's bound, CLI start-up included.
    if not took < 3.0:
        failures.append(f"`bvisor run --timeout 1` of an overrun must return within 3 s (acceptance); it took {took:.3f}s")
    return facts


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_a_wall_cap_the_same_workload_sleeps_to_completion(identity):
    """Control: the same workload with a watched (Mediated) 60 s wall budget and a short sleep
    runs to the end and says so: the Timeout above is the cap's doing, not the workload's."""
    marker = unique_marker("BVISOR-RT-NOCAP")
    report, stdout, stderr, took = run_collecting(linux_run(identity, tree_spec(["/bin/bash", "-c", SLEEPER, marker, "0.2"])))
    print(f"uncapped wall control [{identity}]: {took:.3f}s stdout={stdout!r} stderr={stderr!r}", file=sys.stderr)
    failures = []
    if report.body.outcome is not Outcome.Completed:
        failures.append(f"must run to Completed; got {report.body.outcome} {report.body.exit} facts={report.body.observed}")
    if stdout.splitlines() != ["started", "slept"]:
        failures.append(f"CHANNEL B: the workload must start and finish its sleep; stdout={stdout!r}")
    if facts_of(report, "budget_enforced"):
        failures.append(f"a watched budget must never be enforced; got {facts_of(report, 'budget_enforced')}")
    wall = witness(report, BudgetDimension.Wall)
    if wall is None or wall.finding is not BudgetFinding.WithinLimit or wall.supplied is not Enforcement.Mediated:
        failures.append(f"the wall witness must be Mediated and within its limit; got {wall}")
    assert not failures, f"uncapped wall control failures [{identity}]: {failures}"


# =============================================================================================
# 2. Daemon escape: a double-forked, setsid'd grandchild must not outlive the run.
# =============================================================================================

def daemon_script() -> str:
    """sh: start a double-forked setsid daemon named ``$0-daemon`` with its stdio detached,
    print its pid (inside view), then park; once released, print its own pid and exit 0."""
    return (
        '( /usr/bin/setsid /bin/bash -c \'exec -a "$0" /bin/sleep 300\' "$0-daemon" </dev/null >/dev/null 2>&1 & '
        'echo "daemon_pid=$!" ); '
        + PARK
        + 'echo "self=$$"; exit 0'
    )


def daemon_view(daemon: str):
    """Channel A while the workload is parked: the daemon's host pid, NSpid, session and parent."""

    def inspect(_pid: int) -> dict:
        found = wait_for(lambda: pids_named(daemon))
        if not found:
            return {"daemon": None}
        pid = found[0]
        status = status_of(pid)
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return {
            "daemon": pid,
            "nspid": nspids(pid),
            "session_leader": int(fields[3]) == pid,  # field 6 (session) == its own pid: setsid worked
            "ppid": int(status.get("PPid", "0")),
            "leaf": bvisor_leaf_of(pid),
        }

    return inspect


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_daemonised_grandchild_dies_with_the_run(identity):
    """Attack: daemonise (``( setsid sleep 300 & )``: orphaned, own session, stdio detached)
    and exit 0. While the workload is parked the host sees the daemon inside the run's pid
    namespace and leaf; once ``run()`` returns, no process carries its name."""
    marker = unique_marker("BVISOR-RT-DAEMON")
    daemon = f"{marker}-daemon"
    run = linux_run(identity, tree_spec(["/bin/sh", "-c", daemon_script(), marker]))
    gated, left = run_parked_tree(run, marker, daemon_view(daemon), lambda: survivors(daemon), daemon)
    host = gated.inspected or {}
    print(f"daemon escape [{identity}]: host={host} stdout={gated.stdout!r} stderr={gated.stderr!r}", file=sys.stderr)
    failures = []
    if gated.result.body.outcome is not Outcome.Completed:
        failures.append(f"the workload exits 0: must be Completed; got {gated.result.body.outcome} facts={gated.result.body.observed}")
    reported_pid = said(gated.stdout, "daemon_pid")
    if not reported_pid or not reported_pid.isdigit():
        failures.append(f"CHANNEL B: the workload must report the daemon it started; stdout={gated.stdout!r}")
    if not host.get("daemon"):
        failures.append("CHANNEL A: the host must see the daemon while the workload is parked (the attack must really start)")
    else:
        if len(host["nspid"]) != 2 or str(host["nspid"][-1]) != reported_pid:
            failures.append(f"CHANNEL A/B: the daemon must be in the nested pid namespace as pid {reported_pid}; NSpid={host['nspid']}")
        if not host["session_leader"]:
            failures.append("the daemon must really be in its own session (setsid), or the attack is weaker than claimed")
        if not host["leaf"]:
            failures.append("CHANNEL A: the daemon must sit in the run's bvisor cgroup leaf")
    if left:
        failures.append(f"CHANNEL A: the daemon outlived the run: {[(p, argv_of(p), status_of(p).get('State')) for p in left]}")
    assert not failures, f"daemon-escape oracle failures [{identity}]: {failures}"


def test_control_inert_daemon_outlives_the_run():
    """Control: the same workload on the unconfined InertBackend — the daemon survives the run
    (then this test kills it): the escape the boundary stops is real."""
    marker = unique_marker("BVISOR-RT-DAEMON-CTL")
    daemon = f"{marker}-daemon"
    run = planned(InertBackend(), tree_spec(["/bin/sh", "-c", daemon_script(), marker], run_tree=False))[1]
    gated, left = run_parked_tree(run, marker, daemon_view(daemon), lambda: [p for p in pids_named(daemon) if undisturbed(p)], daemon)
    print(f"daemon control: host={gated.inspected} survivors={left} stdout={gated.stdout!r}", file=sys.stderr)
    failures = []
    if gated.result.body.outcome is not Outcome.Completed:
        failures.append(f"the control run must complete; got {gated.result.body.outcome}")
    if not said(gated.stdout, "daemon_pid"):
        failures.append(f"the control workload must report its daemon; stdout={gated.stdout!r}")
    if not left:
        failures.append("without the boundary the daemon must outlive the run (else the oracle is vacuous)")
    elif len(nspids(left[0])) != 1:
        failures.append(f"without the boundary the daemon must be in the host's pid namespace; NSpid={nspids(left[0])}")
    assert not failures, f"daemon control failures: {failures}"


# =============================================================================================
# 3. Signalling out: a host process, and the run's own init.
# =============================================================================================


def signal_script(host_pid: int, try_init: bool) -> str:
    """sh: try SIGTERM and signal 0 on the host pid, say what that pid is inside, and (only when
    provably inside a pid namespace: $$ is 2) try to SIGKILL pid 1, the run's init."""
    script = (
        f'echo "self=$$"; '
        f'kill -TERM {host_pid} 2>/dev/null; echo "term_rc=$?"; '
        f'kill -0 {host_pid} 2>/dev/null; echo "probe_rc=$?"; '
        f'echo "resolves=$(tr "\\0" " " < /proc/{host_pid}/cmdline 2>/dev/null || echo nothing)"; '
    )
    if try_init:
        # Never on the host: kill -KILL 1 there is the machine's init.
        script += 'if [ "$$" = 2 ]; then kill -KILL 1 2>/dev/null; echo "init_kill_rc=$?"; else echo "init_kill=skipped_not_in_pidns"; fi; '
        script += 'kill -0 1 2>/dev/null; echo "init_probe_rc=$?"; echo after_init_kill; '
    return script + "exit 0"


def host_target(identity: str):
    """A host process the workload's uid could signal were it not for the boundary: it runs as
    the same host uid as the workload, named by a marker."""
    marker = unique_marker("BVISOR-RT-TARGET")
    prefix = list(UNPRIVILEGED_PREFIX) if identity_uid(identity) != os.geteuid() else []
    proc = subprocess.Popen([*prefix, "/bin/bash", "-c", 'exec -a "$0" /bin/sleep 60', marker], stdin=subprocess.DEVNULL)
    if not wait_for(lambda: pids_named(marker)):
        proc.kill()
        proc.wait()
        pytest.fail(f"the host target {marker} never started")
    return proc


@pytest.mark.parametrize("identity", IDENTITIES)
def test_workload_cannot_signal_a_host_process_or_its_own_init(identity):
    """Attack: SIGTERM (and probe) a live host process of the workload's own uid, then SIGKILL
    the run's init (pid 1 inside). The host process must be alive and unsignalled after the run;
    the workload must report both kills failed and run on to its own exit 0."""
    target = host_target(identity)
    try:
        script = signal_script(target.pid, try_init=True)
        report, stdout, stderr, _ = run_collecting(linux_run(identity, tree_spec(["/bin/sh", "-c", script])))
        untouched = undisturbed(target.pid)  # a SIGTERM the workload got through is pending on it, or it is exiting
        state = {key: status_of(target.pid).get(key) for key in ("State", "SigPnd", "ShdPnd")}
        returncode = target.poll()
    finally:
        target.kill()
        target.wait()
    print(f"signal out [{identity}]: host target {target.pid} state={state!r} stdout={stdout!r} stderr={stderr!r}", file=sys.stderr)
    failures = []
    if returncode is not None:
        failures.append(f"CHANNEL A: the host process died during the run (returncode {returncode})")
    if not untouched:
        failures.append(f"CHANNEL A: the host process must run on, unsignalled; {state}")
    if said(stdout, "term_rc") in (None, "0"):
        failures.append(f"CHANNEL B: kill -TERM of the host pid must fail; term_rc={said(stdout, 'term_rc')!r}")
    if said(stdout, "probe_rc") in (None, "0"):
        failures.append(f"CHANNEL B: kill -0 of the host pid must fail; probe_rc={said(stdout, 'probe_rc')!r}")
    if said(stdout, "self") != "2":
        failures.append(f"CHANNEL B: the workload must be pid 2 of its own pid namespace; self={said(stdout, 'self')!r}")
    if "after_init_kill" not in stdout.splitlines():
        failures.append(f"CHANNEL B: the workload must survive its kill -KILL 1 and go on; stdout={stdout!r}")
    if report.body.outcome is not Outcome.Completed or report.body.exit is None or report.body.exit.code != 0:
        failures.append(f"the run must end with the workload's own exit 0; got {report.body.outcome} {report.body.exit} facts={report.body.observed}")
    assert not failures, f"signal-out oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_the_boundary_the_same_kill_lands(identity):
    """Control: the same kill of a same-uid host process, without the boundary (the InertBackend
    for the caller; a plain setpriv'd shell as uid 65534), kills it with SIGTERM."""
    target = host_target(identity)
    try:
        script = signal_script(target.pid, try_init=False)
        if identity_uid(identity) == os.geteuid():
            report, stdout, _, _ = run_collecting(planned(InertBackend(), tree_spec(["/bin/sh", "-c", script], run_tree=False))[1])
            ran = report.body.outcome is Outcome.Completed
        else:
            done = subprocess.run([*UNPRIVILEGED_PREFIX, "/bin/sh", "-c", script], capture_output=True, timeout=60, check=False)
            stdout, ran = done.stdout.decode(), done.returncode == 0
        try:
            returncode = target.wait(timeout=LIVENESS)
        except subprocess.TimeoutExpired:
            returncode = None
    finally:
        target.kill()
        target.wait()
    print(f"signal control [{identity}]: target returncode={returncode} stdout={stdout!r}", file=sys.stderr)
    failures = []
    if not ran:
        failures.append("the control workload must run to its end")
    if said(stdout, "term_rc") != "0":
        failures.append(f"without the boundary kill -TERM must succeed; term_rc={said(stdout, 'term_rc')!r}")
    if returncode != -signal.SIGTERM:
        failures.append(f"without the boundary the host process must die of SIGTERM; returncode={returncode}")
    assert not failures, f"signal control failures [{identity}]: {failures}"


# =============================================================================================
# 4. Descendants: a grandchild chain stays in the run's leaf and nested namespace, dies with it.
# =============================================================================================

# W (sh, argv ... M) starts mid (sh, $0 = M-mid) in the background, which starts leaf
# (bash exec -a M-leaf sleep 300): W -> mid -> leaf. W reports what it sees, parks, exits 0.
CHAIN_TOP = (
    '/bin/sh -c "$1" "$0-mid" "$2" "$0-leaf" </dev/null >/dev/null 2>&1 & '
    'echo "self=$$"; echo "mid=$!"; '
    'echo "cgroup=$(tr "\\n" ";" < /proc/self/cgroup)"; '
    + PARK
    + 'echo "visible=$(ls /proc | grep -E "^[0-9]+$" | sort -n | tr "\\n" ",")"; exit 0'
)
CHAIN_MID = '/bin/bash -c "$1" "$2"; :'  # "; :" keeps sh from exec'ing into its last command
CHAIN_LEAF = 'exec -a "$0" /bin/sleep 300'


def chain_view(marker: str):
    """Channel A while W is parked: each member's host pid, parent, NSpid and leaves."""

    def inspect(_pid: int) -> dict:
        leaf = wait_for(lambda: pids_named(f"{marker}-leaf"))
        members = {"top": pids_with_arg(marker), "mid": pids_with_arg(f"{marker}-mid"), "leaf": leaf}
        view = {}
        for role, pids in members.items():
            pid = pids[0] if len(pids) == 1 else None
            view[role] = {
                "pids": pids,
                "ppid": int(status_of(pid).get("PPid", "0")) if pid else None,
                "nspid": nspids(pid) if pid else [],
                "leaves": bvisor_leaf_of(pid) if pid else set(),
                "dirs": bvisor_leaf_dirs(pid) if pid else [],
            }
        return view

    return inspect


@pytest.mark.parametrize("identity", IDENTITIES)
def test_descendants_share_the_run_leaf_and_namespace_and_die_with_it(identity):
    """Attack: grow a grandchild chain (sh -> sh -> sleep) and park. Every member must be in the
    same bvisor leaf in every hierarchy and in the nested pid namespace (two NSpid entries)
    with the chain's parentage; the workload sees the same pids inside; after the run none
    remain and the leaf directories are gone."""
    marker = unique_marker("BVISOR-RT-CHAIN")
    run = linux_run(identity, tree_spec(["/bin/sh", "-c", CHAIN_TOP, marker, CHAIN_MID, CHAIN_LEAF]))
    gated, left = run_parked_tree(run, marker, chain_view(marker), lambda: survivors(marker), marker)
    view = gated.inspected or {}
    print(f"descendants [{identity}]: host={view} stdout={gated.stdout!r} stderr={gated.stderr!r}", file=sys.stderr)
    failures = []
    report = gated.result
    if report.body.outcome is not Outcome.Completed:
        failures.append(f"the workload exits 0: must be Completed; got {report.body.outcome} facts={report.body.observed}")
    admitted_enforced(failures, report, RequirementKind.Kill, RequirementKind.ChildSpawnAllowDescendants)
    if not view or any(len(view[r]["pids"]) != 1 for r in ("top", "mid", "leaf")):
        failures.append(f"CHANNEL A: the host must find exactly one top, mid and leaf while parked; got {view}")
    else:
        top, mid, leaf = view["top"], view["mid"], view["leaf"]
        if mid["ppid"] != top["pids"][0] or leaf["ppid"] != mid["pids"][0]:
            failures.append(f"CHANNEL A: the members must form the chain top -> mid -> leaf; {view}")
        leaves = [m["leaves"] for m in (top, mid, leaf)]
        if len(leaves[0]) != 1 or any(x != leaves[0] for x in leaves):
            failures.append(f"CHANNEL A: every member must sit in one and the same bvisor leaf; got {leaves}")
        if not top["dirs"] or any(m["dirs"] != top["dirs"] for m in (mid, leaf)):
            failures.append(f"CHANNEL A: every member must sit in the same leaf in every hierarchy; got {[m['dirs'] for m in (top, mid, leaf)]}")
        if any(len(m["nspid"]) != 2 for m in (top, mid, leaf)):
            failures.append(f"CHANNEL A: every member must be in a nested pid namespace (two NSpid entries); got {[m['nspid'] for m in (top, mid, leaf)]}")
        else:
            inner = {r: view[r]["nspid"][1] for r in ("top", "mid", "leaf")}
            if str(inner["top"]) != said(gated.stdout, "self") or str(inner["mid"]) != said(gated.stdout, "mid"):
                failures.append(f"CHANNEL A/B: the workload's own pids must match the host's NSpid view; inner={inner} stdout={gated.stdout!r}")
            visible = {int(p) for p in (said(gated.stdout, "visible") or "").split(",") if p}
            if not {1, *inner.values()} <= visible:
                failures.append(f"CHANNEL B: the workload must see init 1 and the whole chain {inner} in its /proc; saw {sorted(visible)}")
            # Its cgroup namespace is rooted at the leaf (channel A places it there): inside,
            # every hierarchy reads "/", and no host cgroup path is visible.
            own = [line for line in (said(gated.stdout, "cgroup") or "").split(";") if line]
            if not own or any(not line.endswith(":/") for line in own):
                failures.append(f"CHANNEL B: the workload must see its leaf as the root of every hierarchy; cgroup={said(gated.stdout, 'cgroup')!r}")
        kept = [d for d in top["dirs"] if os.path.exists(d)]
        if kept:
            failures.append(f"CHANNEL A: the run's leaf directories outlived the run: {kept}")
    if left:
        failures.append(f"CHANNEL A: members of the chain outlived the run: {[(p, argv_of(p)) for p in left]}")
    assert not failures, f"descendant-chain oracle failures [{identity}]: {failures}"


def test_control_inert_descendants_escape_into_the_host():
    """Control: the same chain on the InertBackend lives in the host's pid namespace (one
    NSpid entry) and cgroups (no bvisor leaf), and outlives the run (then this test kills it)."""
    marker = unique_marker("BVISOR-RT-CHAIN-CTL")
    run = planned(InertBackend(), tree_spec(["/bin/sh", "-c", CHAIN_TOP, marker, CHAIN_MID, CHAIN_LEAF], run_tree=False))[1]

    def outliving() -> list:
        return [p for p in pids_named(f"{marker}-leaf") + pids_with_arg(f"{marker}-mid") if undisturbed(p)]

    gated, left = run_parked_tree(run, marker, chain_view(marker), outliving, marker)
    view = gated.inspected or {}
    print(f"descendants control: host={view} survivors={left}", file=sys.stderr)
    failures = []
    leaf = view.get("leaf") or {}
    if len(leaf.get("pids", [])) != 1:
        failures.append(f"the control chain must start; host saw {view}")
    elif len(leaf["nspid"]) != 1 or leaf["leaves"]:
        failures.append(f"without the boundary the leaf must be a plain host process; NSpid={leaf['nspid']} leaves={leaf['leaves']}")
    if len(left) != 2:
        failures.append(f"without the boundary mid and leaf must outlive the run; survivors={left}")
    assert not failures, f"descendant control failures: {failures}"


# =============================================================================================
# 5. The host dies mid-run: the tree dies with it, the next backend start removes its leaf.
# =============================================================================================

CRASHING_HOST = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from bvisor import LinuxBackend
    from bvisor.contract import decode_spec_json
    from helpers import launcher_as, planned

    _, run = planned(LinuxBackend(launcher_as(sys.argv[2])), decode_spec_json(sys.argv[3].encode()))
    run(None)
    """
)


def ancestry(pid: int, stop: int) -> list:
    """``(pid, start time)`` of ``pid`` and each parent up to (not including) ``stop``."""
    chain = []
    while pid not in (0, 1, stop) and len(chain) < 16:
        chain.append((pid, start_of(pid)))
        pid = int(status_of(pid).get("PPid", "0"))
    return chain


@pytest.mark.parametrize("identity", IDENTITIES)
def test_host_sigkill_mid_run_takes_the_tree_and_the_next_backend_reconciles_the_leaf(identity):
    """Attack (on the host side): SIGKILL the host process while its workload runs. The whole
    tree — workload, init (the launcher's child, pid 1 of its namespace) and launcher
    coordinator — must die with it; the crashed host's leaf directories stay (nobody tore
    them down), and the next ``LinuxBackend`` start kills and removes them and says so in
    ``backend.reconciled``."""
    linux_backend(identity)  # a loud skip where no pid namespace can be made
    marker = unique_marker("BVISOR-RT-CRASH")
    spec = tree_spec(["/bin/bash", "-c", 'exec -a "$0" /bin/sleep 300', marker])
    tree = []
    host = subprocess.Popen(
        [sys.executable, "-c", CRASHING_HOST, TESTS_DIR, identity, msgspec.json.encode(spec).decode()],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        found = wait_for(lambda: pids_named(marker), seconds=30.0)  # the host probes its launcher first
        workload = found[0] if found else None
        tree = ancestry(workload, host.pid) if workload else []
        dirs = bvisor_leaf_dirs(workload) if workload else []
        names = bvisor_leaf_of(workload) if workload else set()
        host.kill()
        host.wait()
        deadline = time.monotonic() + GONE_WAIT
        while any(alive(p, s) for p, s in tree) and time.monotonic() < deadline:
            time.sleep(0.02)
        living = [(p, argv_of(p), status_of(p).get("State")) for p, s in tree if alive(p, s)]
        kept = [d for d in dirs if os.path.isdir(d)]
        backend = LinuxBackend(launcher_as(identity))
        after = [d for d in dirs if os.path.exists(d)]
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        kill_quietly([pid for pid, start in tree if alive(pid, start)] + pids_carrying(marker))
        host_stderr = host.stderr.read().decode(errors="replace")
        host.stderr.close()
    print(
        f"host SIGKILL [{identity}]: tree={tree} dirs={dirs} survivors={living} "
        f"reconciled={backend.reconciled} host stderr={host_stderr!r}",
        file=sys.stderr,
    )
    failures = []
    if workload is None:
        pytest.fail(f"the crashing host never started its workload; its stderr: {host_stderr!r}")
    if len(tree) < 3:
        failures.append(f"CHANNEL A: the workload's ancestry must hold workload, init and launcher; got {tree}")
    if living:
        failures.append(
            f"CHANNEL A: members of the run tree outlived the host's SIGKILL by {GONE_WAIT}s (src bug if the "
            f"launcher coordinator is among them: it is not tied to the host): {living}"
        )
    if not dirs or len(names) != 1:
        failures.append(f"CHANNEL A: the workload must sit in exactly one bvisor leaf; dirs={dirs} names={names}")
    if kept != dirs:
        failures.append(f"control: a crashed host leaves its leaf behind (nobody tore it down); missing right after the kill: {sorted(set(dirs) - set(kept))}")
    if after:
        failures.append(f"the next backend start must remove the orphaned leaf; still there: {after}")
    for name in names:
        if not any(line.startswith(f"{name}:") and line.endswith("removed") for line in backend.reconciled):
            failures.append(f"backend.reconciled must name {name} as removed; got {backend.reconciled}")
    assert not failures, f"host-crash oracle failures [{identity}]: {failures}"


# =============================================================================================
# 6. No leaks over many runs.
# =============================================================================================

RUNS = 200
LAUNCHER_NAMES = ("bvisor.launcher", "bvisor-linux-launcher")


def environ_of(pid) -> list:
    """``/proc/<pid>/environ`` split at NULs ([] if gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return [e.decode(errors="replace") for e in f.read().split(b"\0") if e]
    except OSError:
        return []


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether walking ``pid``'s parents (``/proc/<pid>/stat`` ppid) reaches ``ancestor``."""
    for _ in range(64):
        if pid == ancestor:
            return True
        if pid in (0, 1):
            return False
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def run_processes(owner: int) -> set:
    """``(pid, start time)`` of every live process system-wide that runs the workload
    (``/bin/true``) or a launcher (argv naming ``bvisor.launcher``/``bvisor-linux-launcher``)
    and belongs to ``owner``'s runs.

    Other bvisor tests may run on this machine at the same time, so a process is attributed to
    ``owner`` by any of three marks, each of which only ``owner``'s runs can carry: its parent
    chain (``/proc/<pid>/stat`` ppid) reaches ``owner`` (the server, coordinator, namespace
    parent, init and workload while the chain is intact); its environment holds
    ``BVISOR_HOST_PID=<owner>`` (the backend starts every launcher with exactly that, and the
    coordinator and its forks inherit it — this mark survives a reparenting to pid 1, which
    the ancestry walk would lose); or it sits in a bvisor cgroup leaf named for ``owner``
    (``bvisor-<owner>-…``: the workload, whose environment is empty, after a broken chain).
    Another host's processes carry none of these, so they can neither hide nor fake a leak."""
    found = set()
    for pid in all_pids():
        argv = argv_of(pid)
        if pid == owner or not argv:
            continue  # this process, gone, or a zombie (no argv: the children check sees ours)
        if os.path.basename(argv[0]) != "true" and not any(name in a for a in argv for name in LAUNCHER_NAMES):
            continue
        mine = (
            descends_from(pid, owner)
            or f"{ENV_HOST_PID}={owner}" in environ_of(pid)
            or any(name.startswith(f"bvisor-{owner}-") for name in bvisor_leaf_of(pid))
        )
        if mine and (start := start_of(pid)) is not None:
            found.add((pid, start))
    return found


def host_state() -> dict:
    """What a leaking runner would grow in this process: fds, threads, children, mounts, leaves."""
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the listing's own fd, closed by now
    return {
        "fds": fds,
        "threads": len(os.listdir("/proc/self/task")),
        "children": children_of(os.getpid()),
        "mountinfo": mountinfo,
        "leaves": bvisor_cgroup_dirs(owner=os.getpid()),
    }


@pytest.mark.parametrize("identity", IDENTITIES)
def test_two_hundred_runs_leak_nothing(identity):
    """Attack (by attrition): 200 sequential runs of ``/bin/true`` through one backend and one
    plan. Every report is Completed, and afterwards this process has the same fds, threads and
    mounts, no new child process, no bvisor cgroup leaf of its own, and no process anywhere on
    the host that runs the workload or a launcher for this process (see ``run_processes``) and
    did not exist before."""
    backend = linux_backend(identity)
    # The process scan must not be blind: while a run of this backend is parked, it finds that
    # run's launcher processes (else "nothing leaked" below would prove nothing).
    marker = unique_marker("BVISOR-RT-LEAKSIGHT")
    sight_run = planned(backend, tree_spec(["/bin/sh", "-c", PARK + "exit 0", marker]))[1]
    threads = len(os.listdir("/proc/self/task"))
    sighted = run_gated(sight_run, marker, lambda _pid: run_processes(os.getpid()), timeout=LIVENESS).inspected or set()
    backend.close()  # the 200 runs start as a backend's first run does: no warm server yet
    # run_gated's joined thread leaves the kernel's task list a moment after join() returns:
    # let it go (a liveness bound) before the thread count below is snapshotted.
    deadline = time.monotonic() + GONE_WAIT
    while len(os.listdir("/proc/self/task")) > threads and time.monotonic() < deadline:
        time.sleep(0.01)
    run = planned(backend, tree_spec(["/bin/true"]))[1]
    before = host_state()
    processes_before = run_processes(os.getpid())
    outcomes = {}
    started = time.monotonic()
    for _ in range(RUNS):
        report = run(RunIO())
        key = (report.body.outcome.value, str(report.body.exit))
        outcomes[key] = outcomes.get(key, 0) + 1
    took = time.monotonic() - started
    backend.close()  # a warm launcher server (and its socket and thread) goes with its backend
    after = host_state()
    # A kill is asynchronous: give a dying process up to GONE_WAIT (a liveness bound) to go.
    deadline = time.monotonic() + GONE_WAIT
    while (leaked := run_processes(os.getpid()) - processes_before) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(
        f"{RUNS} runs [{identity}]: {took:.2f}s total, {took / RUNS * 1000:.1f} ms per run; outcomes={outcomes}; "
        f"run processes mid-run={sorted(sighted)} before={sorted(processes_before)} leaked={sorted(leaked)}",
        file=sys.stderr,
    )
    failures = []
    if outcomes != {("completed", str(report.body.exit)): RUNS} or report.body.exit.code != 0:
        failures.append(f"every run must be Completed with exit 0; got {outcomes}")
    if after["fds"] != before["fds"]:
        grown = {fd: t for fd, t in after["fds"].items() if before["fds"].get(fd) != t}
        failures.append(f"the fd table changed: {len(before['fds'])} -> {len(after['fds'])}; new or changed: {grown}")
    if after["threads"] != before["threads"]:
        failures.append(f"thread count changed: {before['threads']} -> {after['threads']}")
    if set(after["children"]) - set(before["children"]):
        new = sorted(set(after["children"]) - set(before["children"]))
        failures.append(f"new child processes: {[(p, argv_of(p), status_of(p).get('State')) for p in new]}")
    if after["mountinfo"] != before["mountinfo"]:
        failures.append("this process's mount table changed")
    if after["leaves"]:
        failures.append(f"bvisor cgroup leaves of this process remain: {after['leaves']}")
    if not sighted:  # the parked workload is /bin/sh, so all the scan can find is the launchers
        failures.append("the process scan must see a parked run's launcher processes; it saw none")
    if leaked:
        failures.append(
            f"CHANNEL A: workload or launcher processes of this process's runs outlived backend.close(): "
            f"{[(p, argv_of(p), status_of(p).get('PPid'), status_of(p).get('State')) for p, _ in sorted(leaked)]}"
        )
    assert not failures, f"leak oracle failures [{identity}]: {failures}"


# =============================================================================================
# 7. A fully unprivileged host: no cgroup, so cgroup budgets fail closed; wall and kill stay.
# =============================================================================================


def probe_json(identity: str) -> dict:
    done = bvisor_cli(identity, "probe", "--json")
    assert done.returncode == 0, f"bvisor probe --json [{identity}] failed: {done.stderr!r}"
    return json.loads(done.stdout)


def probe_cells(probe: dict) -> tuple:
    budget = probe["snapshot"]["budget"]
    cells = {c["kind"]: c for c in probe["profile"]["cells"]}
    facts = {f["name"]: f["value"] for f in probe["snapshot"]["facts"]}
    return budget, cells, facts


def test_fully_unprivileged_host_fails_closed_on_cgroup_budgets_but_keeps_wall_and_kill():
    """Attack: ask a host with no cgroup of its own (the whole bvisor as uid 65534) for caps only
    a cgroup can install. The probe must say process_count, resident_memory and cpu (the
    supervisor reads the leaf's whole-tree usage) are not Enforced; ``plan`` of an Enforced
    process_count or cpu and ``run --pids/--memory`` must refuse naming the dimension (exit 125
    under both, nothing runs); the wall cap and the run-tree kill, which the pid namespace gives,
    stay Enforced, and ``run --timeout 5 -- /bin/true`` runs (exit 0)."""
    if os.geteuid() != 0:
        loud_skip("the unprivileged-host oracle drops from root to uid 65534 with setpriv; these tests do not run as root")
    budget, cells, facts = probe_cells(probe_json("unprivileged"))
    shared = shared_host_dir("bvisor-rt-unpriv-", mode=0o777)
    try:
        capped = watched_budgets(process_count=(16, MinGuarantee.Enforced))
        cpu_capped = watched_budgets(cpu=(500_000, MinGuarantee.Enforced))
        walled = watched_budgets(wall=(5_000_000, MinGuarantee.Enforced))
        paths = {}
        for name, spec in (
            ("pids", tree_spec(["/bin/true"], budget=capped)),
            ("cpu", tree_spec(["/bin/true"], budget=cpu_capped)),
            ("wall", tree_spec(["/bin/true"], budget=walled)),
        ):
            paths[name] = os.path.join(shared, f"{name}.json")
            with open(paths[name], "wb") as f:
                f.write(msgspec.json.encode(spec))
            os.chmod(paths[name], 0o644)
        plan_pids = bvisor_cli("unprivileged", "plan", paths["pids"])
        plan_cpu = bvisor_cli("unprivileged", "plan", paths["cpu"])
        plan_wall = bvisor_cli("unprivileged", "plan", paths["wall"])
        refusal_path = os.path.join(shared, "refusal.json")
        run_pids = bvisor_cli("unprivileged", "run", "--pids", "16", "--report", refusal_path, "--", "/bin/true")
        try:
            with open(refusal_path) as f:
                refusal = json.load(f)
        except (OSError, ValueError):
            refusal = None
        run_memory = bvisor_cli("unprivileged", "run", "--memory", "64M", "--", "/bin/true")
        run_wall = bvisor_cli("unprivileged", "run", "--quiet", "--timeout", "5", "--", "/bin/true")
    finally:
        subprocess.run(["rm", "-rf", shared], check=False)
    print(
        f"unprivileged host: budgets={ {d: (b['enforcement'], b['mechanism']) for d, b in budget.items()} } "
        f"kill={cells['kill']['verdict']['enforcement']}/{cells['kill']['mechanism']} "
        f"cgroup facts={ {k: v for k, v in facts.items() if k.startswith('cgroup.')} }\n"
        f"plan pids: {plan_pids.returncode} {plan_pids.stdout!r}\nplan cpu: {plan_cpu.returncode} {plan_cpu.stdout!r}\nplan wall: {plan_wall.returncode} {plan_wall.stdout!r}\n"
        f"run --pids: {run_pids.returncode} {run_pids.stderr!r} refusal={refusal}\n"
        f"run --memory: {run_memory.returncode} {run_memory.stderr!r}\nrun --timeout 5: {run_wall.returncode} {run_wall.stderr!r}",
        file=sys.stderr,
    )
    failures = []
    for dimension in ("process_count", "resident_memory", "cpu"):
        if budget[dimension]["enforcement"] == "enforced":
            failures.append(f"probe: {dimension} must not be Enforced with no cgroup; got {budget[dimension]}")
    for name in ("cgroup.pids", "cgroup.memory", "cgroup.cpu", "cgroup.kill"):
        if not facts.get(name, "").startswith("unavailable"):
            failures.append(f"probe: {name} must say unavailable (uid 65534 cannot mkdir a leaf here); got {facts.get(name)!r}")
    if budget["wall"]["enforcement"] != "enforced" or "pid_namespace_init" not in budget["wall"]["mechanism"]:
        failures.append(f"probe: wall must stay Enforced through the pid namespace; got {budget['wall']}")
    for kind in ("kill", "child_spawn_allow_descendants"):
        cell = cells[kind]
        if cell["verdict"]["enforcement"] != "enforced" or not cell["mechanism"].endswith(":pid_namespace_init"):
            failures.append(f"probe: {kind} must be Enforced by the pid namespace init; got {cell}")
    if plan_pids.returncode != 125 or b"process_count" not in plan_pids.stdout:
        failures.append(f"`bvisor plan` of an Enforced process_count must refuse (exit 125) naming it; got {plan_pids.returncode} {plan_pids.stdout!r}")
    # An admitted plan lists every budget ("budget cpu ..."), so the refusal line itself must
    # name cpu.
    if plan_cpu.returncode != 125 or b"refused: cpu:" not in plan_cpu.stdout:
        failures.append(f"`bvisor plan` of an Enforced cpu must refuse (exit 125) naming cpu; got {plan_cpu.returncode} {plan_cpu.stdout!r} {plan_cpu.stderr!r}")
    if plan_wall.returncode != 0 or b"kill" not in plan_wall.stdout:
        failures.append(f"`bvisor plan` of an Enforced wall + Kill must admit (exit 0); got {plan_wall.returncode} {plan_wall.stdout!r} {plan_wall.stderr!r}")
    if run_pids.returncode != 125 or b"process_count" not in run_pids.stderr:
        failures.append(f"`run --pids 16` must refuse (exit 125) naming process_count; got {run_pids.returncode} {run_pids.stderr!r}")
    if not refusal or refusal.get("refused", {}).get("requirement") != "process_count":
        failures.append(f"`run --pids 16 --report` must write a refusal naming process_count; got {refusal}")
    if run_memory.returncode != 125 or b"resident_memory" not in run_memory.stderr:
        failures.append(f"`run --memory 64M` must refuse (exit 125) naming resident_memory; got {run_memory.returncode} {run_memory.stderr!r}")
    if run_wall.returncode != 0:
        failures.append(f"`run --timeout 5 -- /bin/true` must run (exit 0); got {run_wall.returncode} {run_wall.stderr!r}")
    assert not failures, f"unprivileged-host oracle failures: {failures}"


def test_without_a_cgroup_the_pid_namespace_init_takes_a_daemon_and_the_tree_at_the_deadline():
    """Attack, on a host with no cgroup of its own (the whole bvisor as uid 65534, so the kill,
    child_spawn_allow_descendants and the wall cap stand on the pid namespace alone): start a
    setsid daemon, then overrun ``--timeout 1``. Exit 124; the report says timeout, signal 9,
    the wall kill by ``pid_namespace_init`` and no cgroup leaf; the host saw the daemon in the
    run's nested pid namespace while it ran (CHANNEL A), the workload reported it alive
    (CHANNEL B), and no process carrying the marker survives the run. The control
    (``test_control_inert_daemon_outlives_the_run``) shows the daemon outlives an unconfined run."""
    if os.geteuid() != 0:
        loud_skip("the unprivileged-host oracle drops from root to uid 65534 with setpriv; these tests do not run as root")
    marker = unique_marker("BVISOR-RT-NOCG")
    daemon = f"{marker}-daemon"
    script = (
        '/usr/bin/setsid /bin/bash -c \'exec -a "$0" /bin/sleep 300\' "$0-daemon" </dev/null >/dev/null 2>&1 & '
        'd=$!; sleep 0.3; kill -0 "$d" && echo "daemon_alive=$d"; exec -a "$0" /bin/sleep 30'
    )
    seen = {}

    def watch() -> None:  # CHANNEL A, while the run is live: the daemon and its NSpid
        found = wait_for(lambda: pids_named(daemon))
        seen.update(daemon=found, nspid=nspids(found[0]) if found else [])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    done, took, left, written = cli_overrun("unprivileged", marker, script)
    watcher.join()
    nspid = seen.get("nspid", [])
    failures = []
    enforced = check_cli_timed_out(failures, done, took, left, written)
    leaf = [f["detail"] for f in written.get("observed", []) if f.get("kind") == "cgroup_leaf"]
    print(
        f"no-cgroup kill: exit {done.returncode} after {took:.3f}s daemon={seen.get('daemon')} nspid={nspid} left={left} "
        f"enforced={enforced} leaf={leaf} stdout={done.stdout!r} stderr={done.stderr!r}",
        file=sys.stderr,
    )
    if not seen.get("daemon"):
        failures.append("CHANNEL A: the host must see the daemon while the run is live (the attack must really start)")
    alive = said(done.stdout, "daemon_alive")
    if not alive:
        failures.append(f"CHANNEL B: the workload must report its daemon alive; stdout={done.stdout!r}")
    elif len(nspid) != 2 or str(nspid[-1]) != alive:
        failures.append(f"CHANNEL A/B: the daemon must be pid {alive} of the run's nested pid namespace; NSpid={nspid}")
    if not any("dimension=wall action=run_tree_killed" in f and "pid_namespace_init" in f for f in enforced):
        failures.append(f"the wall kill must be the pid namespace's (no cgroup here); budget_enforced={enforced}")
    if not leaf or not leaf[0].startswith("none"):
        failures.append(f"a uid with no cgroup must run without a leaf; cgroup_leaf={leaf}")
    assert not failures, f"no-cgroup pid-namespace kill failures: {failures}"


def test_control_the_caller_host_enforces_the_cgroup_budgets():
    """Control: the same probe as the caller (root here) supplies process_count,
    resident_memory and cpu Enforced by a cgroup, so the refusals above are the missing cgroup's."""
    budget, _, facts = probe_cells(probe_json("caller"))
    print(f"caller host: process_count={budget['process_count']} resident_memory={budget['resident_memory']} cpu={budget['cpu']}", file=sys.stderr)
    if any(facts.get(n, "").startswith("unavailable") for n in ("cgroup.pids", "cgroup.memory", "cgroup.cpu")):
        loud_skip(
            f"control: this host delegates no pids/memory/cpu cgroup even to the caller "
            f"({facts.get('cgroup.pids')}; {facts.get('cgroup.memory')}; {facts.get('cgroup.cpu')})"
        )
    failures = [
        f"{d} must be Enforced by a cgroup for the caller; got {budget[d]}"
        for d in ("process_count", "resident_memory", "cpu")
        if budget[d]["enforcement"] != "enforced" or "cgroup" not in budget[d]["mechanism"]
    ]
    assert not failures, f"caller-host control failures: {failures}"
