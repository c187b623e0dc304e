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


def _mount(source, target, fstype, flags: int, data) -> None:
    def c(text):
        return None if text is None else ctypes.c_char_p(os.fsencode(text))

    libc.call("mount", c(source), c(target), c(fstype), ctypes.c_ulong(flags), c(data))


def make_private() -> str:
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    return "mount_namespace=private propagation=none"


def _ensure_mountpoint(path: str, directory: bool, inside: str | None) -> None:
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


def mount_temp_root(path: str, size_bytes: int) -> str:
    if not os.path.isdir(path):
        raise OSError(2, f"temp root mountpoint {path} does not exist")
    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_bytes},mode=1777")
    return f"temp_root=tmpfs path={path} size={size_bytes}"


def usage_note(path: str) -> str:
    """Bytes in use on the tmpfs at ``path`` (what the run left in its temp root)."""
    st = os.statvfs(path)
    return f"temp_root_usage bytes={(st.f_blocks - st.f_bfree) * st.f_frsize}"


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
    _ensure_mountpoint(dest, os.path.stat.S_ISDIR(expected.st_mode), temp_root)
    _mount(f"/proc/self/fd/{located_fd}", dest, None, MS_BIND | MS_REC, None)
    mounted = os.stat(dest)
    if (mounted.st_dev, mounted.st_ino) != (expected.st_dev, expected.st_ino):
        raise OSError(0, f"bind at {dest} does not show the exposed object")
    if not writable:
        locked = os.statvfs(dest).f_flag
        keep = sum(flag for st_bit, flag in _LOCKED_FLAGS if locked & st_bit)
        _mount(None, dest, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, None)
    return f"bind dest={dest} writable={str(writable).lower()} verified=dev_ino"
