"""One cgroup leaf per sandbox run: discover where leaves may go, prove by doing what this host
user can really use, create a leaf with its limits written before the workload runs, read its
usage, kill and remove it, and reconcile leaves left behind by a crashed host.

cgroupfs is plain file I/O. A hybrid host (cgroup v1 controllers plus a controller-less
cgroup2 mount) and a pure cgroup2 host with a delegated subtree are both served: every fact
names the hierarchy it came from ("v1" or "v2"), and each leaf is made under this process's
own cgroup directory in each hierarchy it uses.
"""

import errno
import os
import re
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

import msgspec

from bvisor.launcher.fds import read_text
from bvisor.backends.linux import mountinfo as mountinfo_table

# The only v1 controllers a run leaf uses; others (cpu, cpuset, blkio, ...) carry no fact.
V1_CONTROLLERS = ("pids", "memory", "freezer", "cpuacct")

_POLL_SECONDS = 0.005
# A v1 freeze of a leaf whose tasks are in uninterruptible sleep can stay FREEZING; past this
# bound the kill goes on without the freeze and says so.
_FREEZE_SECONDS = 2.0
_PROBE_PREFIX = "bvisor-probe-"
_RUN_LEAF = re.compile(r"bvisor-(\d+)-(\d+)-([0-9a-f]+)")
# ``bvisor-probe-<pid>`` alone is the shape older probes left; still ours to clean.
_PROBE_LEAF = re.compile(r"bvisor-probe-(\d+)(?:-.*)?")


class CgroupError(Exception):
    """A cgroupfs operation failed. ``path`` and ``errno`` say where and why (``None`` when the
    failure is a refusal rather than a kernel answer)."""

    def __init__(self, message: str, path: str | None = None, errno_: int | None = None):
        super().__init__(message)
        self.path = path
        self.errno = errno_


class NotDelegated(CgroupError):
    """A limit was asked on a controller this host user cannot use; refused before any mkdir."""


def _errno_name(code: int | None) -> str:
    return errno.errorcode.get(code, str(code)) if code is not None else "error"


def _os_failure(op: str, path: str, exc: OSError) -> CgroupError:
    return CgroupError(f"{op} {path}: {_errno_name(exc.errno)}", path, exc.errno)


# --- file primitives -----------------------------------------------------------------------


def _write(path: str, text: str) -> None:
    # One write(2) per value: cgroupfs parses each write on its own.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_failure("open", path, exc) from exc
    try:
        os.write(fd, text.encode())
    except OSError as exc:
        raise _os_failure("write", path, exc) from exc
    finally:
        os.close(fd)


def _read(path: str) -> str | None:
    """The file's text; ``None`` when it does not exist (a kernel or controller without it, or
    a leaf already removed)."""
    try:
        return read_text(path)  # with no buffered io stack: a run reads a dozen of these
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _os_failure("read", path, exc) from exc


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path)
    except OSError as exc:
        raise _os_failure("mkdir", path, exc) from exc


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text is not None else None


def _keyed_value(text: str | None, key: str) -> int | None:
    """The integer after ``key`` in a flat-keyed cgroup file (``cpu.stat``, ``pids.events``,
    ``memory.events``, v1 ``memory.oom_control``); ``None`` if the file or key is absent."""
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return None


def _pids_in(directory: str) -> set[int]:
    return {int(line) for line in (_read(os.path.join(directory, "cgroup.procs")) or "").split()}


def _sigkill(pids: Iterable[int]) -> None:
    denied = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:
            denied.append(pid)
    if denied:
        # Signalling the rest first: one member we may not signal must not shield the others.
        raise CgroupError(f"kill {sorted(denied)}: EPERM", errno_=errno.EPERM)


def _distinct(unified: str | None, v1: Mapping[str, str]) -> tuple[str, ...]:
    """Each directory once, cgroup2 first (co-mounted v1 controllers share one)."""
    return tuple(dict.fromkeys(d for d in (unified, *v1.values()) if d))


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
    texts = [_read(f"/proc/self/{name}") or "" for name in ("mountinfo", "cgroup")]
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


def _write_pids_max(directory: str, value: int) -> None:
    _write(os.path.join(directory, "pids.max"), str(value))


def _write_memory_max(directory: str, flavour: str, value: int) -> None:
    """The memory cap with swap closed, so the cap bounds what the run can hold at all."""
    if flavour == "v1":
        # memsw must stay >= the memory limit: on a fresh leaf both are unlimited, so the
        # memory limit goes first.
        _write(os.path.join(directory, "memory.limit_in_bytes"), str(value))
        for name, text in (("memory.memsw.limit_in_bytes", str(value)), ("memory.swappiness", "0")):
            path = os.path.join(directory, name)
            if os.path.exists(path):
                _write(path, text)
    else:
        _write(os.path.join(directory, "memory.max"), str(value))
        swap = os.path.join(directory, "memory.swap.max")
        if os.path.exists(swap):
            _write(swap, "0")


def _freeze_kill(directory: str) -> bool:
    """v1 freezer kill: freeze so no member can fork or escape, SIGKILL each, thaw so the
    signals land. True when the leaf was seen FROZEN (the kill was atomic)."""
    state = os.path.join(directory, "freezer.state")
    _write(state, "FROZEN")
    deadline = time.monotonic() + _FREEZE_SECONDS
    while not (frozen := (_read(state) or "").strip() == "FROZEN"):
        if time.monotonic() >= deadline:
            break
        time.sleep(_POLL_SECONDS)
    try:
        _sigkill(_pids_in(directory))
    finally:
        _write(state, "THAWED")
    return frozen


def _probe_name() -> str:
    return f"{_PROBE_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"  # not `secrets`: it costs ~9 ms of imports


def _rmdir_bounded(path: str, deadline: float) -> str | None:
    """rmdir, retrying EBUSY (a leaf whose last member is still exiting) until the deadline.
    ``None`` when the directory is gone, else the problem."""
    while True:
        try:
            os.rmdir(path)
            return None
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                return f"rmdir {path}: {_errno_name(exc.errno)}"
        time.sleep(_POLL_SECONDS)


@contextmanager
def _probe_leaf(parent: str) -> Iterator[str]:
    leaf = os.path.join(parent, _probe_name())
    _mkdir(leaf)
    try:
        yield leaf
    finally:
        problem = _rmdir_bounded(leaf, time.monotonic() + 1.0)
        if problem:
            raise CgroupError(problem, leaf)


def _stable(reason: str) -> str:
    # Reasons are profile facts bound into plan ids: the random probe name must not leak in.
    return re.sub(re.escape(_PROBE_PREFIX) + r"[0-9]+-[0-9a-f]+", _PROBE_PREFIX + "*", reason)


def _enable_v2(parent: str, controller: str) -> None:
    """A v2 controller is usable in a leaf only if the parent distributes it; ask for it once.
    Failure (EBUSY: the parent holds processes; EACCES: not ours) means not delegated."""
    available = (_read(os.path.join(parent, "cgroup.controllers")) or "").split()
    if controller not in available:
        raise CgroupError(f"{controller} not in {parent}/cgroup.controllers", parent)
    control = os.path.join(parent, "cgroup.subtree_control")
    if controller not in (_read(control) or "").split():
        _write(control, f"+{controller}")


def _prove_kill_v2(parent: str) -> None:
    with _probe_leaf(parent) as leaf:
        # Killing an empty leaf is harmless and proves the write is allowed.
        _write(os.path.join(leaf, "cgroup.kill"), "1")


def _prove_kill_freezer(parent: str) -> None:
    with _probe_leaf(parent) as leaf:
        _freeze_kill(leaf)


def _prove_pids(parent: str, flavour: str) -> None:
    if flavour == "v2":
        _enable_v2(parent, "pids")
    with _probe_leaf(parent) as leaf:
        _write_pids_max(leaf, 1)


def _prove_memory(parent: str, flavour: str) -> None:
    if flavour == "v2":
        _enable_v2(parent, "memory")
    peak = "memory.peak" if flavour == "v2" else "memory.max_usage_in_bytes"
    with _probe_leaf(parent) as leaf:
        _write_memory_max(leaf, flavour, 64 << 20)
        if _read(os.path.join(leaf, peak)) is None:
            raise CgroupError(f"{leaf}/{peak} missing", leaf)


def _prove_cpu(parent: str, flavour: str) -> None:
    with _probe_leaf(parent) as leaf:
        if flavour == "v2":
            found = _keyed_value(_read(os.path.join(leaf, "cpu.stat")), "usage_usec")
        else:
            found = _int_or_none(_read(os.path.join(leaf, "cpuacct.usage")))
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


# --- run leaves ----------------------------------------------------------------------------


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
        return _distinct(self.unified, self.v1)

    @classmethod
    def create(
        cls, layout: CgroupLayout, delegation: Delegation, name: str, limits: LeafLimits
    ) -> "RunLeaf":
        leaf = cls._plan(layout, delegation, name, limits)
        made: list[str] = []
        try:
            for directory in leaf.dirs:
                _mkdir(directory)
                made.append(directory)
            if limits.pids_max is not None:
                _write_pids_max(leaf._pids_dir, limits.pids_max)
            if limits.memory_max is not None:
                _write_memory_max(leaf._memory_dir, delegation.memory, limits.memory_max)
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
                    raise _os_failure("open", path, exc) from exc
        except CgroupError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def usage(self) -> LeafUsage:
        def read(directory: str | None, file: str) -> str | None:
            return _read(os.path.join(directory, file)) if directory else None

        if "cpuacct" in self.v1:
            ns = _int_or_none(read(self.v1["cpuacct"], "cpuacct.usage"))
            cpu_us = ns // 1000 if ns is not None else None
        else:
            cpu_us = _keyed_value(read(self.unified, "cpu.stat"), "usage_usec")
        v1_memory = "memory" in self.v1
        peak_file = "memory.max_usage_in_bytes" if v1_memory else "memory.peak"
        oom_file = "memory.oom_control" if v1_memory else "memory.events"
        return LeafUsage(
            cpu_us=cpu_us,
            memory_peak=_int_or_none(read(self._memory_dir, peak_file)),
            pids_peak=_int_or_none(read(self._pids_dir, "pids.peak")),
            pids_current=_int_or_none(read(self._pids_dir, "pids.current")),
            pids_limit_hits=_keyed_value(read(self._pids_dir, "pids.events"), "max"),
            oom_kills=_keyed_value(read(self._memory_dir, oom_file), "oom_kill"),
        )

    def members(self) -> set[int]:
        return set().union(*(_pids_in(d) for d in self.dirs))

    def _members_outside(self, primary: str | None) -> set[int]:
        """Members a kill on ``primary`` cannot reach: those that placed themselves in only some
        hierarchies. The primary is read first, so a member that exits between the reads is
        never mistaken for an outsider (its pid could be reused by then)."""
        covered = _pids_in(primary) if primary else set()
        others = (d for d in self.dirs if d != primary)
        return set().union(*(_pids_in(d) for d in others)) - covered

    def kill(self) -> str:
        """Kill every member; returns the mechanism that did it. Atomic for ``cgroup.kill``
        (the kernel also refuses forks during it) and for a freezer that reached FROZEN."""
        primary = {"cgroup.kill": self.unified, "freezer": self.v1.get("freezer")}.get(
            self.kill_mechanism
        )
        used = "sigkill_each"
        try:
            if self.kill_mechanism == "cgroup.kill":
                _write(os.path.join(primary, "cgroup.kill"), "1")
                used = "cgroup.kill"
            elif self.kill_mechanism == "freezer" and _freeze_kill(primary):
                used = "freezer"
        except CgroupError as exc:
            if exc.errno != errno.ENOENT:
                raise
            used = self.kill_mechanism  # that leaf is already gone: nothing left to kill there
        _sigkill(self._members_outside(primary))
        return used

    def _busy(self) -> list[str]:
        """Dirs that still hold a member; v2 also counts members still exiting."""
        busy = [d for d in self.dirs if _pids_in(d)]
        if self.unified and self.unified not in busy:
            if _keyed_value(_read(os.path.join(self.unified, "cgroup.events")), "populated"):
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
                    _sigkill(self.members())
                time.sleep(_POLL_SECONDS)
        except CgroupError as exc:
            problems.append(str(exc))
        for directory in self.dirs:
            problem = _rmdir_bounded(directory, deadline)
            if problem:
                problems.append(problem)
        return problems


# --- orphans -------------------------------------------------------------------------------


def _owner_alive(name: str) -> bool | None:
    """Whether the owner named by a leaf is alive; ``None`` if the name is not ours."""
    if run := _RUN_LEAF.fullmatch(name):
        return process_start_time(int(run.group(1))) == int(run.group(2))
    if probe := _PROBE_LEAF.fullmatch(name):
        # Probe names carry no start time: a live pid is given the benefit of the doubt.
        return process_start_time(int(probe.group(1))) is not None
    return None


def reconcile_orphans(layout: CgroupLayout) -> list[str]:
    """Kill, drain and remove every leaf (run or probe) whose owner is no longer alive; one
    line per leaf reconciled. Leaves of a live owner are left alone."""
    orphans: dict[str, list[str]] = {}  # leaf name -> parents holding it
    for parent in _distinct(layout.unified, layout.v1):
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            if _owner_alive(name) is False and os.path.isdir(os.path.join(parent, name)):
                orphans.setdefault(name, []).append(parent)
    lines = []
    for name, parents in sorted(orphans.items()):
        leaf = _found_leaf(layout, name, parents)
        problems = leaf.teardown()
        lines.append(f"{name}: " + ("; ".join(problems) if problems else "removed"))
    return lines


def _found_leaf(layout: CgroupLayout, name: str, parents: list[str]) -> RunLeaf:
    """A leaf rebuilt from the directories found, with the strongest kill they allow."""
    unified = os.path.join(layout.unified, name) if layout.unified in parents else None
    v1 = {c: os.path.join(p, name) for c, p in layout.v1.items() if p in parents}
    if unified and os.path.exists(os.path.join(unified, "cgroup.kill")):
        mechanism = "cgroup.kill"
    elif "freezer" in v1:
        mechanism = "freezer"
    else:
        mechanism = "sigkill_each"
    return RunLeaf(unified=unified, v1=v1, kill_mechanism=mechanism)
