"""User namespace: the unprivileged entry ticket to every other namespace.

The launcher's child is cloned into a new user namespace (together with any namespaces that
need it, so the kernel creates the user namespace first and they are owned by it) and maps
itself to root inside it. An unprivileged writer must deny setgroups before writing gid_map.
"""

import os

CLONE_NEWUSER = 0x10000000


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def map_self(uid: int, gid: int) -> str:
    """In a user namespace this process was just created in: map it to uid/gid 0 in there.
    ``uid``/``gid``: its ids outside, read before the namespace existed (inside, unmapped,
    they read as the overflow id)."""
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")
    return f"user_namespace=mapped uid0={uid} gid0={gid} setgroups=deny"
