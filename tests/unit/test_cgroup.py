"""Run-leaf cgroups, pure: parsing the host's cgroup layout, leaf names and start times, and
the v2 pids and memory paths against a fake cgroupfs. The real kernel on this machine (limits
read back, real children placed, killed and removed, orphans reconciled) is
tests/launcher/test_cgroup_host.py."""

import errno
import os

import pytest

from bvisor.backends.linux import cgroupfs
from bvisor.backends.linux.cgroup import CgroupLayout, Delegation, discover, prove_delegation
from bvisor.backends.linux.cgroup_leaf import (
    LeafLimits,
    LeafUsage,
    NotDelegated,
    RunLeaf,
    leaf_name,
    parse_start_time,
)
from bvisor.backends.linux.cgroupfs import CgroupError

MiB = 1 << 20

# --- pure ----------------------------------------------------------------------------------

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime shared:7 - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP = """\
9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/f36a
2:cpuacct:/
1:cpu:/
0::/
"""


def test_discover_hybrid_uses_each_hierarchys_own_path():
    layout = discover(HYBRID_MOUNTINFO, HYBRID_CGROUP)
    assert layout == CgroupLayout(
        unified="/sys/fs/cgroup/unified",
        v1={
            "pids": "/sys/fs/cgroup/pids",
            "memory": "/sys/fs/cgroup/memory/process_api/f36a",
            "freezer": "/sys/fs/cgroup/freezer",
            "cpuacct": "/sys/fs/cgroup/cpuacct",
        },
    )


def test_discover_pure_v2_nested_path():
    mountinfo = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    layout = discover(mountinfo, "0::/user.slice/user-1000.slice/app.service\n")
    assert layout == CgroupLayout(unified="/sys/fs/cgroup/user.slice/user-1000.slice/app.service", v1={})


def test_discover_nothing_mounted():
    mountinfo = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
    assert discover(mountinfo, "0::/\n") == CgroupLayout(unified=None, v1={})


def test_discover_comounted_v1_mount_root_and_escaped_mountpoint():
    mountinfo = (
        "40 31 0:40 /box /cg\\040v1 rw - cgroup cgroup rw,cpu,cpuacct\n"
        "41 31 0:41 /elsewhere /cg/pids rw - cgroup cgroup rw,pids\n"
    )
    layout = discover(mountinfo, "3:cpu,cpuacct:/box/run\n2:pids:/box/run\n")
    # The pids mount shows another subtree, so this process's pids cgroup is not reachable.
    assert layout == CgroupLayout(unified=None, v1={"cpuacct": "/cg v1/run"})


def test_leaf_name_binds_owner_start_and_attempt():
    assert leaf_name(42, 9001, "0123456789ABCDEF0123") == "bvisor-42-9001-0123456789abcdef"
    with pytest.raises(ValueError):
        leaf_name(42, 9001, "../../etc")


def test_start_time_is_counted_after_the_last_paren_of_comm():
    after_comm = " ".join(str(n) for n in range(3, 53))  # fields 3..52, each its own number
    assert parse_start_time(f"1234 (a) (b 7 8) {after_comm}\n") == 22


def test_unproven_delegation_says_why_without_the_random_probe_name():
    delegation = prove_delegation(CgroupLayout(unified="/nonexistent/cg", v1={}))
    assert (delegation.kill, delegation.pids, delegation.memory, delegation.cpu) == (None,) * 4
    facts = delegation.facts()
    assert facts["cgroup.kill"] == (
        "unavailable: cgroup.kill: mkdir /nonexistent/cg/bvisor-probe-*: ENOENT; freezer: no hierarchy"
    )
    assert facts == prove_delegation(CgroupLayout(unified="/nonexistent/cg", v1={})).facts()


def test_a_limit_on_an_undelegated_controller_is_refused_before_any_mkdir(tmp_path):
    delegation = Delegation(kill=None, pids=None, memory=None, cpu="v1", reasons={"pids": "EACCES"})
    layout = CgroupLayout(unified=None, v1={"cpuacct": str(tmp_path)})
    with pytest.raises(NotDelegated, match=r"pids_max.*EACCES"):
        RunLeaf.create(layout, delegation, "bvisor-1-2-0123456789abcdef", LeafLimits(pids_max=5))
    assert os.listdir(tmp_path) == []


# --- cgroup v2 pids and memory, against a fake cgroupfs ------------------------------------
# A hybrid host (pids and memory on v1, a cgroup2 mount with no such controller) never runs
# the v2 pids/memory paths, so they are driven here against a tree under tmp_path. What the
# fake stands in for: mkdir makes the interface files the kernel would; each write replaces
# the file's value (cgroupfs parses each write on its own); rmdir of a leaf holding only
# interface files succeeds unless it is populated (EBUSY). What it cannot show: that the
# kernel accepts or enforces a value, or that cgroup.kill kills anything.

V2_DELEGATION = Delegation(kill="cgroup.kill", pids="v2", memory="v2", cpu="v2", reasons={})
LEAF = "bvisor-1-2-0123456789abcdef"
_REAL_MKDIR, _REAL_WRITE, _REAL_RMDIR = cgroupfs.mkdir, cgroupfs.write, os.rmdir

# What a fresh cgroup2 leaf shows, per controller enabled in its parent's subtree_control;
# "" holds the core files every leaf has (cpu.stat's usage_usec needs no cpu controller).
V2_FILES = {
    "": {
        "cgroup.procs": "",
        "cgroup.kill": "",
        "cgroup.events": "populated 0\nfrozen 0\n",
        "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
    },
    "pids": {"pids.max": "max\n", "pids.current": "0\n", "pids.peak": "0\n", "pids.events": "max 0\n"},
    "memory": {
        "memory.max": "max\n",
        "memory.high": "max\n",
        "memory.low": "0\n",
        "memory.min": "0\n",
        "memory.current": "0\n",
        "memory.peak": "0\n",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    },
}
V1_FILES = {
    "pids": {"cgroup.procs": "", "pids.max": "max\n", "pids.current": "0\n", "pids.events": "max 0\n"},
    "memory": {
        "cgroup.procs": "",
        "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.max_usage_in_bytes": "0\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    },
    "freezer": {"cgroup.procs": "", "freezer.state": "THAWED\n"},
    "cpuacct": {"cgroup.procs": "", "cpuacct.usage": "0\n"},
}


class _FakeCgroupfs:
    """A cgroup2 parent and the four v1 controller parents under ``root``, with cgroupfs'
    mkdir, write and rmdir routed through a fake kernel that logs every mkdir and write."""

    def __init__(self, root, monkeypatch):
        self.root = root
        self.unified = str(root / "unified")
        self.v1 = {c: str(root / "v1" / c) for c in V1_FILES}
        for directory in (self.unified, *self.v1.values()):
            os.makedirs(directory)
        self.layout = CgroupLayout(unified=self.unified, v1=self.v1)
        self.enabled = {"pids", "memory"}  # the parent's cgroup.subtree_control
        self.swap = True  # memory.swap.max present (a kernel with swap accounting)
        self.made: list[str] = []
        self.writes: list[tuple[str, str]] = []
        monkeypatch.setattr(cgroupfs, "mkdir", self._mkdir)
        monkeypatch.setattr(cgroupfs, "write", self._write)
        monkeypatch.setattr(os, "rmdir", self._rmdir)

    def _files_for(self, parent: str) -> dict[str, str]:
        if parent == self.unified:
            files = dict(V2_FILES[""])
            for controller in sorted(self.enabled):
                files.update(V2_FILES[controller])
            if "memory" in self.enabled and self.swap:
                files["memory.swap.max"] = "max\n"
            return files
        (controller,) = [c for c, p in self.v1.items() if p == parent]
        return V1_FILES[controller]

    def _mkdir(self, path: str) -> None:
        _REAL_MKDIR(path)
        for name, text in self._files_for(os.path.dirname(path)).items():
            with open(os.path.join(path, name), "w") as f:
                f.write(text)
        self.made.append(path)

    def _write(self, path: str, text: str) -> None:
        self.writes.append((path, text))
        if os.path.isfile(path):
            os.truncate(path, 0)  # the real write opens without O_TRUNC, as cgroupfs needs
        _REAL_WRITE(path, text)

    def _rmdir(self, path) -> None:
        if str(path) not in self.made:
            return _REAL_RMDIR(path)
        names = os.listdir(path)  # FileNotFoundError once gone, as the kernel's ENOENT
        populated = cgroupfs.keyed_value(self.read(path, "cgroup.events"), "populated")
        if self.read(path, "cgroup.procs").strip() or populated:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        for name in names:
            os.unlink(os.path.join(path, name))
        _REAL_RMDIR(path)

    @staticmethod
    def read(directory: str, name: str) -> str:
        with open(os.path.join(directory, name)) as f:
            return f.read()

    @staticmethod
    def set(directory: str, name: str, text: str) -> None:
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)

    def v1_untouched(self) -> bool:
        return all(os.listdir(p) == [] for p in self.v1.values()) and not any(
            path.startswith(os.path.join(str(self.root), "v1") + os.sep) for path, _ in self.writes
        )


@pytest.fixture
def fake(tmp_path, monkeypatch) -> _FakeCgroupfs:
    return _FakeCgroupfs(tmp_path, monkeypatch)


@pytest.mark.parametrize("swap", [True, False], ids=["swap-accounting", "no-swap-file"])
@pytest.mark.parametrize("pids_max, memory_max", [(6, 64 * MiB), (0, 0)], ids=["limits", "zero-limits"])
def test_v2_limits_are_written_verbatim_to_the_unified_leaf_and_nothing_to_v1(
    fake, swap, pids_max, memory_max
):
    """create writes LeafLimits' values as they are: the init-process allowance is added by
    budgets.leaf_limits before the LeafLimits is made, not by create. A zero limit is a limit."""
    fake.swap = swap
    limits = LeafLimits(pids_max=pids_max, memory_max=memory_max)
    leaf = RunLeaf.create(fake.layout, V2_DELEGATION, LEAF, limits)
    unified = os.path.join(fake.unified, LEAF)
    assert (leaf.unified, dict(leaf.v1), leaf.dirs) == (unified, {}, (unified,))
    assert leaf.kill_mechanism == "cgroup.kill"
    assert fake.made == [unified]
    expected = [
        (os.path.join(unified, "pids.max"), str(pids_max)),
        (os.path.join(unified, "memory.max"), str(memory_max)),
    ]
    if swap:
        expected.append((os.path.join(unified, "memory.swap.max"), "0"))
    assert fake.writes == expected
    assert fake.read(unified, "pids.max") == str(pids_max)
    assert fake.read(unified, "memory.max") == str(memory_max)
    assert fake.read(unified, "memory.high") == "max\n"  # the cap is memory.max, not the throttle
    assert fake.v1_untouched()


def test_v2_leaf_without_limits_writes_nothing(fake):
    leaf = RunLeaf.create(fake.layout, V2_DELEGATION, LEAF, LeafLimits())
    assert fake.made == [leaf.unified] and fake.writes == []
    assert fake.read(leaf.unified, "pids.max") == fake.read(leaf.unified, "memory.max") == "max\n"
    assert fake.v1_untouched()


def test_v2_pids_and_memory_go_to_the_unified_leaf_beside_a_v1_freezer_and_cpuacct(fake):
    """The hybrid shape with pids and memory delegated on cgroup2: the v1 leaves made for the
    freezer and cpuacct get no limit, and usage takes cpu from cpuacct, the rest from cgroup2."""
    delegation = Delegation(kill="freezer", pids="v2", memory="v2", cpu="v1", reasons={})
    leaf = RunLeaf.create(fake.layout, delegation, LEAF, LeafLimits(pids_max=9, memory_max=32 * MiB))
    unified = os.path.join(fake.unified, LEAF)
    v1 = {c: os.path.join(fake.v1[c], LEAF) for c in ("freezer", "cpuacct")}
    assert (leaf.unified, dict(leaf.v1), leaf.kill_mechanism) == (unified, v1, "freezer")
    assert sorted(fake.made) == sorted([unified, *v1.values()])
    assert fake.writes == [
        (os.path.join(unified, "pids.max"), "9"),
        (os.path.join(unified, "memory.max"), str(32 * MiB)),
        (os.path.join(unified, "memory.swap.max"), "0"),
    ]
    assert os.listdir(fake.v1["pids"]) == [] and os.listdir(fake.v1["memory"]) == []

    fake.set(v1["cpuacct"], "cpuacct.usage", "987654321\n")
    fake.set(unified, "cpu.stat", "usage_usec 5\nuser_usec 3\nsystem_usec 2\n")
    fake.set(unified, "pids.peak", "8\n")
    fake.set(unified, "memory.peak", "4096\n")
    usage = leaf.usage()
    assert (usage.cpu_us, usage.pids_peak, usage.memory_peak) == (987654, 8, 4096)


def test_v2_usage_reads_peaks_events_and_cpu_from_the_unified_leaf(fake):
    """Every counter holds a value no other key or file holds, so a wrong file or key shows."""
    leaf = RunLeaf.create(fake.layout, V2_DELEGATION, LEAF, LeafLimits(pids_max=6, memory_max=64 * MiB))
    assert leaf.usage() == LeafUsage(
        cpu_us=0, memory_peak=0, pids_peak=0, pids_current=0, pids_limit_hits=0, oom_kills=0
    )
    fake.set(leaf.unified, "pids.peak", "7\n")
    fake.set(leaf.unified, "pids.current", "3\n")
    # "max.imposed" (newer kernels) must not pass for "max".
    fake.set(leaf.unified, "pids.events", "max 2\nmax.imposed 11\n")
    fake.set(leaf.unified, "memory.current", "1000\n")
    fake.set(leaf.unified, "memory.peak", "12345678\n")
    fake.set(leaf.unified, "memory.events", "low 0\nhigh 13\nmax 4\noom 5\noom_kill 3\noom_group_kill 9\n")
    fake.set(
        leaf.unified,
        "cpu.stat",
        "usage_usec 424242\nuser_usec 400000\nsystem_usec 24242\n"
        "nr_periods 17\nnr_throttled 1\nthrottled_usec 99\n",
    )
    assert leaf.usage() == LeafUsage(
        cpu_us=424242, memory_peak=12345678, pids_peak=7, pids_current=3, pids_limit_hits=2, oom_kills=3
    )
    assert fake.v1_untouched()


def test_an_undelegated_v2_memory_controller_with_a_memory_limit_is_refused_before_any_mkdir(fake):
    why = f"v2: memory not in {fake.unified}/cgroup.controllers; v1: no hierarchy"
    delegation = Delegation(kill="cgroup.kill", pids="v2", memory=None, cpu="v2", reasons={"memory": why})
    with pytest.raises(NotDelegated, match=r"memory_max asked but memory is not delegated: v2: memory not"):
        RunLeaf.create(fake.layout, delegation, LEAF, LeafLimits(pids_max=6, memory_max=64 * MiB))
    with pytest.raises(CgroupError, match="memory_max must be >= 0"):
        RunLeaf.create(fake.layout, V2_DELEGATION, LEAF, LeafLimits(memory_max=-1))
    assert (fake.made, fake.writes, os.listdir(fake.unified)) == ([], [], [])
    assert fake.v1_untouched()

    # Without the memory limit the same delegation makes the leaf, with pids.max only.
    leaf = RunLeaf.create(fake.layout, delegation, LEAF, LeafLimits(pids_max=6))
    assert fake.writes == [(os.path.join(leaf.unified, "pids.max"), "6")]


def test_a_v2_controller_missing_from_the_leaf_fails_create_and_removes_the_leaf(fake):
    """pids not in the parent's subtree_control: the leaf has no pids.max, and the leaf made
    for the write is removed again."""
    fake.enabled = {"memory"}
    with pytest.raises(CgroupError) as missing:
        RunLeaf.create(fake.layout, V2_DELEGATION, LEAF, LeafLimits(pids_max=6, memory_max=64 * MiB))
    assert missing.value.errno == errno.ENOENT
    assert missing.value.path == os.path.join(fake.unified, LEAF, "pids.max")
    assert os.listdir(fake.unified) == []


def test_teardown_of_an_empty_fake_v2_leaf_writes_cgroup_kill_and_removes_it(fake):
    """What a fake can show of teardown: it writes "1" to cgroup.kill, drains by cgroup.procs
    and cgroup.events' populated, rmdirs the leaf, and is safe to repeat. That the write
    kills members, and the kernel's populated transition, need the real kernel
    (tests/launcher/test_cgroup_host.py)."""
    leaf = RunLeaf.create(fake.layout, V2_DELEGATION, LEAF, LeafLimits(pids_max=6, memory_max=64 * MiB))
    fake.writes.clear()
    assert leaf.teardown(drain_seconds=1.0) == []
    assert fake.writes == [(os.path.join(leaf.unified, "cgroup.kill"), "1")]
    assert not os.path.exists(leaf.unified) and os.listdir(fake.unified) == []
    assert leaf.teardown(drain_seconds=1.0) == []  # gone: the kill's ENOENT and rmdir's are fine
    assert leaf.usage() == LeafUsage(None, None, None, None, None, None)
    assert fake.v1_untouched()


def test_teardown_of_a_fake_v2_leaf_still_populated_is_bounded_and_says_so(fake):
    leaf = RunLeaf.create(fake.layout, V2_DELEGATION, LEAF, LeafLimits())
    fake.set(leaf.unified, "cgroup.events", "populated 1\nfrozen 0\n")  # a member still exiting
    problems = leaf.teardown(drain_seconds=0.05)
    assert problems == [
        f"still populated after 0.05s: {leaf.unified} (pids [])",
        f"rmdir {leaf.unified}: EBUSY",
    ]
    assert os.path.isdir(leaf.unified)
    fake.set(leaf.unified, "cgroup.events", "populated 0\nfrozen 0\n")
    assert leaf.teardown(drain_seconds=1.0) == []
    assert not os.path.exists(leaf.unified)
