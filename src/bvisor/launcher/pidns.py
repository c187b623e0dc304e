"""Pid namespace: the run tree under a minimal init that dies with the run.

The launcher clones its child into CLONE_NEWPID with the other namespaces, so that child is
pid 1 of the new namespace. That init reaps every orphan, relays the workload's own exit
status, and exits as soon as the workload does: the kernel then SIGKILLs every process left
in the namespace (a daemonised grandchild included) before the init's parent can reap it.
From inside, no host process has a pid, so none can be signalled.
"""

import os

CLONE_NEWPID = 0x20000000


def reap_until(workload: int):
    """Reap children until ``workload`` exits; return its ``(wait status, rusage)``.

    Orphans re-parented to this init are reaped as they come, so none lingers as a zombie
    holding a pids.max slot.
    """
    while True:
        pid, status, usage = os.wait4(-1, 0)
        if pid == workload:
            return status, usage


def reap_ready(workload: int):
    """Reap every child that has already ended, without waiting: the workload's ``(wait
    status, rusage)`` once it has ended, else None. For an init that waits on more than its
    children (the unix socket gate's supervisor)."""
    while True:
        pid, status, usage = os.wait4(-1, os.WNOHANG)
        if pid == 0:
            return None
        if pid == workload:
            return status, usage


def describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal={os.WTERMSIG(status)}"
    return f"code={os.WEXITSTATUS(status)}"
