"""The Linux verdict: how a run ended, judged from what the launcher reported, and the facts
the report restates from its notes.

A run counts as confined only when the launcher attested every mechanism its plan asked for
(``required_attestations``); anything short of that is a fault, never a pass.
"""

import errno
import os

from bvisor.backends.linux.launch import (
    CONFINEMENT_UNAVAILABLE_FACT,
    LaunchObservation,
    launch_confinement_unavailable,
)
from bvisor.backends.linux.lowering import LoweredLaunch
from bvisor.contract import ExitStatus, ObservedFact, Outcome
from bvisor.mechanism.seccomp import UNIX_GATE_MECHANISM
from bvisor.wire import attest
from bvisor.wire.frame import CONTROL_ESCAPES
from bvisor.wire.plan import LauncherState


def timeline_fact(obs: LaunchObservation, clock: int) -> ObservedFact:
    """When the host saw each launcher state, in ms since the run began (leaf and lowering
    included): an operator's answer to where a slow run's time went."""
    steps = " ".join(f"{name}={(ns - clock) / 1e6:.2f}ms" for name, ns in obs.timeline)
    return ObservedFact(kind="launch_timeline", detail=steps)


def observation_facts(obs: LaunchObservation) -> list:
    terminal = obs.terminal.value if obs.terminal else "none"
    facts = [ObservedFact(kind="launcher_terminal", detail=f"{terminal} launcher_exit={obs.launcher_exit}")]
    if obs.stdin:
        facts.append(ObservedFact(kind="stdin", detail=obs.stdin))
    facts += [ObservedFact(kind="launcher_note", detail=note) for note in obs.notes]
    # What the launcher attests it installed, restated as facts of their own.
    facts += [ObservedFact(kind="mount_made", detail=n) for n in obs.notes if n.startswith(("temp_root=", "bind dest="))]
    if obs.note_fields("landlock=restricted installed=true") is not None:
        facts += [ObservedFact(kind="landlock_installed", detail=n) for n in obs.notes if n.startswith("landlock abi=")]
    if obs.held_open:
        facts.append(ObservedFact(kind="stream_held_open", detail=f"{obs.held_open} still open after the launcher exited"))
    return facts


def _child_failure_detail(obs: LaunchObservation) -> str:
    note = next((n for n in obs.notes if n.startswith("child_failed ")), "")
    return note.partition(" detail=")[2] or note


_EXEC_ERRNO_FACT = {errno.ENOENT: "exe_not_found", errno.ENOTDIR: "exe_not_found", errno.E2BIG: "exec_arguments_too_long"}


def required_attestations(lowered: LoweredLaunch) -> list:
    """The launcher notes that must be present before a run may count as confined (each made
    by ``wire.attest``, which the launcher writes them with)."""
    notes = [attest.LAUNCHER_LIFETIME, attest.NO_CONTROLLING_TERMINAL]
    notes += [attest.FD_SCRUB, attest.ENVIRONMENT, attest.NO_NEW_PRIVS, attest.CAPABILITIES]
    if lowered.deny_network:
        notes += [attest.USER_NAMESPACE, attest.NETWORK_NAMESPACE]
    if lowered.plan is None:
        return notes
    target = lowered.plan.body.target
    outside_id = target.user_namespace.outside_id if target.user_namespace is not None else None
    if outside_id is not None:
        notes.append(attest.user_namespace(outside_id))
    if target.ipc_namespace is not None:
        notes.append(attest.IPC_NAMESPACE)
    if target.uts_namespace is not None:
        notes.append(attest.uts_namespace(target.uts_namespace.hostname))
    if target.cgroup_namespace is not None:
        notes.append(attest.CGROUP_NAMESPACE)
    notes += [attest.view_root(m.dest, True, True) for m in target.idmapped_mounts or []]
    if target.view is not None:
        notes.append(attest.view(target.view.host_tree))
        notes.append(attest.view_devices(target.terminal is not None))
        if target.view.exe is not None:
            notes.append(attest.view_exe(target.view.exe))
    if target.mount_namespace is not None:
        notes += [attest.USER_NAMESPACE, attest.MOUNT_NAMESPACE]
    if target.temp_root is not None:
        root = target.temp_root
        notes.append(attest.temp_root(root.path, root.size_bytes, root.max_inodes))
    notes += [attest.bind(bind.dest) for bind in target.binds or []]
    if target.landlock is not None:
        notes.append(attest.LANDLOCK)
    if target.pid_namespace is not None:
        notes += [attest.PID_NAMESPACE, attest.INIT_LIFETIME]
    if target.cgroup is not None:
        notes.append(attest.CGROUP_PLACED)
    if target.rlimits:
        notes.append(attest.RLIMITS)
    if target.landlock_scope is not None:
        notes.append(attest.LANDLOCK_SCOPE)
    if target.network_namespace is not None and target.network_namespace.unix_gate is not None:
        notes.append(attest.unix_gate(UNIX_GATE_MECHANISM))
    if target.terminal is not None:
        notes.append(attest.RUN_TERMINAL)
        if target.view is not None:
            notes.append(attest.TERMINAL_NODE)
    if target.seccomp is not None:
        notes.append(attest.seccomp(target.seccomp.policies, target.seccomp.program_digest.hex()))
    return notes


def judge(obs: LaunchObservation, lowered: LoweredLaunch):
    """Map the launcher's verdict to (outcome, exit status, extra facts). Pure."""
    if obs.terminal is LauncherState.ExecSucceeded:
        # Admitted Enforced but not attested by the launcher: an honesty fault, not a pass.
        # As the launcher wrote them: a path or hostname in a note is escaped on the channel.
        missing = [note for note in required_attestations(lowered) if obs.note_fields(note.translate(CONTROL_ESCAPES)) is None]
        if missing:
            return Outcome.SupervisorFault, None, [ObservedFact(kind="confinement_not_attested", detail=" ".join(missing))]
        status = obs.workload_exit()
        if status is None:
            return Outcome.SupervisorFault, None, [ObservedFact(kind="workload_exit_unknown", detail="no exit status")]
        exit_status = ExitStatus(code=status.code, signal=status.signal)
        return (Outcome.Completed if status.code == 0 else Outcome.Failed), exit_status, []
    if obs.terminal is LauncherState.SetupRefused:
        return Outcome.Unsupported, None, []
    failed = obs.note_fields("child_failed") or {}
    if obs.terminal is LauncherState.SetupFaulted and failed.get("step") == "exec":
        code = int(failed.get("errno", "0"))
        fact = _EXEC_ERRNO_FACT.get(code, "exe_not_executable")
        # ENOENT from an exec of a host-opened fd: its interpreter or loader is not in the view.
        detail = f"exec failed: {os.strerror(code)}" + (" (the exe's interpreter or loader is not in the run's root)" if code == errno.ENOENT else "")
        return Outcome.Failed, None, [ObservedFact(kind=fact, detail=detail)]
    if obs.terminal is LauncherState.SetupFaulted and failed.get("step") == "cwd":
        # The spec's workload.cwd is not a directory of the run's view: the caller's to fix.
        return Outcome.Failed, None, [ObservedFact(kind="cwd_missing", detail=f"workload.cwd {lowered.plan.body.target.view.cwd}: {_child_failure_detail(obs)}")]
    if obs.terminal is LauncherState.SetupFaulted and failed.get("step") == "visibility" and failed.get("errno") == str(errno.ENOENT):
        # The spec names a mountpoint this host does not have: the caller's to fix, not a fault.
        return Outcome.Unsupported, None, [ObservedFact(kind="mountpoint_missing", detail=_child_failure_detail(obs))]
    if launch_confinement_unavailable(obs):
        detail = f"step={failed.get('step')} errno={failed.get('errno')}"
        return Outcome.Unsupported, None, [ObservedFact(kind=CONFINEMENT_UNAVAILABLE_FACT, detail=detail)]
    return Outcome.SupervisorFault, None, []
