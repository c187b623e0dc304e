"""Who may attach to a launcher process: ptrace, pidfd_getfd, /proc/<pid>/mem.

The coordinator holds the control channel, the run's authorities and the mapping pipe. A
workload of the same uid, without a user namespace or a landlock domain between them (a host
where neither can be made), could otherwise take any of them with pidfd_getfd, which the
kernel allows a same-uid, capability-less caller on a dumpable process where Yama is lenient.
A process that is not dumpable is attachable only with CAP_SYS_PTRACE.
"""

from bvisor.launcher import libc

_PR_SET_DUMPABLE = 4


def refuse_attach() -> str:
    """This process (the coordinator): no same-uid process may attach to it."""
    libc.call("prctl", _PR_SET_DUMPABLE, 0, 0, 0, 0)
    return "launcher_attach=refused dumpable=0"


def allow_own_proc() -> None:
    """The run's child, first thing: dumpable again (it inherits the flag), as any process
    is, so that it may write its own /proc/self/uid_map; its exec resets the flag anyway."""
    libc.call("prctl", _PR_SET_DUMPABLE, 1, 0, 0, 0)
