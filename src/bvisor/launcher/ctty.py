"""The caller's controlling terminal, out of the run's reach; the run's own, where it has one.

A workload that shares the caller's controlling terminal opens it as ``/dev/tty`` whatever
its stdio is, and can then change the caller's terminal settings. The run's process gives
it up (``TIOCNOTTY``) before anything else, so ``/dev/tty`` fails with ENXIO in the run;
it stays in the caller's process group, so a terminal Ctrl-C still reaches the workload.

A plan with a terminal hands the launcher one pseudo-terminal the host opened for this run
at fds 0-2: the workload then starts a session of its own with it as the controlling
terminal (job control, Ctrl-C and window size all stay between the run and that pty).
"""

import fcntl
import os
import stat
import termios

from bvisor.wire import attest

# Unix98 pseudo-terminal slaves: majors 136-143 (linux/major.h, UNIX98_PTY_SLAVE_MAJOR).
PTY_SLAVE_MAJORS = range(136, 144)


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
    return f"{attest.NO_CONTROLLING_TERMINAL} detached={'yes' if had else 'no'}"


def check_run_terminal() -> None:
    """Raise unless fds 0, 1 and 2 are one and the same pseudo-terminal slave."""
    shown = []
    for fd in (0, 1, 2):
        st = os.fstat(fd)
        if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) not in PTY_SLAVE_MAJORS:
            raise OSError(0, f"fd {fd} is not a pseudo-terminal slave")
        shown.append(st.st_rdev)
    if len(set(shown)) != 1:
        raise OSError(0, "fds 0-2 are not one pseudo-terminal")


def pty_name(rdev: int) -> str:
    """``pts/N``: the name of a Unix98 pty slave in its devpts."""
    return f"pts/{(os.major(rdev) - PTY_SLAVE_MAJORS[0]) * 256 + os.minor(rdev)}"


def hold_through_the_view() -> str:
    """Hold the run's pty at fds 0-2 through its node in the view (a read-only clone,
    ``view.device_clone``), so that no process of the run can change the node the host's
    /dev/pts shows: an unprivileged host opened the pty as the very uid in-run root is, whose
    chmod through the host's mount would let any local user open the caller's session, and
    whose times and mode bits any local user reads. A node the run does not own it cannot
    change anyway (no capability survives the exec), and may not open again."""
    own = os.fstat(0)
    if own.st_uid != os.geteuid():
        return f"{attest.TERMINAL_NODE} by=not_owner"
    path = f"/dev/{pty_name(own.st_rdev)}"
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_rdev != own.st_rdev or not os.fstatvfs(fd).f_flag & os.ST_RDONLY:
            raise OSError(0, f"{path} is not the run's pty on a read-only mount")
        for target in (0, 1, 2):
            os.dup2(fd, target)
    finally:
        os.close(fd)
    return f"{attest.TERMINAL_NODE} by=read_only_mount path={path}"


def take_run_terminal() -> str:
    """A new session whose controlling terminal is the run's pty at fd 0, read back."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    own = os.fstat(0).st_rdev
    if controlling_tty() != own:
        raise OSError(0, f"the controlling terminal is {controlling_tty()}, not the run's pty {own}")
    return f"{attest.RUN_TERMINAL} pty={os.major(own)}:{os.minor(own)}"
