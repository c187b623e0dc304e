"""The host's own view of a process's cgroups, for oracles: where each hierarchy is mounted
and which directory a pid sits in, read from /proc alone (never from bvisor)."""

import os

from helpers import read_text


def cgroup_mounts() -> dict:
    """Where this host mounts each hierarchy:
    ``{controller ('' = cgroup2): (mountpoint, root)}``."""
    mounts = {}
    for line in (read_text("/proc/self/mountinfo") or "").splitlines():
        head, _, tail = line.partition(" - ")
        fields, after = head.split(), tail.split()
        if len(fields) < 5 or len(after) < 3:
            continue
        if after[0] == "cgroup2":
            mounts.setdefault("", (fields[4], fields[3]))
        elif after[0] == "cgroup":
            for option in after[2].split(","):
                mounts.setdefault(option, (fields[4], fields[3]))
    return mounts


def host_cgroup_dirs(pid: int) -> dict:
    """``{controller ('' = cgroup2): directory}`` of ``pid``, from ``/proc/<pid>/cgroup`` alone."""
    mounts, dirs = cgroup_mounts(), {}
    for line in (read_text(f"/proc/{pid}/cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            if name not in mounts:
                continue
            mountpoint, root = mounts[name]
            relative = path[len(root) :] if root != "/" and path.startswith(root) else path
            dirs[name] = mountpoint.rstrip("/") + "/" + relative.strip("/")
    return dirs


def bvisor_leaf_dirs(pid: int) -> list:
    """The host directories of every bvisor leaf ``pid`` sits in."""
    return sorted({d for d in host_cgroup_dirs(pid).values() if os.path.basename(d).startswith("bvisor-")})
