"""Idmapped mounts: a writable grant stays writable for a run whose root is a transient id.

When a root launcher runs the workload as a transient host id, a writable root or exposed
path owned by someone else would be read-only to it. The launcher (still host root, before
the run's child exists) clones each such tree from the host's fd (``open_tree``) and idmaps
the clone (``mount_setattr(MOUNT_ATTR_IDMAP)``) through a throwaway user namespace that maps
the tree's owner to the transient id: inside, the owner's files belong to the run's root,
and what the run creates belongs to that owner on the host, never to the transient id. The
clone is also ``nosuid,nodev``. The run's child attaches the detached clone in its own
mount namespace; nothing is attached in the host's.
"""

import ctypes
import os

from bvisor.launcher import childproc, libc, mounts, userns

OPEN_TREE_CLONE = 0x1
AT_EMPTY_PATH = 0x1000
MOUNT_ATTR_IDMAP = 0x00100000


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _mapping_namespace(owner_uid: int, owner_gid: int, outside_id: int) -> int:
    """An fd on a user namespace mapping ``owner`` (as seen on disk) to ``outside_id``; the
    process that made it exits at once (an fd keeps a namespace alive)."""
    hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid, error_fd = childproc.fork_with_error_pipe(userns.CLONE_NEWUSER)
    except BaseException:
        os.close(hold_r)
        os.close(hold_w)
        raise
    if pid == 0:
        os.close(hold_w)
        os.read(hold_r, 1)  # held until the parent has the namespace open
        os._exit(0)
    os.close(hold_r)
    try:
        userns.write_maps(pid, f"{owner_uid} {outside_id} 1", f"{owner_gid} {outside_id} 1")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(hold_w)
        os.close(error_fd)
        os.waitpid(pid, 0)


def clone_trees(slots: list, outside_id: int) -> dict:
    """``{slot: fd}`` of detached, idmapped, nosuid,nodev clones of each host-opened tree."""
    namespaces, trees = {}, {}
    try:
        for slot in slots:
            st = os.fstat(slot)
            owner = (st.st_uid, st.st_gid)
            if owner not in namespaces:
                namespaces[owner] = _mapping_namespace(*owner, outside_id)
            # Not recursive: mounts beneath a granted tree are not part of the grant (and one
            # of a filesystem without idmapping would fail the whole clone).
            tree = libc.syscall("open_tree", slot, ctypes.c_char_p(b""), OPEN_TREE_CLONE | os.O_CLOEXEC | AT_EMPTY_PATH)
            trees[slot] = tree
            attr = _MountAttr(MOUNT_ATTR_IDMAP | mounts.MOUNT_ATTR_NOSUID | mounts.MOUNT_ATTR_NODEV, 0, 0, namespaces[owner])
            libc.syscall("mount_setattr", tree, ctypes.c_char_p(b""), AT_EMPTY_PATH, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    except BaseException:
        for fd in trees.values():
            os.close(fd)
        raise
    finally:
        for fd in namespaces.values():
            os.close(fd)
    return trees
