"""Which filesystem roots a boundary grants, as a pure function of the spec and the snapshot.

The planner lists these grants in the plan and the lowering opens exactly these paths, so
what was admitted, what is installed and what the report says are one list.
"""

import os

from bvisor.backends.linux.facts import SYSTEM_ROOTS_FACT, linux_facts
from bvisor.contract import BackendProfileSnapshot, Capability, FsAccess, HostControl

# What an ordinary program needs to load and run, read-only — except /dev/null, which
# programs open for writing (`2>/dev/null`). Only those present on the host are granted.
SYSTEM_ROOTS = (
    ("/usr", False),
    ("/bin", False),
    ("/sbin", False),
    ("/lib", False),
    ("/lib32", False),
    ("/lib64", False),
    ("/libx32", False),
    ("/etc", False),
    ("/dev/null", True),
    ("/dev/zero", False),
    ("/dev/random", False),
    ("/dev/urandom", False),
)


def present_system_roots() -> list:
    """The system roots this host has."""
    return [path for path, _ in SYSTEM_ROOTS if os.path.exists(path)]


def probe_system_roots() -> dict:
    return {SYSTEM_ROOTS_FACT: ",".join(present_system_roots())}


class Grant:
    __slots__ = ("path", "writable", "origin")

    def __init__(self, path: str, writable: bool, origin: str):
        self.path, self.writable, self.origin = path, writable, origin

    def describe(self) -> str:
        return f"{'read-write' if self.writable else 'read'} {self.path}" + (f" ({self.origin})" if self.origin != "requested" else "")


def _system_grants(snapshot: BackendProfileSnapshot) -> list:
    present = set(linux_facts(snapshot).system_roots)
    return [Grant(path, writable, "system root") for path, writable in SYSTEM_ROOTS if path in present]


def requirement_grants(cap: Capability.Filesystem, snapshot: BackendProfileSnapshot) -> list:
    grants = [Grant(root, cap.access is not FsAccess.Read, "requested") for root in cap.roots]
    return grants + (_system_grants(snapshot) if cap.system_roots else [])


def filesystem_grants(capabilities, snapshot: BackendProfileSnapshot) -> list:
    """Every root the boundary grants, once per path (a path granted both ways is read-write)."""
    merged: dict = {}
    for cap in capabilities:
        if isinstance(cap, Capability.Filesystem):
            for grant in requirement_grants(cap, snapshot):
                known = merged.get(grant.path)
                if known is None or (grant.writable and not known.writable):
                    merged[grant.path] = grant
    return list(merged.values())


def exe_grant(workload) -> Grant:
    """The launcher's landlock ruleset always lets the workload read and execute its own exe
    (the fd the host opened), wherever it lives."""
    return Grant(workload.exe, False, "the workload's exe")


def temp_root_grant(control: HostControl.TempRoot) -> Grant:
    """The run's private tmpfs is the workload's to write, roots or not."""
    return Grant(control.path, True, "private tmpfs")


def exposed_grant(expose: HostControl.ExposePath) -> Grant:
    """Landlock rules attach to objects, not paths: exposing a source grants its declared
    access to that object wherever it is reached from, its own host path included."""
    return Grant(expose.source, expose.access.writes, f"exposed at {expose.dest}")
