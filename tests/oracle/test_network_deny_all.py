"""NetworkDenyAll — a faithful pytest translation of seed/network_deny_all_linux.rs.

Channel A: the host reads the running workload's /proc/<pid>/net/dev. Channel B: the
workload's own report through its captured stdout. Both run with the launcher as the caller
and as an unprivileged uid. The control runs (test_control_*) show the same probes find the
host's real network without the boundary, so the oracles are not vacuous.
"""

import subprocess
import sys
import threading
import time

import pytest

from bvisor import (
    BackendRegistry,
    BoundaryPlanner,
    BoundaryRunner,
    BoundarySpec,
    BudgetRequirements,
    Capability,
    EnvPolicy,
    EvidenceRequirements,
    HostControl,
    LinuxBackend,
    MinGuarantee,
    NetDest,
    NetPolicy,
    Outcome,
    PlanError,
    StdStreams,
    Workload,
)
from bvisor.backends.linux import launch
from helpers import (
    IDENTITIES,
    host_find_child,
    host_read_child_interfaces,
    launcher_as,
    launcher_path,
    loud_skip,
    plan,
    sh_authority,
    unique_marker,
    unprivileged_userns_available,
)

SELF_REPORT = (
    "ifaces=$(awk 'NR>2 && NF {print $1}' /proc/self/net/dev | wc -l); "
    "printf 'iface_count=%s\\n' \"$ifaces\"; "
    "printf 'iface_names=%s\\n' \"$(awk 'NR>2 && NF {sub(/:.*/,\"\",$1); print $1}' /proc/self/net/dev | sort | tr '\\n' ',')\"; "
    "routes=$(awk 'NR>1 && NF {print}' /proc/self/net/route | wc -l); "
    "printf 'route_count=%s\\n' \"$routes\"; "
    "if [ \"$routes\" -eq 0 ]; then printf 'network=UNREACHABLE\\n'; else printf 'network=REACHABLE\\n'; fi"
)


def _field(stdout: str, key: str):
    for line in stdout.splitlines():
        if line.startswith(key + "="):
            return line[len(key) + 1 :].strip()
    return None


@pytest.mark.parametrize("identity", IDENTITIES)
def test_host_sees_only_loopback_in_the_child_netns_no_external_interface_or_skip(identity):
    if not unprivileged_userns_available():
        loud_skip(
            "NetworkDenyAll host-side oracle: this host forbids unprivileged user+network namespaces "
            "(sysctl) — the empty-netns cell is FAIL_CLOSED here, never a silent pass"
        )
    marker = unique_marker("BVISOR-NET-MARKER")
    argv = ["sh", "-c", f": {marker}; sleep 3; true"]
    deadline = time.monotonic() + 2.5
    result = {}
    driver = threading.Thread(
        target=lambda: result.update(obs=launch.run_launcher(launcher_as(identity), plan(argv, True, identity=identity), [sh_authority()])),
        name="net-oracle-launcher",
    )
    driver.start()
    host_ifaces = None
    pid = host_find_child(marker, deadline)
    if pid is not None:
        while time.monotonic() < deadline:
            host_ifaces = host_read_child_interfaces(pid)
            if host_ifaces is not None:
                break
            time.sleep(0.01)
    driver.join()
    obs = result["obs"]
    if launch.launch_confinement_unavailable(obs):
        loud_skip("kernel/container lacks userns (the launcher faulted before exec)")
    print(f"NetworkDenyAll host-side: child interfaces={host_ifaces}; transcript={obs.transcript} notes={obs.notes}", file=sys.stderr)
    failures = []
    if not obs.exec_succeeded():
        failures.append(f"the workload must run to ExecSucceeded inside the empty netns; terminal={obs.terminal} notes={obs.notes}")
    if not any("empty_netns" in n for n in obs.notes):
        failures.append(f"the launcher must attest the empty_netns mechanism; notes={obs.notes}")
    if host_ifaces is None:
        failures.append("CHANNEL A: the host must observe the child's /proc/<pid>/net/dev while it is alive")
    elif host_ifaces != ["lo"]:
        failures.append(f"CHANNEL A: the child netns must contain ONLY loopback `lo`; got {host_ifaces}")
    assert not failures, f"NetworkDenyAll host-side oracle failures: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_workload_cannot_reach_the_network_from_the_empty_netns_or_skip(identity):
    if not unprivileged_userns_available():
        loud_skip("NetworkDenyAll workload self-report: this host forbids unprivileged user+network namespaces")
    obs = launch.run_launcher(launcher_as(identity), plan(["sh", "-c", SELF_REPORT], True, identity=identity), [sh_authority()])
    if launch.launch_confinement_unavailable(obs):
        loud_skip("kernel/container lacks userns (the launcher faulted before exec)")
    stdout = obs.captured_stdout.decode()
    print(f"NetworkDenyAll workload self-report stdout:\n{stdout}\ntranscript={obs.transcript}", file=sys.stderr)
    failures = []
    if not obs.exec_succeeded():
        failures.append(f"the self-report workload must run to ExecSucceeded; terminal={obs.terminal}")
    if _field(stdout, "iface_count") != "1":
        failures.append(f"workload must see exactly 1 interface (lo), got {_field(stdout, 'iface_count')!r}")
    if _field(stdout, "iface_names") != "lo,":
        failures.append(f"workload's only interface must be `lo`, got {_field(stdout, 'iface_names')!r}")
    if _field(stdout, "route_count") != "0":
        failures.append(f"workload must have ZERO routes, got {_field(stdout, 'route_count')!r}")
    if _field(stdout, "network") != "UNREACHABLE":
        failures.append(f"workload must report network=UNREACHABLE, got {_field(stdout, 'network')!r}")
    assert not failures, f"NetworkDenyAll workload-self-report failures: {failures}"


def test_control_without_the_boundary_the_same_probe_sees_the_host_network():
    """Control: the same self-report, launched with no namespace, sees this host's network.

    Hosts differ (a container may have only lo and no route), so the control compares with
    what the host itself reports rather than with a fixed answer; it fails only if the host
    has an external interface or a route the unconfined workload did not see."""
    host = subprocess.run(["sh", "-c", SELF_REPORT], capture_output=True, text=True, check=True).stdout
    obs = launch.run_launcher(launcher_path(), plan(["sh", "-c", SELF_REPORT], False), [sh_authority()])
    assert obs.exec_succeeded(), obs.notes
    unconfined = obs.captured_stdout.decode()
    assert unconfined == host
    if _field(host, "network") != "REACHABLE" or _field(host, "iface_names") == "lo,":
        loud_skip("control: this host itself has no external interface or route, so the attack has nothing to reach")
    assert _field(unconfined, "network") == "REACHABLE"


def net_spec(policy) -> BoundarySpec:
    return BoundarySpec(
        workload=Workload.Process(
            exe="/bin/sh",
            args=["-c", "awk 'NR>2 && NF {print $1}' /proc/self/net/dev | wc -l; exit 0"],
        ),
        capabilities=[
            Capability.Network(policy=policy),
            Capability.Environment(policy=EnvPolicy.Exact([])),
        ],
        controls=[
            HostControl.LaunchWorkload(),
            HostControl.CaptureStreams(streams=StdStreams.capture_out_err()),
        ],
        budgets=BudgetRequirements.uniform(8, MinGuarantee.Mediated),
        evidence=EvidenceRequirements(),
    )


def run_execute(spec: BoundarySpec, launcher=None):
    backend = LinuxBackend(launcher or launcher_path())
    backend_id = backend.id()
    registry = BackendRegistry()
    registry.register(backend)
    try:
        admitted = BoundaryPlanner(registry).plan(spec, backend_id)
    except PlanError:
        return None
    return BoundaryRunner(registry).run(admitted).body


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_deny_all_spec_runs_through_the_execute_path_or_skip(identity):
    if not unprivileged_userns_available():
        refused = run_execute(net_spec(NetPolicy.DenyAll()), launcher_as(identity))
        assert refused is None, (
            "FAIL_CLOSED: with no unprivileged userns+netns, a NetworkDenyAll spec must REFUSE at admission; "
            f"got {refused}"
        )
        loud_skip("NetworkDenyAll execute-path positive: no unprivileged userns+netns; the fail-closed refusal was asserted instead")
    report = run_execute(net_spec(NetPolicy.DenyAll()), launcher_as(identity))
    assert report is not None, "a NetworkDenyAll spec must ADMIT (the cell is Enforced on this host)"
    if any(f.kind == launch.CONFINEMENT_UNAVAILABLE_FACT for f in report.observed):
        loud_skip("kernel/container lacks userns; confinement cannot install here")
    failures = []
    if report.outcome != Outcome.Completed:
        failures.append(f"the DenyAll workload must run to Completed: {report.outcome} / {report.observed}")
    if not any(f.kind == "network_lowered" for f in report.observed):
        failures.append(f"the execute() path must record the network lowering: {report.observed}")
    if not any(f.kind == "stream_captured" for f in report.observed):
        failures.append(f"the execute() path must capture the workload's streams: {report.observed}")
    assert not failures, f"NetworkDenyAll execute()-path witness failures: {failures}"


def test_network_allow_list_fails_closed_at_admission_the_target_never_runs():
    report = run_execute(net_spec(NetPolicy.AllowList([NetDest(host="example", port=443)])))
    assert report is None, (
        "a NetworkAllowList spec must FAIL CLOSED at admission (the cell is Unsupported — no broker) — "
        f"the target never runs; got a sealed report {report}"
    )
