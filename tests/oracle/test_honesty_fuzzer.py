"""The honesty fuzzer (issue 12, item 8): every claim a plan admits as ``Enforced`` is attacked.

Hypothesis draws ``bvisor run`` flag combinations (``--net none``, ``--ro DIR``, ``--rw DIR``,
``--tmp``, ``--storage N``, ``--no-spawn`` / ``--threads-only``, ``--pids N``, ``--fds N``,
``--timeout S``, ``--no-system-roots`` with a root, or a spec with no Filesystem capability),
builds the spec exactly as the CLI does (``spec_from_flags``) and plans it on a LinuxBackend.
A refused plan is honest, but its refusal must name a requirement or a budget dimension. For an
admitted plan, ONE attack program runs in the run and tries the attack of every requirement and
budget the plan admits as ``Enforced`` (and only those: a claim not made is not attacked),
printing one JSON verdict per attack, then parks so the host can look at it:

- network_deny_all: TCP connect and UDP send to host loopback listeners;
- filesystem: write a host sentinel outside every root and create a file beside it, read and
  stat a host secret outside every root (must not exist: ENOENT), create a file in a read-only
  root;
- child_spawn_deny_new_tasks: fork and start a thread; child_spawn_allow_threads: fork;
- environment: a sentinel the host put in its own environment; inherited_fds_none: a
  descriptor the host left open (inheritable) while it ran the workload;
- launch_workload (the constructed world): open core_pattern for writing, in-run root mapped to
  host uid 0 (the outside column of /proc/self/uid_map) when the launcher is root, find a host
  SysV segment and leave one behind, read the host's hostname, find a mount of the view
  (``/``, the interpreter's, every root, the temp root) without nosuid,nodev, set a
  setuid/setgid bit on a file in every writable place;
- budgets — storage: write more than the cap into every writable place; process_count: keep
  more tasks alive than the cap; handle_count: hold more descriptors than the cap (and raise
  the limit); wall: outlive the deadline.

Channel A (host): while parked, the workload's uid (never root when the launcher is root), its
IPC and UTS namespaces (not the host's), its environ and open descriptors; after the run the
listeners got nothing, the sentinel, the secret's directory and the read-only root are
unchanged, no file in a read-write root carries a setuid/setgid bit, the run's SysV segment is
not in the host's namespace, and a wall-capped run ended by timeout. Channel B: the verdicts.
Any admitted Enforced claim whose attack escapes fails the test with the flags that broke it
(hypothesis shrinks them). Control: the same program, every attack on, run directly on the host
as the same uid: every attack escapes, so no verdict is vacuous.

Budget: ``make test`` draws a fixed, derandomized ``FUZZ_EXAMPLES`` (12) per identity;
``make fuzz`` runs the deeper profile (``BVISOR_FUZZ_EXAMPLES``, 200 by default).
"""

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bvisor import Capability, Outcome
from bvisor.cli.parser import build_parser
from bvisor.contract import BudgetDimension, Enforcement, PlanError, RequirementKind
from bvisor.flags import spec_from_flags
from helpers import (
    IDENTITIES,
    UNPRIVILEGED_PREFIX,
    host_read_environ,
    host_read_uid,
    identity_uid,
    planned,
    run_gated,
    shared_host_dir,
    unique_marker,
    workload_uid_problem,
)
from mount_oracles import linux_backend
from sysv_shm import make_segment, remove_segment, segment_keys

K, D = RequirementKind, BudgetDimension
FUZZ_EXAMPLES = int(os.environ.get("BVISOR_FUZZ_EXAMPLES", "12"))
# The attack program is stdlib only: the system interpreter lives in the system roots.
PYTHON = os.path.realpath("/usr/bin/python3")
# What the interpreter needs when the view has no system roots (granted as --ro roots).
INTERPRETER_ROOTS = [path for path in ("/usr", "/lib", "/lib64") if os.path.isdir(path)]
ENV_SENTINEL = "BVISOR_FUZZ_SENTINEL"
GATE = 60.0  # seconds the host waits for the workload to park: a liveness bound, not a timing assert

ATTACK = r"""
import ctypes, errno, json, os, resource, socket, stat, sys, threading, time
cfg = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
def verdict(attack, escaped, detail=""):
    print(json.dumps({"attack": attack, "escaped": bool(escaped), "detail": str(detail)}), flush=True)
def tried(action):
    try:
        return "ok", action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno)), None
    except ValueError as exc:  # resource.setrlimit's refusal to raise a hard limit
        return str(exc), None

if "net" in cfg:
    def tcp():
        with socket.create_connection(("127.0.0.1", cfg["net"]["tcp"]), timeout=5):
            pass
    said, _ = tried(tcp)
    verdict("net.tcp", said == "ok", said)
    def udp():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"escaped", ("127.0.0.1", cfg["net"]["udp"]))
    said, _ = tried(udp)
    verdict("net.udp", said == "ok", said)
    # TODO(unix-socket gate, issue 12 item 4): connect/sendto to host pathname unix sockets
    # (outside every root, in a read-only root, in a read-write root) belongs here once the
    # deny-all network gate for unix sockets lands.

if "fs" in cfg:
    fs = cfg["fs"]
    said, _ = tried(lambda: open(fs["sentinel"], "a").write("escaped"))
    verdict("fs.write_outside", said == "ok", said)
    said, _ = tried(lambda: open(os.path.join(fs["outside"], "created-by-run"), "x").close())
    verdict("fs.create_outside", said == "ok", said)
    said, _ = tried(lambda: open(fs["secret"]).read())
    verdict("fs.read_secret", said == "ok", said)
    said, _ = tried(lambda: os.stat(fs["secret"]))
    verdict("fs.stat_outside", said != "ENOENT", said)
    for root in fs["read_only"]:
        said, _ = tried(lambda: open(os.path.join(root, "created-by-run"), "x").close())
        verdict("fs.write_read_only_root", said == "ok", f"{root}: {said}")

if "spawn" in cfg:
    said, pid = tried(os.fork)
    if pid == 0:
        os._exit(0)
    if pid:
        os.waitpid(pid, 0)
    verdict("spawn.fork", said == "ok", said)
    if cfg["spawn"] == "deny":
        try:
            worker = threading.Thread(target=lambda: None)
            worker.start()
            worker.join()
            verdict("spawn.thread", True, "started")
        except RuntimeError as exc:
            verdict("spawn.thread", False, exc)

if "env" in cfg:
    said, raw = tried(lambda: open("/proc/self/environ", "rb").read())
    seen = cfg["env"] in json.dumps(dict(os.environ)) or cfg["env"].encode() in (raw or b"")
    verdict("env.sentinel", seen, sorted(os.environ))

if "fds" in cfg:
    target = (cfg["fds"]["dev"], cfg["fds"]["ino"])
    held = []
    for fd in range(3, 1024):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == target:
            held.append(fd)
    verdict("fds.host_descriptor", held, held)

if "identity" in cfg:
    ident = cfg["identity"]
    said, _ = tried(lambda: os.close(os.open("/proc/sys/kernel/core_pattern", os.O_WRONLY)))
    verdict("identity.core_pattern", said == "ok", said)
    if ident["launcher_root"]:
        said, text = tried(lambda: open("/proc/self/uid_map").read())
        if said == "ok":
            outside = [line.split()[1] for line in text.splitlines() if line.split()]
            verdict("identity.host_root", "0" in outside, text.strip())
    host_seg = libc.shmget(ident["host_shm"], 0, 0)
    verdict("identity.host_shm", host_seg >= 0, host_seg if host_seg >= 0 else errno.errorcode[ctypes.get_errno()])
    libc.shmget(ident["own_shm"], 4096, 0o1000 | 0o600)  # the host checks it is not left behind
    verdict("identity.hostname", socket.gethostname() == ident["hostname"], socket.gethostname())
    # nosuid,nodev on every mount of the view: its root, the interpreter's (a system root or the
    # host's tree), every granted root and the temp root.
    for place in ["/", os.path.dirname(sys.executable), *ident["writable"], *ident["read_only"]]:
        said, flags = tried(lambda: os.statvfs(place).f_flag)
        need = os.ST_NOSUID | os.ST_NODEV
        verdict("identity.suid_mount", said == "ok" and flags & need != need, f"{place}: {said} f_flag={flags}")
    for place in ident["writable"]:
        path = os.path.join(place, f"setid-{os.getpid()}")
        def plant():
            with open(path, "w"):
                pass
            os.chmod(path, 0o6755)
            return os.stat(path).st_mode
        said, mode = tried(plant)
        verdict("identity.setid_bit", said == "ok" and mode & (stat.S_ISUID | stat.S_ISGID), f"{place}: {said} {oct(mode or 0)}")

if "storage" in cfg:
    limit = cfg["storage"]["limit"]
    chunk = b"x" * 65536
    for place in cfg["storage"]["places"]:
        written = 0
        try:
            with open(os.path.join(place, f"fill-{os.getpid()}"), "wb", buffering=0) as f:
                while written <= limit + (1 << 20):
                    written += f.write(chunk)
        except OSError:
            pass  # ENOSPC (or EDQUOT): the cap held
        verdict("storage.fill", written > limit, f"{place}: {written} bytes over a cap of {limit}")

if "pids" in cfg:
    cap, alive, gate_r, gate_w = cfg["pids"], 1, *os.pipe()
    children = []
    holders = threading.Event()
    while alive <= cap + 2:
        try:
            pid = os.fork()
        except OSError:
            pid = None
        if pid == 0:
            os.close(gate_w)
            os.read(gate_r, 1)
            os._exit(0)
        if pid:
            children.append(pid)
            alive += 1
            continue
        try:
            worker = threading.Thread(target=holders.wait, daemon=True)
            worker.start()
            alive += 1
        except RuntimeError:
            break
    os.close(gate_w)
    holders.set()
    for pid in children:
        os.waitpid(pid, 0)
    verdict("pids.tasks", alive > cap, f"{alive} tasks alive under a cap of {cap}")

if "handles" in cfg:
    cap, held = cfg["handles"], []
    while len(held) <= cap + 8:
        try:
            held.append(os.dup(1))
        except OSError:
            break
    verdict("handles.open", max(held, default=0) >= cap, f"highest fd {max(held, default=0)} under a cap of {cap}")
    for fd in held:
        os.close(fd)
    said, _ = tried(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (cap + 64, cap + 64)))
    verdict("handles.raise_limit", said == "ok", said)

print("BVISOR-PARKED", flush=True)  # helpers.PARKED: the host looks now, then closes stdin
sys.stdin.readline()
if "wall" in cfg:
    time.sleep(cfg["wall"] + 30)
    verdict("wall.outlived", True, "slept past the deadline")
"""


class World:
    """Host objects the attacks aim at, made once per test and removed after it."""

    def __init__(self, host_dir):
        self.read_only = host_dir("bvisor-fuzz-ro-", 0o777)
        self.outside = host_dir("bvisor-fuzz-outside-", 0o777, "/var/tmp")
        self.sentinel = os.path.join(self.outside, "sentinel.txt")
        self.secret = os.path.join(self.outside, "secret.txt")
        for path, text in ((self.sentinel, "untouched\n"), (self.secret, "host secret\n")):
            with open(path, "w") as f:
                f.write(text)
        os.chmod(self.sentinel, 0o666)
        os.chmod(self.secret, 0o644)
        self.leaked = os.open(self.secret, os.O_RDONLY)  # inheritable: the host "left it open"
        os.set_inheritable(self.leaked, True)
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.tcp.setblocking(False)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.setblocking(False)
        self.host_shm = 0x6C000000 | (os.getpid() & 0xFFFFF)
        self.own_shm = self.host_shm + 1
        make_segment(self.host_shm)
        self.env_marker = unique_marker("BVISOR-FUZZ-ENV")

    def snapshot(self) -> dict:
        """What must never change: the sentinel, the secret's directory, the read-only root."""
        with open(self.sentinel) as f:
            sentinel = f.read()
        return {
            "sentinel": (sentinel, stat.S_IMODE(os.stat(self.sentinel).st_mode)),
            "outside": sorted(os.listdir(self.outside)),
            "read_only": sorted(os.listdir(self.read_only)),
        }

    def config(self, enforced: set, budgets: dict, writable: list, read_only: list, identity: str) -> dict:
        """The attack program's orders: exactly the attacks of what the plan admits as Enforced."""
        cfg = {}
        if K.NetworkDenyAll in enforced:
            cfg["net"] = {"tcp": self.tcp.getsockname()[1], "udp": self.udp.getsockname()[1]}
        if K.Filesystem in enforced:
            cfg["fs"] = {"sentinel": self.sentinel, "outside": self.outside, "secret": self.secret, "read_only": read_only}
        if K.ChildSpawnDenyNewTasks in enforced:
            cfg["spawn"] = "deny"
        elif K.ChildSpawnAllowThreads in enforced:
            cfg["spawn"] = "threads"
        if K.Environment in enforced:
            cfg["env"] = self.env_marker
        if K.InheritedFdsNone in enforced:
            leaked = os.fstat(self.leaked)
            cfg["fds"] = {"dev": leaked.st_dev, "ino": leaked.st_ino}
        if K.LaunchWorkload in enforced:
            cfg["identity"] = {
                "launcher_root": identity_uid(identity) == 0,
                "host_shm": self.host_shm,
                "own_shm": self.own_shm,
                "hostname": socket.gethostname(),
                "writable": writable,
                "read_only": read_only,
            }
        if D.Storage in budgets:
            cfg["storage"] = {"limit": budgets[D.Storage], "places": writable}
        if D.ProcessCount in budgets:
            cfg["pids"] = budgets[D.ProcessCount]
        if D.HandleCount in budgets:
            cfg["handles"] = budgets[D.HandleCount]
        if D.Wall in budgets:
            cfg["wall"] = budgets[D.Wall] / 1_000_000
        return cfg

    def host_escapes(self, before: dict, rw_roots: list, cfg: dict) -> list:
        """Channel A after the run: what the host can see the run got away with."""
        found = []
        if "net" in cfg:
            with contextlib.suppress(BlockingIOError):
                conn, peer = self.tcp.accept()
                conn.close()
                found.append(f"the host TCP listener got a connection from {peer}")
            with contextlib.suppress(BlockingIOError):
                found.append(f"the host UDP listener got {self.udp.recv(64)!r}")
        if "fs" in cfg and self.snapshot() != before:
            found.append(f"outside the roots changed: {before} -> {self.snapshot()}")
        for root in rw_roots:
            for directory, _, files in os.walk(root):
                for name in files:
                    mode = os.lstat(os.path.join(directory, name)).st_mode
                    if mode & (stat.S_ISUID | stat.S_ISGID):
                        found.append(f"{os.path.join(directory, name)} carries {oct(mode)} on the host")
        if "identity" in cfg:
            if self.own_shm in segment_keys():
                found.append("the run left a SysV segment in the host's IPC namespace")
            if self.host_shm not in segment_keys():
                found.append("the host's SysV segment is gone")
        return found

    def close(self) -> None:
        os.close(self.leaked)
        self.tcp.close()
        self.udp.close()
        for key in (self.host_shm, self.own_shm):
            remove_segment(key)


@pytest.fixture
def world(host_dir):
    made = World(host_dir)
    yield made
    made.close()


# --- the draw ---------------------------------------------------------------------------------


@st.composite
def run_flags(draw) -> dict:
    """One ``bvisor run`` flag combination; ``filesystem`` False drops the Filesystem capability
    from the CLI's spec (the host's tree, seen through the run's identity)."""
    view = draw(st.sampled_from(["default", "roots", "no-filesystem"]))
    ro = rw = no_system_roots = False
    if view == "roots":
        ro, rw = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
        no_system_roots = draw(st.booleans())
    spawn = draw(st.sampled_from([None, "--no-spawn", "--threads-only"]))

    def optional(values):
        return draw(st.none() | values)

    return {
        "net": draw(st.booleans()),
        "ro": ro,
        "rw": rw,
        "no_system_roots": no_system_roots,
        "tmp": draw(st.booleans()),
        "spawn": spawn,
        "storage": optional(st.integers(1, 4).map(lambda n: f"{n}M")),
        "pids": optional(st.integers(2, 8).map(str)),
        "fds": optional(st.integers(16, 64).map(str)),
        "timeout": optional(st.sampled_from(["8", "12"])),
        "filesystem": view != "no-filesystem",
    }


def cli_argv(flags: dict, world: World, rw_root: str) -> list:
    """The drawn flags as ``bvisor run`` arguments."""
    argv = ["--net", "none"] if flags["net"] else []
    if flags["ro"]:
        argv += ["--ro", world.read_only]
    if flags["rw"]:
        argv += ["--rw", rw_root]
    if flags["no_system_roots"]:
        argv += ["--no-system-roots"] + [arg for root in INTERPRETER_ROOTS for arg in ("--ro", root)]
    if flags["tmp"]:
        argv.append("--tmp")
    if flags["spawn"]:
        argv.append(flags["spawn"])
    for name in ("storage", "pids", "fds", "timeout"):
        if flags[name] is not None:
            argv += [f"--{name}", flags[name]]
    return argv


def spec_for(flags: dict, argv: list, command: list):
    """Built the way the CLI builds it; without a Filesystem capability when so drawn."""
    spec = spec_from_flags(build_parser().parse_args(["run", *argv]), command)
    if flags["filesystem"]:
        return spec
    return msgspec.structs.replace(spec, capabilities=[c for c in spec.capabilities if not isinstance(c, Capability.Filesystem)])


# --- the run ----------------------------------------------------------------------------------


def _ns(pid, kind: str):
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _parked_escapes(identity: str, world: World, cfg: dict):
    """Channel A while the workload is parked: a list of what it got away with."""

    def inspect(pid: int) -> list:
        found = []
        if "identity" in cfg:
            problem = workload_uid_problem(identity, host_read_uid(pid))
            if problem:
                found.append(f"the workload {problem}")
            for kind in ("ipc", "uts"):
                if _ns(pid, kind) in (None, _ns("self", kind)):
                    found.append(f"the workload shares the host's {kind} namespace")
        if "env" in cfg and world.env_marker.encode() in (host_read_environ(pid) or b""):
            found.append("the host's environment sentinel is in the workload's environ")
        if "fds" in cfg:
            leaked = os.fstat(world.leaked)
            for name in _fd_names(pid):
                with contextlib.suppress(OSError):
                    held = os.stat(f"/proc/{pid}/fd/{name}")
                    if (held.st_dev, held.st_ino) == (leaked.st_dev, leaked.st_ino):
                        found.append(f"the workload holds the host's descriptor as fd {name}")
        return found

    return inspect


def _fd_names(pid: int) -> list:
    try:
        return os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []


def verdicts(stdout: bytes) -> list:
    rows = []
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                rows.append(json.loads(line))
    return rows


def _enforced(plan):
    kinds = {a.kind for a in plan.admitted if a.enforcement is Enforcement.Enforced}
    budgets = {b.dimension: b.limit for b in plan.budgets if b.supplied is Enforcement.Enforced}
    return kinds, budgets


def _writable_places(plan, rw_root: str, flags: dict) -> list:
    """Where the workload may write in the run: the temp root's /tmp and read-write roots."""
    places = ["/tmp"] if any(a.kind is K.TempRoot for a in plan.admitted) else []
    return places + ([rw_root] if flags["rw"] and flags["filesystem"] else [])


def attack_once(identity: str, backend, world: World, flags: dict, monkeypatch) -> None:
    rw_root = shared_host_dir("bvisor-fuzz-rw-", 0o777)
    try:
        argv = cli_argv(flags, world, rw_root)
        marker = unique_marker("BVISOR-FUZZ")
        # The orders are filled in after planning; the spec's argv carries a placeholder first
        # to plan, then the real orders (same shape: the plan only sees the exe and flags).
        spec = spec_for(flags, argv, [PYTHON, "-c", ATTACK, "{}", marker])
        try:
            plan, _ = planned(backend, spec)
        except PlanError as refused:
            names = {k.value for k in K} | {d.value for d in D}
            assert refused.requirement in names, f"a refusal must name a requirement or a dimension; got {refused!r} for {argv}"
            print(f"honesty fuzzer [flags={argv} filesystem={flags['filesystem']} identity={identity}]: refused {refused}", file=sys.stderr)
            return
        kinds, budgets = _enforced(plan)
        writable = _writable_places(plan, rw_root, flags)
        read_only = [world.read_only] if flags["ro"] and flags["filesystem"] else []
        cfg = world.config(kinds, budgets, writable, read_only, identity)
        spec = spec_for(flags, argv, [PYTHON, "-c", ATTACK, json.dumps(cfg), marker])
        plan, run = planned(backend, spec)
        assert _enforced(plan) == (kinds, budgets), "the orders must not change what the plan admits"
        before = world.snapshot()
        monkeypatch.setenv(ENV_SENTINEL, world.env_marker)
        gated = run_gated(run, marker, _parked_escapes(identity, world, cfg), timeout=GATE)
        monkeypatch.delenv(ENV_SENTINEL)
        said = verdicts(gated.stdout)
        label = f"flags={argv} filesystem={flags['filesystem']} identity={identity}"
        print(f"honesty fuzzer [{label}]: enforced={sorted(k.value for k in kinds)} budgets={ {d.value: v for d, v in budgets.items()} } said={ {row['attack']: row['detail'] for row in said} } stderr={gated.stderr[-1500:]!r}", file=sys.stderr)
        failures = [f"CHANNEL B: {row['attack']} escaped: {row['detail']}" for row in said if row["escaped"]]
        failures += [f"CHANNEL A: {found}" for found in (gated.inspected or [])]
        failures += [f"CHANNEL A: {found}" for found in world.host_escapes(before, [rw_root] if flags["rw"] else [], cfg)]
        if not gated.seen or gated.inspected is None:
            failures.append(f"the workload never parked: outcome={gated.result.body.outcome} exit={gated.result.body.exit} stdout={gated.stdout[-1500:]!r}")
        expected = Outcome.Timeout if "wall" in cfg else Outcome.Completed
        if gated.result.body.outcome != expected:
            failures.append(f"the run must end {expected.value}; got {gated.result.body.outcome.value} {gated.result.body.exit}")
        assert not failures, f"an admitted Enforced claim did not hold [{label}]: {failures}"
    finally:
        shutil.rmtree(rw_root, ignore_errors=True)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_every_admitted_enforced_claim_survives_its_attack(identity, world, monkeypatch):
    backend = linux_backend(identity)  # probed once; every example plans on it
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(flags=run_flags())
    def fuzz(flags):
        attack_once(identity, backend, world, flags, monkeypatch)

    fuzz()


# --- control: the same attacks, without the boundary -------------------------------------------


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_the_boundary_every_attack_escapes(identity, world, host_dir):
    writable = host_dir("bvisor-fuzz-control-", 0o777)
    every = {K.NetworkDenyAll, K.Filesystem, K.ChildSpawnDenyNewTasks, K.Environment, K.InheritedFdsNone, K.LaunchWorkload}
    caps = {D.Storage: 1 << 20, D.ProcessCount: 4, D.HandleCount: 16}
    cfg = world.config(every, caps, [writable], [world.read_only], identity)
    prefix = list(UNPRIVILEGED_PREFIX) if identity_uid(identity) != os.geteuid() else []
    env = {"PATH": "/usr/bin:/bin", ENV_SENTINEL: world.env_marker}
    done = subprocess.run(
        prefix + [PYTHON, "-c", ATTACK, json.dumps(cfg)], input=b"\n", capture_output=True, timeout=120, env=env, pass_fds=(world.leaked,)
    )
    said = {row["attack"]: row for row in verdicts(done.stdout)}
    print(f"honesty fuzzer control [{identity}]: said={said} stderr={done.stderr[-1500:]!r}", file=sys.stderr)
    held_back = [] if identity_uid(identity) == 0 else ["identity.core_pattern"]  # a plain user cannot
    expected = {
        "net.tcp", "net.udp", "fs.write_outside", "fs.create_outside", "fs.read_secret", "fs.stat_outside",
        "fs.write_read_only_root", "spawn.fork", "spawn.thread", "env.sentinel", "fds.host_descriptor",
        "identity.core_pattern", "identity.host_shm", "identity.hostname", "identity.setid_bit", "identity.suid_mount",
        "storage.fill", "pids.tasks", "handles.open", "handles.raise_limit",
    } - set(held_back)
    if identity_uid(identity) == 0:
        expected.add("identity.host_root")
    failures = [f"{name} must escape without the boundary; said {said.get(name)}" for name in sorted(expected) if not said.get(name, {}).get("escaped")]
    try:
        world.tcp.accept()[0].close()
    except BlockingIOError:
        failures.append("the host TCP listener must get the control's connection")
    try:
        world.udp.recv(64)
    except BlockingIOError:
        failures.append("the host UDP listener must get the control's datagram")
    if world.own_shm not in segment_keys():
        failures.append("the program's own SysV segment must outlive it on the host")
    assert not failures, f"honesty fuzzer control [{identity}]: {failures}"
