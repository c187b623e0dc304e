"""The run's host identity: who the workload is outside its user namespace.

Rootless, the workload is the caller (the caller's uid is the in-run root). When bvisor runs
as root it is never root: each run leases a transient uid/gid, unused by any account, from a
configurable range (systemd's ``DynamicUser=`` is the model), so host-global kernel knobs,
root-owned files and other runs' files are out of reach by plain permission checks.

A lease is an exclusive ``flock`` on ``<lock dir>/<id>``, held by the host for the whole run
(and so released by the kernel if the host dies); a stale lock file is only a file.
"""

import errno
import fcntl
import grp
import os
import pwd
import random

RANGE_ENV = "BVISOR_ID_RANGE"
# 65536 ids far above ordinary accounts, below 2^31 (some tools still read ids as signed
# int) and outside systemd's dynamic (61184-65519) and container (524288-1879048191) ranges.
DEFAULT_RANGE = (1879048192 + 65536, 1879048192 + 2 * 65536 - 1)
LOCK_DIR = "/run/bvisor/ids"


class IdentityUnavailable(Exception):
    """No transient id can be leased: the run must not start as root."""


def id_range(environ=os.environ) -> tuple:
    """``(first, last)`` from ``BVISOR_ID_RANGE=FIRST-LAST`` (inclusive), else the default."""
    text = environ.get(RANGE_ENV)
    if not text:
        return DEFAULT_RANGE
    first, sep, last = text.partition("-")
    if not (sep and first.isdigit() and last.isdigit()) or not 0 < int(first) <= int(last) < 2**31:
        raise IdentityUnavailable(f"{RANGE_ENV}={text!r} is not FIRST-LAST with 0 < FIRST <= LAST < 2^31")
    return int(first), int(last)


def _account_exists(uid: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


class Lease:
    """One transient id, held until ``release``."""

    __slots__ = ("outside_id", "_fd")

    def __init__(self, outside_id: int, fd: int):
        self.outside_id, self._fd = outside_id, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock
            self._fd = None


def lease(id_range_: tuple, lock_dir: str = LOCK_DIR, attempts: int = 64) -> Lease:
    """Lease a free id of the range: random probes, each an exclusive non-blocking flock."""
    first, last = id_range_
    try:
        os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise IdentityUnavailable(f"cannot create {lock_dir}: {exc.strerror}") from None
    for _ in range(attempts):
        candidate = random.randint(first, last)
        if _account_exists(candidate):
            continue
        fd = os.open(f"{lock_dir}/{candidate}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                continue
            raise IdentityUnavailable(f"cannot lock {lock_dir}/{candidate}: {exc.strerror}") from None
        return Lease(candidate, fd)
    raise IdentityUnavailable(f"no free id in {first}-{last} after {attempts} tries")


def run_identity(launcher_is_root: bool):
    """The lease for a run: one when the launcher is root (``LinuxFacts.launcher_is_root``),
    else None (rootless, the workload is the launcher's own unprivileged user)."""
    return lease(id_range()) if launcher_is_root else None
