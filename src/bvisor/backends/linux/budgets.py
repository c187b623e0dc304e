"""Budgets on Linux, a budget's whole life: what each dimension's mechanism really gives on
this host, the run's cgroup leaf and the caps it carries, the supervisor that enforces wall
and cpu, how a budget that ended the run overrides the launcher's view of its end, and the
usage a run reports.

Every guarantee is a pure function of probed facts. A dimension is ``Enforced`` only where
``execute`` installs a cap for it on this host; otherwise it is watched (``Mediated``) and its
mechanism says how, or that it is not observed at all.
"""

import _signal as signal
import functools
import os
import time
from collections.abc import Callable

import msgspec

from bvisor.backends.linux.cgroup_leaf import LeafLimits, RunLeaf, leaf_name, process_start_time
from bvisor.backends.linux.facts import LinuxFacts
from bvisor.backends.observed import UNBOUNDED, Rusage, uncapped_budget_profile
from bvisor.contract import (
    AdmittedBudget,
    BudgetAvailability,
    BudgetDimension,
    BudgetProfile,
    BudgetUsage,
    Enforcement,
    EvidenceClaim,
    ExitStatus,
    ObservedFact,
    Outcome,
    capped_limit,
)

D = BudgetDimension
USAGE = frozenset({EvidenceClaim.ResourceUsage})

# The init the backend adds to every run is a member of its cgroup leaf but not a workload
# process: pids.max is the workload's limit plus this, and its peak is reported without it.
INIT_PROCESSES = 1

# A temp root's inode cap: one inode per 4 KiB of its byte cap (ext4 makes one per 16 KiB;
# tmpfs's default is one per RAM page), never fewer than 64 so a tiny cap still holds a few
# files. Empty files, directories and short symlinks take no bytes, only an inode and its
# kernel memory: without this cap a 1 MiB temp root held 400k symlinks.
TEMP_ROOT_BYTES_PER_INODE = 4096
TEMP_ROOT_MIN_INODES = 64
STORAGE_MECHANISM = "temp_root_tmpfs_size+nr_inodes(the only writable place)"


def temp_root_inodes(size_bytes: int) -> int:
    """The inode cap of a temp root whose byte cap is ``size_bytes`` (its root counts as one)."""
    return max(TEMP_ROOT_MIN_INODES, size_bytes // TEMP_ROOT_BYTES_PER_INODE)


# The supervisor never sleeps longer than the cpu budget could last with every CPU busy,
# and never polls faster than this.
_CPU_POLL_FLOOR_S = 0.002


def run_tree_kill(facts: LinuxFacts) -> str | None:
    """How a whole run tree is killed at once on this host, or None. Only a run with its own
    pid namespace has one: its init is what joins the run's cgroup leaf (lowering refuses a
    leaf without one), so every cgroup mechanism needs it too."""
    if not facts.userns_pid.ok:
        return None
    return facts.cgroup_kill.value if facts.cgroup_kill is not None else "pid_namespace_init"


def _enforced(mechanism: str, evidence=USAGE, enforced_up_to=None) -> BudgetAvailability:
    return BudgetAvailability(
        available=UNBOUNDED, enforcement=Enforcement.Enforced, evidence=evidence, mechanism=mechanism, enforced_up_to=enforced_up_to
    )


# A pure function of the probed facts, which change only on drift: computed once per set of
# facts, not at every plan.
@functools.lru_cache(maxsize=8)
def linux_budget_profile(facts: LinuxFacts) -> BudgetProfile:
    """Per dimension, the strongest guarantee this host's mechanisms give."""
    profile = dict(uncapped_budget_profile().items())
    kill = run_tree_kill(facts)
    # A cgroup cap needs the run placed in its leaf, which only its pid namespace's init does.
    cpu, memory, pids = (facts.cgroup_cpu, facts.cgroup_memory, facts.cgroup_pids) if facts.userns_pid.ok else (None, None, None)
    if kill is not None:
        profile[D.Wall] = _enforced(f"supervisor_deadline+{kill}")
    if kill is not None and cpu is not None:
        profile[D.Cpu] = _enforced(f"cgroup_{cpu.value}_cpu_usage:supervisor_kill+{kill}")
    if memory is not None:
        profile[D.ResidentMemory] = _enforced(f"cgroup_{memory.value}_memory_limit:oom_kill(whole tree, init included)")
    if pids is not None:
        profile[D.ProcessCount] = _enforced(f"cgroup_{pids.value}_pids.max(whole tree, threads count, init not counted)")
    profile[D.HandleCount] = _enforced("rlimit_nofile(per process, not tree-wide)", evidence=frozenset())
    if facts.userns_mount.ok:
        # Enforced for a spec only where the temp root is its only writable place: the
        # planner refuses the rest (``planner.storage_cap_problem``).
        profile[D.Storage] = _enforced(STORAGE_MECHANISM)
    if facts.userns_netns.ok:
        profile[D.Network] = _enforced("empty_netns(zero bytes only)", enforced_up_to=0)
    return BudgetProfile(**{dimension.value: availability for dimension, availability in profile.items()})


def leaf_limits(budgets: list[AdmittedBudget]) -> LeafLimits:
    """The cgroup caps a run's leaf carries before its workload exists: only capped ones."""
    pids = capped_limit(budgets, D.ProcessCount)
    return LeafLimits(
        pids_max=None if pids is None else pids + INIT_PROCESSES,
        memory_max=capped_limit(budgets, D.ResidentMemory),
    )


def make_leaf(layout, delegation, budgets: list[AdmittedBudget], attempt_id: str) -> RunLeaf | None:
    """The run's cgroup leaf with its caps written, or None where no cgroup is delegated."""
    if not delegation.usable():
        return None
    owner = os.getpid()
    name = leaf_name(owner, process_start_time(owner), attempt_id)
    return RunLeaf.create(layout, delegation, name, leaf_limits(budgets))


class RunSupervisor:
    """Enforces the capped wall and cpu budgets of one run from the host.

    Wall: one deadline. Cpu: the leaf's whole-tree usage, read no later than the earliest
    moment the budget could be spent with every CPU busy. Either one kills the whole tree
    (the leaf's kill, else SIGKILL to the launcher, whose death takes the init and so the pid
    namespace with it) and records which dimension did. ``start`` and every check are read
    on ``clock`` (the host's monotonic clock; a test passes one it moves itself).
    """

    def __init__(self, budgets: list[AdmittedBudget], leaf, start: float, clock: Callable[[], float] = time.monotonic):
        wall = capped_limit(budgets, D.Wall)
        self._wall_deadline = None if wall is None else start + wall / 1e6
        self._cpu_limit_us = capped_limit(budgets, D.Cpu) if leaf is not None else None
        self._leaf = leaf
        self._clock = clock
        self._cpus = os.cpu_count() or 1
        self._next_cpu_check = start if self._cpu_limit_us is not None else None
        self._launcher_pidfd = None
        self.killed_for: BudgetDimension | None = None
        self.kill_mechanism: str | None = None

    def attach(self, launcher_pidfd: int) -> None:
        self._launcher_pidfd = launcher_pidfd

    def next_check(self):
        """The monotonic time of the next check, or None when nothing is left to enforce."""
        if self.killed_for is not None:
            return None
        times = [t for t in (self._wall_deadline, self._next_cpu_check) if t is not None]
        return min(times) if times else None

    def check(self) -> None:
        now = self._clock()
        if self._wall_deadline is not None and now >= self._wall_deadline:
            self._kill(D.Wall)
            return
        if self._next_cpu_check is not None and now >= self._next_cpu_check:
            used = self._leaf.usage().cpu_us or 0
            remaining_us = self._cpu_limit_us - used
            if remaining_us <= 0:
                self._kill(D.Cpu)
                return
            self._next_cpu_check = now + max(_CPU_POLL_FLOOR_S, remaining_us / 1e6 / self._cpus)

    def _kill(self, dimension: BudgetDimension) -> None:
        self.killed_for = dimension
        if self._leaf is not None:
            self.kill_mechanism = self._leaf.kill()
        else:
            signal.pidfd_send_signal(self._launcher_pidfd, signal.SIGKILL)
            self.kill_mechanism = "pid_namespace_init(launcher killed)"


def budget_ending(outcome, exit_status, supervisor: RunSupervisor, usage, budgets) -> tuple:
    """A budget that ended the run overrides how the launcher saw it end."""
    if supervisor.killed_for is not None and outcome is not Outcome.Unsupported:
        dimension = supervisor.killed_for
        fact = ObservedFact(
            kind="budget_enforced",
            detail=f"dimension={dimension.value} action=run_tree_killed mechanism={supervisor.kill_mechanism}",
        )
        ended = Outcome.Timeout if dimension is BudgetDimension.Wall else Outcome.Killed
        return ended, exit_status or ExitStatus(signal=signal.SIGKILL), [fact]
    memory_capped = capped_limit(budgets, BudgetDimension.ResidentMemory) is not None
    if memory_capped and usage is not None and usage.oom_kills:
        fact = ObservedFact(kind="budget_enforced", detail=f"dimension=resident_memory action=oom_kill count={usage.oom_kills}")
        killed = exit_status is None or exit_status.signal == signal.SIGKILL
        return (Outcome.Killed if killed else outcome), exit_status or ExitStatus(signal=signal.SIGKILL), [fact]
    if usage is not None and usage.pids_limit_hits:
        fact = ObservedFact(kind="budget_enforced", detail=f"dimension=process_count action=fork_refused count={usage.pids_limit_hits}")
        return outcome, exit_status, [fact]
    return outcome, exit_status, []


def leaf_facts(leaf, usage) -> list:
    """The run's cgroup leaf and what it counted, or that there was none."""
    if leaf is None:
        return [ObservedFact(kind="cgroup_leaf", detail="none: no cgroup is delegated to this user")]
    return [ObservedFact(kind="cgroup_leaf", detail=f"{' '.join(leaf.dirs)} {usage.describe()}")]


def workload_rusage(observation) -> Rusage | None:
    """The workload's reaped usage, as the launcher's ``workload_rusage`` note reports it."""
    fields = observation.note_fields("workload_rusage")
    if not fields:
        return None
    return Rusage(int(fields["utime_us"]) + int(fields["stime_us"]), int(fields["maxrss_kib"]))


def _note_bytes(observation, head: str):
    fields = observation.note_fields(head) if observation is not None else None
    return int(fields["bytes"]) if fields and "bytes" in fields else None


def run_usage(observed: BudgetUsage, leaf_usage, observation, storage_whole: bool) -> BudgetUsage:
    """What the run used, each from the best witness it had: the leaf's whole-tree counters
    where it had a leaf, else what ``observed`` (wall clock + reaped rusage) says; storage and
    network as the init read them inside the boundary. ``storage_whole``: the temp root was
    the only writable place; otherwise its usage is not all the run stored, and storage is
    not observed (the temp root's own usage stays in the report as a launcher note)."""
    leaf = {}
    if leaf_usage is not None:
        pids = leaf_usage.pids_peak
        leaf = {
            "cpu": leaf_usage.cpu_us,
            "resident_memory": leaf_usage.memory_peak,
            "process_count": None if pids is None else max(0, pids - INIT_PROCESSES),
        }
    own = {
        "storage": _note_bytes(observation, "temp_root_usage") if storage_whole else None,
        "network": _note_bytes(observation, "network_usage"),
    }
    chosen = {name: value for name, value in {**leaf, **own}.items() if value is not None}
    return msgspec.structs.replace(observed, **chosen)
