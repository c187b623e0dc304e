"""The probe's strings become typed facts in one place, and whatever the parser does not
know fails closed: into a weaker host, never a stronger one, and never a crash."""

import pytest

from bvisor.backends.linux.budgets import linux_budget_profile
from bvisor.backends.linux.ceiling import CEILING, linux_ceiling, mechanism_name
from bvisor.backends.linux.facts import CgroupVersion, Proof, TreeKill, parse_facts
from bvisor.contract import Enforcement, RequirementKind

K = RequirementKind

# A capable host as its probe writes it (every value a string).
PROBED = {
    "launcher.launcher_probe": "ok",
    "launcher.launcher_euid": "1000",
    "launcher.landlock_abi": "7",
    "launcher.landlock_restrict": "ok",
    "launcher.seccomp_filter": "ok",
    "launcher.unix_gate": "ok",
    "launcher.userns_netns": "ok",
    "launcher.userns_mount": "ok",
    "launcher.userns_pid": "ok",
    "launcher.userns_isolation": "ok",
    "launcher.userns_transient": "not_root",
    "sysctl.user.max_user_namespaces": "96362",
    "cgroup.kill": "cgroup.kill",
    "cgroup.pids": "v1",
    "cgroup.memory": "v2",
    "cgroup.cpu": "unavailable: EACCES",
    "fs.system_roots": "/usr,/bin,/etc",
}


def _enforcement(facts, kind):
    return {cell.kind: cell for cell in linux_ceiling(parse_facts(facts))}[kind].verdict.enforcement


def test_the_probes_strings_parse_into_typed_facts():
    facts = parse_facts(PROBED)
    assert facts.launcher_euid == 1000 and not facts.launcher_is_root
    assert facts.landlock_abi == 7 and facts.max_user_namespaces == 96362
    assert facts.userns_netns == Proof(ok=True, said="ok")
    assert facts.userns_transient == Proof(ok=False, said="not_root")
    assert (facts.cgroup_kill, facts.cgroup_pids, facts.cgroup_memory, facts.cgroup_cpu) == (TreeKill.CgroupKill, CgroupVersion.V1, CgroupVersion.V2, None)
    assert facts.system_roots == ("/usr", "/bin", "/etc")


@pytest.mark.parametrize("said", ["OK", "ok ", " ok", "", "okay", "failed errno=1 Operation not permitted"])
def test_a_proof_holds_only_where_the_probe_said_exactly_ok(said):
    facts = parse_facts({**PROBED, "launcher.seccomp_filter": said})
    assert facts.seccomp_filter == Proof(ok=False, said=said)
    assert _enforcement({**PROBED, "launcher.seccomp_filter": said}, K.ChildSpawnDenyNewTasks) is Enforcement.Unsupported


def test_a_missing_proof_is_not_proven_and_says_so():
    missing = {name: value for name, value in PROBED.items() if name != "launcher.userns_mount"}
    assert parse_facts(missing).userns_mount == Proof(ok=False, said="not probed")
    cell = {cell.kind: cell for cell in linux_ceiling(parse_facts(missing))}[K.TempRoot]
    assert cell.verdict.enforcement is Enforcement.Unsupported and "(not probed)" in cell.reason


@pytest.mark.parametrize("abi", ["", "seven", "-3", "3.5", "٣", "999999999999999999999x"])
def test_a_malformed_landlock_abi_is_abi_0_and_confines_no_filesystem(abi):
    facts = {**PROBED, "launcher.landlock_abi": abi}
    assert parse_facts(facts).landlock_abi == 0
    assert _enforcement(facts, K.Filesystem) is Enforcement.Unsupported


@pytest.mark.parametrize("euid", [None, "", "root", "-1", "1000 ", "0x3e8"])
def test_a_launcher_whose_euid_is_unknown_is_taken_for_root(euid):
    """A root launcher needs the transient identity, or the workload would be host root."""
    facts = {name: value for name, value in PROBED.items() if name != "launcher.launcher_euid"}
    if euid is not None:
        facts["launcher.launcher_euid"] = euid
    assert parse_facts(facts).launcher_is_root
    assert _enforcement(facts, K.LaunchWorkload) is Enforcement.Unsupported
    assert _enforcement({**facts, "launcher.userns_transient": "ok"}, K.LaunchWorkload) is Enforcement.Enforced


@pytest.mark.parametrize("value", ["V1", "v3", "cgroup.kill", "", "unavailable: EACCES"])
def test_an_unknown_cgroup_controller_caps_nothing(value):
    facts = {**PROBED, "cgroup.pids": value, "cgroup.memory": value}
    assert parse_facts(facts).cgroup_pids is None
    profile = linux_budget_profile(parse_facts(facts))
    assert profile.process_count.enforcement is Enforcement.Mediated and profile.resident_memory.enforcement is Enforcement.Mediated


def test_an_unknown_tree_kill_falls_back_to_the_pid_namespace_init():
    facts = parse_facts({**PROBED, "cgroup.kill": "Cgroup.Kill"})
    assert facts.cgroup_kill is None and facts.cgroup_kill_said == "Cgroup.Kill"
    assert linux_budget_profile(facts).wall.mechanism == "supervisor_deadline+pid_namespace_init"


def test_every_enforced_cell_is_named_after_its_rows_mechanism():
    """A plan names the mechanism ``mechanism_name`` gives; the host's cell adds only how this
    host provides it (a fresh root, the tree's kill), so the two never name different things."""
    for cell in linux_ceiling(parse_facts(PROBED)):
        if cell.verdict.enforcement is Enforcement.Enforced:
            assert mechanism_name(cell.kind) in cell.mechanism, cell
        else:
            assert cell.mechanism == "none", cell
    assert mechanism_name(K.NetworkAllowList) == "none" and K.NetworkAllowList not in CEILING
