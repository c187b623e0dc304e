"""The host's mount table (``/proc/self/mountinfo``), and every path at which one object shows.

A path string names where an object is reached, not what it is: a bind mount shows the same
directory at a second path. The view's masks and the writable-root refusals are about
objects, so they compare the paths at which each object shows, from this table."""

import os
import re

import msgspec


class Mount(msgspec.Struct, frozen=True):
    mount_id: int
    device: str  # major:minor of the filesystem the mount shows
    root: str  # the mount's root within that filesystem
    point: str  # where it is mounted
    fstype: str
    superopts: str


def _unescape(field: str) -> str:
    # mountinfo octal-escapes space, tab, newline and backslash in paths.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse(text: str) -> list:
    """The mounts of a mountinfo text, in its order (pure)."""
    table = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if len(fields) < sep + 4:
            continue
        table.append(
            Mount(
                mount_id=int(fields[0]),
                device=fields[2],
                root=_unescape(fields[3]),
                point=_unescape(fields[4]),
                fstype=fields[sep + 1],
                superopts=fields[sep + 3],
            )
        )
    return table


def read() -> list:
    with open("/proc/self/mountinfo") as f:
        return parse(f.read())


def beneath(path: str, parent: str) -> bool:
    """``path`` is ``parent`` or below it (both normalised absolute paths)."""
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def shown_at(mount: Mount, fs_path: str) -> str | None:
    """The path at which ``mount`` shows ``fs_path`` of its filesystem, or ``None`` when the
    mount shows another subtree."""
    if not beneath(fs_path, mount.root):
        return None
    relative = fs_path[len(mount.root.rstrip("/")) :].strip("/")
    return os.path.join(mount.point, relative) if relative else mount.point


def _mount_id(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OSError(f"fd {fd}: no mnt_id in fdinfo")


def _location(path: str, table: list) -> tuple:
    """``(device, path within that filesystem)`` of what ``path`` names; a part that does
    not exist yet (an evidence home made on first use) is placed under its nearest existing
    parent."""
    tail = []
    while True:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            break
        except (FileNotFoundError, NotADirectoryError):
            path, name = os.path.split(path)
            tail.insert(0, name)
    try:
        reached, mount_id = os.readlink(f"/proc/self/fd/{fd}"), _mount_id(fd)
    finally:
        os.close(fd)
    mount = next(m for m in table if m.mount_id == mount_id)
    within = os.path.relpath(reached, mount.point) if beneath(reached, mount.point) else "."
    return mount.device, os.path.normpath(os.path.join(mount.root, within, *tail))


def places(table: list, device: str, fs_path: str, parts: bool = True) -> list:
    """Every path at which ``fs_path`` of filesystem ``device`` shows: its own path, each bind
    mount of it or of a directory above it, and (``parts``) each mount of a subtree of it
    (pure)."""
    shown = []
    for mount in table:
        if mount.device != device:
            continue
        place = shown_at(mount, fs_path) or (mount.point if parts and beneath(mount.root, fs_path) else None)
        if place is not None and place not in shown:
            shown.append(place)
    return shown


def visible_at(path: str, table: list, parts: bool = True) -> list:
    """Every path of this mount namespace at which ``path``'s object (or, ``parts``, a part
    of it) shows."""
    return places(table, *_location(path, table), parts=parts)
