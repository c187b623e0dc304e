"""The last step: exec the workload from the host-opened exe fd with exactly the declared env."""

import _signal as signal  # the C module; "signal" wraps it in enums that cost ~7 ms of start-up
import os

# CPython ignores these at start-up; ignored dispositions survive exec, so restore them or the
# workload would silently run with SIGPIPE ignored.
PYTHON_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ)


def restore_signals(sigint) -> None:
    """Give the workload default dispositions, and the SIGINT disposition the launcher inherited."""
    signal.signal(signal.SIGINT, sigint)
    for sig in PYTHON_IGNORED:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def exec_fd(exe_fd: int, argv: list, envp: list) -> None:
    """fexecve the exe fd. Only returns by raising."""
    env = dict(envp)
    os.set_inheritable(exe_fd, False)
    try:
        os.execve(exe_fd, argv, env)
    except FileNotFoundError:
        # A script: the kernel hands the interpreter /dev/fd/N, which a close-on-exec fd no
        # longer names. Retry with the fd inherited; a missing interpreter fails again.
        os.set_inheritable(exe_fd, True)
        os.execve(exe_fd, argv, env)
