"""Cgroup placement: the init moves itself into the run's leaf before the workload exists.

The host made the leaf, wrote its limits and opened each hierarchy's ``cgroup.procs``; the
kernel checks the opener's credentials on that write, so the host's fd is the authority and
the launcher never names a cgroup path. Every later process of the run is born inside.
"""

import os

from bvisor.launcher import libc
from bvisor.mechanism import fdio
from bvisor.wire import attest

CLONE_NEWCGROUP = 0x02000000


def _membership() -> set:
    return set(fdio.read_text("/proc/self/cgroup").splitlines())


def place(procs_slots: list) -> str:
    """Write this process into every leaf; attest the /proc/self/cgroup lines that changed."""
    before = _membership()
    for slot in procs_slots:
        os.write(slot, b"0")
        os.close(slot)
    moved = sorted(_membership() - before)
    if len(moved) < len(procs_slots):
        raise OSError(0, f"cgroup placement changed {len(moved)} of {len(procs_slots)} hierarchies")
    return f"{attest.CGROUP_PLACED} hierarchies={len(moved)} now={';'.join(moved)}"


def enter_namespace() -> str:
    """A new cgroup namespace rooted at the leaf this process was just placed in: the run
    sees its leaf as "/", no host cgroup path, and cannot move itself out of it."""
    libc.call("unshare", CLONE_NEWCGROUP)
    paths = {line.split(":", 2)[2] for line in _membership()}
    if paths != {"/"}:
        raise OSError(0, f"the new cgroup namespace shows {sorted(paths)}, not only /")
    return attest.CGROUP_NAMESPACE
