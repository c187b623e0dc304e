"""One run's cgroup leaf: made with its limits written before the workload runs, entered
through host-opened ``cgroup.procs`` fds, its usage read, every member killed, and removed.
"""

import errno
import os
import re
import time
from collections.abc import Mapping
from types import MappingProxyType

import msgspec

from bvisor.backends.linux import cgroupfs
from bvisor.backends.linux.cgroup import CgroupLayout, Delegation
from bvisor.backends.linux.cgroupfs import CgroupError


class NotDelegated(CgroupError):
    """A limit was asked on a controller this host user cannot use; refused before any mkdir."""


class LeafLimits(msgspec.Struct, frozen=True):
    pids_max: int | None = None  # written as pids.max before the workload runs
    memory_max: int | None = None  # bytes, swap closed


class LeafUsage(msgspec.Struct, frozen=True):
    cpu_us: int | None  # whole tree, including members that already exited
    memory_peak: int | None  # bytes
    pids_peak: int | None
    pids_current: int | None
    pids_limit_hits: int | None  # forks refused by pids.max
    oom_kills: int | None

    def describe(self) -> str:
        return " ".join(f"{name}={getattr(self, name)}" for name in self.__struct_fields__)


def leaf_name(owner_pid: int, owner_start: int, attempt_hex: str) -> str:
    """Owner pid plus its start time, so a reused pid never passes for the owner."""
    attempt = attempt_hex.lower()[:16]
    if not re.fullmatch(r"[0-9a-f]{16}", attempt):
        raise ValueError(f"attempt_hex must hold at least 16 hex digits: {attempt_hex!r}")
    return f"bvisor-{owner_pid}-{owner_start}-{attempt}"


def parse_start_time(stat: str) -> int:
    """Field 22 (starttime) of a ``/proc/<pid>/stat`` line. comm (field 2) may hold spaces and
    parentheses, so fields are counted after its last ')'."""
    after_comm = stat.rpartition(")")[2].split()
    return int(after_comm[22 - 3])


def process_start_time(pid: int) -> int | None:
    """``None`` if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_start_time(f.read())
    except (FileNotFoundError, ProcessLookupError):
        return None


class RunLeaf(msgspec.Struct, frozen=True):
    """A run's leaf: the cgroup2 directory (if used) and each v1 controller's directory.
    Holds no other state, so every operation is safe to repeat after the leaf is gone."""

    unified: str | None
    v1: Mapping[str, str]  # controller -> leaf dir
    kill_mechanism: str  # "cgroup.kill" | "freezer" | "sigkill_each"

    def __post_init__(self):
        msgspec.structs.force_setattr(self, "v1", MappingProxyType(dict(self.v1)))

    @property
    def dirs(self) -> tuple[str, ...]:
        return cgroupfs.distinct(self.unified, self.v1)

    @classmethod
    def create(
        cls, layout: CgroupLayout, delegation: Delegation, name: str, limits: LeafLimits
    ) -> "RunLeaf":
        leaf = cls._plan(layout, delegation, name, limits)
        made: list[str] = []
        try:
            for directory in leaf.dirs:
                cgroupfs.mkdir(directory)
                made.append(directory)
            if limits.pids_max is not None:
                cgroupfs.write_pids_max(leaf._pids_dir, limits.pids_max)
            if limits.memory_max is not None:
                cgroupfs.write_memory_max(leaf._memory_dir, delegation.memory, limits.memory_max)
        except CgroupError:
            for directory in reversed(made):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass  # a fresh, empty leaf; reconcile_orphans sweeps anything this misses
            raise
        return leaf

    @classmethod
    def _plan(
        cls, layout: CgroupLayout, delegation: Delegation, name: str, limits: LeafLimits
    ) -> "RunLeaf":
        """The leaf's directories, checked against the delegation before anything is made."""
        if "/" in name or name in ("", ".", ".."):
            raise CgroupError(f"leaf name {name!r} is not a single path component")
        for field, controller in (("pids_max", "pids"), ("memory_max", "memory")):
            value = getattr(limits, field)
            if value is None:
                continue
            if getattr(delegation, controller) is None:
                why = delegation.reasons.get(controller, "not proven")
                raise NotDelegated(f"{field} asked but {controller} is not delegated: {why}")
            if value < 0:
                raise CgroupError(f"{field} must be >= 0, got {value}")
        wanted_v1 = {
            "pids": delegation.pids == "v1",
            "memory": delegation.memory == "v1",
            "cpuacct": delegation.cpu == "v1",
            "freezer": delegation.kill == "freezer",
        }
        v1 = {}
        for controller, wanted in wanted_v1.items():
            if not wanted:
                continue
            if controller not in layout.v1:
                raise CgroupError(f"delegation uses v1 {controller} but the layout has none")
            v1[controller] = os.path.join(layout.v1[controller], name)
        uses_unified = "v2" in (delegation.pids, delegation.memory, delegation.cpu) or (
            delegation.kill == "cgroup.kill"
        )
        if uses_unified and layout.unified is None:
            raise CgroupError("delegation uses cgroup2 but the layout has none")
        return cls(
            unified=os.path.join(layout.unified, name) if uses_unified else None,
            v1=v1,
            kill_mechanism={"cgroup.kill": "cgroup.kill", "freezer": "freezer"}.get(
                delegation.kill, "sigkill_each"
            ),
        )

    # v1 files win where a v1 directory exists: a v2 leaf made only for kill or cpu has no
    # pids.*/memory.* files, and those then read as None.
    @property
    def _pids_dir(self) -> str | None:
        return self.v1.get("pids", self.unified)

    @property
    def _memory_dir(self) -> str | None:
        return self.v1.get("memory", self.unified)

    def open_procs(self) -> list[int]:
        """One ``O_WRONLY|O_CLOEXEC`` fd per leaf dir on its ``cgroup.procs``. cgroupfs checks
        the opener's credentials, so a host-opened fd lets an unprivileged child write b"0"
        to place itself. The caller owns and closes them."""
        fds: list[int] = []
        try:
            for directory in self.dirs:
                path = os.path.join(directory, "cgroup.procs")
                try:
                    fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
                except OSError as exc:
                    raise cgroupfs.os_failure("open", path, exc) from exc
        except CgroupError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def usage(self) -> LeafUsage:
        def read(directory: str | None, file: str) -> str | None:
            return cgroupfs.read(os.path.join(directory, file)) if directory else None

        if "cpuacct" in self.v1:
            ns = cgroupfs.int_or_none(read(self.v1["cpuacct"], "cpuacct.usage"))
            cpu_us = ns // 1000 if ns is not None else None
        else:
            cpu_us = cgroupfs.keyed_value(read(self.unified, "cpu.stat"), "usage_usec")
        v1_memory = "memory" in self.v1
        peak_file = "memory.max_usage_in_bytes" if v1_memory else "memory.peak"
        oom_file = "memory.oom_control" if v1_memory else "memory.events"
        return LeafUsage(
            cpu_us=cpu_us,
            memory_peak=cgroupfs.int_or_none(read(self._memory_dir, peak_file)),
            pids_peak=cgroupfs.int_or_none(read(self._pids_dir, "pids.peak")),
            pids_current=cgroupfs.int_or_none(read(self._pids_dir, "pids.current")),
            pids_limit_hits=cgroupfs.keyed_value(read(self._pids_dir, "pids.events"), "max"),
            oom_kills=cgroupfs.keyed_value(read(self._memory_dir, oom_file), "oom_kill"),
        )

    def members(self) -> set[int]:
        return set().union(*(cgroupfs.pids_in(d) for d in self.dirs))

    def _members_outside(self, primary: str | None) -> set[int]:
        """Members a kill on ``primary`` cannot reach: those that placed themselves in only some
        hierarchies. The primary is read first, so a member that exits between the reads is
        never mistaken for an outsider (its pid could be reused by then)."""
        covered = cgroupfs.pids_in(primary) if primary else set()
        others = (d for d in self.dirs if d != primary)
        return set().union(*(cgroupfs.pids_in(d) for d in others)) - covered

    def kill(self) -> str:
        """Kill every member; returns the mechanism that did it. Atomic for ``cgroup.kill``
        (the kernel also refuses forks during it) and for a freezer that reached FROZEN."""
        primary = {"cgroup.kill": self.unified, "freezer": self.v1.get("freezer")}.get(
            self.kill_mechanism
        )
        used = "sigkill_each"
        try:
            if self.kill_mechanism == "cgroup.kill":
                cgroupfs.write(os.path.join(primary, "cgroup.kill"), "1")
                used = "cgroup.kill"
            elif self.kill_mechanism == "freezer" and cgroupfs.freeze_kill(primary):
                used = "freezer"
        except CgroupError as exc:
            if exc.errno != errno.ENOENT:
                raise
            used = self.kill_mechanism  # that leaf is already gone: nothing left to kill there
        cgroupfs.sigkill(self._members_outside(primary))
        return used

    def _busy(self) -> list[str]:
        """Dirs that still hold a member; v2 also counts members still exiting."""
        busy = [d for d in self.dirs if cgroupfs.pids_in(d)]
        if self.unified and self.unified not in busy:
            if cgroupfs.keyed_value(cgroupfs.read(os.path.join(self.unified, "cgroup.events")), "populated"):
                busy.append(self.unified)
        return busy

    def teardown(self, drain_seconds: float = 5.0) -> list[str]:
        """Kill, wait (bounded) until every dir is empty, rmdir each. Never raises: returns
        the problems, an empty list when clean. Safe to repeat."""
        problems: list[str] = []
        deadline = time.monotonic() + drain_seconds
        try:
            self.kill()
        except CgroupError as exc:
            problems.append(str(exc))  # still drain: the members it did reach may yet exit
        try:
            while busy := self._busy():
                if time.monotonic() >= deadline:
                    problems.append(
                        f"still populated after {drain_seconds}s: {', '.join(busy)} "
                        f"(pids {sorted(self.members())})"
                    )
                    break
                if self.kill_mechanism == "sigkill_each":
                    # Non-atomic: a member may have forked between reading and signalling.
                    cgroupfs.sigkill(self.members())
                time.sleep(cgroupfs.POLL_SECONDS)
        except CgroupError as exc:
            problems.append(str(exc))
        for directory in self.dirs:
            problem = cgroupfs.rmdir_bounded(directory, deadline)
            if problem:
                problems.append(problem)
        return problems
