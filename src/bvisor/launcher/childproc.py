"""A child, forked or cloned into new namespaces, that reports how it failed through a
close-on-exec error pipe.

EOF on the pipe means the child exec'd (the pipe closed with it) or exited cleanly; a
``step:errno`` record means it failed at that step and exited 127 without exec'ing.
"""

import _signal as signal  # the C module; "signal" wraps it in enums that cost ~7 ms of start-up
import ctypes
import os

from bvisor.launcher import libc
from bvisor.mechanism import fdio

CHILD_FAILED = 127


def fork_with_error_pipe(namespaces: int = 0):
    """Fork; return ``(pid, read_fd)`` in the parent and ``(0, write_fd)`` in the child.

    ``namespaces`` (CLONE_NEW* flags): the child starts in new namespaces of those kinds,
    made by clone(2) itself — with CLONE_NEWPID it is pid 1 of its namespace, where
    unshare(2) would need one more process to fork it. Without CLONE_VM, clone copies the
    caller as fork does; the caller is single-threaded (the coordinator checks), so the copy
    needs none of the after-fork repairs a threaded process would. OSError if the kernel
    refuses (no child exists then)."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        pid = _clone(namespaces) if namespaces else os.fork()
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:
        os.close(read_fd)
        return 0, write_fd
    os.close(write_fd)
    return pid, read_fd


def _clone(namespaces: int) -> int:
    # clone(flags, stack=NULL, ...): a fork-like copy on the caller's own stack. The other
    # arguments (tid pointers, tls) are unused without the flags that name them.
    return libc.syscall("clone", ctypes.c_ulong(namespaces | signal.SIGCHLD), None, None, None, None)


def fail(write_fd: int, step: str, exc: BaseException) -> None:
    """Record the failing step and errno, then exit the child without running anything else."""
    errno = exc.errno if isinstance(exc, OSError) and exc.errno else 0
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
    try:
        os.write(write_fd, f"{step}:{errno}:{detail}".encode("utf-8", "backslashreplace")[:4096])
    finally:
        os._exit(CHILD_FAILED)


def read_failure(read_fd: int):
    """Block until the child exec'd or failed; ``None`` on success, else ``(step, errno,
    detail)``."""
    record = fdio.read_all(read_fd)
    if not record:
        return None
    step, errno, detail = record.decode("utf-8", "replace").split(":", 2)
    return step, int(errno), detail
