"""cgroupfs file I/O shared by the delegation proof (``cgroup``) and the run leaf
(``cgroup_leaf``): one write(2) per value, reads that say "absent" as ``None``, and the limit
writes and freezer kill a probe proves by doing exactly as a run leaf then does them.

Callers reach these through the module (``cgroupfs.write``), so one substitution stands in
for cgroupfs everywhere (the fake kernel of tests/unit/test_cgroup.py).
"""

import errno
import os
import signal
import time
from collections.abc import Iterable, Mapping

from bvisor.mechanism.fdio import read_text

POLL_SECONDS = 0.005
# A v1 freeze of a leaf whose tasks are in uninterruptible sleep can stay FREEZING; past this
# bound the kill goes on without the freeze and says so.
_FREEZE_SECONDS = 2.0


class CgroupError(Exception):
    """A cgroupfs operation failed. ``path`` and ``errno`` say where and why (``None`` when the
    failure is a refusal rather than a kernel answer)."""

    def __init__(self, message: str, path: str | None = None, errno_: int | None = None):
        super().__init__(message)
        self.path = path
        self.errno = errno_


def _errno_name(code: int | None) -> str:
    return errno.errorcode.get(code, str(code)) if code is not None else "error"


def os_failure(op: str, path: str, exc: OSError) -> CgroupError:
    return CgroupError(f"{op} {path}: {_errno_name(exc.errno)}", path, exc.errno)


# --- file primitives -----------------------------------------------------------------------


def write(path: str, text: str) -> None:
    # One write(2) per value: cgroupfs parses each write on its own.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise os_failure("open", path, exc) from exc
    try:
        os.write(fd, text.encode())
    except OSError as exc:
        raise os_failure("write", path, exc) from exc
    finally:
        os.close(fd)


def read(path: str) -> str | None:
    """The file's text; ``None`` when it does not exist (a kernel or controller without it, or
    a leaf already removed)."""
    try:
        return read_text(path)  # with no buffered io stack: a run reads a dozen of these
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise os_failure("read", path, exc) from exc


def mkdir(path: str) -> None:
    try:
        os.mkdir(path)
    except OSError as exc:
        raise os_failure("mkdir", path, exc) from exc


def int_or_none(text: str | None) -> int | None:
    return int(text) if text is not None else None


def keyed_value(text: str | None, key: str) -> int | None:
    """The integer after ``key`` in a flat-keyed cgroup file (``cpu.stat``, ``pids.events``,
    ``memory.events``, v1 ``memory.oom_control``); ``None`` if the file or key is absent."""
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return None


def pids_in(directory: str) -> set[int]:
    return {int(line) for line in (read(os.path.join(directory, "cgroup.procs")) or "").split()}


def sigkill(pids: Iterable[int]) -> None:
    denied = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:
            denied.append(pid)
    if denied:
        # Signalling the rest first: one member we may not signal must not shield the others.
        raise CgroupError(f"kill {sorted(denied)}: EPERM", errno_=errno.EPERM)


def distinct(unified: str | None, v1: Mapping[str, str]) -> tuple[str, ...]:
    """Each directory once, cgroup2 first (co-mounted v1 controllers share one)."""
    return tuple(dict.fromkeys(d for d in (unified, *v1.values()) if d))


# --- the writes a probe proves and a run leaf makes ---------------------------------------


def write_pids_max(directory: str, value: int) -> None:
    write(os.path.join(directory, "pids.max"), str(value))


def write_memory_max(directory: str, flavour: str, value: int) -> None:
    """The memory cap with swap closed, so the cap bounds what the run can hold at all."""
    if flavour == "v1":
        # memsw must stay >= the memory limit: on a fresh leaf both are unlimited, so the
        # memory limit goes first.
        write(os.path.join(directory, "memory.limit_in_bytes"), str(value))
        for name, text in (("memory.memsw.limit_in_bytes", str(value)), ("memory.swappiness", "0")):
            path = os.path.join(directory, name)
            if os.path.exists(path):
                write(path, text)
    else:
        write(os.path.join(directory, "memory.max"), str(value))
        swap = os.path.join(directory, "memory.swap.max")
        if os.path.exists(swap):
            write(swap, "0")


def freeze_kill(directory: str) -> bool:
    """v1 freezer kill: freeze so no member can fork or escape, SIGKILL each, thaw so the
    signals land. True when the leaf was seen FROZEN (the kill was atomic)."""
    state = os.path.join(directory, "freezer.state")
    write(state, "FROZEN")
    deadline = time.monotonic() + _FREEZE_SECONDS
    while not (frozen := (read(state) or "").strip() == "FROZEN"):
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    try:
        sigkill(pids_in(directory))
    finally:
        write(state, "THAWED")
    return frozen


def rmdir_bounded(path: str, deadline: float) -> str | None:
    """rmdir, retrying EBUSY (a leaf whose last member is still exiting) until the deadline.
    ``None`` when the directory is gone, else the problem."""
    while True:
        try:
            os.rmdir(path)
            return None
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                return f"rmdir {path}: {_errno_name(exc.errno)}"
        time.sleep(POLL_SECONDS)
