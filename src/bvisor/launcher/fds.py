"""File descriptors: check authority handles against their declared shape; scrub the rest.

Authority rides fds the host opened; the launcher never re-opens a path. Before exec every
fd not on the keep list is closed, and the result is read back from /proc/self/fd. Reading
and closing fds both sides of the launcher boundary do is ``bvisor.mechanism.fdio``.
"""

import fcntl
import os
import stat

from bvisor.wire import attest

# Above any fd number the kernel hands out (fs.nr_open is at most 2**30).
_FD_LIMIT = 2**31 - 1

_KIND_TEST = {
    "directory": stat.S_ISDIR,
    "regular": stat.S_ISREG,
    "char_device": stat.S_ISCHR,
    "socket": stat.S_ISSOCK,
    "pipe": stat.S_ISFIFO,
}


def shape_mismatch(fd: int, kind: str, writable: bool) -> str | None:
    """Return why ``fd`` does not have the declared shape, or None when it does."""
    try:
        st = os.fstat(fd)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as exc:
        return f"fd {fd}: {exc.strerror}"
    if not _KIND_TEST[kind](st.st_mode):
        return f"fd {fd} is not a {kind}"
    if kind in ("directory", "regular"):
        is_writable = (flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)
        if is_writable != writable:
            return f"fd {fd} writable={is_writable}, declared {writable}"
    return None


def _is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
        return True
    except OSError:
        return False


def open_fds() -> set:
    # The listing's own directory fd appears in it but is closed by the time we return.
    return {fd for fd in map(int, os.listdir("/proc/self/fd")) if _is_open(fd)}


def close_all_but(keep) -> None:
    """Close every fd not in ``keep``, by ranges (close_range(2)): no listing, no per-fd call."""
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _FD_LIMIT)


def scrub(keep: set, attestation: str = attest.FD_SCRUB) -> str:
    """Close every fd not in ``keep``; verify none survived."""
    closed = 0
    for fd in sorted(open_fds() - keep):
        os.close(fd)
        closed += 1
    survivors = open_fds() - keep
    if survivors:
        raise OSError(0, f"fds survived the scrub: {sorted(survivors)}")
    return f"{attestation} kept={','.join(map(str, sorted(keep)))} closed={closed}"
