"""Which frozen seccomp policies a spec lowers to: pure, no process runs. The oracles in
tests/oracle/test_seccomp.py prove what the installed filter does."""

import os

import pytest

from bvisor.backends.linux.lowering import seccomp_policies
from bvisor.contract import Capability, SpawnPolicy
from bvisor.mechanism import seccomp


def spawn(policy):
    return Capability.ChildSpawn(policy=policy)


@pytest.mark.parametrize(
    ("capabilities", "deny_network", "expected"),
    [
        ([], False, ["baseline.v1", "fs.no_setid.v1"]),
        ([], True, ["net.deny_inet_sockets.v1", "baseline.v1", "fs.no_setid.v1"]),
        ([spawn(SpawnPolicy.DenyNewTasks())], False, ["spawn.deny_new_tasks.v1", "baseline.v1", "fs.no_setid.v1"]),
        ([spawn(SpawnPolicy.AllowThreadsWithinBoundary())], True, ["spawn.threads_only.v1", "net.deny_inet_sockets.v1", "baseline.v1", "fs.no_setid.v1"]),
        ([spawn(SpawnPolicy.AllowDescendantsWithinBoundary())], False, ["baseline.v1", "fs.no_setid.v1"]),
        # Both asked: the stricter one wins, whatever the order.
        ([spawn(SpawnPolicy.AllowThreadsWithinBoundary()), spawn(SpawnPolicy.DenyNewTasks())], False, ["spawn.deny_new_tasks.v1", "baseline.v1", "fs.no_setid.v1"]),
    ],
)
def test_every_run_gets_the_baseline_after_its_spawn_and_network_policies(capabilities, deny_network, expected):
    policies = seccomp_policies(capabilities, deny_network)
    assert policies == expected
    assert all(name in seccomp.POLICIES for name in policies)
    # The warm launcher compiles every list in policy_lists before it forks: a list outside
    # it would still run, but compile per run.
    assert tuple(policies) in seccomp.policy_lists()


def test_the_launcher_prepares_each_policy_list_as_the_program_it_would_compile():
    from bvisor.launcher import coordinator

    seccomp.PLANNED.clear()
    coordinator.prepare()
    assert set(seccomp.PLANNED) == {(policies, os.uname().machine) for policies in seccomp.policy_lists()}
    assert len(seccomp.PLANNED) == 6
    for policies in seccomp.policy_lists():
        program, digest = seccomp.planned_program(policies, "x86_64")
        assert program == seccomp.compile_program(seccomp.merged(list(policies)), "x86_64")
        assert digest == seccomp.program_digest(program)
