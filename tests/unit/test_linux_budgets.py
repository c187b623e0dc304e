"""The Linux budget profile is a pure function of probed facts, and the supervisor and the
run's ending follow the admitted caps. No process runs here; the oracles in
tests/oracle/test_budgets.py and tests/oracle/test_run_tree.py prove the mechanisms."""

import pytest

from bvisor.backends.linux.budgets import (
    RunSupervisor,
    budget_ending,
    leaf_limits,
    linux_budget_profile,
    run_tree_kill,
    run_usage,
    temp_root_inodes,
)
from bvisor.backends.linux.cgroup_leaf import LeafUsage
from bvisor.backends.linux.facts import parse_facts
from bvisor.backends.linux.launch import LaunchObservation
from bvisor.capture import StreamCapture
from bvisor.contract import (
    AdmittedBudget,
    BudgetDimension,
    BudgetUsage,
    Enforcement,
    MinGuarantee,
    Outcome,
)
from bvisor.wire.plan import LauncherState

D = BudgetDimension
FULL = {
    "cgroup.kill": "cgroup.kill",
    "cgroup.pids": "v1",
    "cgroup.memory": "v1",
    "cgroup.cpu": "v2",
    "launcher.userns_pid": "ok",
    "launcher.userns_mount": "ok",
    "launcher.userns_netns": "ok",
}
NOTHING = {"cgroup.kill": "unavailable: EACCES", "cgroup.pids": "unavailable: EACCES", "cgroup.memory": "unavailable: EACCES", "cgroup.cpu": "unavailable: EACCES"}


def _enforcement(facts):
    return {d: a.enforcement for d, a in linux_budget_profile(parse_facts(facts)).items()}


def test_a_delegated_host_enforces_every_dimension_and_network_only_at_zero():
    profile = linux_budget_profile(parse_facts(FULL))
    assert set(_enforcement(FULL).values()) == {Enforcement.Enforced}
    assert profile.network.enforced_up_to == 0
    assert all(profile.get(d).enforced_up_to is None for d in D if d is not D.Network)


def test_without_cgroups_or_namespaces_only_the_per_process_fd_cap_is_enforced():
    enforced = {d for d, e in _enforcement(NOTHING).items() if e is Enforcement.Enforced}
    assert enforced == {D.HandleCount}
    assert run_tree_kill(parse_facts(NOTHING)) is None


def test_a_pid_namespace_alone_enforces_wall_but_not_cpu_memory_or_pids():
    facts = {**NOTHING, "launcher.userns_pid": "ok"}
    enforced = {d for d, e in _enforcement(facts).items() if e is Enforcement.Enforced}
    assert enforced == {D.Wall, D.HandleCount}
    assert run_tree_kill(parse_facts(facts)) == "pid_namespace_init"


def _budget(dimension, limit, capped=True):
    guarantee = MinGuarantee.Enforced if capped else MinGuarantee.Mediated
    return AdmittedBudget(
        dimension=dimension, limit=limit, required=guarantee, supplied=guarantee.enforcement, required_evidence=frozenset(), mechanism="m"
    )


def test_only_capped_dimensions_reach_the_leaf_and_pids_count_the_init():
    limits = leaf_limits([_budget(D.ProcessCount, 16), _budget(D.ResidentMemory, 1 << 26, capped=False)])
    assert (limits.pids_max, limits.memory_max) == (17, None)


class FakeLeaf:
    def __init__(self, cpu_us):
        self.cpu_us, self.kills = cpu_us, 0

    def usage(self):
        return LeafUsage(cpu_us=self.cpu_us, memory_peak=None, pids_peak=None, pids_current=None, pids_limit_hits=None, oom_kills=None)

    def kill(self):
        self.kills += 1
        return "cgroup.kill"


class FakeClock:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_supervisor_kills_once_the_tree_has_spent_its_cpu():
    leaf, clock = FakeLeaf(cpu_us=499_990), FakeClock()
    supervisor = RunSupervisor([_budget(D.Cpu, 500_000)], leaf, clock.now, clock)
    supervisor.check()
    assert supervisor.killed_for is None and leaf.kills == 0
    leaf.cpu_us = 500_001
    clock.now = supervisor.next_check() - 0.001
    supervisor.check()
    assert supervisor.killed_for is None, "the usage is read again no sooner than it could be spent"
    clock.now = supervisor.next_check()  # the earliest the budget could be spent
    supervisor.check()
    assert supervisor.killed_for is D.Cpu and leaf.kills == 1 and supervisor.next_check() is None


def test_a_mediated_wall_is_never_a_deadline():
    supervisor = RunSupervisor([_budget(D.Wall, 1, capped=False)], FakeLeaf(0), 0.0)
    assert supervisor.next_check() is None


def test_a_passed_wall_deadline_kills_the_tree():
    leaf, clock = FakeLeaf(0), FakeClock()
    supervisor = RunSupervisor([_budget(D.Wall, 1_000_000)], leaf, clock.now, clock)
    clock.now = supervisor.next_check() - 0.001
    supervisor.check()
    assert supervisor.killed_for is None and leaf.kills == 0
    clock.now = supervisor.next_check()
    supervisor.check()
    assert supervisor.killed_for is D.Wall and supervisor.kill_mechanism == "cgroup.kill"


@pytest.mark.parametrize(
    ("killed_for", "oom_kills", "expected"),
    [(D.Wall, 0, Outcome.Timeout), (D.Cpu, 0, Outcome.Killed), (None, 1, Outcome.Killed), (None, 0, Outcome.Completed)],
)
def test_the_budget_that_ended_a_run_names_its_outcome(killed_for, oom_kills, expected):
    supervisor = RunSupervisor([], None, 0.0)
    supervisor.killed_for, supervisor.kill_mechanism = killed_for, "cgroup.kill" if killed_for else None
    usage = LeafUsage(cpu_us=1, memory_peak=1, pids_peak=1, pids_current=0, pids_limit_hits=0, oom_kills=oom_kills)
    outcome, status, facts = budget_ending(Outcome.Completed, None, supervisor, usage, [_budget(D.ResidentMemory, 1 << 26)])
    assert outcome is expected
    assert (status is not None and status.signal == 9) == (expected is not Outcome.Completed)
    assert bool(facts) == (expected is not Outcome.Completed)


def test_a_temp_roots_inode_cap_is_one_per_4k_of_its_byte_cap_and_at_least_64():
    assert [temp_root_inodes(n) for n in (1, 4096, 64 * 4096, 1 << 20, 64 << 20)] == [64, 64, 64, 256, 16384]


def _usage_note_observation():
    note = "temp_root_usage bytes=8192 inodes=3 size=1048576 nr_inodes=256"
    return LaunchObservation(LauncherState.ExecSucceeded, [], [note], 0, StreamCapture("stdout", 10), StreamCapture("stderr", 10), [])


def test_storage_is_observed_only_where_the_temp_root_was_the_only_writable_place():
    """Elsewhere the tmpfs's usage is not all the run stored: not observed, never a low count."""
    observation = _usage_note_observation()
    assert run_usage(BudgetUsage(), None, observation, storage_whole=True).storage == 8192
    assert run_usage(BudgetUsage(), None, observation, storage_whole=False).storage is None


def test_without_a_pid_namespace_no_cgroup_cap_is_offered():
    """The run's init joins the cgroup leaf, so a host with delegated cgroups but no pid
    namespace cannot place a run: lowering would refuse every capped run at execute."""
    enforced = {d for d, e in _enforcement({**FULL, "launcher.userns_pid": "failed errno=1"}).items() if e is Enforcement.Enforced}
    assert enforced == {D.HandleCount, D.Storage, D.Network}
    assert run_tree_kill(parse_facts({**FULL, "launcher.userns_pid": "failed errno=1"})) is None
