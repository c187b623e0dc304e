"""The Linux backend's pure parts: the ceiling as a function of probed facts, and the judge
that turns a launcher observation into an outcome — including the honesty faults. A fact
forced to fail on the live probe is tests/launcher/test_linux_backend_probes.py."""

import msgspec
import pytest

from bvisor.backends.linux.ceiling import linux_ceiling
from bvisor.backends.linux.facts import parse_facts
from bvisor.backends.linux.launch import LaunchObservation, state_arrivals
from bvisor.backends.linux.lowering import LoweredLaunch
from bvisor.backends.linux.verdict import judge, required_attestations, timeline_fact
from bvisor.capture import StreamCapture
from bvisor.contract import Enforcement, Outcome, RequirementKind
from bvisor.wire.plan import LauncherState, LinuxLaunchPlanV1, NetworkNsRequest, UnixGateRequest
from helpers import plan

PROVEN = {
    "launcher.launcher_probe": "ok",
    "launcher.launcher_euid": "1000",
    "launcher.userns_netns": "ok",
    "launcher.userns_isolation": "ok",
    "launcher.unix_gate": "ok",
    "sysctl.user.max_user_namespaces": "1000",
}


def _cells(facts):
    return {cell.kind: cell for cell in linux_ceiling(parse_facts(facts))}


def test_every_requirement_kind_has_a_cell_and_every_unsupported_cell_says_why():
    for facts in (PROVEN, {**PROVEN, "launcher.userns_netns": "failed errno=1"}, {"launcher.launcher_probe": "failed"}):
        cells = _cells(facts)
        assert set(cells) == set(RequirementKind)
        for cell in cells.values():
            if cell.verdict.enforcement is not Enforcement.Enforced:
                assert cell.reason and cell.remediation


def test_deny_all_is_enforced_only_where_the_namespace_probe_passed():
    assert _cells(PROVEN)[RequirementKind.NetworkDenyAll].verdict.enforcement is Enforcement.Enforced
    failed = _cells({**PROVEN, "launcher.userns_netns": "failed errno=1 Operation not permitted"})
    cell = failed[RequirementKind.NetworkDenyAll]
    assert cell.verdict.enforcement is Enforcement.Unsupported
    assert "Operation not permitted" in cell.reason and "max_user_namespaces" in cell.remediation


def test_deny_all_is_refused_without_the_unix_socket_gate_and_says_why():
    assert _cells(PROVEN)[RequirementKind.NetworkDenyAll].mechanism == "empty_netns+unix_gate:seccomp_user_notif"
    cell = _cells({**PROVEN, "launcher.unix_gate": "failed errno=1 no listener"})[RequirementKind.NetworkDenyAll]
    assert cell.verdict.enforcement is Enforcement.Unsupported
    assert "unix sockets" in cell.reason and "no listener" in cell.reason and "seccomp user notification" in cell.remediation


def test_a_launcher_that_cannot_probe_enforces_nothing():
    cells = _cells({"launcher.launcher_probe": "failed exit=1"})
    assert all(c.verdict.enforcement is Enforcement.Unsupported for c in cells.values())


def test_a_root_launcher_launches_only_where_a_transient_identity_was_proven():
    """The workload is never host root: a root launcher whose transient-identity proof failed
    refuses every launch at plan time; with the proof, or rootless, it launches."""
    failed = {**PROVEN, "launcher.launcher_euid": "0", "launcher.userns_transient": "failed errno=22 idmapped mount: Invalid argument"}
    cell = _cells(failed)[RequirementKind.LaunchWorkload]
    assert cell.verdict.enforcement is Enforcement.Unsupported
    assert "host root" in cell.reason and "Invalid argument" in cell.reason and "unprivileged user" in cell.remediation
    assert _cells({**failed, "launcher.userns_transient": "ok"})[RequirementKind.LaunchWorkload].verdict.enforcement is Enforcement.Enforced
    rootless = {**failed, "launcher.launcher_euid": "1000", "launcher.userns_transient": "not_root"}
    assert _cells(rootless)[RequirementKind.LaunchWorkload].verdict.enforcement is Enforcement.Enforced


def test_a_host_without_the_runs_ipc_uts_and_cgroup_namespaces_launches_nothing():
    cell = _cells({**PROVEN, "launcher.userns_isolation": "failed errno=22 clone: Invalid argument"})[RequirementKind.LaunchWorkload]
    assert cell.verdict.enforcement is Enforcement.Unsupported and "IPC, UTS and cgroup" in cell.reason


def test_a_kind_no_version_implements_names_the_spec_edit_that_runs_without_it():
    cells = _cells(PROVEN)
    named = {
        RequirementKind.InheritedFdsOnly: 'inherited_fds capability\'s policy to { kind = "none" }',
        RequirementKind.CommitArtifact: '{ kind = "commit_artifact" } entry from controls',
        RequirementKind.DiscardArtifact: '{ kind = "discard_artifact" } entry from controls',
        RequirementKind.ListOutputs: '{ kind = "list_outputs" } entry from controls',
        RequirementKind.NetworkAllowList: "--net none (network policy deny_all)",
    }
    for kind, edit in named.items():
        assert cells[kind].verdict.enforcement is Enforcement.Unsupported and edit in cells[kind].remediation, cells[kind]


def test_allow_list_is_never_enforced():
    assert _cells(PROVEN)[RequirementKind.NetworkAllowList].verdict.enforcement is Enforcement.Unsupported


def _observation(terminal, notes):
    transcript = [LauncherState.LauncherStarted] + ([terminal] if terminal else [])
    return LaunchObservation(terminal, transcript, notes, 0, StreamCapture("stdout", 10), StreamCapture("stderr", 10), [])


def _lowered(deny_network):
    return LoweredLaunch(plan=None, authorities=[], facts=[], deny_network=deny_network)


ATTESTED = [
    "launcher_lifetime=pdeathsig_sigkill",
    "fd_scrub kept=0,1,2 closed=3",
    "environment=exact entries=0 inherited=none",
    "no_new_privs=1",
    "capabilities=none bounding=empty securebits=locked",
    "controlling_terminal=none detached=yes",
    "user_namespace=mapped uid0=0 gid0=0 setgroups=deny",
    "network_namespace=empty_netns interfaces=lo routes=0",
    "workload_exit code=0",
]


def test_an_attested_run_completes_with_the_real_exit_code():
    outcome, status, _ = judge(_observation(LauncherState.ExecSucceeded, ATTESTED), _lowered(True))
    assert outcome is Outcome.Completed and status.code == 0
    notes = ATTESTED[:-1] + ["workload_exit signal=15"]
    outcome, status, _ = judge(_observation(LauncherState.ExecSucceeded, notes), _lowered(True))
    assert outcome is Outcome.Failed and status.signal == 15


@pytest.mark.parametrize(
    "dropped",
    [
        "fd_scrub",
        "environment=exact",
        "no_new_privs=1",
        "capabilities=none",
        "controlling_terminal=none",
        "user_namespace=mapped",
        "network_namespace=empty_netns",
    ],
)
def test_a_missing_attestation_is_a_supervisor_fault_never_a_pass(dropped):
    notes = [n for n in ATTESTED if not n.startswith(dropped)]
    outcome, status, facts = judge(_observation(LauncherState.ExecSucceeded, notes), _lowered(True))
    assert outcome is Outcome.SupervisorFault and status is None
    assert facts[0].kind == "confinement_not_attested" and dropped in facts[0].detail


def test_a_gated_plan_requires_the_inits_gate_note():
    body = plan(["true"], True, identity="unprivileged").body
    target = msgspec.structs.replace(body.target, network_namespace=NetworkNsRequest(unix_gate=UnixGateRequest()))
    gated = LinuxLaunchPlanV1(body=msgspec.structs.replace(body, target=target))
    lowered = LoweredLaunch(plan=gated, authorities=[], facts=[], deny_network=True)
    assert "unix_gate=seccomp_user_notif supervisor=init" in required_attestations(lowered)
    outcome, _, facts = judge(_observation(LauncherState.ExecSucceeded, ATTESTED), lowered)
    assert outcome is Outcome.SupervisorFault and "unix_gate=seccomp_user_notif" in facts[0].detail
    notes = ATTESTED + ["unix_gate=seccomp_user_notif supervisor=init own_sockets=temp_root"]
    assert judge(_observation(LauncherState.ExecSucceeded, notes), lowered)[0] is Outcome.Completed


def test_network_attestations_are_required_only_when_deny_all_was_lowered():
    assert "network_namespace=empty_netns" not in required_attestations(_lowered(False))
    outcome, _, _ = judge(_observation(LauncherState.ExecSucceeded, ATTESTED[:6] + ATTESTED[-1:]), _lowered(False))
    assert outcome is Outcome.Completed


@pytest.mark.parametrize(
    ("terminal", "notes", "expected", "fact"),
    [
        (LauncherState.SetupRefused, ["refusal=MissingPrimitive x"], Outcome.Unsupported, None),
        (LauncherState.SetupFaulted, ["child_failed step=exec errno=2 detail=x"], Outcome.Failed, "exe_not_found"),
        (LauncherState.SetupFaulted, ["child_failed step=exec errno=13 detail=x"], Outcome.Failed, "exe_not_executable"),
        (LauncherState.SetupFaulted, ["child_failed step=exec errno=7 detail=x"], Outcome.Failed, "exec_arguments_too_long"),
        (LauncherState.SetupFaulted, ["child_failed step=identity errno=1 detail=x"], Outcome.Unsupported, "confinement_unavailable"),
        (LauncherState.SetupFaulted, ["child_failed step=visibility errno=2 detail=mountpoint /x does not exist"], Outcome.Unsupported, "mountpoint_missing"),
        (LauncherState.SetupFaulted, ["child_failed step=visibility errno=1 detail=x"], Outcome.SupervisorFault, None),
        (LauncherState.SetupFaulted, ["fault: internal"], Outcome.SupervisorFault, None),
        (None, [], Outcome.SupervisorFault, None),
    ],
)
def test_launcher_verdicts_map_to_outcomes(terminal, notes, expected, fact):
    outcome, status, facts = judge(_observation(terminal, notes), _lowered(False))
    assert outcome is expected and status is None
    assert [f.kind for f in facts] == ([fact] if fact else [])


def test_each_state_is_timed_by_the_chunk_that_completed_its_line():
    """Two lines in one chunk share its arrival; a line split across chunks is timed by the
    chunk holding its end; notes are not states and get no mark."""
    control = b"LauncherStarted\n# a note\nIdentityVerified\nPlanVer" + b"ified\n"
    arrivals = [(16, 100), (43, 200), (len(control), 300)]  # bytes received so far, ns
    assert state_arrivals(control, arrivals) == [("LauncherStarted", 100), ("IdentityVerified", 200), ("PlanVerified", 300)]


def test_the_timeline_fact_counts_from_the_start_of_the_run():
    obs = _observation(LauncherState.ExecSucceeded, [])
    obs.timeline = (("LauncherStarted", 3_500_000), ("launcher_exited", 21_000_000))
    assert timeline_fact(obs, 1_000_000).detail == "LauncherStarted=2.50ms launcher_exited=20.00ms"
