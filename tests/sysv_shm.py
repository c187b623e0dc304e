"""The host's SysV shared memory, for the oracles whose attack looks for a segment the host
holds and leaves one of its own behind: make and remove a segment, list the host's keys."""

import ctypes

IPC_CREAT, IPC_RMID = 0o1000, 0


def make_segment(key: int) -> None:
    """A 4 KiB segment anyone may attach, under ``key`` in the host's IPC namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.shmget(key, 4096, IPC_CREAT | 0o666) < 0:
        raise OSError(ctypes.get_errno(), f"shmget for the host segment {key:#x}")


def remove_segment(key: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    shmid = libc.shmget(key, 0, 0)
    if shmid >= 0:
        libc.shmctl(shmid, IPC_RMID, None)


def segment_keys() -> set:
    """The SysV shared memory keys the host's IPC namespace holds."""
    with open("/proc/sysvipc/shm") as f:
        return {int(line.split()[0]) for line in f.read().splitlines()[1:] if line.strip()}
