"""Tie the workload's life to the coordinator's: if the launcher dies, the workload dies."""

import os
import _signal as signal  # the C module; "signal" wraps it in enums that cost ~7 ms of start-up

from bvisor.launcher import libc

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> str:
    libc.call("prctl", _PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have died before prctl took effect; then nobody would deliver the signal.
    if os.getppid() != parent_pid:
        raise OSError(0, "launcher exited before the workload was tied to it")
    return "lifetime=pdeathsig_sigkill"
