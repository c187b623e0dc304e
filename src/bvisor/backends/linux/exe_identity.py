"""The file that ran: device, inode, size and blake3 of the exe the host opened.

The hash is read through the host's own O_PATH fd, reopened read-only through
``/proc/self/fd`` (which opens the object the fd holds, never the path again) and checked to
be the same inode. So a file put at the path after the host opened it changes neither what is
recorded nor what runs: the launcher execs that same fd. What it cannot rule out is the same
inode written in place between the hash and the exec (the kernel refuses writes to a running
exe, not before): the size and ctime read before and after hashing catch a write during it.

Hashes are cached in-process by file identity (dev, ino, size, mtime_ns, ctime_ns), so a warm
host does not rehash the same exe. Any write changes the ctime — but only at the clock's
granularity, so (as git does for its index) a file changed too recently to be told apart
from a later write in the same tick is hashed every time and never cached.
"""

import collections
import os
import threading
import time

import blake3
import msgspec

_CACHE_ENTRIES = 64
# Longer than the ctime granularity of any local filesystem (a jiffy; FAT's is 10 ms).
_SETTLED_NS = 2_000_000_000
_CHUNK = 1 << 20

_digests: "collections.OrderedDict[tuple[int, ...], str]" = collections.OrderedDict()
_digests_lock = threading.Lock()  # several threads may run boundaries on one backend


class ExeIdentity(msgspec.Struct, frozen=True):
    """``blake3`` is None when the host cannot read the file (an exec-only exe) or it
    changed while being hashed; ``unhashed`` then says why."""

    dev: int
    ino: int
    size: int
    blake3: str | None
    unhashed: str | None = None

    def detail(self) -> str:
        digest = self.blake3 if self.blake3 is not None else f"none ({self.unhashed})"
        return f"dev={os.major(self.dev)}:{os.minor(self.dev)} ino={self.ino} size={self.size} blake3={digest}"


def file_key(status: os.stat_result) -> tuple[int, ...]:
    """What must stay the same for a cached hash to still be the file's."""
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def exe_identity(exe_fd: int) -> ExeIdentity:
    """The identity of the file ``exe_fd`` (an O_PATH fd of a regular file) holds."""
    status = os.fstat(exe_fd)
    key = file_key(status)
    identity = ExeIdentity(dev=status.st_dev, ino=status.st_ino, size=status.st_size, blake3=None)
    with _digests_lock:
        digest = _digests.get(key)
        if digest is not None:
            _digests.move_to_end(key)
    if digest is not None:
        return msgspec.structs.replace(identity, blake3=digest)
    started_ns = time.time_ns()
    try:
        digest = _hash_through(exe_fd, status)
    except OSError as exc:
        return msgspec.structs.replace(identity, unhashed=f"cannot read it: {exc.strerror}")
    if file_key(os.fstat(exe_fd)) != key:
        return msgspec.structs.replace(identity, unhashed="it changed while being hashed")
    if status.st_ctime_ns < started_ns - _SETTLED_NS:
        with _digests_lock:
            _digests[key] = digest
            if len(_digests) > _CACHE_ENTRIES:
                _digests.popitem(last=False)
    return msgspec.structs.replace(identity, blake3=digest)


def _hash_through(exe_fd: int, status: os.stat_result) -> str:
    fd = os.open(f"/proc/self/fd/{exe_fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (status.st_dev, status.st_ino):
            # /proc is not the kernel's (or not this process's): the reopen is not the fd's file.
            raise OSError(0, "/proc/self/fd reopened another file")
        hasher = blake3.blake3()
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        while count := os.readv(fd, [buffer]):
            hasher.update(view[:count])
        return hasher.hexdigest()
    finally:
        os.close(fd)
