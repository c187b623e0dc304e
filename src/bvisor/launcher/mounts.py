"""Mount namespace: made private, its own /proc, the size-limited temp root, and the host's
objects located in it.

Created together with the user namespace that owns it. Nothing here changes the host: the
namespace is made private first (no event propagates either way), mountpoints are created
only on the run's own tmpfs mounts, and the namespace dies with the last process in it.
A source is located by path in the copied namespace before anything is mounted over it,
and checked against the fd the host opened (same device and inode), so the host's
authority decides what is exposed. ``view.py`` builds the run's root from these parts.
"""

import ctypes
import os

from bvisor.launcher import libc
from bvisor.wire import attest

CLONE_NEWNS = 0x00020000

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

# The new mount API (linux/mount.h): a tmpfs built and attached through an fd on its root.
FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100


def _c(text):
    return None if text is None else ctypes.c_char_p(os.fsencode(text))


def _mount(source, target, fstype, flags: int, data) -> None:
    libc.call("mount", _c(source), _c(target), _c(fstype), ctypes.c_ulong(flags), _c(data))


def make_private() -> str:
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    return f"{attest.MOUNT_NAMESPACE} propagation=none"


def ensure_mountpoint(path: str, directory: bool, creatable: set) -> None:
    """Create a missing mountpoint, but only where its nearest existing ancestor lies on a
    filesystem of ``creatable`` (devices of the run's own tmpfs mounts): never on the host's."""
    if os.path.lexists(path):
        return
    ancestor = os.path.dirname(path)
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if os.lstat(ancestor).st_dev not in creatable:
        raise OSError(2, f"mountpoint {path} does not exist (create it, or put it inside the temp root)")
    if directory:
        os.makedirs(path, mode=0o755)
    else:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))


def mount_proc(target: str = "/proc") -> str:
    """A proc of this process's pid namespace at ``target``: the run sees only itself."""
    _mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    # /proc/self names this process as the mounted instance's pid namespace numbers it.
    if os.readlink(f"{target}/self") != str(os.getpid()):
        raise OSError(0, "the new /proc does not show this pid namespace")
    return "proc=mounted pid_namespace_view=own"


def mount_temp_root(path: str, size_bytes: int, max_inodes: int, shown_as: str | None = None) -> tuple[str, int]:
    """A fresh tmpfs attached at ``path``, capped at ``size_bytes`` and ``max_inodes`` (empty
    files and short symlinks take no bytes, only inodes); returns the note (naming the path
    as the run will see it, ``shown_as``) and an fd on the tmpfs's root.

    The fd comes from the mount itself (fsmount), not from opening ``path`` afterwards: were
    the mountpoint renamed or replaced (by a symlink, say) once the tmpfs is attached, a
    re-opened path would put the temp root's write rule on whatever ``path`` names then.
    """
    if not os.path.isdir(path):
        raise OSError(2, f"temp root mountpoint {path} does not exist")
    fs = libc.syscall("fsopen", _c("tmpfs"), FSOPEN_CLOEXEC)
    try:
        for key, value in (("source", "tmpfs"), ("size", str(size_bytes)), ("nr_inodes", str(max_inodes)), ("mode", "1777")):
            libc.syscall("fsconfig", fs, FSCONFIG_SET_STRING, _c(key), _c(value), 0)
        libc.syscall("fsconfig", fs, FSCONFIG_CMD_CREATE, None, None, 0)
        root = libc.syscall("fsmount", fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
    finally:
        os.close(fs)
    try:
        libc.syscall("move_mount", root, _c(""), AT_FDCWD, _c(path), MOVE_MOUNT_F_EMPTY_PATH)
        attached, made = os.stat(path), os.fstat(root)
        if (attached.st_dev, attached.st_ino) != (made.st_dev, made.st_ino):
            raise OSError(0, f"temp root at {path} does not show the tmpfs just made")
        # The caps as the kernel holds them (the size in whole pages), not as asked.
        held = os.fstatvfs(root)
        pages = -(-size_bytes // held.f_frsize)
        if (held.f_blocks, held.f_files) != (pages, max_inodes):
            raise OSError(0, f"temp root at {path} holds {held.f_blocks} pages and {held.f_files} inodes, not {pages} and {max_inodes}")
    except BaseException:
        os.close(root)
        raise
    return attest.temp_root(shown_as or path, size_bytes, max_inodes), root


def usage_note(root_fd: int) -> str:
    """Bytes and inodes in use on the temp root's tmpfs (what the run left in it, its root
    counted), and its caps as the kernel reports them, read through the fd on its root."""
    st = os.fstatvfs(root_fd)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return f"temp_root_usage bytes={used} inodes={st.f_files - st.f_ffree} size={st.f_blocks * st.f_frsize} nr_inodes={st.f_files}"


def locate_source(source_fd: int, source_path: str) -> int:
    """Open ``source_path`` in this (copied) namespace and check it is the object the host
    opened. Done before any mount of ours can shadow the path; the returned fd is then the
    source of the bind, so later path changes cannot redirect it."""
    expected = os.fstat(source_fd)
    fd = os.open(source_path, os.O_PATH | os.O_CLOEXEC)
    found = os.fstat(fd)
    if (found.st_dev, found.st_ino) != (expected.st_dev, expected.st_ino):
        os.close(fd)
        raise OSError(0, f"bind source {source_path} is not the object the host opened")
    return fd
