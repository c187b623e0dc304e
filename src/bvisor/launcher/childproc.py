"""A forked child that reports how it failed through a close-on-exec error pipe.

EOF on the pipe means the child exec'd (the pipe closed with it) or exited cleanly; a
``step:errno`` record means it failed at that step and exited 127 without exec'ing.
"""

import os

CHILD_FAILED = 127


def fork_with_error_pipe():
    """Fork; return ``(pid, read_fd)`` in the parent and ``(0, write_fd)`` in the child."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        return 0, write_fd
    os.close(write_fd)
    return pid, read_fd


def fail(write_fd: int, step: str, exc: BaseException) -> None:
    """Record the failing step and errno, then exit the child without running anything else."""
    errno = exc.errno if isinstance(exc, OSError) and exc.errno else 0
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
    try:
        os.write(write_fd, f"{step}:{errno}:{detail}".encode("utf-8", "backslashreplace")[:4096])
    finally:
        os._exit(CHILD_FAILED)


def read_failure(read_fd: int):
    """Block until the child exec'd or failed; ``None`` on success, else ``(step, errno, detail)``."""
    chunks = []
    while chunk := os.read(read_fd, 4096):
        chunks.append(chunk)
    os.close(read_fd)
    if not chunks:
        return None
    step, errno, detail = b"".join(chunks).decode("utf-8", "replace").split(":", 2)
    return step, int(errno), detail
