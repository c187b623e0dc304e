"""The run starts from nothing (issue 12, findings 1, 5, 6, 8 and 10): an attacker inside tries
what a subtractive boundary leaked, in the run's constructed world.

Attack (one Python program, parked while the host looks at it): open the host-global kernel
knobs for writing (``/proc/sys/kernel/core_pattern`` and ``hostname``, ``/proc/sysrq-trigger``),
read ``/etc/shadow`` through the system roots, stat, readlink, listxattr, chmod and utime a
host file outside every root,
find and attach a host SysV shared memory segment and leave a segment of its own behind,
move itself out of its cgroup leaf through the host's ``cgroup.procs``, read the signing key
in the evidence home (inside a granted root), and read its hostname.

Channel A (host): the parked workload's uid (a transient id, never root, when the launcher
is root; the launcher's own uid rootless), its IPC and UTS namespaces (not the host's), its
cgroup (still the run's leaf); the kernel knobs, the outside file's mode, the host segment
and the key unchanged; after the run no segment of the run is left.
Channel B (workload): each attempt's errno, its hostname ``bvisor``, its cgroup read as "/".
Control: the same program run directly on the host as the same uid opens core_pattern for
writing (as root), reads the host hostname, finds the host segment and leaves its own
behind, stats the outside file and chmods it — so each attack is real.
"""

import errno
import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from bvisor import BoundarySpec, Capability
from bvisor.contract import FsAccess
from helpers import (
    IDENTITIES,
    UNPRIVILEGED_PREFIX,
    check_completed,
    host_read_uid,
    identity_uid,
    planned,
    run_gated,
    unique_marker,
    workload_uid_problem,
)
from mount_oracles import linux_backend
from oracle_specs import exact_environment, oracle_spec
from sysv_shm import make_segment, remove_segment, segment_keys

PYTHON = os.path.realpath(sys.executable)
PYTHON_PREFIX = os.path.realpath(sys.base_prefix)

ATTACK = r"""
import ctypes, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
secret, host_key, own_key, evidence = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
said = {"uid": os.getuid(), "hostname": socket.gethostname()}
def attempt(name, action):
    try:
        action()
        said[name] = "ok"
    except OSError as exc:
        said[name] = exc.errno
def writable(path):
    os.close(os.open(path, os.O_WRONLY))
attempt("core_pattern", lambda: writable("/proc/sys/kernel/core_pattern"))
attempt("kernel_hostname", lambda: writable("/proc/sys/kernel/hostname"))
attempt("sysrq", lambda: writable("/proc/sysrq-trigger"))
attempt("shadow", lambda: open("/etc/shadow", "rb").close())
attempt("outside_stat", lambda: os.stat(secret))
attempt("outside_chmod", lambda: os.chmod(secret, 0o777))
attempt("outside_utime", lambda: os.utime(secret, (0, 0)))
attempt("outside_readlink", lambda: os.readlink(secret + ".link"))
attempt("outside_listxattr", lambda: os.listxattr(secret))
attempt("evidence_key", lambda: open(evidence, "rb").close())
attempt("cgroup_escape", lambda: open("/sys/fs/cgroup/pids/cgroup.procs", "w").write(str(os.getpid())))
found = libc.shmget(host_key, 0, 0)
said["host_shm"] = "found" if found >= 0 else ctypes.get_errno()
made = libc.shmget(own_key, 1 << 20, 0o1000 | 0o600)
said["own_shm"] = "made" if made >= 0 else ctypes.get_errno()
try:  # landlock (the second wall) keeps /proc closed to a run with a Filesystem requirement
    said["cgroup"] = sorted({line.split(":", 2)[2] for line in open("/proc/self/cgroup").read().splitlines()})
except OSError as exc:
    said["cgroup"] = exc.errno
print(json.dumps(said), flush=True)
print("BVISOR-PARKED", flush=True)  # helpers.PARKED: the host looks now, then closes stdin
sys.stdin.readline()
"""


class World:
    """The host objects the attack aims at, made for one test and removed after it."""

    def __init__(self, host_dir):
        self.data = host_dir("bvisor-world-data-", 0o755)
        self.home = os.path.join(self.data, "evidence-home")
        os.makedirs(self.home, mode=0o755)
        self.key = os.path.join(self.home, "signing-key.pem")
        with open(self.key, "w") as f:
            f.write("not a real key\n")
        os.chmod(self.key, 0o644)
        outside = host_dir("bvisor-world-outside-", 0o755, "/var/tmp")
        self.secret = os.path.join(outside, "secret.txt")
        with open(self.secret, "w") as f:
            f.write("host secret\n")
        os.symlink(self.secret, self.secret + ".link")
        os.chmod(self.secret, 0o644)
        os.chown(self.secret, identity_uid("unprivileged"), -1)  # the rootless control may chmod it
        self.host_key = 0x6B000000 | (os.getpid() & 0xFFFFF)
        self.own_key = self.host_key + 1
        make_segment(self.host_key)
        with open("/proc/sys/kernel/core_pattern") as f:
            self.core_pattern = f.read()
        self.mtime = os.stat(self.secret).st_mtime_ns

    def argv(self, marker: str) -> list:
        """The attack; ``marker`` in its argv is how the host finds it."""
        return [PYTHON, "-c", ATTACK, self.secret, str(self.host_key), str(self.own_key), self.key, marker]

    def close(self) -> None:
        remove_segment(self.host_key)
        remove_segment(self.own_key)


@pytest.fixture
def world(host_dir):
    made = World(host_dir)
    yield made
    made.close()


def _spec(argv, filesystem: bool, roots=()) -> BoundarySpec:
    caps = [exact_environment([("LC_ALL", "C")])]
    if filesystem:
        caps.append(Capability.Filesystem(access=FsAccess.Read, roots=list(roots)))
    return oracle_spec(argv, caps)


def _said(stdout: bytes) -> dict:
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith("{"):
            return json.loads(line)
    return {}


def _ns(pid, kind: str):
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _host_view(pid: int) -> dict:
    return {"uid": host_read_uid(pid), **{f"{kind}_ns": _ns(pid, kind) for kind in ("ipc", "uts", "cgroup")}}


@pytest.mark.parametrize("filesystem", [True, False], ids=["view", "host-tree"])
@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_run_cannot_reach_host_knobs_ipc_cgroups_or_evidence(identity, filesystem, world, monkeypatch):
    monkeypatch.setenv("BVISOR_HOME", world.home)  # the evidence home: inside a granted root
    marker = unique_marker("BVISOR-WORLD")
    spec = _spec(world.argv(marker), filesystem, roots=[world.data, PYTHON_PREFIX])
    _, run = planned(linux_backend(identity), spec)
    gated = run_gated(run, marker, _host_view, timeout=10.0)
    said, host = _said(gated.stdout), gated.inspected or {}
    print(f"constructed world [{identity}/{'view' if filesystem else 'host-tree'}]: host={host} said={said} stderr={gated.stderr[-2000:]!r}", file=sys.stderr)
    failures = []
    check_completed(failures, gated.result)
    problem = workload_uid_problem(identity, host.get("uid"))
    if problem:
        failures.append(f"CHANNEL A: the workload {problem}")
    for kind in ("ipc", "uts", "cgroup"):
        if host.get(f"{kind}_ns") in (None, _ns("self", kind)):
            failures.append(f"CHANNEL A: the workload must have its own {kind} namespace; host read {host.get(f'{kind}_ns')}")
    with open("/proc/sys/kernel/core_pattern") as f:
        if f.read() != world.core_pattern:
            failures.append("CHANNEL A: core_pattern changed")
    changed = (stat.S_IMODE(os.stat(world.secret).st_mode), os.stat(world.secret).st_mtime_ns) != (0o644, world.mtime)
    if changed and (filesystem or identity_uid(identity) == 0):
        failures.append(f"CHANNEL A: the outside file's mode or times changed: {os.stat(world.secret)}")
    if world.host_key not in segment_keys():
        failures.append("CHANNEL A: the host segment is gone")
    if world.own_key in segment_keys():
        failures.append("CHANNEL A: the run left a SysV segment in the host's IPC namespace")
    if not said:
        failures.append(f"CHANNEL B: the workload never reported; stdout={gated.stdout!r}")
    else:
        for knob in ("core_pattern", "kernel_hostname", "sysrq"):
            if said.get(knob) == "ok":
                failures.append(f"CHANNEL B: {knob} opened for writing inside the run")
        if said.get("hostname") != "bvisor":
            failures.append(f"CHANNEL B: the run's hostname must be bvisor; said {said.get('hostname')!r}")
        if said.get("host_shm") != errno.ENOENT:
            failures.append(f"CHANNEL B: the host segment must not exist in the run (ENOENT); said {said.get('host_shm')}")
        if said.get("own_shm") != "made":
            failures.append(f"CHANNEL B: the run's own segment must work; said {said.get('own_shm')}")
        if said.get("cgroup_escape") == "ok":
            failures.append("CHANNEL B: the workload wrote itself into the host's root cgroup.procs")
        if said.get("cgroup") not in (["/"], errno.EACCES if filesystem else None):
            failures.append(f"CHANNEL B: every hierarchy must read / in the run's cgroup namespace; said {said.get('cgroup')}")
        if said.get("evidence_key") != errno.ENOENT:
            failures.append(f"CHANNEL B: the signing key in the evidence home must not exist in the run; said {said.get('evidence_key')}")
        if identity_uid(identity) == 0 and said.get("shadow") != errno.EACCES:
            failures.append(f"CHANNEL B: /etc/shadow must be unreadable to a root-invoked run; said {said.get('shadow')}")
        # Without a Filesystem requirement the host's tree is seen through the run's identity:
        # a rootless run may chmod the caller's own file; a transient id may not.
        for meta in ("outside_chmod", "outside_utime"):
            if said.get(meta) == "ok" and (filesystem or identity_uid(identity) == 0):
                failures.append(f"CHANNEL B: {meta} of a host file outside every root succeeded")
        for leak in ("outside_stat", "outside_readlink", "outside_listxattr") if filesystem else ():
            if said.get(leak) != errno.ENOENT:
                failures.append(f"CHANNEL B: {leak}: a path outside the grants must not exist in the view (ENOENT); said {said.get(leak)}")
    assert not failures, f"constructed-world failures [{identity}/{'view' if filesystem else 'host-tree'}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_the_boundary_the_same_attacks_succeed(identity, world):
    prefix = list(UNPRIVILEGED_PREFIX) if identity_uid(identity) != os.geteuid() else []
    done = subprocess.run(prefix + world.argv(unique_marker("BVISOR-WORLD-CONTROL")), input=b"\n", capture_output=True, timeout=60, env={"LC_ALL": "C"})
    said = _said(done.stdout)
    print(f"constructed world control [{identity}]: said={said} stderr={done.stderr[-2000:]!r}", file=sys.stderr)
    failures = []
    if identity_uid(identity) == 0 and said.get("core_pattern") != "ok":
        failures.append(f"as root, core_pattern must open for writing on the host; said {said.get('core_pattern')}")
    if said.get("hostname") != socket.gethostname():
        failures.append(f"the host's hostname must be read; said {said.get('hostname')!r}")
    if said.get("host_shm") != "found":
        failures.append(f"the host segment must be found; said {said.get('host_shm')}")
    if said.get("own_shm") != "made" or world.own_key not in segment_keys():
        failures.append(f"the program's own segment must outlive it on the host; said {said.get('own_shm')}")
    for attack in ("outside_stat", "outside_chmod", "outside_utime", "outside_readlink", "outside_listxattr"):
        if said.get(attack) != "ok":
            failures.append(f"{attack}: the outside file must be reachable and changeable; said {said.get(attack)}")
    if said.get("evidence_key") != "ok":
        failures.append(f"the evidence key must be readable without the boundary; said {said.get('evidence_key')}")
    assert not failures, f"constructed-world control failures [{identity}]: {failures}"
