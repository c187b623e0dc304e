"""Host facts for the Linux backend's profile snapshot.

``prove`` does things (runs the launcher's own probe in throwaway children, creates and
removes a cgroup leaf); it runs once per backend. ``read_live`` only reads files and is cheap
enough to run at every plan and before every execute, to detect drift.
"""

import os

from bvisor.linux.filesystem import probe_system_roots
from bvisor.linux.launch import probe_launcher

_SYSCTLS = (
    "user/max_user_namespaces",
    "kernel/unprivileged_userns_clone",
    "kernel/apparmor_restrict_unprivileged_userns",
)


def _read(path: str):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def read_live() -> dict:
    facts = {"kernel_release": os.uname().release, "arch": os.uname().machine}
    for name in _SYSCTLS:
        value = _read(f"/proc/sys/{name}")
        if value is not None:
            facts["sysctl." + name.replace("/", ".")] = value
    facts.update(probe_system_roots())
    return facts


def _cgroup_mounts() -> dict:
    """Mount point per hierarchy: ``"unified"`` for cgroup2, else each v1 controller name."""
    mounts = {}
    for line in (_read("/proc/self/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        if fields[2] == "cgroup2":
            mounts.setdefault("unified", fields[1])
        elif fields[2] == "cgroup":
            for option in fields[3].split(","):
                if option in ("pids", "memory", "freezer", "cpuacct", "cpu"):
                    mounts.setdefault(option, fields[1])
    return mounts


def _own_cgroups() -> dict:
    """This process's cgroup path per hierarchy, from /proc/self/cgroup."""
    paths = {}
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else ["unified"]:
            paths[name] = path
    return paths


def _prove_writable(directory: str) -> str:
    leaf = os.path.join(directory, f"bvisor-probe-{os.getpid()}")
    try:
        os.mkdir(leaf)
        os.rmdir(leaf)
        return "writable"
    except OSError as exc:
        return f"not_writable errno={exc.errno}"


def prove_cgroups() -> dict:
    """Which cgroup hierarchies this host user can create a leaf in (created, then removed)."""
    own = _own_cgroups()
    facts = {}
    for hierarchy, mount in sorted(_cgroup_mounts().items()):
        directory = os.path.join(mount, own.get(hierarchy, "/").lstrip("/"))
        facts[f"cgroup.{hierarchy}"] = _prove_writable(directory)
    return facts or {"cgroup": "absent"}


def prove(launcher) -> dict:
    facts = {f"launcher.{k}": v for k, v in probe_launcher(launcher).items()}
    facts.update(prove_cgroups())
    return facts
