"""User namespace: the unprivileged entry ticket to every other namespace, and the run's
host identity.

The launcher's child is cloned into a new user namespace (together with any namespaces that
need it, so the kernel creates the user namespace first and they are owned by it) and is
root inside it. Rootless, it maps itself: in-run root is the caller (an unprivileged writer
must deny setgroups before writing gid_map). A root launcher never lets in-run root be host
root: it maps the child's namespace to the plan's transient ``outside_id`` from outside
(only a writer privileged in the parent namespace may map another id), and the child then
takes that identity on (``become_mapped_root``): until it does, its credentials are still
the launcher's.
"""

import ctypes
import os

from bvisor.launcher import libc
from bvisor.wire import attest

CLONE_NEWUSER = 0x10000000


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


_PR_SET_DUMPABLE = 4


def write_maps(pid: int, uid_line: str, gid_line: str) -> None:
    """From a parent privileged outside: ``pid``'s user namespace maps as the lines say."""
    _write(f"/proc/{pid}/uid_map", uid_line)
    _write(f"/proc/{pid}/gid_map", gid_line)


def map_child(pid: int, outside_id: int) -> None:
    """In-run uid/gid 0 of ``pid``'s user namespace is ``outside_id`` outside. setgroups
    stays allowed so the child can shed the launcher's supplementary groups."""
    write_maps(pid, f"0 {outside_id} 1", f"0 {outside_id} 1")


def become_mapped_root(outside_id: int) -> str:
    """In the child, once mapped: drop the launcher's groups and become in-run root (host
    ``outside_id``). Checked from /proc. (setgroups stays allowed — the kernel refuses
    "deny" once gid_map is written — but only mapped groups exist: ``outside_id`` alone.)"""
    libc.call("setgroups", ctypes.c_size_t(0), None)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    # An id change made this process undumpable, which would hand its /proc files to host
    # root (out of its own reach); it is the run's own process, so it stays dumpable.
    libc.call("prctl", _PR_SET_DUMPABLE, 1, 0, 0, 0)
    expected = f"0 {outside_id} 1"
    for name in ("uid_map", "gid_map"):
        found = " ".join(_read(f"/proc/self/{name}").split())
        if found != expected:
            raise OSError(0, f"{name} is {found!r}, not {expected!r}")
    if os.getresuid() != (0, 0, 0) or os.getresgid() != (0, 0, 0) or os.getgroups():
        raise OSError(0, "the child did not become in-run root with no groups")
    return f"{attest.user_namespace(outside_id)} setgroups=mapped_only identity=transient"


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096).decode()
    finally:
        os.close(fd)


def map_self(uid: int, gid: int) -> str:
    """In a user namespace this process was just created in: map it to uid/gid 0 in there.
    ``uid``/``gid``: its ids outside, read before the namespace existed (inside, unmapped,
    they read as the overflow id)."""
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")
    return f"{attest.USER_NAMESPACE} uid0={uid} gid0={gid} setgroups=deny"
