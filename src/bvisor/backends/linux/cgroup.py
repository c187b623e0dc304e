"""What this host's cgroups offer a run: discover where leaves may go, and prove by doing
what this host user can really use (a throwaway probe leaf per mechanism, always removed).

cgroupfs is plain file I/O. A hybrid host (cgroup v1 controllers plus a controller-less
cgroup2 mount) and a pure cgroup2 host with a delegated subtree are both served: every fact
names the hierarchy it came from ("v1" or "v2"), and each leaf is made under this process's
own cgroup directory in each hierarchy it uses. The leaf itself is ``cgroup_leaf``.
"""

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

import msgspec

from bvisor.backends.linux import cgroupfs
from bvisor.backends.linux import mountinfo as mountinfo_table
from bvisor.backends.linux.cgroupfs import CgroupError

# The only v1 controllers a run leaf uses; others (cpu, cpuset, blkio, ...) carry no fact.
V1_CONTROLLERS = ("pids", "memory", "freezer", "cpuacct")

_PROBE_PREFIX = "bvisor-probe-"


# --- where leaves go -----------------------------------------------------------------------


class CgroupLayout(msgspec.Struct, frozen=True):
    """Where run leaves go, per hierarchy: directories (the process's own cgroup dir)."""

    unified: str | None
    v1: Mapping[str, str]

    def __post_init__(self):
        msgspec.structs.force_setattr(self, "v1", MappingProxyType(dict(self.v1)))


def _own_paths(self_cgroup: str) -> dict[str, str]:
    """This process's cgroup path per hierarchy: ``""`` for cgroup2, else each controller."""
    paths = {}
    for line in self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def discover(mountinfo: str, self_cgroup: str) -> CgroupLayout:
    """Parse ``/proc/self/mountinfo`` and ``/proc/self/cgroup`` text (pure)."""
    own = _own_paths(self_cgroup)
    unified = None
    v1: dict[str, str] = {}
    for mount in mountinfo_table.parse(mountinfo):
        if mount.fstype == "cgroup2" and unified is None and own.get("") is not None:
            unified = mountinfo_table.shown_at(mount, own[""])
        elif mount.fstype == "cgroup":
            for name in mount.superopts.split(","):
                if name in V1_CONTROLLERS and name not in v1 and own.get(name) is not None:
                    directory = mountinfo_table.shown_at(mount, own[name])
                    if directory:
                        v1[name] = directory
    return CgroupLayout(unified=unified, v1=v1)


def current_layout() -> CgroupLayout:
    texts = [cgroupfs.read(f"/proc/self/{name}") or "" for name in ("mountinfo", "cgroup")]
    return discover(*texts)


# --- what this user can use, proven by doing -------------------------------------------------


class Delegation(msgspec.Struct, frozen=True):
    """What this host user can really use, proven by doing (mkdir a probe leaf, write the
    files, rmdir)."""

    kill: str | None  # "cgroup.kill" (v2) | "freezer" (v1) | None
    pids: str | None  # "v2" | "v1" | None
    memory: str | None  # "v2" | "v1" | None
    cpu: str | None  # "v2" (cpu.stat usage_usec) | "v1" (cpuacct.usage) | None
    reasons: Mapping[str, str]  # for each None above: why

    def __post_init__(self):
        msgspec.structs.force_setattr(self, "reasons", MappingProxyType(dict(self.reasons)))

    def usable(self) -> bool:
        """True when a run leaf would carry at least one mechanism."""
        return any(value is not None for value in (self.kill, self.pids, self.memory, self.cpu))

    def facts(self) -> dict[str, str]:
        return {
            f"cgroup.{name}": value or f"unavailable: {self.reasons.get(name, 'not proven')}"
            for name, value in (
                ("kill", self.kill),
                ("pids", self.pids),
                ("memory", self.memory),
                ("cpu", self.cpu),
            )
        }


def _probe_name() -> str:
    return f"{_PROBE_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"  # not `secrets`: it costs ~9 ms of imports


@contextmanager
def _probe_leaf(parent: str) -> Iterator[str]:
    leaf = os.path.join(parent, _probe_name())
    cgroupfs.mkdir(leaf)
    try:
        yield leaf
    finally:
        problem = cgroupfs.rmdir_bounded(leaf, time.monotonic() + 1.0)
        if problem:
            raise CgroupError(problem, leaf)


def _stable(reason: str) -> str:
    # Reasons are profile facts bound into plan ids: the random probe name must not leak in.
    return re.sub(re.escape(_PROBE_PREFIX) + r"[0-9]+-[0-9a-f]+", _PROBE_PREFIX + "*", reason)


def _enable_v2(parent: str, controller: str) -> None:
    """A v2 controller is usable in a leaf only if the parent distributes it; ask for it once.
    Failure (EBUSY: the parent holds processes; EACCES: not ours) means not delegated."""
    available = (cgroupfs.read(os.path.join(parent, "cgroup.controllers")) or "").split()
    if controller not in available:
        raise CgroupError(f"{controller} not in {parent}/cgroup.controllers", parent)
    control = os.path.join(parent, "cgroup.subtree_control")
    if controller not in (cgroupfs.read(control) or "").split():
        cgroupfs.write(control, f"+{controller}")


def _prove_kill_v2(parent: str) -> None:
    with _probe_leaf(parent) as leaf:
        # Killing an empty leaf is harmless and proves the write is allowed.
        cgroupfs.write(os.path.join(leaf, "cgroup.kill"), "1")


def _prove_kill_freezer(parent: str) -> None:
    with _probe_leaf(parent) as leaf:
        cgroupfs.freeze_kill(leaf)


def _prove_pids(parent: str, flavour: str) -> None:
    if flavour == "v2":
        _enable_v2(parent, "pids")
    with _probe_leaf(parent) as leaf:
        cgroupfs.write_pids_max(leaf, 1)


def _prove_memory(parent: str, flavour: str) -> None:
    if flavour == "v2":
        _enable_v2(parent, "memory")
    peak = "memory.peak" if flavour == "v2" else "memory.max_usage_in_bytes"
    with _probe_leaf(parent) as leaf:
        cgroupfs.write_memory_max(leaf, flavour, 64 << 20)
        if cgroupfs.read(os.path.join(leaf, peak)) is None:
            raise CgroupError(f"{leaf}/{peak} missing", leaf)


def _prove_cpu(parent: str, flavour: str) -> None:
    with _probe_leaf(parent) as leaf:
        if flavour == "v2":
            found = cgroupfs.keyed_value(cgroupfs.read(os.path.join(leaf, "cpu.stat")), "usage_usec")
        else:
            found = cgroupfs.int_or_none(cgroupfs.read(os.path.join(leaf, "cpuacct.usage")))
        if found is None:
            raise CgroupError(f"{leaf}: no cpu usage counter", leaf)


def _first_proven(attempts: list[tuple[str, str | None, Callable[[str], None]]]):
    """The first ``(answer, parent, prove)`` whose proof passes, and why each one failed."""
    failures = []
    for answer, parent, prove in attempts:
        if parent is None:
            failures.append(f"{answer}: no hierarchy")
            continue
        try:
            prove(parent)
            return answer, ""
        except CgroupError as exc:
            failures.append(f"{answer}: {_stable(str(exc))}")
    return None, "; ".join(failures)


def prove_delegation(layout: CgroupLayout) -> Delegation:
    """Try each mechanism in a throwaway probe leaf (v2 preferred); every probe leaf is
    removed whether its proof passed or not."""
    unified, v1 = layout.unified, layout.v1
    found = {
        "kill": _first_proven([
            ("cgroup.kill", unified, _prove_kill_v2),
            ("freezer", v1.get("freezer"), _prove_kill_freezer),
        ]),
        "pids": _first_proven([
            ("v2", unified, lambda p: _prove_pids(p, "v2")),
            ("v1", v1.get("pids"), lambda p: _prove_pids(p, "v1")),
        ]),
        "memory": _first_proven([
            ("v2", unified, lambda p: _prove_memory(p, "v2")),
            ("v1", v1.get("memory"), lambda p: _prove_memory(p, "v1")),
        ]),
        "cpu": _first_proven([
            ("v2", unified, lambda p: _prove_cpu(p, "v2")),
            ("v1", v1.get("cpuacct"), lambda p: _prove_cpu(p, "v1")),
        ]),
    }
    return Delegation(
        **{name: answer for name, (answer, _) in found.items()},
        reasons={name: why for name, (answer, why) in found.items() if answer is None},
    )
