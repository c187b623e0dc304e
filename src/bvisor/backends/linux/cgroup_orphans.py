"""Leaves a crashed host left behind: found by name under each hierarchy, and killed,
drained and removed once their owner is no longer alive."""

import os
import re

from bvisor.backends.linux import cgroupfs
from bvisor.backends.linux.cgroup import CgroupLayout
from bvisor.backends.linux.cgroup_leaf import RunLeaf, process_start_time

_RUN_LEAF = re.compile(r"bvisor-(\d+)-(\d+)-([0-9a-f]+)")
# ``bvisor-probe-<pid>`` alone is the shape older probes left; still ours to clean.
_PROBE_LEAF = re.compile(r"bvisor-probe-(\d+)(?:-.*)?")


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
    for parent in cgroupfs.distinct(layout.unified, layout.v1):
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
