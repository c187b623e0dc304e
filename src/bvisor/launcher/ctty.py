"""The caller's controlling terminal, out of the run's reach.

A workload that shares the caller's controlling terminal opens it as ``/dev/tty`` whatever
its stdio is, and can then change the caller's terminal settings. The run's process gives
it up (``TIOCNOTTY``) before anything else, so ``/dev/tty`` fails with ENXIO in the run;
it stays in the caller's process group, so a terminal Ctrl-C still reaches the workload.
"""

import fcntl
import os
import termios


def controlling_tty() -> int:
    """This process's controlling terminal device number (0: none), from /proc/self/stat."""
    with open("/proc/self/stat", "rb") as f:
        after_comm = f.read().rpartition(b")")[2].split()
    return int(after_comm[4])  # state, ppid, pgrp, session, tty_nr


def detach() -> str:
    """Give up the controlling terminal, if any, and read back that none is left."""
    had = controlling_tty()
    if had:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, termios.TIOCNOTTY)
        finally:
            os.close(fd)
        left = controlling_tty()
        if left:
            raise OSError(0, f"the controlling terminal {left} is still attached after TIOCNOTTY")
    return f"controlling_terminal=none detached={'yes' if had else 'no'}"
