"""The Linux host's facts, typed: parsed once from the probe's strings, read by every decision.

The snapshot keeps the probe's strings exactly as probed (they are bound into the plan and
the report); nothing decides on them. ``parse_facts`` is the one place a string becomes a
value, and it fails closed: a fact that is missing, malformed or unexpected parses into the
weakest value of its type —

- a proof (``launcher.userns_netns``, ...) holds only when the probe said exactly ``ok``;
- the landlock ABI is 0 unless it is a non-negative integer;
- a cgroup controller or tree kill is absent unless it names one bvisor knows;
- the launcher is taken to be root unless its euid is a non-negative integer other than 0,
  so a run whose identity is unknown is refused rather than run as whoever the launcher is.

A proof also keeps the probe's own words (``said``), for the reasons a refusal gives and
never for a decision.
"""

import enum
import functools
from collections.abc import Mapping
from typing import TypeVar

import msgspec

from bvisor.contract import BackendProfileSnapshot

SYSTEM_ROOTS_FACT = "fs.system_roots"  # the system roots present, comma-separated


class Proof(msgspec.Struct, frozen=True):
    """Something the launcher's probe proved by doing it in a throwaway child, or not."""

    ok: bool
    said: str  # the probe's own words ("ok", "failed errno=1 ..."), for messages only


class CgroupVersion(enum.Enum):
    V1 = "v1"
    V2 = "v2"


class TreeKill(enum.Enum):
    """How a delegated cgroup leaf kills its whole tree at once."""

    CgroupKill = "cgroup.kill"
    Freezer = "freezer"


class LinuxFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What this host was proven to offer, as the ceiling, the budgets, lowering and the
    qualification floors read it."""

    launcher_probe: Proof  # the launcher ran its probe at all: without it nothing is proven
    launcher_euid: int | None  # None: unknown, treated as root
    landlock_abi: int
    landlock_restrict: Proof
    seccomp_filter: Proof
    unix_gate: Proof  # the seccomp user-notification gate on unix sockets
    userns_netns: Proof
    userns_mount: Proof
    userns_pid: Proof
    userns_isolation: Proof  # the run's own IPC, UTS and cgroup namespaces and fresh root
    userns_transient: Proof  # a root launcher can give the run an unprivileged transient identity
    max_user_namespaces: int | None  # sysctl user.max_user_namespaces, for messages only
    cgroup_kill: TreeKill | None
    cgroup_kill_said: str  # the probe's own words, for messages only
    cgroup_pids: CgroupVersion | None
    cgroup_memory: CgroupVersion | None
    cgroup_cpu: CgroupVersion | None
    system_roots: tuple[str, ...]  # the system roots present on this host

    @property
    def launcher_is_root(self) -> bool:
        return self.launcher_euid is None or self.launcher_euid == 0


def _natural(text: str | None) -> int | None:
    """A non-negative decimal integer, or None."""
    return int(text) if text is not None and text.isdecimal() and text.isascii() else None


def _proof(raw: Mapping[str, str], name: str, missing: str = "not probed") -> Proof:
    said = raw.get(name)
    return Proof(ok=said == "ok", said=missing if said is None else said)


Member = TypeVar("Member", bound=enum.Enum)


def _member(kind: type[Member], text: str | None) -> Member | None:
    return next((member for member in kind if member.value == text), None)


def parse_facts(raw: Mapping[str, str]) -> LinuxFacts:
    """The probe's strings (a snapshot's facts, by name) as typed facts; see the module
    docstring for how a value the parser does not know fails closed."""
    return LinuxFacts(
        launcher_probe=_proof(raw, "launcher.launcher_probe", missing="no result"),
        launcher_euid=_natural(raw.get("launcher.launcher_euid")),
        landlock_abi=_natural(raw.get("launcher.landlock_abi")) or 0,
        landlock_restrict=_proof(raw, "launcher.landlock_restrict"),
        seccomp_filter=_proof(raw, "launcher.seccomp_filter"),
        unix_gate=_proof(raw, "launcher.unix_gate"),
        userns_netns=_proof(raw, "launcher.userns_netns"),
        userns_mount=_proof(raw, "launcher.userns_mount"),
        userns_pid=_proof(raw, "launcher.userns_pid"),
        userns_isolation=_proof(raw, "launcher.userns_isolation"),
        userns_transient=_proof(raw, "launcher.userns_transient"),
        max_user_namespaces=_natural(raw.get("sysctl.user.max_user_namespaces")),
        cgroup_kill=_member(TreeKill, raw.get("cgroup.kill")),
        cgroup_kill_said=raw.get("cgroup.kill", "not probed"),
        cgroup_pids=_member(CgroupVersion, raw.get("cgroup.pids")),
        cgroup_memory=_member(CgroupVersion, raw.get("cgroup.memory")),
        cgroup_cpu=_member(CgroupVersion, raw.get("cgroup.cpu")),
        system_roots=tuple(filter(None, raw.get(SYSTEM_ROOTS_FACT, "").split(","))),
    )


def linux_facts(snapshot: BackendProfileSnapshot) -> LinuxFacts:
    """The typed facts of a snapshot (a plan's, or a fresh probe's)."""
    return _parsed(tuple((fact.name, fact.value) for fact in snapshot.facts))


def probed_facts(raw: Mapping[str, str]) -> LinuxFacts:
    """The typed facts of a probe's strings, before they are a snapshot (cached alike)."""
    return _parsed(tuple(raw.items()))


# A snapshot's facts change only on drift: parsed once per set of facts, however many
# readers (ceiling, budgets, lowering, qualification) ask.
@functools.lru_cache(maxsize=8)
def _parsed(items: tuple[tuple[str, str], ...]) -> LinuxFacts:
    return parse_facts(dict(items))
