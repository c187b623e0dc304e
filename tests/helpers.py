"""Shared by the oracle and protocol tests: launcher locations, seed-shaped plans, host-side
/proc readers and the loud skip. Nothing here decides a verdict."""

import functools
import json
import os
import shlex
import shutil
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bvisor.backends.linux import launch
from bvisor.backends.linux.identity import id_range as identity_range
from bvisor.backends.linux.launch import AuthorityFd
from bvisor.wire import vocabulary
from bvisor.wire.frame import HEADER_LEN
from bvisor.wire.plan import (
    DescriptorKind,
    DescriptorRole,
    DescriptorShape,
    DescriptorSlotV1,
    LinuxLaunchBodyV1,
    LinuxLaunchPlanV1,
    LoweringWireEntryV1,
    LoweringWireV1,
    NetworkNsRequest,
    TargetSpecV1,
    UserNsRequest,
    lowering_hash,
    schedule,
)

REQUIRE_CONFINEMENT = os.environ.get("BVISOR_REQUIRE_CONFINEMENT") == "1"

ID_AMBIENT_SCRUB = vocabulary.ID_AMBIENT_SCRUB
ID_EXEC = vocabulary.ID_EXEC
PHASE_CODE_SCRUB = 3
PHASE_CODE_EXEC = 5
EXE_SLOT = 10


def loud_skip(why: str) -> None:
    """Never a silent pass: print SKIP; under BVISOR_REQUIRE_CONFINEMENT=1 a skip is a failure."""
    print(f"SKIP {why}", file=sys.stderr)
    if REQUIRE_CONFINEMENT:
        pytest.fail(f"skip not allowed with BVISOR_REQUIRE_CONFINEMENT=1: {why}")
    pytest.skip(why)


# --- Commands as uid 65534 -------------------------------------------------------------------
#
# The rootless oracles run this environment's own launcher and bvisor as uid 65534, so that uid
# must reach the interpreter, the virtualenv and the checkout, which on a fresh machine sit
# under root's 0700 home. The tests neither loosen the host's modes nor run copies: as root,
# each command for uid 65534 starts in a private mount namespace of its own where the topmost
# directory it cannot enter on the way to each of those trees is covered by a 0711 tmpfs, and
# the trees are bind-mounted back at their own paths (the very files, where the venv's
# shebangs, pyvenv.cfg and editable install name them; nothing else of the private directory).
# The namespace ends with the command: nothing stays mounted, nothing is left on disk. Where
# uid 65534 can already reach every tree, the prefix is plain setpriv.

NOBODY = 65534
SETPRIV_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")


def nobody_can_enter(directory) -> bool:
    """Whether uid 65534 (group 65534, no others) may search ``directory``, by its mode bits."""
    st = os.stat(directory)
    bit = stat.S_IXUSR if st.st_uid == NOBODY else stat.S_IXGRP if st.st_gid == NOBODY else stat.S_IXOTH
    return bool(st.st_mode & bit)


def closed_ancestor(tree: str):
    """The topmost directory above ``tree`` that uid 65534 cannot enter, or None."""
    return next((str(d) for d in reversed(Path(tree).parents) if not nobody_can_enter(d)), None)


def unprivileged_prefix(trees) -> tuple:
    """The argv prefix that runs a command as uid 65534 with every one of ``trees`` (resolved
    directories) reachable at its own path (see above). Bash, for its ``{var}<`` redirection:
    the trees are opened on free fds, so fds the caller passes stay untouched."""
    trees = sorted({t for t in trees if not any(o != t and Path(t).is_relative_to(o) for o in trees)})
    hidden = {tree: closed for tree in trees if (closed := closed_ancestor(tree)) is not None}
    if not hidden:
        return SETPRIV_NOBODY
    q, fds = shlex.quote, [f"tree{i}" for i in range(len(hidden))]
    script = [
        "set -e",
        *(f"exec {{{fd}}}<{q(tree)}" for fd, tree in zip(fds, hidden, strict=True)),
        *(f"mount -t tmpfs -o mode=0711 bvisor-test-reach {q(closed)}" for closed in sorted(set(hidden.values()))),
        "mkdir -p " + " ".join(map(q, hidden)),
        *(f'mount --no-canonicalize --bind "/proc/self/fd/${fd}" {q(tree)}' for fd, tree in zip(fds, hidden, strict=True)),
        "exec " + " ".join(f"{{{fd}}}<&-" for fd in fds),
        'exec "$@"',
    ]
    return ("unshare", "--mount", "--propagation", "private", "/bin/bash", "-c", "\n".join(script), "bvisor-test-reach", *SETPRIV_NOBODY)


def session_trees() -> set:
    """What a command of this session runs as uid 65534: the base interpreter, the virtualenv
    and this checkout."""
    checkout = Path(__file__).resolve().parent.parent
    return {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, checkout)}


UNPRIVILEGED_PREFIX = unprivileged_prefix(session_trees())


@functools.cache
def unprivileged_userns_available() -> bool:
    """Can an unprivileged launcher create a user + network namespace here? Proven once, by
    doing; as root the probe drops to uid 65534 first so root's privilege proves nothing."""
    launcher = launch.default_launcher()
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            return False
        launcher = UNPRIVILEGED_PREFIX + launcher
    return launch.LauncherProbe(launcher).facts().get("userns_netns") == "ok"


def launcher_path() -> Path:
    """The installed ``bvisor-linux-launcher`` console script of this environment."""
    return Path(sys.executable).parent / "bvisor-linux-launcher"


def launcher_as(identity: str):
    """The launcher command for an identity: ``caller`` as-is; ``unprivileged`` as uid 65534
    when the tests run as root (already unprivileged otherwise)."""
    if identity == "unprivileged" and os.geteuid() == 0:
        return UNPRIVILEGED_PREFIX + (str(launcher_path()),)
    return launcher_path()


IDENTITIES = ("caller", "unprivileged")


def read_text(path: str):
    """A file's text, or None if it cannot be read (gone, or not ours to read)."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def status_of(pid) -> dict:
    """``/proc/<pid>/status`` as a dict of stripped strings ({} if gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}
    except OSError:
        return {}


def unique_marker(prefix: str = "BVISOR-MARKER") -> str:
    return f"{prefix}-{os.getpid()}-{time.time_ns()}"


def scan_proc_cmdline(marker: str):
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    return int(name)
        except OSError:
            continue
    return None


def host_find_child(marker: str, deadline: float):
    while time.monotonic() < deadline:
        pid = scan_proc_cmdline(marker)
        if pid is not None:
            return pid
        time.sleep(0.01)
    return None


def host_read_child_interfaces(pid: int):
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return None
    return sorted(line.split(":", 1)[0].strip() for line in lines if ":" in line)


def entry(primitive: str, phase_code: int) -> LoweringWireEntryV1:
    return LoweringWireEntryV1(
        id=primitive, version=1, phase_code=phase_code, param_digest=bytes(32), decl_digest=bytes(32)
    )


# The outside id a hand-built plan gives in-run root when a root launcher runs it (the host
# leases one per run; a root launcher refuses a user namespace without one).
TEST_OUTSIDE_ID = 1879048192 + 65536 + 4242


def test_outside_id(identity: str = "caller"):
    """The plan's outside id for a launcher of ``identity``: only a root launcher needs one."""
    return TEST_OUTSIDE_ID if identity == "caller" and os.geteuid() == 0 else None


def plan(argv, deny_network: bool, envp=None, entries=None, identity: str = "caller") -> LinuxLaunchPlanV1:
    """A seed-shaped plan; ``identity``: who will run its launcher (``launcher_as``). Its
    entries are the seed's (all-zero digests, which the launcher accepts for those two
    only); a root launcher's plan adds the transient id, with digests that bind it."""
    outside_id = test_outside_id(identity) if deny_network else None
    target = TargetSpecV1(
        argv=list(argv),
        envp=list(envp if envp is not None else [("PATH", "/usr/bin:/bin")]),
        exe_slot=EXE_SLOT,
        user_namespace=UserNsRequest(outside_id=outside_id) if deny_network else None,
        network_namespace=NetworkNsRequest() if deny_network else None,
    )
    table = [
        DescriptorSlotV1(
            slot_index=EXE_SLOT,
            role=DescriptorRole.TargetExe,
            expected=DescriptorShape(kind=DescriptorKind.Regular, writable=False),
        )
    ]
    entries = entries or [entry(ID_AMBIENT_SCRUB, PHASE_CODE_SCRUB), entry(ID_EXEC, PHASE_CODE_EXEC)]
    if outside_id is not None:
        entries = [schedule(target, table).entries[0], *entries]
    lowering = LoweringWireV1(entries=entries)
    return LinuxLaunchPlanV1(
        body=LinuxLaunchBodyV1(
            attempt_id=bytes([7]) * 32,
            plan_id=bytes([1]) * 32,
            h_a=bytes([2]) * 32,
            h_p=bytes([3]) * 32,
            h_l=lowering_hash(lowering),
            lowering=lowering,
            descriptor_table=table,
            target=target,
        )
    )


def sh_authority() -> AuthorityFd:
    return AuthorityFd(slot_index=EXE_SLOT, handle=os.open("/bin/sh", os.O_RDONLY | os.O_CLOEXEC))


# --- Host readers and a gated workload, for the environment and inherited-fd oracles ----------


def host_read_environ(pid: int):
    """The raw bytes of ``/proc/<pid>/environ`` (the envp the kernel gave at exec), or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return None


def host_read_fds(pid: int):
    """``{fd: link target}`` from ``/proc/<pid>/fd``, or None when it cannot be read."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    links = {}
    for name in names:
        try:
            links[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue  # closed between the listing and the readlink
    return links


PARKED = "BVISOR-PARKED"
# A shell prologue for gated workloads: announce, then wait for the host to open the gate.
PARK = f"printf '{PARKED}\\n'; read -r _gate || :; "


class GatedRun:
    __slots__ = ("result", "stdout", "stderr", "inspected", "seen")

    def __init__(self, result, stdout: bytes, stderr: bytes, inspected, seen: bool):
        self.result, self.stdout, self.stderr, self.inspected, self.seen = result, stdout, stderr, inspected, seen

    def after_park(self) -> bytes:
        """The workload's stdout after its ``PARK`` line (its self-report)."""
        _head, sep, tail = self.stdout.partition(PARKED.encode() + b"\n")
        return tail if sep else self.stdout


def run_gated(run, marker: str, inspect, timeout: float = 3.0) -> GatedRun:
    """Run ``run(io)`` on a thread and look at the workload while it is parked.

    The workload's stdin (``io.stdin_fd``) is a pipe whose write end only the host holds
    (close-on-exec, so no child inherits it). A workload that starts with ``PARK`` prints
    ``PARKED`` and waits in ``read``; once the host has seen that line AND found the process
    by ``marker`` in its argv, it calls ``inspect(pid)`` — the workload is then provably past
    its own start-up (no loader or init fds in flight) — and closes the write end, which
    releases it. Gives up at ``timeout``, or as soon as ``run`` returns without the workload
    having parked (nothing was launched). Always closes the gate and joins the thread.
    """
    import threading

    from bvisor.capture import RunIO

    stdout, stderr = bytearray(), bytearray()
    parked = threading.Event()
    token = PARKED.encode() + b"\n"

    def on_stdout(data: bytes) -> None:
        stdout.extend(data)
        if token in stdout:
            parked.set()

    gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
    outcome = {}

    def drive():
        try:
            outcome["value"] = run(RunIO(stdin_fd=gate_r, stdout_sink=on_stdout, stderr_sink=stderr.extend))
        except BaseException as exc:  # re-raised on the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=drive, name=f"gated-{marker}")
    thread.start()
    seen, inspected = False, None
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            finished = not thread.is_alive()
            pid = scan_proc_cmdline(marker)
            if pid is not None:
                seen = True
                if parked.is_set():
                    inspected = inspect(pid)
                    break
            if finished:
                break
            time.sleep(0.01)
    finally:
        os.close(gate_w)
        thread.join()
        os.close(gate_r)
    if "error" in outcome:
        raise outcome["error"]
    return GatedRun(outcome["value"], bytes(stdout), bytes(stderr), inspected, seen)


def free_fd_at_or_above(preferred: int) -> int:
    """``preferred`` if no fd is open there in this process, else the next free number."""
    fd = preferred
    while True:
        try:
            os.fstat(fd)
        except OSError:
            return fd
        fd += 1


def deny_all_spec(exe: str = "/bin/true", args=()):
    """The seed's shape: deny-all network, an empty exact environment, uniform(8, Mediated)."""
    from bvisor import (
        BoundarySpec,
        BudgetRequirements,
        Capability,
        EnvPolicy,
        HostControl,
        MinGuarantee,
        NetPolicy,
        StdStreams,
        Workload,
    )

    return BoundarySpec(
        workload=Workload.Process(exe=exe, args=list(args)),
        capabilities=[Capability.Network(policy=NetPolicy.DenyAll()), Capability.Environment(policy=EnvPolicy.Exact([]))],
        controls=[HostControl.LaunchWorkload(), HostControl.CaptureStreams(streams=StdStreams.capture_out_err())],
        budgets=BudgetRequirements.uniform(8, MinGuarantee.Mediated),
    )


def host_read_uid(pid: int):
    """The real uid of ``pid`` from ``/proc/<pid>/status``, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def identity_uid(identity: str) -> int:
    """The uid of the launcher ``launcher_as(identity)`` runs (outside any userns): what a
    rootless workload runs as, and the host owner of what any workload writes in its roots."""
    return 65534 if identity == "unprivileged" and os.geteuid() == 0 else os.geteuid()


def workload_uid_problem(identity: str, uid, user_namespace: bool = True):
    """Why ``uid`` (read by the host) is not what a workload under ``launcher_as(identity)``
    runs as, or None: the launcher's uid rootless; a transient id of the lease range, never
    root, when the launcher is root (the host never lowers a plan without a user namespace
    then; a hand-built one runs as the launcher's uid)."""
    if identity_uid(identity) != 0 or not user_namespace:
        return None if uid == identity_uid(identity) else f"must run as uid {identity_uid(identity)}; the host read uid={uid}"
    first, last = identity_range()
    return None if isinstance(uid, int) and first <= uid <= last else f"must run as a transient uid in {first}-{last}, never root; the host read uid={uid}"


# --- Mount-namespace readers and shared host dirs, for the temp-root and expose-path oracles ---


def _unescape_mount_field(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo`` octal."""
    import re

    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def host_read_mountinfo(pid):
    """``/proc/<pid>/mountinfo`` rows as ``(mount_point, fstype, mount_options, super_options)``,
    in the kernel's order (a later row at the same point covers an earlier one), or None."""
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    rows = []
    for line in lines:
        head, _, tail = line.partition(" - ")
        fields, after = head.split(), tail.split()
        if len(fields) >= 6 and len(after) >= 3:
            rows.append((_unescape_mount_field(fields[4]), after[0], fields[5], after[2]))
    return rows


def host_mount_at(pid, path: str):
    """The topmost mount at ``path`` in ``pid``'s mount namespace (see host_read_mountinfo), or
    None."""
    rows = [row for row in host_read_mountinfo(pid) or [] if row[0] == path]
    return rows[-1] if rows else None


def shared_host_dir(prefix: str, mode: int = 0o755, parent: str = "/tmp") -> str:
    """A fresh host directory uid 65534 can traverse (pytest's tmp_path sits under a 0700 dir).
    The caller removes it (shutil.rmtree)."""
    import tempfile

    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(path, mode)
    return path


def host_paths_named(marker: str, top: str = "/tmp") -> list:
    """Every path under ``top`` (not following symlinks) whose name contains ``marker``."""
    found = []
    for directory, dirs, files in os.walk(top, onerror=lambda _: None):
        found += [os.path.join(directory, n) for n in dirs + files if marker in n]
    return found


def registry_of(backend):
    from bvisor import BackendRegistry

    registry = BackendRegistry()
    registry.register(backend)
    return registry


def planned(backend, spec):
    """Plan ``spec`` on ``backend`` (raises PlanError on refusal); return
    (plan, run(io) -> report)."""
    from bvisor import BoundaryPlanner, BoundaryRunner

    registry = registry_of(backend)
    plan = BoundaryPlanner(registry).plan(spec, backend.id())
    return plan, lambda io: BoundaryRunner(registry).run(plan, io)


def runner_for(backend, spec):
    """``planned`` when only the run is needed."""
    return planned(backend, spec)[1]


def facts_of(report, kind: str) -> list:
    return [f.detail for f in report.body.observed if f.kind == kind]


def check_completed(failures: list, report) -> None:
    from bvisor import Outcome

    if report.body.outcome != Outcome.Completed:
        failures.append(f"the workload must run to Completed; got {report.body.outcome} {report.body.exit} facts={report.body.observed}")


def cli_prefix(identity: str) -> tuple:
    """The prefix that runs the bvisor command itself as the identity. An unprivileged CLI
    gets a BVISOR_HOME of its own (uid 65534's home does not exist here, and the root
    session's store is private to root)."""
    if identity == "unprivileged" and os.geteuid() == 0:
        return UNPRIVILEGED_PREFIX + ("/usr/bin/env", f"BVISOR_HOME={unprivileged_home()}")
    return ()


UNPRIVILEGED_HOME = f"/tmp/bvisor-test-home-65534-{os.getpid()}"


def unprivileged_home() -> str:
    """A BVISOR_HOME owned by uid 65534, one per test process (conftest removes it)."""
    if not os.path.isdir(UNPRIVILEGED_HOME):
        os.mkdir(UNPRIVILEGED_HOME, 0o700)
        os.chown(UNPRIVILEGED_HOME, 65534, 65534)
    return UNPRIVILEGED_HOME


# A subreaper around one command: every process the command leaves behind is reparented to
# it, so its children after the command has exited are exactly what the command leaked. A
# command still running after the timeout is killed and reported as code "timeout".
_LEFT_BEHIND = """
import ctypes, json, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
try:
    done = subprocess.run(sys.argv[2:], capture_output=True, stdin=subprocess.DEVNULL, timeout=float(sys.argv[1]))
    code, stdout, stderr = done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
except subprocess.TimeoutExpired:
    code, stdout, stderr = "timeout", "", ""
children = open(f"/proc/self/task/{os.getpid()}/children").read().split()
print(json.dumps({"code": code, "children": children, "stdout": stdout, "stderr": stderr}))
"""


def left_behind(*argv, env=None, cwd=None, timeout: float = 60) -> dict:
    """``{"code", "children", "stdout", "stderr"}`` of one command run under a subreaper."""
    done = subprocess.run(
        [sys.executable, "-c", _LEFT_BEHIND, str(timeout), *argv], capture_output=True, env=env, cwd=cwd, timeout=timeout + 30, check=True
    )
    return json.loads(done.stdout)


# Each way a frame is broken, with the reason its parser gives (the launcher's too).
FRAME_MANGLES = [
    (lambda f: f[: HEADER_LEN - 1], "Truncated"),
    (lambda f: b"BVZLNCH2" + f[8:], "BadMagic"),
    (lambda f: f[:8] + struct.pack("<H", 2) + f[10:], "UnsupportedVersion"),
    (lambda f: f + b"\x00", "LengthMismatch"),
    (lambda f: f[:-1] + bytes([f[-1] ^ 1]), "DigestMismatch"),
]
