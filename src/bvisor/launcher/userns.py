"""User namespace: the unprivileged entry ticket to every other namespace.

The child unshares a new user namespace (together with any namespaces that need it, so the
kernel creates the user namespace first and they are owned by it) and maps itself to root
inside it. An unprivileged writer must deny setgroups before writing gid_map.
"""

import os

from bvisor.launcher import libc

CLONE_NEWUSER = 0x10000000


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def enter(extra_flags: int = 0) -> str:
    """Unshare a user namespace (plus ``extra_flags``) and map the caller to uid/gid 0 in it."""
    uid, gid = os.geteuid(), os.getegid()
    libc.call("unshare", CLONE_NEWUSER | extra_flags)
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")
    return f"user_namespace=mapped uid0={uid} gid0={gid} setgroups=deny"
