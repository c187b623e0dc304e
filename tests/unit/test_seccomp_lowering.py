"""Which frozen seccomp policies a spec lowers to: pure, no process runs. The oracles in
tests/oracle/test_seccomp.py prove what the installed filter does."""

import pytest

from bvisor.contract import Capability, SpawnPolicy
from bvisor.launcher import seccomp
from bvisor.linux.lowering import seccomp_policies


def spawn(policy):
    return Capability.ChildSpawn(policy=policy)


@pytest.mark.parametrize(
    ("capabilities", "deny_network", "expected"),
    [
        ([], False, ["baseline.v1"]),
        ([], True, ["net.deny_inet_sockets.v1", "baseline.v1"]),
        ([spawn(SpawnPolicy.DenyNewTasks())], False, ["spawn.deny_new_tasks.v1", "baseline.v1"]),
        ([spawn(SpawnPolicy.AllowThreadsWithinBoundary())], True, ["spawn.threads_only.v1", "net.deny_inet_sockets.v1", "baseline.v1"]),
        ([spawn(SpawnPolicy.AllowDescendantsWithinBoundary())], False, ["baseline.v1"]),
        # Both asked: the stricter one wins, whatever the order.
        ([spawn(SpawnPolicy.AllowThreadsWithinBoundary()), spawn(SpawnPolicy.DenyNewTasks())], False, ["spawn.deny_new_tasks.v1", "baseline.v1"]),
    ],
)
def test_every_run_gets_the_baseline_after_its_spawn_and_network_policies(capabilities, deny_network, expected):
    policies = seccomp_policies(capabilities, deny_network)
    assert policies == expected
    assert all(name in seccomp.POLICIES for name in policies)
