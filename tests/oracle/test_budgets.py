"""Budgets — each Enforced dimension is a real kernel cap, and each witness is a kernel counter.

Every Linux run gets a cgroup leaf; a dimension the spec asks ``Enforced`` is capped there
(process_count: pids.max; resident_memory: the memory limit), by the supervisor (cpu: the
leaf's whole-tree usage, then cgroup.kill), by an rlimit (handle_count: RLIMIT_NOFILE) or by
an empty network namespace (network 0). Each test makes the attack the cap is for:

- a fork bomb under process_count 16,
- a 512 MiB allocation under resident_memory 64 MiB,
- a busy loop that would burn 30 s of cpu under cpu 0.5 s,
- opening 64 files under handle_count 16,
- a network budget of 0 bytes that must leave the workload nothing to send on,

and checks it on two channels. Channel A (host): while the workload is parked, the host finds
its cgroups through ``/proc/<pid>/cgroup`` and reads the kernel's own files (pids.max,
pids.events, memory.limit_in_bytes, cpu.stat, /proc/<pid>/limits, /proc/<pid>/net/dev).
Channel B (workload): what it managed, through its captured stdout. The report must agree
with both (outcome, exit, budget_enforced facts, the witness). A control run of the same
workload with the dimension only ``Mediated`` (watched, never capped) shows the attack
succeeds without the cap, so no oracle is vacuous. ``test_usage_witnesses_*`` compares the
witnesses with counters the host read itself. Every run is made with the launcher as the
caller and as uid 65534 (the host stays root and makes the leaf). The CLI tests run the bvisor
command itself as each identity; where no cgroup is delegated to that identity (uid 65534 on a
host whose cgroupfs only root may write) the cap cannot be installed, and the run must be
refused (exit 125, a refusal document naming the dimension) and never start. After every run
no marker process is left and the run's cgroup leaf is gone. No assertion depends on speed:
the only clock readings asserted on bound a witness by the test's own measurement of the same
run (the wall witness lies between how long the host held the workload parked and how long the
whole run took; the cpu witness cannot pass the host's reading plus every CPU busy since).
"""

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bvisor import (
    BoundarySpec,
    Capability,
    FdPolicy,
    LinuxBackend,
    MinGuarantee,
    Outcome,
)
from bvisor.contract import BudgetDimension, BudgetFinding, BudgetRefused
from cgroup_oracles import host_cgroup_dirs
from helpers import (
    IDENTITIES,
    PARK,
    PARKED,
    cli_prefix,
    facts_of,
    host_read_child_interfaces,
    host_read_uid,
    launcher_as,
    loud_skip,
    planned,
    read_text,
    run_gated,
    runner_for,
    scan_proc_cmdline,
    unique_marker,
    workload_uid_problem,
)
from oracle_specs import exact_environment, oracle_spec, watched_budgets

D = BudgetDimension
ENFORCED, MEDIATED = MinGuarantee.Enforced, MinGuarantee.Mediated
MIB = 1 << 20
GATE = 15.0  # seconds the host waits for a workload to park: a liveness bound, not a timing assert
PYTHON = os.path.realpath(sys.executable)  # the pyenv shim on PATH fails in an exact environment
BASH = "/bin/bash"
BVISOR = str(Path(sys.executable).parent / "bvisor")
CGROUP_ROOT = "/sys/fs/cgroup"



# --- specs and backends ----------------------------------------------------------------------


def spec_for(argv, **asked) -> BoundarySpec:
    """``argv`` under an empty environment, no inherited fd and ``watched_budgets(**asked)``."""
    return oracle_spec(argv, [exact_environment(), Capability.InheritedFds(policy=FdPolicy.Nothing())], budgets=watched_budgets(**asked))


def backend_for(identity: str) -> LinuxBackend:
    return LinuxBackend(launcher_as(identity))


def run_parked(identity: str, argv, marker: str, inspect, **asked):
    """Plan and run ``argv`` for ``identity``, calling ``inspect(pid)`` while it is parked.

    A host that cannot cap a dimension must refuse the plan (fail-closed): that refusal is
    checked to name an asked Enforced dimension, then the test skips loudly."""
    try:
        run = runner_for(backend_for(identity), spec_for(argv, **asked))
    except BudgetRefused as exc:
        capped = [name for name, (_, guarantee) in asked.items() if guarantee is ENFORCED]
        assert exc.dimension.value in capped, f"only an asked Enforced dimension may be refused; refused {exc.dimension}: {exc}"
        loud_skip(f"this host cannot cap {exc.dimension.value}; the plan refused it (fail-closed): {exc}")
    return run_gated(run, marker, inspect, timeout=GATE)


# --- the host's own view of a workload's cgroups (see cgroup_oracles) --------------------------


# Each counter: where to read it, cgroup2 first (as the backend prefers it), then cgroup v1.
# (hierarchy, file, key in a flat-keyed file or None, divisor to µs/bytes)
COUNTERS = {
    "pids.max": [("", "pids.max", None, 1), ("pids", "pids.max", None, 1)],
    "pids.current": [("", "pids.current", None, 1), ("pids", "pids.current", None, 1)],
    "pids.peak": [("", "pids.peak", None, 1), ("pids", "pids.peak", None, 1)],
    "pids.events.max": [("", "pids.events", "max", 1), ("pids", "pids.events", "max", 1)],
    "memory.limit": [("", "memory.max", None, 1), ("memory", "memory.limit_in_bytes", None, 1)],
    "memory.peak": [("", "memory.peak", None, 1), ("memory", "memory.max_usage_in_bytes", None, 1)],
    "cpu_us": [("", "cpu.stat", "usage_usec", 1), ("cpuacct", "cpuacct.usage", None, 1000)],
}


def read_counter(dirs: dict, name: str):
    """``(value, path)`` of a kernel counter in the first hierarchy that has its file; value is
    an int, or the raw text (``max``); ``(None, None)`` when no hierarchy has it."""
    for hierarchy, file, key, divisor in COUNTERS[name]:
        directory = dirs.get(hierarchy)
        text = read_text(f"{directory}/{file}") if directory else None
        if text is None:
            continue
        if key is not None:
            values = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
            text = values.get(key)
            if text is None:
                continue
        text = text.strip()
        return (int(text) // divisor if text.isdigit() else text), f"{directory}/{file}"
    return None, None


def cgroup_view(pid: int, *names) -> dict:
    """Channel A: the parked workload's uid, cgroup dirs and the named counters, read by the
    host."""
    dirs = host_cgroup_dirs(pid)
    view = {"dirs": dirs, "uid": host_read_uid(pid)}
    for name in names:
        view[name], view[name + ":path"] = read_counter(dirs, name)
    return view


def bvisor_leaves(owner: int) -> list:
    """Every run leaf of ``owner`` (``bvisor-<owner pid>-…``) on this host."""
    found = []
    for directory, dirs, _ in os.walk(CGROUP_ROOT, onerror=lambda _: None):
        found += [os.path.join(directory, d) for d in dirs if d.startswith(f"bvisor-{owner}-")]
        dirs[:] = [d for d in dirs if not d.startswith("bvisor-")]
    return found


def leaf_dirs(cgroup_leaf_facts) -> list:
    """The leaf directories a report's ``cgroup_leaf`` fact names."""
    return [token for detail in cgroup_leaf_facts for token in detail.split() if token.startswith("/")]


# --- report readers and shared checks ----------------------------------------------------------


def witness(report, dimension: BudgetDimension):
    return next((w for w in report.body.budget if w.dimension is dimension), None)


def enforced_facts(report, dimension: BudgetDimension) -> list:
    return [d for d in facts_of(report, "budget_enforced") if d.startswith(f"dimension={dimension.value} ")]


def count_of(fact: str) -> int:
    """The ``count=N`` of a budget_enforced fact, or 0."""
    return fields_of("fact " + fact).get("count", 0)


def fields_of(line: str | None) -> dict:
    """``{key: int}`` of a ``WORD k=v k=v`` line."""
    pairs = (p.split("=", 1) for p in (line or "").split()[1:] if "=" in p)
    return {k: int(v) for k, v in pairs if v.lstrip("-").isdigit()}


def reported(stdout: bytes, word: str):
    """The workload's first line starting with ``word``, or None."""
    return next((line for line in stdout.decode(errors="replace").splitlines() if line.split(" ", 1)[0] == word), None)


def check_witness(failures: list, report, dimension, limit: int, required: MinGuarantee) -> object:
    """The witness exists, carries the asked limit, and supplies exactly what was asked."""
    found = witness(report, dimension)
    if found is None:
        failures.append(f"the report has no {dimension.value} witness: {report.body.budget}")
        return None
    if found.limit != limit or found.required is not required or found.supplied is not required.enforcement:
        failures.append(
            f"the {dimension.value} witness must carry limit={limit} required=supplied={required.value}; got {found}"
        )
    return found


def check_leaf_named(failures: list, report, host: dict, hierarchy: str) -> None:
    """The cgroup the host found the workload in is the leaf the report names."""
    leaf = " ".join(facts_of(report, "cgroup_leaf"))
    directory = host.get("dirs", {}).get(hierarchy)
    if not directory or os.path.basename(directory) not in leaf or "bvisor-" not in os.path.basename(directory):
        failures.append(f"CHANNEL A: the workload's {hierarchy or 'cgroup2'} cgroup {directory} is not the run's leaf {leaf!r}")


def check_parked(failures: list, gated, what: str, identity: str | None = None) -> bool:
    """The host inspected the parked workload (and, given ``identity``, it ran as that uid)."""
    if not gated.seen or gated.inspected is None:
        failures.append(
            f"CHANNEL A: the host never inspected the parked {what}; stdout={gated.stdout[-2000:]!r} stderr={gated.stderr[-2000:]!r}"
        )
        return False
    problem = workload_uid_problem(identity, gated.inspected.get("uid")) if identity is not None else None
    if problem:
        failures.append(f"CHANNEL A: the {identity} {what} {problem}")
    return True


def check_gone(failures: list, marker: str, leaves=None, what: str = "") -> None:
    """No process of the run outlives it, nor its cgroup leaf (``leaves``: the dirs its report
    names; None when nothing ran), nor any other leaf this test process made."""
    if leaves is not None and not leaves:
        failures.append(f"{what}the report names no cgroup leaf (cgroup_leaf fact) for the run")
    pid = scan_proc_cmdline(marker)
    if pid is not None:
        failures.append(f"{what}a process carrying the marker outlived the run: pid {pid} {read_text(f'/proc/{pid}/status')!r:.300}")
    left = sorted({d for d in leaves or () if os.path.exists(d)} | set(bvisor_leaves(os.getpid())))
    if left:
        failures.append(f"{what}cgroup leaves outlived the run: {left}")


def report_summary(report) -> str:
    body = report.body
    budget = {w.dimension.value: (w.required.value, w.observed, w.finding.value) for w in body.budget}
    facts = [f"{f.kind}: {f.detail}" for f in body.observed if f.kind in ("budget_enforced", "cgroup_leaf", "rlimit_lowered", "network_lowered")]
    return f"outcome={body.outcome.value} exit={body.exit} budget={budget} facts={facts}"


def brief(host: dict) -> dict:
    """A host view without the directory listing, for the log."""
    return {k: v for k, v in (host or {}).items() if k != "dirs" and not k.endswith(":path")} if isinstance(host, dict) else host


def verdict(failures: list, title: str, identity: str) -> None:
    assert not failures, f"{title} [{identity}] failures:\n  " + "\n  ".join(failures)


# --- workloads ---------------------------------------------------------------------------------

# argv: marker, tries, park|go. Forks ``tries`` children that sleep, counting refused forks;
# reports, then (park) parks until the host releases it. Exits at once after.
FORK_BOMB = f"""
import os, sys, time
tries, park = int(sys.argv[2]), sys.argv[3] == "park"
made, refused = 1, 0
for _ in range(tries):
    try:
        pid = os.fork()
    except BlockingIOError:
        refused += 1
        continue
    if pid == 0:
        try:
            time.sleep(600)
        finally:
            os._exit(0)
    made += 1
print(f"BOMB made={{made}} refused={{refused}}", flush=True)
if park:
    print("{PARKED}", flush=True)
    sys.stdin.readline()
"""

# argv: marker, MiB, park|go. Allocates and touches 32 MiB chunks, one progress line each.
ALLOCATE = f"""
import sys
total, park = int(sys.argv[2]), sys.argv[3] == "park"
if park:
    print("{PARKED}", flush=True)
    sys.stdin.readline()
chunk, held = 32 << 20, []
for i in range(total // 32):
    block = bytearray(chunk)
    block[::4096] = b"\\x01" * (chunk // 4096)
    held.append(block)
    print(f"allocated {{(i + 1) * 32}} MiB", flush=True)
print("allocated-all", flush=True)
"""

# argv: marker, seconds. Parks, then burns ``seconds`` of its own cpu and exits.
BURN = f"""
import sys, time
print("{PARKED}", flush=True)
sys.stdin.readline()
start = time.process_time()
while time.process_time() - start < float(sys.argv[2]):
    pass
print(f"BURNT cpu_us={{int((time.process_time() - start) * 1e6)}}", flush=True)
"""

# argv: marker, children, MiB. Forks sleeping children, touches MiB, reports its peak RSS, parks.
TOUCH_AND_PARK = f"""
import os, sys, time
for _ in range(int(sys.argv[2])):
    if os.fork() == 0:
        try:
            time.sleep(600)
        finally:
            os._exit(0)
held = bytearray(int(sys.argv[3]) << 20)
held[::4096] = b"\\x01" * (len(held) // 4096)
anon = next(l for l in open("/proc/self/status") if l.startswith("RssAnon:")).split()[1]
print(f"TOUCHED anon_kib={{anon}}", flush=True)
print("{PARKED}", flush=True)
sys.stdin.readline()
"""

# argv: marker, tries. Opens /dev/null ``tries`` times, counting EMFILE, reports, parks.
OPEN_FILES = f"""
import errno, os, sys
opened, refused = [], 0
for _ in range(int(sys.argv[2])):
    try:
        opened.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as exc:
        if exc.errno != errno.EMFILE:
            raise
        refused += 1
print(f"FDS opened={{len(opened)}} refused={{refused}} highest={{max(opened, default=-1)}}", flush=True)
print("{PARKED}", flush=True)
sys.stdin.readline()
"""


def python_argv(script: str, marker: str, *args) -> list:
    return [PYTHON, "-c", script, marker, *map(str, args)]


# --- 1. process_count ----------------------------------------------------------------------------

BOMB_LIMIT, BOMB_TRIES = 16, 64


def bomb_view(pid: int) -> dict:
    view = cgroup_view(pid, "pids.max", "pids.current", "pids.peak", "pids.events.max")
    # The host stays responsive while the bomb is parked at its cap: it can still fork and reap.
    view["host_true"] = subprocess.run(["true"], check=False, timeout=30).returncode
    return view


@pytest.mark.parametrize("identity", IDENTITIES)
def test_fork_bomb_is_capped_at_the_process_count_and_the_host_stays_responsive(identity):
    """Attack: fork 64 sleeping children under process_count 16 Enforced. pids.max must read
    17 (the init the backend adds is in the leaf but not counted), at most 16 workload
    processes may exist, forks past that fail with EAGAIN, the host can still fork, and
    nothing of the bomb outlives the run."""
    marker = unique_marker("BVISOR-BUDGET-BOMB")
    gated = run_parked(identity, python_argv(FORK_BOMB, marker, BOMB_TRIES, "park"), marker, bomb_view,
                       process_count=(BOMB_LIMIT, ENFORCED))
    report, host = gated.result, gated.inspected or {}
    own = fields_of(reported(gated.stdout, "BOMB"))
    print(f"fork bomb [{identity}]: host={brief(host)} self={own} {report_summary(report)}", file=sys.stderr)
    failures = []
    if check_parked(failures, gated, "fork bomb", identity):
        if host["pids.max"] != BOMB_LIMIT + 1:
            failures.append(f"CHANNEL A: pids.max must read {BOMB_LIMIT + 1} (limit + the init); read {host['pids.max']!r} at {host['pids.max:path']}")
        if not isinstance(host["pids.current"], int) or host["pids.current"] > BOMB_LIMIT + 1:
            failures.append(f"CHANNEL A: pids.current must be <= {BOMB_LIMIT + 1}; read {host['pids.current']!r}")
        if not isinstance(host["pids.events.max"], int) or host["pids.events.max"] <= 0:
            failures.append(f"CHANNEL A: pids.events must count refused forks (max > 0); read {host['pids.events.max']!r}")
        if host["host_true"] != 0:
            failures.append(f"CHANNEL A: the host could not spawn `true` while the bomb was parked: rc={host['host_true']}")
        check_leaf_named(failures, report, host, "pids")
    if not own:
        failures.append(f"CHANNEL B: the bomb never reported; stdout={gated.stdout!r} stderr={gated.stderr!r}")
    else:
        if own["made"] > BOMB_LIMIT:
            failures.append(f"CHANNEL B: the bomb made {own['made']} processes (itself included); the cap is {BOMB_LIMIT}")
        if own["refused"] <= 0 or own["made"] - 1 + own["refused"] != BOMB_TRIES:
            failures.append(f"CHANNEL B: the bomb must have forks refused, and account for all {BOMB_TRIES} tries: {own}")
    if report.body.outcome != Outcome.Completed:
        failures.append(f"the bomb itself is not killed, only refused: it must run to Completed; {report_summary(report)}")
    found = check_witness(failures, report, D.ProcessCount, BOMB_LIMIT, ENFORCED)
    if found is not None and (found.observed != BOMB_LIMIT or found.finding is not BudgetFinding.LimitReached):
        failures.append(f"the process_count witness must be observed == {BOMB_LIMIT} (the cap held), limit_reached; got {found}")
    if found is not None and own and found.observed != own["made"]:
        failures.append(f"the process_count witness {found.observed} must equal the processes the bomb made ({own['made']})")
    refusals = enforced_facts(report, D.ProcessCount)
    if not any("action=fork_refused" in f and count_of(f) > 0 for f in refusals):
        failures.append(f"the report must record dimension=process_count action=fork_refused count>0; got {facts_of(report, 'budget_enforced')}")
    elif isinstance(host.get("pids.events.max"), int) and max(map(count_of, refusals)) != host["pids.events.max"]:
        # Released, the bomb only exits: no fork is refused after the host read pids.events.
        failures.append(f"the fork_refused count {refusals} must be the pids.events max the host read ({host['pids.events.max']})")
    check_gone(failures, marker, leaf_dirs(facts_of(report, "cgroup_leaf")))
    verdict(failures, "process_count fork bomb", identity)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_the_cap_the_same_fork_bomb_makes_every_child(identity):
    """Control: process_count only Mediated (watched, not capped): the same bomb makes all its
    children — far more than 16 — the witness says exceeded_mediated, and teardown still
    leaves none of them behind."""
    marker = unique_marker("BVISOR-BUDGET-BOMB-CTL")
    gated = run_parked(identity, python_argv(FORK_BOMB, marker, BOMB_TRIES, "park"), marker,
                       lambda pid: cgroup_view(pid, "pids.max", "pids.current"), process_count=(BOMB_LIMIT, MEDIATED))
    report, host = gated.result, gated.inspected or {}
    own = fields_of(reported(gated.stdout, "BOMB"))
    print(f"fork bomb control [{identity}]: host={brief(host)} self={own} {report_summary(report)}", file=sys.stderr)
    failures = []
    if check_parked(failures, gated, "uncapped fork bomb", identity):
        if host["pids.max"] == BOMB_LIMIT + 1:
            failures.append(f"CHANNEL A: a Mediated process_count must not be capped; pids.max reads {host['pids.max']!r}")
        if not isinstance(host["pids.current"], int) or host["pids.current"] != BOMB_TRIES + 2:
            failures.append(f"CHANNEL A: pids.current must count init + bomb + {BOMB_TRIES} children; read {host['pids.current']!r}")
    if own != {"made": BOMB_TRIES + 1, "refused": 0}:
        failures.append(f"CHANNEL B: without the cap the bomb must make all {BOMB_TRIES} children; it reported {own}; stderr={gated.stderr!r}")
    if report.body.outcome != Outcome.Completed:
        failures.append(f"the uncapped bomb must run to Completed; {report_summary(report)}")
    found = check_witness(failures, report, D.ProcessCount, BOMB_LIMIT, MEDIATED)
    if found is not None and (found.observed != BOMB_TRIES + 1 or found.finding is not BudgetFinding.ExceededMediated):
        failures.append(f"the process_count witness must be observed={BOMB_TRIES + 1}, exceeded_mediated; got {found}")
    if enforced_facts(report, D.ProcessCount):
        failures.append(f"no fork may be refused without a cap: {facts_of(report, 'budget_enforced')}")
    check_gone(failures, marker, leaf_dirs(facts_of(report, "cgroup_leaf")))
    verdict(failures, "process_count control", identity)


# --- 2. resident_memory ------------------------------------------------------------------------

MEMORY_LIMIT, ALLOCATION_MIB = 64 * MIB, 512


@pytest.mark.parametrize("identity", IDENTITIES)
def test_allocating_past_the_memory_cap_kills_the_workload(identity):
    """Attack: allocate and touch 512 MiB under resident_memory 64 MiB Enforced. The memory
    limit must read 64 MiB before it allocates; it is OOM-killed (Killed, signal 9, an
    oom_kill fact) and never prints ``allocated-all``; its peak never passes the cap."""
    marker = unique_marker("BVISOR-BUDGET-MEM")
    gated = run_parked(identity, python_argv(ALLOCATE, marker, ALLOCATION_MIB, "park"), marker,
                       lambda pid: cgroup_view(pid, "memory.limit", "memory.peak"), resident_memory=(MEMORY_LIMIT, ENFORCED))
    report, host = gated.result, gated.inspected or {}
    out = gated.after_park().decode(errors="replace").splitlines()
    print(f"memory [{identity}]: host={brief(host)} progress={out} {report_summary(report)}", file=sys.stderr)
    failures = []
    if check_parked(failures, gated, "allocator", identity):
        if host["memory.limit"] != MEMORY_LIMIT:
            failures.append(f"CHANNEL A: the memory limit must read {MEMORY_LIMIT}; read {host['memory.limit']!r} at {host['memory.limit:path']}")
        check_leaf_named(failures, report, host, "memory")
    if "allocated-all" in out:
        failures.append(f"CHANNEL B: the workload allocated all {ALLOCATION_MIB} MiB under a 64 MiB cap: {out}")
    if any(line.startswith("allocated ") and int(line.split()[1]) > MEMORY_LIMIT // MIB for line in out):
        failures.append(f"CHANNEL B: the workload reports holding more than {MEMORY_LIMIT // MIB} MiB: {out}")
    if report.body.outcome != Outcome.Killed or report.body.exit is None or report.body.exit.signal != 9:
        failures.append(f"the workload must end Killed by signal 9; {report_summary(report)}")
    oom = enforced_facts(report, D.ResidentMemory)
    if not any("action=oom_kill" in f and count_of(f) >= 1 for f in oom):
        failures.append(f"the report must record dimension=resident_memory action=oom_kill count>=1; got {facts_of(report, 'budget_enforced')}")
    found = check_witness(failures, report, D.ResidentMemory, MEMORY_LIMIT, ENFORCED)
    # The witness is the leaf's peak, which the kernel never lets pass the limit: the workload
    # ran into the cap, so the peak is the limit and the finding limit_reached.
    if found is not None and (found.observed != MEMORY_LIMIT or found.finding is not BudgetFinding.LimitReached):
        failures.append(f"the resident_memory witness must be observed == {MEMORY_LIMIT} (the cap), limit_reached; got {found}")
    check_gone(failures, marker, leaf_dirs(facts_of(report, "cgroup_leaf")))
    verdict(failures, "resident_memory cap", identity)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_the_cap_the_same_allocation_completes(identity):
    """Control: resident_memory only Mediated: the same 512 MiB allocation completes, prints
    ``allocated-all``, and the witness records the overshoot as exceeded_mediated."""
    marker = unique_marker("BVISOR-BUDGET-MEM-CTL")
    gated = run_parked(identity, python_argv(ALLOCATE, marker, ALLOCATION_MIB, "park"), marker,
                       lambda pid: cgroup_view(pid, "memory.limit"), resident_memory=(MEMORY_LIMIT, MEDIATED))
    report, host = gated.result, gated.inspected or {}
    out = gated.after_park().decode(errors="replace").splitlines()
    print(f"memory control [{identity}]: host={brief(host)} progress={out[-2:]} {report_summary(report)}", file=sys.stderr)
    failures = []
    if check_parked(failures, gated, "uncapped allocator", identity) and host["memory.limit"] == MEMORY_LIMIT:
        failures.append(f"CHANNEL A: a Mediated memory budget must not be capped; the limit reads {host['memory.limit']!r}")
    if "allocated-all" not in out:
        failures.append(f"CHANNEL B: without the cap the workload must allocate all {ALLOCATION_MIB} MiB: {out} stderr={gated.stderr!r}")
    if report.body.outcome != Outcome.Completed or enforced_facts(report, D.ResidentMemory):
        failures.append(f"the uncapped allocation must run to Completed, with no oom_kill; {report_summary(report)}")
    found = check_witness(failures, report, D.ResidentMemory, MEMORY_LIMIT, MEDIATED)
    if found is not None and (
        found.observed is None or found.observed < ALLOCATION_MIB * MIB or found.finding is not BudgetFinding.ExceededMediated
    ):
        failures.append(f"the resident_memory witness must be >= {ALLOCATION_MIB} MiB, exceeded_mediated; got {found}")
    check_gone(failures, marker, leaf_dirs(facts_of(report, "cgroup_leaf")))
    verdict(failures, "resident_memory control", identity)


# --- 3. cpu ------------------------------------------------------------------------------------

CPU_LIMIT_US = 500_000
# The attack burns this much cpu before it gives up: far past the budget, yet bounded, so a
# cap that does not hold shows as a run that completes and reports, not as a test that hangs.
ATTACK_CPU_S, CONTROL_CPU_S = 30, 1.5


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_busy_loop_is_killed_at_the_cpu_budget(identity):
    """Attack: a busy loop that would burn 30 s of cpu under cpu 0.5 s Enforced. It must end
    Killed by signal 9 with a dimension=cpu budget_enforced fact, never finish its loop, and the
    witness (the leaf's whole-tree usage) must be at least the limit and at least what the host
    itself read from the leaf's cpu counter while it parked."""
    marker = unique_marker("BVISOR-BUDGET-CPU")
    gated = run_parked(identity, python_argv(BURN, marker, ATTACK_CPU_S), marker, lambda pid: cgroup_view(pid, "cpu_us"),
                       cpu=(CPU_LIMIT_US, ENFORCED))
    report, host = gated.result, gated.inspected or {}
    print(f"cpu [{identity}]: host={brief(host)} {report_summary(report)}", file=sys.stderr)
    failures = []
    if check_parked(failures, gated, "busy loop", identity):
        if not isinstance(host["cpu_us"], int):
            failures.append(f"CHANNEL A: the host must read the leaf's cpu usage while parked; read {host['cpu_us']!r}")
        elif host["cpu_us"] >= CPU_LIMIT_US:
            failures.append(f"CHANNEL A: the parked workload already used {host['cpu_us']} µs before its busy loop")
        check_leaf_named(failures, report, host, "")
    if reported(gated.stdout, "BURNT") is not None:
        failures.append(f"CHANNEL B: the loop burnt all its {ATTACK_CPU_S} s of cpu under a 0.5 s budget: {gated.stdout!r}")
    if report.body.outcome != Outcome.Killed or report.body.exit is None or report.body.exit.signal != 9:
        failures.append(f"the busy loop must end Killed by signal 9; {report_summary(report)}")
    if not any("action=run_tree_killed" in f for f in enforced_facts(report, D.Cpu)):
        failures.append(f"the report must record dimension=cpu action=run_tree_killed; got {facts_of(report, 'budget_enforced')}")
    found = check_witness(failures, report, D.Cpu, CPU_LIMIT_US, ENFORCED)
    if found is not None and (found.observed is None or found.observed < CPU_LIMIT_US or found.finding is not BudgetFinding.LimitReached):
        failures.append(f"the cpu witness must be observed >= {CPU_LIMIT_US}, limit_reached; got {found}")
    if found is not None and isinstance(host.get("cpu_us"), int) and (found.observed or 0) < host["cpu_us"]:
        failures.append(f"the cpu witness {found.observed} is below what the host read while parked ({host['cpu_us']})")
    check_gone(failures, marker, leaf_dirs(facts_of(report, "cgroup_leaf")))
    verdict(failures, "cpu budget", identity)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_a_mediated_cpu_budget_lets_a_bounded_loop_finish(identity):
    """Control: cpu only Mediated at 0.5 s: the same loop, bounded at 1.5 s of cpu, is not
    killed; it completes and the witness records exceeded_mediated with all of its cpu."""
    marker = unique_marker("BVISOR-BUDGET-CPU-CTL")
    gated = run_parked(identity, python_argv(BURN, marker, CONTROL_CPU_S), marker, lambda pid: cgroup_view(pid, "cpu_us"),
                       cpu=(CPU_LIMIT_US, MEDIATED))
    report, host = gated.result, gated.inspected or {}
    own = fields_of(reported(gated.stdout, "BURNT"))
    print(f"cpu control [{identity}]: host={brief(host)} self={own} {report_summary(report)}", file=sys.stderr)
    failures = []
    check_parked(failures, gated, "bounded loop", identity)
    if own.get("cpu_us", 0) < CONTROL_CPU_S * 1e6:
        failures.append(f"CHANNEL B: the loop must report {CONTROL_CPU_S} s of its own cpu; got {own} stderr={gated.stderr!r}")
    if report.body.outcome != Outcome.Completed or enforced_facts(report, D.Cpu):
        failures.append(f"an uncapped loop must run to Completed, with no cpu kill; {report_summary(report)}")
    found = check_witness(failures, report, D.Cpu, CPU_LIMIT_US, MEDIATED)
    if found is not None and (
        found.observed is None or found.observed < own.get("cpu_us", CONTROL_CPU_S * 1e6) or found.finding is not BudgetFinding.ExceededMediated
    ):
        failures.append(f"the cpu witness must be >= the loop's own cpu ({own}), exceeded_mediated; got {found}")
    check_gone(failures, marker, leaf_dirs(facts_of(report, "cgroup_leaf")))
    verdict(failures, "cpu control", identity)


# --- 4. usage witnesses ------------------------------------------------------------------------

CHILDREN, TOUCH_MIB = 5, 40
MEMORY_MARGIN = 16 * MIB
# How long the host keeps the usage workload parked (blocked on its gate, burning no cpu):
# a known minimum of the run's wall time, so a wall witness in the wrong unit cannot pass.
HOLD_S = 0.3


def usage_view(pid: int) -> dict:
    """Channel A for the usage witnesses: hold the parked workload HOLD_S, then read the leaf's
    counters, noting when (``read_at``, monotonic, taken before the read) and for how long the
    workload was provably alive (``held_us``: all of this call; the gate opens only after it)."""
    held_from = time.monotonic()
    time.sleep(HOLD_S)
    read_at = time.monotonic()
    view = cgroup_view(pid, "pids.current", "pids.peak", "memory.peak", "cpu_us")
    view["read_at"] = read_at
    view["held_us"] = int((time.monotonic() - held_from) * 1e6)
    return view


@pytest.mark.parametrize("identity", IDENTITIES)
def test_usage_witnesses_match_the_kernel_counters_the_host_reads(identity):
    """A workload forks 5 sleeping children, touches 40 MiB and parks; the host reads the
    leaf's pids, memory and cpu counters itself. Released, it only exits, so the witnesses
    must equal (pids) or just cover (memory, cpu) what the host read: a witness from anywhere
    but the leaf's own counters (the launcher's rusage, one process's RSS) would not. The cpu
    witness is also bounded above by the host's reading plus every CPU busy from that reading
    to the run's return, and the wall witness lies between how long the host held the workload
    parked and how long the whole run took by the test's own clock: a witness in the wrong unit
    (ns, ms) or from another source (this process's cpu, another clock) falls outside."""
    marker = unique_marker("BVISOR-BUDGET-USAGE")
    started = time.monotonic()
    gated = run_parked(identity, python_argv(TOUCH_AND_PARK, marker, CHILDREN, TOUCH_MIB), marker, usage_view)
    ended = time.monotonic()
    report, host = gated.result, gated.inspected or {}
    own = fields_of(reported(gated.stdout, "TOUCHED"))
    witnesses = {d: witness(report, d) for d in (D.ProcessCount, D.ResidentMemory, D.Cpu, D.Wall)}
    print(f"usage [{identity}]: host={brief(host)} self={own} witnesses={witnesses} {report_summary(report)}", file=sys.stderr)
    failures = []
    if report.body.outcome != Outcome.Completed:
        failures.append(f"the workload must run to Completed; {report_summary(report)}")
    if not check_parked(failures, gated, "usage workload", identity):
        verdict(failures, "usage witnesses", identity)
    if host["pids.current"] != CHILDREN + 2:
        failures.append(f"CHANNEL A: pids.current must count init + workload + {CHILDREN} children = {CHILDREN + 2}; read {host['pids.current']!r}")
    if not isinstance(host["pids.peak"], int) or not isinstance(host["memory.peak"], int) or not isinstance(host["cpu_us"], int):
        failures.append(f"CHANNEL A: the host must read pids.peak, the memory peak and cpu usage; read {host}")
        verdict(failures, "usage witnesses", identity)
    if own.get("anon_kib", 0) * 1024 < TOUCH_MIB * MIB:
        failures.append(f"CHANNEL B: the workload must report at least {TOUCH_MIB} MiB of its own anonymous memory; got {own}")
    pids, memory, cpu = witnesses[D.ProcessCount], witnesses[D.ResidentMemory], witnesses[D.Cpu]
    if pids is None or pids.observed != host["pids.peak"] - 1:
        failures.append(f"the process_count witness must be pids.peak - 1 (the init) = {host['pids.peak'] - 1}; got {pids}")
    if pids is not None and pids.observed != CHILDREN + 1:
        failures.append(f"the process_count witness must count the workload and its {CHILDREN} children; got {pids}")
    if memory is None or memory.observed is None or not host["memory.peak"] <= memory.observed <= host["memory.peak"] + MEMORY_MARGIN:
        failures.append(f"the resident_memory witness must lie in [{host['memory.peak']}, +{MEMORY_MARGIN}] (the host's reading); got {memory}")
    # The witness is the leaf's charged peak, what the cap counts. Every anonymous page the
    # workload faulted after its exec is charged to the leaf, so its own RssAnon bounds the
    # witness from below. Its VmHWM does not: RSS also counts the file pages it maps (the
    # interpreter, its libraries), resident in the host's page cache and charged to whoever
    # read them first; Debian's static python3 maps ~5 MiB of them, more than the leaf's own
    # overhead, so its VmHWM exceeds the charge.
    if memory is not None and (memory.observed or 0) < own.get("anon_kib", 0) * 1024:
        failures.append(f"the resident_memory witness {memory.observed} is below the workload's own anonymous memory {own}")
    if cpu is None or cpu.observed is None or cpu.observed < host["cpu_us"]:
        failures.append(f"the cpu witness must be >= the host's reading {host['cpu_us']}; got {cpu}")
    # The leaf's counter never falls and grows at most os.cpu_count() µs per µs; the backend
    # reads the witness from it before run() returns (the leaf is gone after, so the host cannot
    # read it then). So: witness <= the host's reading + every CPU busy from just before that
    # reading to the run's return.
    cpu_ceiling = host["cpu_us"] + int((ended - host["read_at"]) * 1e6 * (os.cpu_count() or 1))
    if cpu is not None and cpu.observed is not None and cpu.observed > cpu_ceiling:
        failures.append(
            f"the cpu witness {cpu.observed} exceeds the host's reading {host['cpu_us']} plus all "
            f"{os.cpu_count()} CPUs busy for the {ended - host['read_at']:.3f}s after it ({cpu_ceiling}): wrong unit or source"
        )
    # The run's wall clock starts before the workload exists and stops after it has exited; the
    # host held it parked held_us, and measured the whole plan-and-run itself.
    wall, took_us = witnesses[D.Wall], int((ended - started) * 1e6)
    if wall is None or wall.observed is None or not host["held_us"] <= wall.observed <= took_us:
        failures.append(
            f"the wall witness must lie in [{host['held_us']} (the host held the workload parked), {took_us} "
            f"(the whole run by the test's clock)] µs; got {wall}"
        )
    leaf = " ".join(facts_of(report, "cgroup_leaf"))
    if f"pids_peak={host['pids.peak']}" not in leaf:
        failures.append(f"the cgroup_leaf fact must carry the peak the host read (pids_peak={host['pids.peak']}): {leaf!r}")
    check_gone(failures, marker, leaf_dirs(facts_of(report, "cgroup_leaf")))
    verdict(failures, "usage witnesses", identity)


# --- 5. handle_count ---------------------------------------------------------------------------

FDS_LIMIT, FDS_TRIES = 16, 64


def fds_view(pid: int) -> dict:
    limits = read_text(f"/proc/{pid}/limits") or ""
    row = next((line for line in limits.splitlines() if line.startswith("Max open files")), "")
    try:
        count = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        count = None
    return {"max_open_files": row.split()[3:5], "fd_count": count}


def check_fds_capped(failures: list, host: dict | None, own: dict | None, stderr: bytes) -> None:
    """Both channels of a handle_count 16 run: the host reads the rlimit (soft and hard) and at
    most 16 open fds (when it inspected the workload); the workload got fewer than 16 fds,
    all below 16, and EMFILE for the rest of its tries."""
    if host is not None:
        if host["max_open_files"] != [str(FDS_LIMIT), str(FDS_LIMIT)]:
            failures.append(f"CHANNEL A: /proc/<pid>/limits Max open files must read {FDS_LIMIT} {FDS_LIMIT}; read {host['max_open_files']}")
        if host["fd_count"] is None or host["fd_count"] > FDS_LIMIT:
            failures.append(f"CHANNEL A: the workload holds more than {FDS_LIMIT} fds: {host['fd_count']}")
    if not own or own["opened"] >= FDS_LIMIT or own["refused"] <= 0 or own["opened"] + own["refused"] != FDS_TRIES or own["highest"] >= FDS_LIMIT:
        failures.append(f"CHANNEL B: the workload must get fewer than {FDS_LIMIT} fds (all below {FDS_LIMIT}) and EMFILE for the rest; got {own} stderr={stderr!r}")


def open_files(identity: str, guarantee: MinGuarantee):
    """OPEN_FILES tries FDS_TRIES files under handle_count FDS_LIMIT with ``guarantee``: its
    marker, the run, what the host read of it parked, and what it reported of its own fds."""
    marker = unique_marker("BVISOR-BUDGET-FDS")
    gated = run_parked(identity, python_argv(OPEN_FILES, marker, FDS_TRIES), marker, fds_view, handle_count=(FDS_LIMIT, guarantee))
    host, own = gated.inspected or {}, fields_of(reported(gated.stdout, "FDS"))
    print(f"handle_count {guarantee.value} [{identity}]: host={brief(host)} self={own} {report_summary(gated.result)}", file=sys.stderr)
    return marker, gated, host, own


@pytest.mark.parametrize("identity", IDENTITIES)
def test_opening_files_past_the_handle_count_fails_with_emfile(identity):
    """Attack: open 64 files under handle_count 16 Enforced. /proc/<pid>/limits must read 16
    (soft and hard, so it cannot raise it), the host counts at most 16 open fds, and the
    workload gets fewer than 16 — the rest fail with EMFILE."""
    marker, gated, host, own = open_files(identity, ENFORCED)
    report = gated.result
    failures = []
    check_fds_capped(failures, host if check_parked(failures, gated, "file opener") else None, own, gated.stderr)
    if report.body.outcome != Outcome.Completed:
        failures.append(f"the workload must run to Completed; {report_summary(report)}")
    if f"nofile={FDS_LIMIT} per process" not in facts_of(report, "rlimit_lowered"):
        failures.append(f"the report must record rlimit_lowered nofile={FDS_LIMIT} per process; {report.body.observed}")
    check_witness(failures, report, D.HandleCount, FDS_LIMIT, ENFORCED)
    check_gone(failures, marker, leaf_dirs(facts_of(report, "cgroup_leaf")))
    verdict(failures, "handle_count cap", identity)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_the_cap_the_same_workload_opens_every_file(identity):
    """Control: handle_count only Mediated: no rlimit is set and the workload opens all 64."""
    marker, gated, host, own = open_files(identity, MEDIATED)
    report = gated.result
    failures = []
    if check_parked(failures, gated, "uncapped file opener") and (host["fd_count"] or 0) <= FDS_TRIES:
        failures.append(f"CHANNEL A: the host must count all {FDS_TRIES} opened fds (+ stdio); counted {host['fd_count']}")
    if own.get("opened") != FDS_TRIES or own.get("refused") != 0:
        failures.append(f"CHANNEL B: without the cap the workload must open all {FDS_TRIES}; got {own} stderr={gated.stderr!r}")
    if facts_of(report, "rlimit_lowered"):
        failures.append(f"a Mediated handle_count must set no rlimit: {facts_of(report, 'rlimit_lowered')}")
    check_gone(failures, marker, leaf_dirs(facts_of(report, "cgroup_leaf")))
    verdict(failures, "handle_count control", identity)


# --- 6. network ----------------------------------------------------------------------------------

NET_SELF_REPORT = PARK + "printf 'IFACES %s\\n' \"$(awk 'NR>2 && NF {sub(/:.*/,\"\",$1); print $1}' /proc/self/net/dev | sort | tr '\\n' ',')\""


def own_interfaces(stdout: bytes):
    """The interface names the workload listed (``IFACES a,b,``), sorted; None if it never did."""
    line = reported(stdout, "IFACES")
    if line is None:
        return None
    return sorted(name for name in line.partition(" ")[2].split(",") if name)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_zero_network_budget_gets_an_empty_network_namespace(identity):
    """Attack: reach the network under a network budget of 0 bytes Enforced (no NetworkDenyAll
    capability asked). The run must get an empty network namespace — the host sees only
    ``lo`` in /proc/<pid>/net/dev, so does the workload — and the witness must be 0 bytes."""
    marker = unique_marker("BVISOR-BUDGET-NET")
    gated = run_parked(identity, [BASH, "-c", NET_SELF_REPORT, marker], marker, host_read_child_interfaces, network=(0, ENFORCED))
    report = gated.result
    own = own_interfaces(gated.stdout)
    print(f"network 0 [{identity}]: host={gated.inspected} self={own} {report_summary(report)}", file=sys.stderr)
    failures = []
    if check_parked(failures, gated, "network workload") and gated.inspected != ["lo"]:
        failures.append(f"CHANNEL A: the workload's netns must hold only lo; the host reads {gated.inspected}")
    if own != ["lo"]:
        failures.append(f"CHANNEL B: the workload must see only lo; it reports {own} stderr={gated.stderr!r}")
    if report.body.outcome != Outcome.Completed:
        failures.append(f"the workload must run to Completed; {report_summary(report)}")
    if not facts_of(report, "network_lowered"):
        failures.append(f"the report must record the empty network namespace (network_lowered): {report.body.observed}")
    found = check_witness(failures, report, D.Network, 0, ENFORCED)
    if found is not None and (found.observed != 0 or found.finding is not BudgetFinding.WithinLimit):
        failures.append(f"the network witness must be observed=0, within_limit; got {found}")
    check_gone(failures, marker, leaf_dirs(facts_of(report, "cgroup_leaf")))
    verdict(failures, "network 0", identity)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_nonzero_enforced_network_budget_is_refused_at_plan_and_mediated_is_admitted(identity):
    """An empty netns caps at 0 bytes only: 1000 bytes Enforced cannot be capped here and must
    be refused at plan, naming the network dimension. Control: 1000 bytes Mediated is admitted
    and runs in the host's network — the same probe sees the host's interfaces, so the
    zero-budget oracle above is not vacuous."""
    backend = backend_for(identity)
    failures = []
    try:
        planned(backend, spec_for([BASH, "-c", "true"], network=(1000, ENFORCED)))
        failures.append("network 1000 Enforced must be refused at plan (an empty netns caps only at 0)")
    except BudgetRefused as exc:
        if exc.dimension is not D.Network:
            failures.append(f"the refusal must name the network dimension; it names {exc.dimension} ({exc})")
    marker = unique_marker("BVISOR-BUDGET-NET-CTL")
    _, run = planned(backend, spec_for([BASH, "-c", NET_SELF_REPORT, marker], network=(1000, MEDIATED)))
    gated = run_gated(run, marker, host_read_child_interfaces, timeout=GATE)
    own, host_own = own_interfaces(gated.stdout), host_read_child_interfaces(os.getpid())
    print(f"network control [{identity}]: workload(host view)={gated.inspected} self={own} host={host_own}", file=sys.stderr)
    if check_parked(failures, gated, "Mediated network workload") and gated.inspected != host_own:
        failures.append(f"CHANNEL A: with a Mediated network budget the workload must be in the host's netns {host_own}; read {gated.inspected}")
    if own != host_own:
        failures.append(f"CHANNEL B: the workload must see the host's interfaces {host_own}; it reports {own}")
    if gated.result.body.outcome != Outcome.Completed or facts_of(gated.result, "network_lowered"):
        failures.append(f"a Mediated network budget runs to Completed with no namespace: {report_summary(gated.result)}")
    check_gone(failures, marker, leaf_dirs(facts_of(gated.result, "cgroup_leaf")))
    verdict(failures, "network plan", identity)
    if host_own == ["lo"]:
        loud_skip("network control: this host itself has only lo, so the zero budget has nothing to hide")


# --- 7. the CLI --------------------------------------------------------------------------------


def delegated_to(identity: str, controller: str) -> bool:
    """Can the identity running bvisor make a leaf for ``controller``? Read from the cgroupfs
    itself: the identity may write the directory where this process's cgroup leaves would go."""
    dirs = host_cgroup_dirs(os.getpid())
    unified = dirs.get("")
    in_unified = unified and controller in (read_text(f"{unified}/cgroup.controllers") or "").split()
    directory = unified if in_unified else dirs.get(controller)
    if directory is None:
        return False
    check = subprocess.run([*cli_prefix(identity), "/bin/sh", "-c", 'test -w "$0"', directory], check=False, timeout=30)
    return check.returncode == 0


def bvisor_cli(identity: str, flags, argv, report: Path):
    return subprocess.run(
        [*cli_prefix(identity), BVISOR, "run", "--quiet", "--no-stdin", *flags, "--report", str(report), "--", *argv],
        capture_output=True, check=False, timeout=120, cwd=report.parent,
    )


@pytest.fixture
def report_dir():
    """A fresh directory uid 65534 can write its report into (pytest's tmp_path is 0700)."""
    import shutil

    path = tempfile.mkdtemp(prefix="bvisor-budget-cli-")
    os.chmod(path, 0o777)
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path)


def check_cli_refused(failures: list, done, document: dict, dimension: str) -> None:
    """Where no cgroup is delegated to the identity the cap cannot be installed: refused, never
    run."""
    if done.returncode != 125:
        failures.append(f"without a delegated cgroup the CLI must refuse (exit 125); exit {done.returncode} stderr={done.stderr!r}")
    if document.get("refused", {}).get("requirement") != dimension:
        failures.append(f"the refusal document must name {dimension}: {document}")
    if done.stdout:
        failures.append(f"a refused plan must not run the workload; it printed {done.stdout!r}")


def cli_witness(document: dict, dimension: str) -> dict:
    return next((w for w in document.get("budget", []) if w["dimension"] == dimension), {})


def cli_leaves(document: dict):
    """The leaf dirs a CLI report names; None for a refusal document (nothing ran)."""
    if "refused" in document:
        return None
    return leaf_dirs(f["detail"] for f in document.get("observed", []) if f["kind"] == "cgroup_leaf")


def cli_summary(done, document: dict, dimension: str) -> str:
    kept = {k: document.get(k) for k in ("outcome", "exit", "refused") if k in document}
    return (
        f"exit={done.returncode} stdout={done.stdout[-300:]!r} stderr={done.stderr[-500:]!r} report={kept} "
        f"witness={cli_witness(document, dimension)} enforced={cli_enforced(document, dimension)} leaves={cli_leaves(document)}"
    )


def cli_enforced(document: dict, dimension: str) -> list:
    return [f["detail"] for f in document.get("observed", []) if f["kind"] == "budget_enforced" and f["detail"].startswith(f"dimension={dimension} ")]


@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_pids_caps_a_fork_bomb(identity, report_dir):
    """``bvisor run --pids 16`` runs the fork bomb (not parked) with at most 16 processes, forks
    past that refused, and the report says so; as uid 65534 with no cgroup delegated to it, the
    cap cannot be installed and the run is refused instead."""
    marker = unique_marker("BVISOR-BUDGET-CLI-BOMB")
    report = report_dir / "pids.json"
    done = bvisor_cli(identity, ["--pids", str(BOMB_LIMIT)], python_argv(FORK_BOMB, marker, BOMB_TRIES, "go"), report)
    document = json.loads(report.read_text()) if report.exists() else {}
    own = fields_of(reported(done.stdout, "BOMB"))
    print(f"cli --pids [{identity}]: self={own} {cli_summary(done, document, 'process_count')}", file=sys.stderr)
    failures = []
    if not delegated_to(identity, "pids"):
        check_cli_refused(failures, done, document, "process_count")
    else:
        if done.returncode != 0:
            failures.append(f"the bomb exits 0 (only its forks are refused); exit {done.returncode} stderr={done.stderr!r}")
        if not own or own["made"] > BOMB_LIMIT or own["refused"] <= 0:
            failures.append(f"the bomb must make at most {BOMB_LIMIT} processes and have forks refused; it reported {own}")
        found = cli_witness(document, "process_count")
        if found.get("supplied") != "enforced" or not isinstance(found.get("observed"), int) or found["observed"] > BOMB_LIMIT:
            failures.append(f"the report's process_count witness must be enforced, observed <= {BOMB_LIMIT}: {found}")
        if not any("action=fork_refused" in f for f in cli_enforced(document, "process_count")):
            failures.append(f"the report must record action=fork_refused: {document.get('observed')}")
    check_gone(failures, marker, cli_leaves(document))
    verdict(failures, "cli --pids", identity)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_memory_cap_kills_with_137(identity, report_dir):
    """``bvisor run --memory 64M`` of a 512 MiB allocation exits 137 and the report names the
    oom kill; as uid 65534 with no cgroup delegated to it the run is refused (125) instead."""
    marker = unique_marker("BVISOR-BUDGET-CLI-MEM")
    report = report_dir / "memory.json"
    done = bvisor_cli(identity, ["--memory", "64M"], python_argv(ALLOCATE, marker, ALLOCATION_MIB, "go"), report)
    document = json.loads(report.read_text()) if report.exists() else {}
    print(f"cli --memory [{identity}]: {cli_summary(done, document, 'resident_memory')}", file=sys.stderr)
    failures = []
    if not delegated_to(identity, "memory"):
        check_cli_refused(failures, done, document, "resident_memory")
    else:
        check_cli_killed(failures, done, document, "resident_memory", "oom_kill")
        if b"allocated-all" in done.stdout:
            failures.append(f"the workload allocated everything under --memory 64M: {done.stdout!r}")
        if cli_witness(document, "resident_memory").get("supplied") != "enforced":
            failures.append(f"the resident_memory witness must be enforced: {cli_witness(document, 'resident_memory')}")
    check_gone(failures, marker, cli_leaves(document))
    verdict(failures, "cli --memory", identity)


def check_cli_killed(failures: list, done, document: dict, dimension: str, action: str) -> None:
    """A run its ``dimension`` budget ended: exit 137, killed by signal 9, and the report
    names the enforcement ``action``."""
    if done.returncode != 137:
        failures.append(f"a run killed for its {dimension} budget must exit 137; exit {done.returncode} stderr={done.stderr!r}")
    if document.get("outcome") != "killed" or document.get("exit") != {"signal": 9}:
        failures.append(f"the report must say killed by signal 9: {document.get('outcome')} {document.get('exit')}")
    if not any(f"action={action}" in f for f in cli_enforced(document, dimension)):
        failures.append(f"the report must record dimension={dimension} action={action}: {document.get('observed')}")


def cpu_delegated_to(identity: str) -> bool:
    """Can the identity running bvisor make a leaf whose whole-tree cpu usage it can read? That
    counter is a cgroup2 leaf's ``cpu.stat`` (every cgroup2 cgroup has it, whatever controllers
    are enabled) or a v1 ``cpuacct`` leaf's ``cpuacct.usage`` (see COUNTERS): either directory
    where this process's leaves would go must be writable by the identity."""
    dirs = host_cgroup_dirs(os.getpid())
    for directory in (dirs.get(""), dirs.get("cpuacct")):
        check = subprocess.run([*cli_prefix(identity), "/bin/sh", "-c", 'test -w "$0"', directory], check=False, timeout=30) if directory else None
        if check is not None and check.returncode == 0:
            return True
    return False


def workload_pid(argv) -> int | None:
    """The host pid of the process whose argv is exactly ``argv`` (the bvisor command carries
    the same words after ``--``, so a marker alone would find the CLI itself)."""
    wanted = "\0".join(map(str, argv)).encode() + b"\0"
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if f.read() == wanted:
                    return int(name)
        except OSError:
            continue
    return None


def bvisor_cli_parked(identity: str, flags, argv, report: Path, inspect):
    """``bvisor_cli`` with the workload's stdin a pipe only this host holds (the CLI passes stdin
    through): once the workload prints PARKED, the host finds it by its exact argv, calls
    ``inspect(pid)`` and closes the pipe, which releases it. A run that never parks (refused,
    or dead early) is simply waited for. Returns (CompletedProcess, what ``inspect`` returned)."""
    gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
    try:
        proc = subprocess.Popen(
            [*cli_prefix(identity), BVISOR, "run", "--quiet", *flags, "--report", str(report), "--", *argv],
            stdin=gate_r, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=report.parent,
        )
    except BaseException:
        os.close(gate_w)
        raise
    finally:
        os.close(gate_r)
    head, inspected, token = bytearray(), None, PARKED.encode() + b"\n"
    try:
        deadline = time.monotonic() + GATE  # a liveness bound, not a timing assert
        while token not in head and (left := deadline - time.monotonic()) > 0:
            if not select.select([proc.stdout], [], [], left)[0]:
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            head += chunk
        if token in head:
            pid = workload_pid(argv)
            inspected = inspect(pid) if pid is not None else None
    finally:
        os.close(gate_w)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, bytes(head) + out, err), inspected


def cli_document(report: Path) -> dict:
    return json.loads(report.read_text()) if report.exists() else {}


def cli_ran_leaves(identity: str, document: dict):
    """For check_gone: the leaf dirs of a run that ran, which must name a leaf wherever the
    identity can make one (pids delegated to it); None where it can make none (it runs with no
    cgroup) or nothing ran."""
    return cli_leaves(document) if delegated_to(identity, "pids") else None


@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_cpu_kills_a_busy_loop_with_137(identity, report_dir):
    """``bvisor run --cpu 0.5`` of a busy loop that would burn 30 s of cpu. While it is parked
    (before the loop) the host finds it in the run's leaf with that leaf's cpu counter below the
    budget; released, it is killed: exit 137, the report says killed by signal 9 with a
    dimension=cpu run_tree_killed fact and an enforced cpu witness that reached the limit, and
    the loop never reports finishing. As uid 65534 with no cgroup delegated to it, no leaf can
    count the tree's cpu, and the run is refused (125) instead."""
    marker = unique_marker("BVISOR-BUDGET-CLI-CPU")
    report = report_dir / "cpu.json"
    argv = python_argv(BURN, marker, ATTACK_CPU_S)
    done, host = bvisor_cli_parked(identity, ["--cpu", str(CPU_LIMIT_US / 1e6)], argv, report, lambda pid: cgroup_view(pid, "cpu_us"))
    document = cli_document(report)
    print(f"cli --cpu [{identity}]: host={brief(host)} {cli_summary(done, document, 'cpu')}", file=sys.stderr)
    failures = []
    if not cpu_delegated_to(identity):
        check_cli_refused(failures, done, document, "cpu")
    else:
        if host is None:
            failures.append(f"CHANNEL A: the host never inspected the parked busy loop; {cli_summary(done, document, 'cpu')}")
        else:
            if not isinstance(host["cpu_us"], int) or host["cpu_us"] >= CPU_LIMIT_US:
                failures.append(f"CHANNEL A: the host must read the leaf's cpu usage (below the budget) while parked; read {host['cpu_us']!r}")
            leaf = " ".join(f["detail"] for f in document.get("observed", []) if f["kind"] == "cgroup_leaf")
            directory = host["dirs"].get("")
            if not directory or "bvisor-" not in os.path.basename(directory) or os.path.basename(directory) not in leaf:
                failures.append(f"CHANNEL A: the workload's cgroup2 cgroup {directory} must be the run's leaf {leaf!r}")
        check_cli_killed(failures, done, document, "cpu", "run_tree_killed")
        if b"BURNT" in done.stdout:
            failures.append(f"CHANNEL B: the loop burnt all its {ATTACK_CPU_S} s of cpu under --cpu 0.5: {done.stdout!r}")
        found = cli_witness(document, "cpu")
        if (
            found.get("supplied") != "enforced" or found.get("limit") != CPU_LIMIT_US or found.get("finding") != "limit_reached"
            or not isinstance(found.get("observed"), int) or found["observed"] < CPU_LIMIT_US
        ):
            failures.append(f"the cpu witness must be enforced, limit {CPU_LIMIT_US}, observed >= it, limit_reached: {found}")
    check_gone(failures, marker, cli_leaves(document))
    verdict(failures, "cli --cpu", identity)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_control_without_cpu_the_same_loop_burns_past_the_budget(identity, report_dir):
    """Control: the same loop, bounded at 1.5 s of cpu (three times the budget above), run
    without ``--cpu``: it completes (exit 0), reports its 1.5 s, and the report has no cpu kill
    and a watched (mediated) cpu witness covering it — the kill above is the flag's doing."""
    marker = unique_marker("BVISOR-BUDGET-CLI-CPU-CTL")
    report = report_dir / "cpu-control.json"
    done, host = bvisor_cli_parked(identity, [], python_argv(BURN, marker, CONTROL_CPU_S), report, lambda pid: {"uid": host_read_uid(pid)})
    document = cli_document(report)
    own = fields_of(reported(done.stdout, "BURNT"))
    print(f"cli cpu control [{identity}]: host={host} self={own} {cli_summary(done, document, 'cpu')}", file=sys.stderr)
    failures = []
    if host is None or workload_uid_problem(identity, host["uid"]):
        failures.append(f"CHANNEL A: the host must find the parked loop running as the {identity} workload's uid; read {host}")
    if done.returncode != 0 or document.get("outcome") != "completed":
        failures.append(f"without --cpu the loop must complete (exit 0); exit {done.returncode} outcome={document.get('outcome')} stderr={done.stderr!r}")
    if own.get("cpu_us", 0) < CONTROL_CPU_S * 1e6:
        failures.append(f"CHANNEL B: the loop must report {CONTROL_CPU_S} s of its own cpu; got {own}")
    if cli_enforced(document, "cpu"):
        failures.append(f"no cpu kill without --cpu: {cli_enforced(document, 'cpu')}")
    found = cli_witness(document, "cpu")
    if found.get("supplied") != "mediated" or not isinstance(found.get("observed"), int) or found["observed"] < own.get("cpu_us", CONTROL_CPU_S * 1e6):
        failures.append(f"the cpu witness must be mediated and cover the loop's own cpu ({own}): {found}")
    check_gone(failures, marker, cli_ran_leaves(identity, document))
    verdict(failures, "cli cpu control", identity)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_fds_makes_opening_past_the_limit_fail_with_emfile(identity, report_dir):
    """``bvisor run --fds 16`` of a workload that opens 64 files and parks. The host reads the
    parked workload's /proc/<pid>/limits "Max open files" as 16 16 and counts at most 16 open
    fds; the workload gets fewer than 16 and EMFILE for the rest, exits 0, and the report records
    rlimit_lowered nofile=16 and an enforced handle_count witness. An rlimit needs no cgroup, so
    this runs for uid 65534 too."""
    marker = unique_marker("BVISOR-BUDGET-CLI-FDS")
    report = report_dir / "fds.json"
    done, host = bvisor_cli_parked(identity, ["--fds", str(FDS_LIMIT)], python_argv(OPEN_FILES, marker, FDS_TRIES), report, fds_view)
    document = cli_document(report)
    own = fields_of(reported(done.stdout, "FDS"))
    print(f"cli --fds [{identity}]: host={host} self={own} {cli_summary(done, document, 'handle_count')}", file=sys.stderr)
    failures = []
    if host is None:
        failures.append(f"CHANNEL A: the host never inspected the parked file opener; {cli_summary(done, document, 'handle_count')}")
    check_fds_capped(failures, host, own, done.stderr)
    if done.returncode != 0 or document.get("outcome") != "completed":
        failures.append(f"the workload exits 0 (only its opens fail): exit {done.returncode} outcome={document.get('outcome')} stderr={done.stderr!r}")
    lowered = [f["detail"] for f in document.get("observed", []) if f["kind"] == "rlimit_lowered"]
    if f"nofile={FDS_LIMIT} per process" not in lowered:
        failures.append(f"the report must record rlimit_lowered nofile={FDS_LIMIT} per process: {lowered}")
    found = cli_witness(document, "handle_count")
    if found.get("supplied") != "enforced" or found.get("limit") != FDS_LIMIT:
        failures.append(f"the handle_count witness must be enforced with limit {FDS_LIMIT}: {found}")
    check_gone(failures, marker, cli_ran_leaves(identity, document))
    verdict(failures, "cli --fds", identity)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_control_without_fds_the_same_workload_opens_every_file(identity, report_dir):
    """Control: the same workload without ``--fds``: the host reads a Max open files above 64,
    the workload opens all 64, and the report lowers no rlimit."""
    marker = unique_marker("BVISOR-BUDGET-CLI-FDS-CTL")
    report = report_dir / "fds-control.json"
    done, host = bvisor_cli_parked(identity, [], python_argv(OPEN_FILES, marker, FDS_TRIES), report, fds_view)
    document = cli_document(report)
    own = fields_of(reported(done.stdout, "FDS"))
    print(f"cli fds control [{identity}]: host={host} self={own} {cli_summary(done, document, 'handle_count')}", file=sys.stderr)
    failures = []
    soft = (host or {}).get("max_open_files", [None])[0]
    if host is None or not (soft or "").isdigit() or int(soft) <= FDS_TRIES or (host["fd_count"] or 0) <= FDS_TRIES:
        failures.append(f"CHANNEL A: without --fds the host must read Max open files above {FDS_TRIES} and count all {FDS_TRIES} fds; read {host}")
    if own.get("opened") != FDS_TRIES or own.get("refused") != 0:
        failures.append(f"CHANNEL B: without --fds the workload must open all {FDS_TRIES}; got {own} stderr={done.stderr!r}")
    if done.returncode != 0:
        failures.append(f"the control must exit 0; exit {done.returncode} stderr={done.stderr!r}")
    if any(f["kind"] == "rlimit_lowered" for f in document.get("observed", [])):
        failures.append(f"no rlimit may be lowered without --fds: {document.get('observed')}")
    check_gone(failures, marker, cli_ran_leaves(identity, document))
    verdict(failures, "cli fds control", identity)
