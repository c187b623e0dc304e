"""The Linux backend on its live probe, with one proven fact forced to fail (a weaker host,
simulated through ``fact_overrides``): the planner refuses the plan this host would admit,
and the snapshot says the fact was forced. The ceiling as a pure function of facts is
tests/unit/test_linux_backend.py."""

import pytest

from bvisor import LinuxBackend
from bvisor.contract import RequirementKind, UnsupportedRequirement
from helpers import deny_all_spec, launcher_path, planned


def _forced_to_fail(fact: str) -> LinuxBackend:
    """This host's backend, with the probe's ``fact`` replaced by a failure."""
    return LinuxBackend(launcher_path(), fact_overrides={fact: "failed forced-by-test"})


def test_forcing_the_gate_probe_makes_a_deny_all_plan_refuse():
    with pytest.raises(UnsupportedRequirement) as refused:
        planned(_forced_to_fail("launcher.unix_gate"), deny_all_spec())
    assert refused.value.requirement == RequirementKind.NetworkDenyAll.value


def test_forcing_the_transient_identity_proof_to_fail_refuses_a_root_plan_at_admission():
    backend = _forced_to_fail("launcher.userns_transient")
    if backend.probe().fact("launcher.launcher_euid") != "0":
        planned(backend, deny_all_spec())  # rootless: the caller's own identity, admitted
        return
    with pytest.raises(UnsupportedRequirement) as refused:
        planned(backend, deny_all_spec())
    assert refused.value.requirement == RequirementKind.LaunchWorkload.value and "host root" in str(refused.value)


def test_forcing_the_probe_makes_a_deny_all_plan_refuse_and_the_snapshot_says_so():
    backend = _forced_to_fail("launcher.userns_netns")
    with pytest.raises(UnsupportedRequirement) as refused:
        planned(backend, deny_all_spec())
    assert refused.value.requirement == RequirementKind.NetworkDenyAll.value
    assert backend.probe().fact("override.launcher.userns_netns") == "forced"
