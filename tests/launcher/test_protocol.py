"""The real launcher refuses what it must before any child exists: every broken frame, an
h_l mismatch, an unknown primitive, a schedule its target does not imply, a handle of the
wrong shape; and a successful run reports its states in order."""

import os

import msgspec
import pytest

from bvisor.backends.linux import launch
from bvisor.wire import vocabulary
from bvisor.wire.frame import EXIT_FAULTED, EXIT_REFUSED, build_frame, parse_frame
from bvisor.wire.plan import encode_frame
from helpers import FRAME_MANGLES, entry, launcher_path, plan, sh_authority

ARGV = ["sh", "-c", "true"]


def _good_frame() -> bytes:
    return encode_frame(plan(ARGV, False))


def _reframe(body: bytes) -> bytes:
    return build_frame(body)


@pytest.mark.parametrize(("mangle", "reason"), FRAME_MANGLES)
def test_every_frame_rejection(mangle, reason):
    obs = launch.run_launcher_frame(launcher_path(), mangle(_good_frame()), [sh_authority()])
    assert obs.terminal is launch.LauncherState.SetupRefused
    assert launch.LauncherState.ChildCreated not in obs.transcript
    assert any(reason in note for note in obs.notes), obs.notes


def _body_dict(p):
    return msgspec.msgpack.decode(parse_frame(encode_frame(p)))


def test_h_l_mismatch_is_refused_by_the_launcher():
    body = _body_dict(plan(ARGV, False))
    body["h_l"] = bytes(32)
    obs = launch.run_launcher_frame(launcher_path(), _reframe(msgspec.msgpack.encode(body)), [sh_authority()])
    assert obs.terminal is launch.LauncherState.SetupRefused
    assert launch.LauncherState.IdentityVerified not in obs.transcript
    assert any("IdentityMismatch" in n for n in obs.notes), obs.notes


def test_unknown_primitive_is_refused_and_no_child_is_created():
    marker = f"BVISOR-NEVER-RUNS-{os.getpid()}"
    entries = [entry(vocabulary.ID_AMBIENT_SCRUB, 3), entry("linux.teleport.v1", 4), entry(vocabulary.ID_EXEC, 5)]
    obs = launch.run_launcher(
        launcher_path(), plan(["sh", "-c", f"echo {marker}"], False, entries=entries), [sh_authority()]
    )
    assert obs.terminal is launch.LauncherState.SetupRefused
    assert obs.transcript == [
        launch.LauncherState.LauncherStarted,
        launch.LauncherState.IdentityVerified,
        launch.LauncherState.SetupRefused,
    ]
    assert any("MissingPrimitive" in n and "linux.teleport.v1" in n for n in obs.notes), obs.notes
    assert obs.note_fields("mechanism=fork") is None and marker.encode() not in obs.captured_stdout
    assert obs.launcher_exit == EXIT_REFUSED


def test_a_primitive_scheduled_without_its_parameters_is_refused_not_skipped():
    entries = [entry(vocabulary.ID_AMBIENT_SCRUB, 3), entry(vocabulary.ID_SECCOMP_APPLY, 4), entry(vocabulary.ID_EXEC, 5)]
    obs = launch.run_launcher(launcher_path(), plan(ARGV, False, entries=entries), [sh_authority()])
    assert obs.terminal is launch.LauncherState.SetupRefused
    implied = "is not the one its target implies ['linux.ambient.scrub.v1', 'linux.exec.v1']"
    assert any("refusal=PlanInvalid" in n and "linux.seccomp.apply.v1" in n and implied in n for n in obs.notes), obs.notes


def test_primitive_in_the_wrong_phase_is_refused():
    entries = [entry(vocabulary.ID_AMBIENT_SCRUB, 4), entry(vocabulary.ID_EXEC, 5)]
    obs = launch.run_launcher(launcher_path(), plan(ARGV, False, entries=entries), [sh_authority()])
    assert obs.terminal is launch.LauncherState.SetupRefused
    assert any("phase" in n for n in obs.notes), obs.notes


def test_handle_of_the_wrong_shape_is_refused():
    directory = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    obs = launch.run_launcher(launcher_path(), plan(ARGV, False), [launch.AuthorityFd(10, directory)])
    assert obs.terminal is launch.LauncherState.SetupRefused
    assert launch.LauncherState.HandlesVerified not in obs.transcript
    assert any("HandleMismatch" in n and "not a regular" in n for n in obs.notes), obs.notes


def test_missing_handle_is_refused():
    obs = launch.run_launcher(launcher_path(), plan(ARGV, False), [])
    assert obs.terminal is launch.LauncherState.SetupRefused
    assert any("HandleMismatch" in n for n in obs.notes), obs.notes


def test_launcher_without_its_fds_faults_at_boot_and_runs_nothing():
    import subprocess

    done = subprocess.run([str(launcher_path())], capture_output=True, env={}, check=False)
    assert done.returncode == EXIT_FAULTED
    assert b"boot fault" in done.stderr and done.stdout == b""


def test_a_successful_run_reports_states_in_order():
    obs = launch.run_launcher(launcher_path(), plan(["sh", "-c", "exit 7"], False), [sh_authority()])
    assert [s.value for s in obs.transcript] == list(vocabulary.STATES[:11])
    assert obs.workload_exit().code == 7
    assert obs.launcher_exit == 0


# The launcher in a user namespace whose quota of nested user namespaces is 0: the kernel
# then refuses to clone the run's child into new namespaces, as a host that forbids them does.
NO_USERNS_PREFIX = ("unshare", "-Ur", "sh", "-c", 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh")


@pytest.mark.parametrize("deny_network", [True, False])
def test_a_kernel_that_refuses_the_namespaces_faults_at_identity_and_no_workload_runs(deny_network):
    marker = f"BVISOR-NEVER-RUNS-{os.getpid()}"
    obs = launch.run_launcher(
        (*NO_USERNS_PREFIX, str(launcher_path())), plan(["sh", "-c", f"echo {marker}"], deny_network), [sh_authority()]
    )
    if not deny_network:  # control: the same launcher runs a plan that needs no namespace
        assert obs.exec_succeeded() and obs.captured_stdout == f"{marker}\n".encode(), obs.notes
        return
    assert obs.terminal is launch.LauncherState.SetupFaulted
    assert launch.LauncherState.ChildCreated not in obs.transcript, "no child may exist"
    failed = obs.note_fields("child_failed")
    assert failed is not None and failed["step"] == "identity" and int(failed["errno"]) == 28, obs.notes  # ENOSPC
    assert launch.launch_confinement_unavailable(obs)
    assert marker.encode() not in obs.captured_stdout


def test_the_probe_of_a_launcher_that_may_not_make_namespaces_says_so():
    facts = launch.LauncherProbe((*NO_USERNS_PREFIX, str(launcher_path()))).facts()
    assert facts["launcher_probe"] == "ok"
    for name in ("userns_netns", "userns_mount", "userns_pid"):
        assert facts[name].startswith("failed errno=28"), facts
    assert facts["seccomp_filter"] == "ok", "the control: what needs no namespace is still proven"
