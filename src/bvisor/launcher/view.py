"""View: the run's filesystem is built from nothing and entered with pivot_root.

In the run's private mount namespace (a copy of the launcher's, never changed on the host)
the child makes a fresh tmpfs, puts into it only what the plan grants — each root a
recursive clone of the object the host opened (checked by device and inode), read-only
ones read-only, every one nosuid,nodev — plus a minimal /dev, the run's own /proc with the
kernel's sensitive files masked and /proc/sys read-only, then pivots into it and detaches
the old root. A path outside the grants does not exist in the run. Without a Filesystem
requirement the base is the host's tree instead (nosuid,nodev, /sys read-only), seen
through the run's identity, still with the run's own /proc and /dev.

The OCI runtime spec's default masked and read-only /proc paths are the reference.
"""

import ctypes
import os
import stat

from bvisor.launcher import ctty, libc, mounts
from bvisor.wire import attest

OPEN_TREE_CLONE = 0x1
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
AT_SYMLINK_NOFOLLOW = 0x100
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOEXEC = 0x8
MNT_DETACH = 0x2

# /dev: these character devices (name, major, minor), bound from the launcher's own /dev
# after a check of their device numbers, and the /proc/self/fd links a shell expects.
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9))
TTY_DEVICE = (("tty", 5, 0),)
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))
# /proc: files covered by /dev/null and directories by an empty read-only tmpfs (what exists
# on this kernel), and subtrees made read-only.
PROC_MASKED = ("acpi", "asound", "kcore", "keys", "latency_stats", "timer_list", "timer_stats", "sched_debug", "scsi")
PROC_READ_ONLY = ("bus", "fs", "irq", "sys", "sysrq-trigger")
SYS_MASKED = ("firmware", "devices/virtual/powercap")
# Where the new root is assembled in the copied namespace before the pivot: any directory
# will do (what it hides there is never seen again), and every source is located first.
SCRATCH = "/tmp"


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _c(path: str):
    return ctypes.c_char_p(os.fsencode(path))


def _set_attrs(fd: int, path: str, attrs: int, recursive: bool) -> None:
    flags = (AT_EMPTY_PATH if not path else AT_SYMLINK_NOFOLLOW) | (AT_RECURSIVE if recursive else 0)
    attr = _MountAttr(attrs, 0, 0, 0)
    libc.syscall("mount_setattr", fd, _c(path), flags, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))


def _move(tree: int, dest: str) -> None:
    libc.syscall("move_mount", tree, _c(""), mounts.AT_FDCWD, _c(dest), mounts.MOVE_MOUNT_F_EMPTY_PATH)


def _tmpfs(dest: str, mode: str, size: int, attrs: int) -> int:
    """A fresh tmpfs attached at ``dest``; returns an fd on its root."""
    fs = libc.syscall("fsopen", _c("tmpfs"), mounts.FSOPEN_CLOEXEC)
    try:
        for key, value in (("source", "bvisor"), ("size", str(size)), ("mode", mode), ("nr_inodes", "4096")):
            libc.syscall("fsconfig", fs, mounts.FSCONFIG_SET_STRING, _c(key), _c(value), 0)
        libc.syscall("fsconfig", fs, mounts.FSCONFIG_CMD_CREATE, None, None, 0)
        root = libc.syscall("fsmount", fs, mounts.FSMOUNT_CLOEXEC, attrs)
    finally:
        os.close(fs)
    try:
        _move(root, dest)
    except BaseException:
        os.close(root)
        raise
    return root


def new_base(host_tree: bool) -> tuple:
    """``(path, fd)`` of the new root, assembled at ``SCRATCH``: a fresh tmpfs, or (without a
    Filesystem requirement) a nosuid,nodev recursive clone of this namespace's own root."""
    attrs = mounts.MOUNT_ATTR_NOSUID | mounts.MOUNT_ATTR_NODEV
    if not host_tree:
        return SCRATCH, _tmpfs(SCRATCH, "0755", 1 << 20, attrs)
    tree = libc.syscall("open_tree", mounts.AT_FDCWD, _c("/"), OPEN_TREE_CLONE | os.O_CLOEXEC | AT_RECURSIVE)
    try:
        _set_attrs(tree, "", attrs, recursive=True)
        _move(tree, SCRATCH)
        if os.path.isdir(SCRATCH + "/sys"):
            _set_attrs(mounts.AT_FDCWD, SCRATCH + "/sys", MOUNT_ATTR_RDONLY, recursive=True)
    except BaseException:
        os.close(tree)
        raise
    return SCRATCH, tree


def detached_clone(located: int, writable: bool) -> int:
    """A detached recursive clone of the located object: nosuid,nodev, read-only unless
    ``writable``. Taken before the new root exists, so no clone can hold the new root."""
    tree = libc.syscall("open_tree", located, _c(""), OPEN_TREE_CLONE | os.O_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE)
    try:
        attrs = mounts.MOUNT_ATTR_NOSUID | mounts.MOUNT_ATTR_NODEV | (0 if writable else MOUNT_ATTR_RDONLY)
        _set_attrs(tree, "", attrs, recursive=True)
    except BaseException:
        os.close(tree)
        raise
    return tree


def attach_tree(tree: int, dest: str, creatable: set) -> None:
    """Put a detached tree at ``dest`` (a missing mountpoint made only on a device in
    ``creatable``) and check ``dest`` shows it."""
    made = os.fstat(tree)
    mounts.ensure_mountpoint(dest, stat.S_ISDIR(made.st_mode), creatable)
    _move(tree, dest)
    shown = os.stat(dest)
    if (shown.st_dev, shown.st_ino) != (made.st_dev, made.st_ino):
        raise OSError(0, f"{dest} does not show the granted object")


def locate_devices(terminal: bool) -> list:
    """``[(name, fd)]``: this namespace's /dev nodes the run gets, checked to be the devices
    they claim to be (a tampered /dev cannot hand the run another device). With a terminal,
    also ``tty``: it names the opener's controlling terminal, which in the run is only ever
    the run's own pty (the caller's was given up before the view was built); and that pty's
    own node, ``pts/N``, so that ttyname(3) finds it (where this namespace's /dev/pts shows
    exactly that device)."""
    located = []
    try:
        for name, major, minor in DEVICES + (TTY_DEVICE if terminal else ()):
            fd = os.open(f"/dev/{name}", os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW)
            located.append((name, fd))
            st = os.fstat(fd)
            if not stat.S_ISCHR(st.st_mode) or (os.major(st.st_rdev), os.minor(st.st_rdev)) != (major, minor):
                raise OSError(0, f"/dev/{name} is not the character device {major}:{minor}")
        if terminal:
            located += _run_pty_node()
    except BaseException:
        for _, fd in located:
            os.close(fd)
        raise
    return located


def _run_pty_node() -> list:
    """``[("pts/N", fd)]`` for the run's pty at fd 0, or [] where /dev/pts/N is not that very
    device (another devpts instance): the node is a convenience, never another device."""
    own = os.fstat(0).st_rdev
    name = ctty.pty_name(own)
    try:
        fd = os.open(f"/dev/{name}", os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return []
    st = os.fstat(fd)
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == own:
        return [(name, fd)]
    os.close(fd)
    return []


def device_clone(located: int) -> int:
    """A detached clone of one device node. It keeps its device semantics (the one kind of
    mount in the view without nodev) and is read-only: the device still reads and writes,
    but the host's node cannot be chmodded, chowned or given times through it (EROFS), even
    by its owner."""
    tree = libc.syscall("open_tree", located, _c(""), OPEN_TREE_CLONE | os.O_CLOEXEC | AT_EMPTY_PATH)
    try:
        _set_attrs(tree, "", MOUNT_ATTR_RDONLY | mounts.MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, recursive=False)
    except BaseException:
        os.close(tree)
        raise
    return tree


def make_dev(base: str, devices: list, creatable: set) -> tuple:
    """A small tmpfs at /dev holding the located devices and the fd links; returns the note
    and an fd on it (made read-only once the view is complete)."""
    dev = base + "/dev"
    mounts.ensure_mountpoint(dev, True, creatable)
    fd = _tmpfs(dev, "0755", 65536, mounts.MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)
    try:
        for name, target in DEV_LINKS:
            os.symlink(target, f"{dev}/{name}")
        own = {os.fstat(fd).st_dev}
        for name, located in devices:
            mounts.ensure_mountpoint(f"{dev}/{name}", False, own)
            tree = device_clone(located)
            try:
                _move(tree, f"{dev}/{name}")
            finally:
                os.close(tree)
    except BaseException:
        os.close(fd)
        raise
    named = [name for name, _ in devices if not name.startswith("pts/")]
    ptys = [name for name, _ in devices if name.startswith("pts/")]
    note = f"view_dev devices={','.join(named)} links={','.join(name for name, _ in DEV_LINKS)}"
    return note + "".join(f" pty=/dev/{name}" for name in ptys), fd


def _cover(path: str) -> None:
    """Hide what ``path`` holds: /dev/null over a file, an empty read-only tmpfs over a
    directory."""
    if os.path.isdir(path):
        os.close(_tmpfs(path, "0555", 4096, MOUNT_ATTR_RDONLY | mounts.MOUNT_ATTR_NOSUID | mounts.MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC))
        return
    null = libc.syscall("open_tree", mounts.AT_FDCWD, _c("/dev/null"), OPEN_TREE_CLONE | os.O_CLOEXEC)
    try:
        _set_attrs(null, "", MOUNT_ATTR_RDONLY | mounts.MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, recursive=False)
        _move(null, path)
    finally:
        os.close(null)


def _read_only(path: str) -> None:
    tree = libc.syscall("open_tree", mounts.AT_FDCWD, _c(path), OPEN_TREE_CLONE | os.O_CLOEXEC | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW)
    try:
        _set_attrs(tree, "", MOUNT_ATTR_RDONLY | mounts.MOUNT_ATTR_NOSUID | mounts.MOUNT_ATTR_NODEV, recursive=True)
        _move(tree, path)
    finally:
        os.close(tree)


def mask(base: str, masked: list) -> str:
    """Cover the masked paths that exist in the new root (the evidence store, say) and the
    kernel's sensitive /proc and /sys entries; make /proc's system subtrees read-only."""
    covered = []
    for relative in [f"proc/{p}" for p in PROC_MASKED] + [f"sys/{p}" for p in SYS_MASKED] + [p.lstrip("/") for p in masked]:
        path = f"{base}/{relative}"
        if os.path.lexists(path):
            _cover(path)
            covered.append("/" + relative)
    read_only = []
    for relative in PROC_READ_ONLY:
        path = f"{base}/proc/{relative}"
        if os.path.lexists(path):
            _read_only(path)
            read_only.append(f"/proc/{relative}")
    return f"view_masked paths={','.join(covered)} read_only={','.join(read_only)}"


def pivot(base: str, host_tree: bool) -> str:
    """Make ``base`` the root, detach the old one, check that / is now what ``base`` showed
    (its device and inode: a fresh tmpfs, unless a root at / covers it); start in /."""
    shown = os.stat(base)
    base_id = (shown.st_dev, shown.st_ino)
    os.chdir(base)
    libc.syscall("pivot_root", _c("."), _c("."))
    libc.call("umount2", _c("."), MNT_DETACH)  # the old root, stacked beneath the new one
    root = os.stat("/")
    if (root.st_dev, root.st_ino) != base_id:
        raise OSError(0, "after pivot_root, / is not the run's new root")
    os.chdir("/")
    return attest.view(host_tree)


def start_in(cwd: str, required: bool) -> str:
    """Enter ``cwd`` in the view; where the view has no such directory, stay in / unless
    the spec named it (``required``: then the run fails here)."""
    try:
        os.chdir(cwd)
        return f"cwd={cwd}"
    except OSError:
        if required:
            raise
        return f"cwd=/ wanted={cwd} (not in the view)"


def _seal(fd: int) -> None:
    """Read-only from here on: the view's own tmpfs mounts are never the run's storage."""
    try:
        _set_attrs(fd, "", MOUNT_ATTR_RDONLY | mounts.MOUNT_ATTR_NOSUID | mounts.MOUNT_ATTR_NODEV, recursive=False)
    finally:
        os.close(fd)


def exec_through_read_only_clone(exe_slot: int, path: str, located: int) -> str:
    """Put a read-only, nosuid,nodev clone of the host's exe at its slot: what the workload
    execs, and what its /proc/self/exe then names (no chmod or utime of the host's file
    through it, even for the file's owner). ``located``: the exe as a mount this process
    may clone: the host's fd itself in a root launcher (still in the host's namespace), else
    the exe found at ``path`` in the run's copy of it (checked against the host's fd)."""
    tree = detached_clone(located, writable=False)
    os.dup2(tree, exe_slot, inheritable=False)
    os.close(tree)
    return f"{attest.view_exe(path)} nosuid,nodev"


def shown_trees(request) -> list:
    """``[(slot, host path, writable)]``: every host-opened tree the view shows, its roots
    and its binds' sources."""
    return [*request.view.roots, *((b.source_slot, b.source_path, b.writable) for b in request.binds)]


def assemble(request, trees: dict, note) -> int | None:
    """Build the run's root as the plan's view says, pivot into it; returns an fd on the temp
    root's tmpfs (or None). ``trees``: clones a root launcher made from the host's fds
    (idmapped or plain), by slot, attached in place of one located and made here. ``note``:
    the transcript's note writer. Mounts go in path order, so a parent is
    in place before anything beneath it (the temp root before a root inside it); /proc and
    /dev go last, over whatever a root at / brought."""
    view = request.view
    # Every source is located and cloned first: nothing mounted yet can shadow its path, and
    # no clone can hold the new root.
    for slot, path, writable in shown_trees(request):
        if slot in trees:
            continue
        located = mounts.locate_source(slot, path)
        try:
            trees[slot] = detached_clone(located, writable)
        finally:
            os.close(located)
    if view.exe is not None and request.outside_id is None:  # a root launcher cloned it already
        located = mounts.locate_source(request.exe_slot, view.exe)
        try:
            note(exec_through_read_only_clone(request.exe_slot, view.exe, located))
        finally:
            os.close(located)
    devices = locate_devices(request.terminal)
    base, base_fd = new_base(view.host_tree)
    creatable = set() if view.host_tree else {os.fstat(base_fd).st_dev}
    mounted = [(path, "root", slot, writable) for slot, path, writable in view.roots]
    mounted += [(b.dest, "bind", b.source_slot, b.writable) for b in request.binds]
    if request.temp_root is not None:
        mounted.append((request.temp_root[0], "temp_root", None, True))
    mounted.sort(key=lambda m: m[0])
    temp_root = None
    for path, kind, slot, writable in mounted:
        where = base + path if path != "/" else base
        if kind == "temp_root":
            mounts.ensure_mountpoint(where, True, creatable)
            text, temp_root = mounts.mount_temp_root(where, *request.temp_root[1:], shown_as=path)
            creatable.add(os.fstat(temp_root).st_dev)
        else:
            attach_tree(trees.pop(slot), where, creatable)
            text = f"{attest.view_root(path, writable, slot in request.idmapped)} verified=dev_ino nosuid,nodev"
        note(text)
        if kind == "bind":
            note(f"{attest.bind(path)} writable={str(writable).lower()} verified=dev_ino")
    for path, target in view.links:
        if not os.path.lexists(base + path):  # a root at / may have brought it already
            mounts.ensure_mountpoint(base + os.path.dirname(path), True, creatable)
            os.symlink(target, base + path)
            note(f"view_link path={path} target={target}")
    if request.pid_namespace:
        mounts.ensure_mountpoint(base + "/proc", True, creatable)
        note(mounts.mount_proc(base + "/proc"))
    text, dev = make_dev(base, devices, creatable)
    note(text)
    note(mask(base, view.masked))
    _seal(dev)
    if not view.host_tree:
        _seal(base_fd)
    else:
        os.close(base_fd)
    note(pivot(base, view.host_tree))
    return temp_root
