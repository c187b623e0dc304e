"""Mount namespace: a private view with a size-limited tmpfs and bind-mounted host paths.

Created together with the user namespace that owns it. Nothing here changes the host: the
namespace is made private first (no event propagates either way), mountpoints are created
only inside the private tmpfs, and the namespace dies with the last process in it.
A bind source is located by path in the copied namespace before anything is mounted over
it, and checked against the fd the host opened (same device and inode), so the host's
authority decides what is exposed.
"""

import ctypes
import os

from bvisor.launcher import libc

CLONE_NEWNS = 0x00020000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21

# The new mount API (linux/mount.h): a tmpfs built and attached through an fd on its root.
FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100

# statvfs f_flag bits → mount flags. A remount inside a user namespace must keep the flags
# the kernel locked on the copied mount, or it fails with EPERM.
_LOCKED_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)


def _c(text):
    return None if text is None else ctypes.c_char_p(os.fsencode(text))


def _mount(source, target, fstype, flags: int, data) -> None:
    libc.call("mount", _c(source), _c(target), _c(fstype), ctypes.c_ulong(flags), _c(data))


def make_private() -> str:
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    return "mount_namespace=private propagation=none"


def ensure_mountpoint(path: str, directory: bool, inside: str | None) -> None:
    """Create a missing mountpoint, but only inside the private tmpfs."""
    if os.path.lexists(path):
        return
    if inside is None or os.path.commonpath([path, inside]) != inside:
        raise OSError(2, f"mountpoint {path} does not exist (create it, or put it inside the temp root)")
    if directory:
        os.makedirs(path, mode=0o755)
    else:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def mount_proc() -> str:
    """A /proc of this process's pid namespace, over the host's: the run sees only itself."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    # /proc/self names this process as the mounted instance's pid namespace numbers it.
    if os.readlink("/proc/self") != str(os.getpid()):
        raise OSError(0, "the new /proc does not show this pid namespace")
    return "proc=mounted pid_namespace_view=own"


def mount_temp_root(path: str, size_bytes: int, max_inodes: int) -> tuple[str, int]:
    """A fresh tmpfs attached at ``path``, capped at ``size_bytes`` and ``max_inodes`` (empty
    files and short symlinks take no bytes, only inodes); returns the note and an fd on the
    tmpfs's root.

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
    return f"temp_root=tmpfs path={path} size={size_bytes} nr_inodes={max_inodes} verified=statvfs", root


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


def bind(located_fd: int, dest: str, writable: bool, temp_root: str | None) -> str:
    expected = os.fstat(located_fd)
    ensure_mountpoint(dest, os.path.stat.S_ISDIR(expected.st_mode), temp_root)
    _mount(f"/proc/self/fd/{located_fd}", dest, None, MS_BIND | MS_REC, None)
    mounted = os.stat(dest)
    if (mounted.st_dev, mounted.st_ino) != (expected.st_dev, expected.st_ino):
        raise OSError(0, f"bind at {dest} does not show the exposed object")
    if not writable:
        locked = os.statvfs(dest).f_flag
        keep = sum(flag for st_bit, flag in _LOCKED_FLAGS if locked & st_bit)
        _mount(None, dest, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, None)
    return f"bind dest={dest} writable={str(writable).lower()} verified=dev_ino"
