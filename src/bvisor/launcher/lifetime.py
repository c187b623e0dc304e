"""Tie each launcher process's life to its parent's: if the launcher dies, the run dies."""

import _signal as signal  # the C module; "signal" wraps it in enums that cost ~7 ms of start-up
import os
import select

from bvisor.launcher import libc
from bvisor.wire import attest

_PR_SET_PDEATHSIG = 1


def _sigkill_on_parent_death() -> None:
    libc.call("prctl", _PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def die_with_parent(parent_pid: int, attestation: str = "lifetime=pdeathsig_sigkill") -> str:
    _sigkill_on_parent_death()
    # The parent may have died before prctl took effect; then nobody would deliver the signal.
    if os.getppid() != parent_pid:
        raise OSError(0, f"parent {parent_pid} exited before this process was tied to it")
    return attestation


def lifeline() -> tuple:
    """A pipe whose write end only the parent holds: EOF on the read end means it died."""
    return os.pipe2(os.O_CLOEXEC)


def die_with_lifeline(read_fd: int) -> str:
    """``die_with_parent`` for a child whose parent is outside its pid namespace (getppid()
    reads 0 there): after prctl, a hung-up lifeline proves the parent died first."""
    _sigkill_on_parent_death()
    readable, _, _ = select.select([read_fd], [], [], 0)
    os.close(read_fd)
    if readable:
        raise OSError(0, "the launcher exited before the init was tied to it")
    return attest.INIT_LIFETIME
