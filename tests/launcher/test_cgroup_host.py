"""Run-leaf cgroups on this machine's kernel: limits written and read back, real children
placed through host-opened fds, killed, drained and removed, and orphans reconciled. Nothing
is left under /sys/fs/cgroup. The pure parsing and the fake-cgroupfs paths are
tests/unit/test_cgroup.py."""

import errno
import os
import secrets
import subprocess
import sys
import threading

import pytest

from bvisor.backends.linux.cgroup import Delegation, current_layout, prove_delegation
from bvisor.backends.linux.cgroup_leaf import LeafLimits, RunLeaf, leaf_name, process_start_time
from bvisor.backends.linux.cgroup_orphans import reconcile_orphans
from bvisor.backends.linux.cgroupfs import CgroupError
from helpers import UNPRIVILEGED_PREFIX, loud_skip

MiB = 1 << 20
NO_LIMITS = LeafLimits()  # frozen, so one instance serves every default


def test_process_start_time_of_self_and_of_a_gone_process():
    assert process_start_time(os.getpid()) > 0
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert process_start_time(gone.pid) is None


# Placed via the inherited cgroup.procs fds (never by path); then, inside the leaf, touches
# 1 MiB and spends some cpu so both are charged to it; announced, then exec'd.
PLACE = (
    "import os, sys\n"
    "for fd in sys.argv[1].split(','):\n"
    "    os.write(int(fd), b'0')\n"
    "ballast = b'x' * (1 << 20)\n"
    "sum(range(100000))\n"
    "print('placed', flush=True)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
FORK_PAST_LIMIT = (
    "import os, sys, time\n"
    "for fd in sys.argv[1].split(','):\n"
    "    os.write(int(fd), b'0')\n"
    "made = refused = 0\n"
    "for _ in range(10):\n"
    "    try:\n"
    "        pid = os.fork()\n"
    "    except BlockingIOError:\n"
    "        refused += 1\n"
    "        continue\n"
    "    if pid == 0:\n"
    "        time.sleep(30)\n"
    "        os._exit(0)\n"
    "    made += 1\n"
    "print(made, refused, flush=True)\n"
    "time.sleep(30)\n"
)


@pytest.fixture
def host():
    """This machine's layout and proven delegation; every leaf and child a test makes is
    killed and removed afterwards, pass or fail."""
    layout = current_layout()
    if layout.unified is None and not layout.v1:
        loud_skip("no cgroup hierarchy is mounted")
    delegation = prove_delegation(layout)
    if delegation.reasons:
        loud_skip(f"cgroup delegation incomplete (euid={os.geteuid()}): {dict(delegation.reasons)}")
    made = _Made(layout, delegation)
    yield made
    for child in made.children:
        child.kill()
        child.wait()
    for leaf in made.leaves:
        assert leaf.teardown() == []
    assert _ours(layout) == []


class _Made:
    def __init__(self, layout, delegation):
        self.layout, self.delegation = layout, delegation
        self.leaves, self.children = [], []

    def leaf(self, limits=NO_LIMITS, delegation=None, owner=None) -> RunLeaf:
        pid, start = owner or (os.getpid(), process_start_time(os.getpid()))
        name = leaf_name(pid, start, secrets.token_hex(16))
        leaf = RunLeaf.create(self.layout, delegation or self.delegation, name, limits)
        self.leaves.append(leaf)
        return leaf

    def place(self, leaf, script=PLACE, argv=("/bin/sleep", "30"), prefix=()):
        """A real child (run through ``prefix``) that places itself through host-opened fds.
        A thread reaps it the moment it dies, as the backend does with its launcher."""
        fds = leaf.open_procs()
        try:
            child = subprocess.Popen(
                [*prefix, sys.executable, "-c", script, ",".join(map(str, fds)), *argv],
                pass_fds=fds,
                stdout=subprocess.PIPE,
                text=True,
            )
        finally:
            for fd in fds:
                os.close(fd)
        self.children.append(child)
        first_line = child.stdout.readline()
        threading.Thread(target=child.wait, daemon=True).start()
        return child, first_line


def _ours(layout) -> list[str]:
    """This test process's leaves and probes still present."""
    prefixes = (f"bvisor-{os.getpid()}-", f"bvisor-probe-{os.getpid()}-")
    parents = {layout.unified, *layout.v1.values()} - {None}
    return [os.path.join(p, n) for p in parents for n in os.listdir(p) if n.startswith(prefixes)]


def _kernel(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _leaf_dir(layout, flavour, v1_controller, name):
    return os.path.join(layout.unified if flavour == "v2" else layout.v1[v1_controller], name)


def test_prove_delegation_finds_every_mechanism_and_leaves_no_probe(host):
    delegation = host.delegation
    assert delegation.kill in ("cgroup.kill", "freezer")
    assert delegation.pids and delegation.memory and delegation.cpu
    assert all(not value.startswith("unavailable") for value in delegation.facts().values())
    assert _ours(host.layout) == []


def test_limits_written_child_placed_usage_read_and_teardown_leaves_nothing(host):
    leaf = host.leaf(LeafLimits(pids_max=5, memory_max=64 * MiB))
    name = os.path.basename(leaf.dirs[0])
    pids_dir = _leaf_dir(host.layout, host.delegation.pids, "pids", name)
    memory_dir = _leaf_dir(host.layout, host.delegation.memory, "memory", name)
    assert _kernel(os.path.join(pids_dir, "pids.max")) == "5"
    if host.delegation.memory == "v1":
        assert _kernel(os.path.join(memory_dir, "memory.limit_in_bytes")) == str(64 * MiB)
        for extra, expected in (("memory.memsw.limit_in_bytes", str(64 * MiB)), ("memory.swappiness", "0")):
            if os.path.exists(os.path.join(memory_dir, extra)):
                assert _kernel(os.path.join(memory_dir, extra)) == expected
    else:
        assert _kernel(os.path.join(memory_dir, "memory.max")) == str(64 * MiB)

    child, line = host.place(leaf)
    assert line == "placed\n"
    assert leaf.members() == {child.pid}
    for directory in leaf.dirs:
        assert _kernel(os.path.join(directory, "cgroup.procs")) == str(child.pid)
    running = leaf.usage()
    assert running.pids_current == 1
    assert running.pids_peak == 1
    assert running.pids_limit_hits == 0
    assert running.oom_kills == 0
    assert 1 * MiB <= running.memory_peak < 64 * MiB

    assert leaf.kill() == host.delegation.kill
    assert child.wait() == -9
    # cpu is charged to the leaf by the time its member is reaped, not at every instant before.
    ended = leaf.usage()
    assert ended.cpu_us > 0
    assert ended.pids_current == 0
    assert leaf.teardown() == []
    assert not any(os.path.exists(d) for d in leaf.dirs)
    assert leaf.teardown() == []  # idempotent: nothing left to kill or remove


def test_a_fork_past_pids_max_fails_inside_the_leaf_and_is_counted(host):
    leaf = host.leaf(LeafLimits(pids_max=5))
    child, line = host.place(leaf, script=FORK_PAST_LIMIT, argv=())
    made, refused = map(int, line.split())
    assert (made, refused) == (4, 6)
    usage = leaf.usage()
    assert usage.pids_current == 5 and usage.pids_peak == 5
    assert usage.pids_limit_hits == refused
    assert len(leaf.members()) == 5
    assert leaf.kill() == ("cgroup.kill" if host.delegation.kill == "cgroup.kill" else "freezer")
    assert leaf.teardown() == []
    assert child.wait() == -9


def test_an_unprivileged_child_places_itself_through_host_opened_fds(host):
    if os.geteuid() != 0:
        loud_skip("needs root to start a child as uid 65534")
    leaf = host.leaf()
    child, line = host.place(leaf, prefix=UNPRIVILEGED_PREFIX)
    assert line == "placed\n"
    assert leaf.members() == {child.pid}
    assert leaf.teardown() == []


def test_freezer_kill_and_sigkill_each_kill_every_member(host):
    if "freezer" not in host.layout.v1:
        loud_skip("no v1 freezer hierarchy on this host")
    frozen = host.leaf(delegation=Delegation(kill="freezer", pids=None, memory=None, cpu=None, reasons={}))
    one_by_one = host.leaf(delegation=Delegation(kill=None, pids="v1", memory=None, cpu=None, reasons={}))
    by_freezer, _ = host.place(frozen)
    by_signal, _ = host.place(one_by_one)
    assert frozen.kill() == "freezer"
    assert one_by_one.kill() == "sigkill_each"
    assert by_freezer.wait() == -9 and by_signal.wait() == -9
    assert _kernel(os.path.join(frozen.v1["freezer"], "freezer.state")) == "THAWED"
    assert frozen.teardown() == [] and one_by_one.teardown() == []


def test_reconcile_removes_a_dead_owners_leaf_and_spares_a_live_owners(host):
    finished = subprocess.Popen(["true"])
    finished.wait()
    orphan = host.leaf(owner=(finished.pid, 1))  # start time 1: never a live process's
    reused = host.leaf(owner=(os.getpid(), 1))  # a live pid, but not the process that owned it
    live = host.leaf()
    inside, _ = host.place(orphan)
    stale_probe = f"bvisor-probe-{finished.pid}-deadbeef"
    probe = os.path.join(host.layout.v1.get("pids", host.layout.unified), stale_probe)
    os.mkdir(probe)

    lines = reconcile_orphans(host.layout)

    for gone in (orphan, reused):
        assert f"{os.path.basename(gone.dirs[0])}: removed" in lines
        assert not any(os.path.exists(d) for d in gone.dirs)
    assert f"{stale_probe}: removed" in lines
    assert inside.wait() == -9
    assert not os.path.exists(probe)
    assert all(os.path.isdir(d) for d in live.dirs)
    assert not any(os.path.basename(live.dirs[0]) in line for line in lines)


def test_a_create_failing_after_mkdir_leaves_nothing_behind(host):
    name = leaf_name(os.getpid(), process_start_time(os.getpid()), secrets.token_hex(8))
    with pytest.raises(CgroupError) as rejected:
        RunLeaf.create(host.layout, host.delegation, name, LeafLimits(pids_max=10**12))
    assert rejected.value.errno == errno.EINVAL and rejected.value.path.endswith("pids.max")
    assert _ours(host.layout) == []

    # A name already taken in the last hierarchy: the ones made first are removed again,
    # the directory that was not ours stays.
    trial = RunLeaf.create(host.layout, host.delegation, name, LeafLimits())
    assert trial.teardown() == []
    taken = trial.dirs[-1]
    os.mkdir(taken)
    try:
        with pytest.raises(CgroupError) as collided:
            RunLeaf.create(host.layout, host.delegation, name, LeafLimits(pids_max=5))
        assert collided.value.errno == errno.EEXIST
        assert _ours(host.layout) == [taken]
    finally:
        os.rmdir(taken)
