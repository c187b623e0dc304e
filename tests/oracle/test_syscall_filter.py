"""Seccomp — every Linux run ends its setup with a seccomp filter, installed last before exec.

Always the hardening baseline (``baseline.v1``) and ``fs.no_setid.v1`` (its oracle is
tests/oracle/test_setid.py); ``spawn.deny_new_tasks.v1`` under
ChildSpawn DenyNewTasks, ``spawn.threads_only.v1`` under AllowThreadsWithinBoundary, and
``net.deny_inet_sockets.v1`` under Network DenyAll. Each test makes one attack and reads its
outcome by two channels: the host reads ``/proc/<pid>/status`` of the parked workload
(``Seccomp: 2`` and a filter count above the test process's own — a workload inherits the
host's filters, so only the increase is the run's) and the workload reports, errno by errno,
what its calls did. A control runs the same workload without the filter (the unconfined
InertBackend, a setpriv'd process, the same backend without the capability, a host that
cannot install a filter) and shows the call succeeds there or fails for another reason, so
no oracle is vacuous. Tests that involve a launcher run it as the caller (root here) and as
uid 65534.

Telling the filter's EPERM from the kernel's: a boundary's workload has no capabilities, so a
kernel that checks a capability first would say EPERM with no filter at all. The baseline
probes therefore pass arguments the kernel rejects *before* any permission check (a bad fd:
EBADF; a bad pointer: EFAULT; unknown flags: EINVAL); an EPERM there can only be the filter's.
For the few syscalls whose capability check comes first (pivot_root, the new mount API, acct,
swapoff, reboot — and modules/kexec where configured), the table says so and the proof is the
program: the very program the report names by digest, installed by this test into a root
process that keeps every capability, turns each of them into EPERM.

No assertion is about time; the waits are liveness bounds.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from bvisor import (
    BoundarySpec,
    Capability,
    HostControl,
    InertBackend,
    LinuxBackend,
    MinGuarantee,
    NetPolicy,
    Outcome,
    RunIO,
)
from bvisor.backends.linux import launch
from bvisor.contract import (
    Enforcement,
    RequirementKind,
    SpawnPolicy,
    UnsupportedRequirement,
)
from bvisor.mechanism import seccomp, syscalls
from bvisor.wire.plan import LauncherState, SeccompRequest, lowering_hash, schedule
from helpers import (
    IDENTITIES,
    PARKED,
    UNPRIVILEGED_PREFIX,
    check_completed,
    cli_prefix,
    facts_of,
    launcher_as,
    loud_skip,
    plan,
    planned,
    run_gated,
    sh_authority,
    shared_host_dir,
    status_of,
    unique_marker,
)
from oracle_specs import exact_environment, oracle_spec, watched_budgets

PYTHON = os.path.realpath(sys.executable)  # the pyenv shim on PATH fails in an empty environment
BVISOR = str(Path(sys.executable).parent / "bvisor")
ARCH = os.uname().machine
NUMBERS = syscalls.NUMBERS.get(ARCH, {})
NUMBERS_JSON = json.dumps(NUMBERS)
GATE = 20.0  # seconds the host waits for a workload to park: a liveness bound, not a timing assert
EPERM, EBADF, EINVAL, ENOSYS = 1, 9, 22, 38
SIGSYS = int(signal.SIGSYS)
PATH_ENV = "/usr/local/bin:/usr/bin:/bin"
MIB = 1 << 20

BASELINE = "baseline.v1"
NO_SETID = "fs.no_setid.v1"
EVERY_RUN = [BASELINE, NO_SETID]  # what every run's filter ends with
DENY_NEW_TASKS = "spawn.deny_new_tasks.v1"
THREADS_ONLY = "spawn.threads_only.v1"
DENY_INET = "net.deny_inet_sockets.v1"
SECCOMP_FILTER_FACT = "launcher.seccomp_filter"

# The brief's baseline, written out here (not read from src): a syscall dropped from the policy
# must fail this oracle, not silently shrink it.
ALWAYS_DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kexec_load", "kexec_file_load", "bpf",
    "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd", "mount", "umount2",
    "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick",
    "mount_setattr", "setns", "io_uring_setup", "io_uring_enter", "io_uring_register", "acct",
    "swapon", "swapoff", "reboot", "init_module", "finit_module", "delete_module", "settimeofday",
    "clock_settime", "clock_adjtime", "adjtimex", "open_by_handle_at", "iopl", "ioperm",
)
# The conditional rules, as the report must word them (kernel constants, from the uapi headers).
CONDITIONAL_RULES = (
    "unshare: errno:EPERM if arg0 & 0x7e020080 != 0",
    "clone: errno:EPERM if arg0 & 0x7e020000 != 0",
    "clone3: errno:ENOSYS always",
    "personality: errno:EPERM if arg0 != 0xffffffff and arg0 != 0x0",
    "ioctl: errno:EPERM if arg1 == 0x5412",
    "ioctl: errno:EPERM if arg1 == 0x541c",
)

CLONE_FS, CLONE_SIGHAND = 0x200, 0x800
CLONE_NEWTIME = 0x80
NAMESPACE_FLAGS = {
    "newns": 0x00020000, "newcgroup": 0x02000000, "newuts": 0x04000000, "newipc": 0x08000000,
    "newuser": 0x10000000, "newpid": 0x20000000, "newnet": 0x40000000,
}
TIOCSTI, TIOCLINUX, TCGETS = 0x5412, 0x541C, 0x5401
NO_PID = 0x3FFFFFFF  # above the kernel's pid_max ceiling (2^22): no such process
BAD_PTR = 1  # a user address that is never mapped: the kernel's copy_from_user fails with EFAULT

# (label, syscall, args, the unfiltered kernel's answer and why). Every call is harmless unfiltered.
BASELINE_PROBES = [
    ("ptrace", "ptrace", [2, NO_PID, 0, 0], "ESRCH: PEEKDATA of a pid that cannot exist"),
    ("process_vm_readv", "process_vm_readv", [NO_PID, 0, 0, 0, 0, 1], "EINVAL: flags must be 0 (checked first)"),
    ("process_vm_writev", "process_vm_writev", [NO_PID, 0, 0, 0, 0, 1], "EINVAL: flags must be 0 (checked first)"),
    ("kexec_load", "kexec_load", [0, 0x7FFFFFFF, 0, 0], "capless: EPERM first; root: EINVAL nr_segments; ENOSYS if unconfigured"),
    ("kexec_file_load", "kexec_file_load", [-1, -1, 0, 0, 1 << 20], "capless: EPERM first; root: EINVAL flags; ENOSYS if unconfigured"),
    ("bpf", "bpf", [0x7FFF, 0, 0], "EINVAL: unknown command"),
    ("perf_event_open", "perf_event_open", [0, 0, -1, -1, 1 << 20], "EINVAL: unknown flags (checked first)"),
    ("keyctl", "keyctl", [0x7FFF, 0, 0, 0, 0], "EOPNOTSUPP: unknown operation"),
    ("add_key", "add_key", [0, 0, 0, 0, 0], "EFAULT: NULL key type"),
    ("request_key", "request_key", [0, 0, 0, 0], "EFAULT: NULL key type"),
    ("userfaultfd", "userfaultfd", [1 | 2], "EINVAL: USER_MODE_ONLY (so allowed) with an unknown flag"),
    ("mount", "mount", [0, 0, 0, 0, 0], "EFAULT: NULL target, resolved before the capability check"),
    ("umount2", "umount2", [0, 0x80], "EINVAL: unknown flags (checked first)"),
    ("pivot_root", "pivot_root", [0, 0], "capless: EPERM first (may_mount); root: EFAULT"),
    ("move_mount", "move_mount", [-1, 0, -1, 0, 0x7FFF0000], "capless: EPERM first (may_mount); root: EINVAL flags"),
    ("open_tree", "open_tree", [-1, 0, 0x7FFF0000], "EINVAL: unknown flags (checked first)"),
    ("fsopen", "fsopen", [0, 0x7F], "capless: EPERM first; root: EINVAL flags"),
    ("fsconfig", "fsconfig", [-1, 0, 0, 0, 0], "EINVAL: negative fd (checked first)"),
    ("fsmount", "fsmount", [-1, 0x7F, 0], "capless: EPERM first (may_mount); root: EINVAL flags"),
    ("fspick", "fspick", [-1, 0, 0x7FFF0000], "capless: EPERM first (may_mount); root: EINVAL flags"),
    ("mount_setattr", "mount_setattr", [-1, 0, 0x7FFF0000, 0, 0], "EINVAL: unknown flags (checked first)"),
    ("setns", "setns", [-1, 0], "EBADF: fd -1"),
    ("io_uring_setup", "io_uring_setup", [1, 0], "EFAULT: NULL params (EPERM only if kernel.io_uring_disabled=2)"),
    ("io_uring_enter", "io_uring_enter", [-1, 0, 0, 0, 0, 0], "EBADF: fd -1"),
    ("io_uring_register", "io_uring_register", [-1, 0, 0, 0], "EINVAL/EBADF: fd -1"),
    ("acct", "acct", [BAD_PTR], "capless: EPERM first; root: EFAULT (never acct(NULL): that switches accounting off)"),
    ("swapon", "swapon", [0, 1 << 30], "EINVAL: unknown swap flags (checked first)"),
    ("swapoff", "swapoff", [0], "capless: EPERM first; root: EFAULT"),
    ("reboot", "reboot", [0, 0, 0, 0], "capless: EPERM first; root: EINVAL bad magic"),
    ("init_module", "init_module", [0, 0, 0], "capless: EPERM first; root: ENOEXEC; ENOSYS without modules"),
    ("finit_module", "finit_module", [-1, 0, 0x7FFF0000], "capless: EPERM first; root: EINVAL; ENOSYS without modules"),
    ("delete_module", "delete_module", [0, 0], "capless: EPERM first; root: EFAULT; ENOSYS without modules"),
    ("settimeofday", "settimeofday", [BAD_PTR, 0], "EFAULT: tv copied before the capability check"),
    ("clock_settime", "clock_settime", [0, BAD_PTR], "EFAULT: tp copied before the capability check"),
    ("clock_adjtime", "clock_adjtime", [0, BAD_PTR], "EFAULT: timex copied before the capability check"),
    ("adjtimex", "adjtimex", [BAD_PTR], "EFAULT: timex copied before the capability check"),
    ("open_by_handle_at", "open_by_handle_at", [-1, 0, 0], "EBADF/EFAULT: before the capability check"),
    ("iopl", "iopl", [4], "EINVAL: level > 3 (checked first); ENOSYS without IOPL support"),
    ("ioperm", "ioperm", [0, 0, 0], "EINVAL: empty range (checked first); ENOSYS without IOPL support"),
]
# Conditional rules: unshare and clone with every namespace bit, each combined so the kernel
# would reject it (EINVAL) without the filter — a raw clone that succeeded would fork the probe.
BASELINE_PROBES += [
    (f"unshare:{name}", "unshare", [flag | 0x1], "EINVAL: 0x1 (CSIGNAL) is no unshare flag")
    for name, flag in {**NAMESPACE_FLAGS, "newtime": CLONE_NEWTIME}.items()
]
BASELINE_PROBES += [
    (f"clone:{name}", "clone", [flag | CLONE_SIGHAND, 0, 0, 0, 0], "EINVAL: CLONE_SIGHAND without CLONE_VM")
    for name, flag in NAMESPACE_FLAGS.items()
]
BASELINE_PROBES += [
    ("clone:newns+fs", "clone", [NAMESPACE_FLAGS["newns"] | CLONE_FS, 0, 0, 0, 0], "EINVAL: CLONE_NEWNS with CLONE_FS"),
    # clone truncates its flags to 32 bits: a high bit must not hide the namespace request.
    ("clone:newuser+bit32", "clone", [(1 << 32) | NAMESPACE_FLAGS["newuser"] | CLONE_SIGHAND, 0, 0, 0, 0], "EINVAL: as clone:newuser"),
    ("clone3", "clone3", [0, 0], "EINVAL: NULL args of size 0 (filtered: ENOSYS, so libc falls back to clone)"),
    ("personality", "personality", [0x0040000], "succeeds: sets ADDR_NO_RANDOMIZE"),
    ("ioctl:TIOCSTI", "ioctl", [-1, TIOCSTI, 0], "EBADF: fd -1"),
    ("ioctl:TIOCLINUX", "ioctl", [-1, TIOCLINUX, 0], "EBADF: fd -1"),
]
BASELINE_LABELS = [label for label, *_ in BASELINE_PROBES]
# Calls the baseline must leave alone: its conditions are narrow, not a blanket denial.
ALLOWED_PROBES = [
    ("allowed:unshare(0)", "unshare", [0], "succeeds: no flags"),
    ("allowed:personality(query)", "personality", [0xFFFFFFFF], "succeeds: query"),
    ("allowed:personality(PER_LINUX)", "personality", [0], "succeeds"),
    ("allowed:ioctl(TCGETS)", "ioctl", [-1, TCGETS, 0], "EBADF: fd -1"),
    ("allowed:clone(no namespace)", "clone", [CLONE_SIGHAND, 0, 0, 0, 0], "EINVAL: CLONE_SIGHAND without CLONE_VM"),
]
EXPECTED_UNDER_BOUNDARY = {label: (ENOSYS if label == "clone3" else EPERM) for label in BASELINE_LABELS}
# Where the kernel checks a capability before anything an argument could fail: a capless
# process gets EPERM here with no filter at all, so only the program column proves the filter.
KERNEL_CHECKS_CAPABILITY_FIRST = frozenset(
    {"kexec_load", "kexec_file_load", "pivot_root", "move_mount", "fsopen", "fsmount", "fspick", "acct", "swapoff", "reboot",
     "init_module", "finit_module", "delete_module"}
)

# The workload of the syscall oracles: park, then make each call through libc's syscall(2)
# and report ``label -> "ok" | errno``. argv: marker, syscall numbers (JSON), probes (JSON).
PROBE = f"""
import ctypes, json, os, sys
numbers, probes = json.loads(sys.argv[2]), json.loads(sys.argv[3])
print({PARKED!r}, flush=True)
sys.stdin.readline()
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
said = {{}}
for label, name, args in probes:
    if name not in numbers:
        said[label] = "absent"
        continue
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(numbers[name]), *[ctypes.c_long(a) for a in args])
    if r == 0 and name in ("clone", "fork"):
        os._exit(0)  # the child of a clone that should have failed: leave at once
    if r > 0 and name in ("clone", "fork"):
        os.waitpid(r, 0)
    said[label] = "ok" if r >= 0 else ctypes.get_errno()
print("RESULT=" + json.dumps(said), flush=True)
"""

# The spawn oracles' workload: fork, threads, pthread_create, a subprocess, raw fork/clone3;
# then start a thread meant to live through the park, report, park, release it, exit 0.
WORKERS_SUM = sum(i * i for i in range(4000))
SPAWN = f"""
import ctypes, json, os, subprocess, sys, threading
numbers = json.loads(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
said = {{}}
try:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    said["fork"] = "ok"
except OSError as e:
    said["fork"] = e.errno
parts = {{}}
def work(k):
    parts[k] = sum(i * i for i in range(k * 1000, (k + 1) * 1000))
try:
    workers = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    said["threads"] = sum(parts.values()) if len(parts) == 4 else "partial"
except RuntimeError as e:
    said["threads"] = "RuntimeError: " + str(e)
noop = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(lambda _: None)
tid = ctypes.c_ulong()
rc = libc.pthread_create(ctypes.byref(tid), None, noop, None)
if rc == 0:
    libc.pthread_join(tid, None)
said["pthread_create"] = rc
try:
    done = subprocess.run(["/bin/echo", "child-ran"], capture_output=True)
    said["subprocess"] = done.stdout.decode().strip() or "rc=%d" % done.returncode
except OSError as e:
    said["subprocess"] = e.errno
for name in ("fork", "clone3"):
    if name not in numbers:
        said["raw_" + name] = "absent"
        continue
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(numbers[name]), ctypes.c_long(0), ctypes.c_long(0))
    if r == 0:
        os._exit(0)
    if r > 0:
        os.waitpid(r, 0)
    said["raw_" + name] = "ok" if r >= 0 else ctypes.get_errno()
release = threading.Event()
try:
    held = threading.Thread(target=release.wait)
    held.start()
    said["held_thread"] = "started"
except RuntimeError:
    held = None
    said["held_thread"] = "refused"
said["tasks"] = len(os.listdir("/proc/self/task"))
print("RESULT=" + json.dumps(said), flush=True)
print({PARKED!r}, flush=True)
sys.stdin.readline()
release.set()
if held is not None:
    held.join()
"""


# --- host readers -----------------------------------------------------------------------------


OWN = status_of("self")
OWN_MODE, OWN_FILTERS = int(OWN.get("Seccomp", "0")), int(OWN.get("Seccomp_filters", "0"))


def children_of(pid) -> list:
    """The children of every thread of ``pid`` (from ``/proc/<pid>/task/*/children``)."""
    kids = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
        except OSError:
            continue
    return kids


def seccomp_view(pid) -> dict:
    """Channel A while the workload is parked: its seccomp mode, filter count, threads, children."""
    status = status_of(pid)
    return {
        "seccomp": status.get("Seccomp"),
        "filters": status.get("Seccomp_filters"),
        "threads": status.get("Threads"),
        "children": children_of(pid),
    }


def check_filtered(failures: list, view, tag: str) -> None:
    """The host must read filter mode and at least one filter more than this process has."""
    if not view:
        failures.append(f"CHANNEL A [{tag}]: the host never saw the workload parked")
        return
    if view["seccomp"] != "2":
        failures.append(f"CHANNEL A [{tag}]: /proc/<pid>/status must say Seccomp: 2 (filter mode); got {view['seccomp']!r}")
    if not (view["filters"] or "").isdigit() or int(view["filters"]) < OWN_FILTERS + 1:
        failures.append(
            f"CHANNEL A [{tag}]: Seccomp_filters must be at least this process's {OWN_FILTERS} + 1; got {view['filters']!r}"
        )


def check_unfiltered(failures: list, view, tag: str) -> None:
    """The host must read exactly this process's own seccomp state: the run added no filter."""
    if not view:
        failures.append(f"CHANNEL A [{tag}]: the host never saw the workload parked")
        return
    if view["seccomp"] != str(OWN_MODE) or view["filters"] != str(OWN_FILTERS):
        failures.append(
            f"CHANNEL A [{tag}]: the workload must carry only this process's seccomp state "
            f"(Seccomp {OWN_MODE}, {OWN_FILTERS} filters); got Seccomp {view['seccomp']!r}, {view['filters']!r} filters"
        )


# --- specs, runs and the workload's self-report -------------------------------------------------


def spec_for(argv, capabilities=(), controls=(), env=(), storage: int = 8 * MIB) -> BoundarySpec:
    """``argv`` under an exact environment of ``env`` pairs, plus the given requirements; the
    storage budget is the temp root's size where one is asked."""
    return oracle_spec(argv, [exact_environment(env), *capabilities], controls, watched_budgets(storage=(storage, MinGuarantee.Mediated)))


def spawn(policy) -> Capability.ChildSpawn:
    return Capability.ChildSpawn(policy=policy)


DENY_ALL_NETWORK = Capability.Network(policy=NetPolicy.DenyAll())


def probe_argv(marker: str, probes) -> list:
    return [PYTHON, "-c", PROBE, marker, NUMBERS_JSON, json.dumps([[label, name, args] for label, name, args, *_ in probes])]


def spawn_argv(marker: str) -> list:
    return [PYTHON, "-c", SPAWN, marker, NUMBERS_JSON]


def result_of(stdout) -> dict | None:
    """The workload's ``RESULT=`` JSON line, or None if it never printed one."""
    text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout
    for line in text.splitlines():
        if line.startswith("RESULT="):
            return json.loads(line[len("RESULT=") :])
    return None


def gated_run(backend, spec: BoundarySpec, marker: str):
    """Plan and run ``spec`` on ``backend``, the host reading the parked workload's seccomp
    state."""
    return run_gated(planned(backend, spec)[1], marker, seccomp_view, timeout=GATE)


def needs_filter_mode(backend, identity: str) -> None:
    proof = backend.probe().fact(SECCOMP_FILTER_FACT)
    if proof != "ok":
        loud_skip(f"seccomp oracle [{identity}]: the launcher cannot install a seccomp filter here ({proof})")


def linux_backend(identity: str) -> LinuxBackend:
    backend = LinuxBackend(launcher_as(identity))
    needs_filter_mode(backend, identity)
    return backend


def field(detail: str, name: str):
    """The value of ``name=`` in a space-separated fact detail, or None."""
    for word in detail.split():
        key, sep, value = word.partition("=")
        if sep and key == name:
            return value
    return None


def lowered_of(report) -> str:
    found = facts_of(report, "seccomp_lowered")
    return found[0] if len(found) == 1 else f"<{len(found)} seccomp_lowered facts: {found}>"


def filter_note(report):
    return next((n for n in facts_of(report, "launcher_note") if n.startswith("seccomp=")), None)


def expected_program(policies) -> str:
    return seccomp.program_digest(seccomp.compile_program(seccomp.merged(policies), ARCH))


def check_attested(failures: list, report, policies) -> None:
    """The report must name the policies, and the host's lowering and the launcher's note must
    agree on the program digest — the one this test compiles from those policies itself."""
    joined = ",".join(policies)
    lowered = lowered_of(report)
    note = filter_note(report) or ""
    digest = field(lowered, "program")
    if field(lowered, "policies") != joined:
        failures.append(f"seccomp_lowered must name policies={joined}; got {lowered!r}")
    if not note.startswith(f"seccomp=filter policies={joined} program=") or field(note, "program") != digest:
        failures.append(f"the launcher note must attest policies={joined} and the lowered program {digest}; got {note!r}")
    if digest != expected_program(policies):
        failures.append(f"the program digest must be that of the compiled {joined} program {expected_program(policies)}; got {digest}")


def check_admitted(failures: list, report, kind: RequirementKind) -> None:
    item = next((a for a in report.body.admitted if a.kind is kind), None)
    if item is None or item.enforcement is not Enforcement.Enforced or "seccomp_filter" not in item.mechanism:
        failures.append(f"{kind.value} must be admitted Enforced by seccomp_filter; admitted={report.body.admitted}")


def table(columns: dict, probes, why: bool = True) -> str:
    """The per-probe results, one column per run, for the test's stderr."""
    names = list(columns)
    lines = [f"  {'probe':<30}" + "".join(f"{n:>14}" for n in names) + ("   unfiltered kernel path" if why else "")]
    for label, _, _, reason in probes:
        cells = "".join(f"{(columns[n] or {}).get(label)!s:>14}" for n in names)
        lines.append(f"  {label:<30}{cells}" + (f"   {reason}" if why else ""))
    return "\n".join(lines)


def sysctl(name: str):
    try:
        with open(f"/proc/sys/{name.replace('.', '/')}") as f:
            return f.read().strip()
    except OSError:
        return None


# =============================================================================================
# 1. DenyNewTasks: no fork, no thread, no child — the filter says EPERM.
# =============================================================================================


def check_said(failures: list, gated, expected: dict, what: str, channel: str = "CHANNEL B") -> dict:
    """The workload's own report must hold ``expected``; returns the report ({} if none)."""
    said = result_of(gated.stdout)
    if said is None:
        failures.append(f"{channel}: the workload must report; stdout={gated.stdout!r}")
        return {}
    wrong = {k: (said.get(k), v) for k, v in expected.items() if said.get(k) != v}
    if wrong:
        failures.append(f"{channel}: {what}; (said, wanted): {wrong}")
    return said


def run_spawn_policy(identity: str, policy, threads: int, expected: dict, what: str):
    """The spawn workload under ChildSpawn ``policy``: its report, the run's, and the failures
    of the checks both spawn policies pass. It completed under the filter as the identity;
    channel A: while it is parked the host reads ``threads`` threads and no child; channel B:
    it reports ``expected``."""
    marker = unique_marker("BVISOR-SC-SPAWN")
    gated = gated_run(linux_backend(identity), spec_for(spawn_argv(marker), [spawn(policy)]), marker)
    view = gated.inspected
    print(f"{type(policy).__name__} [{identity}]: host={view} stdout={gated.stdout!r} stderr={gated.stderr[-400:]!r}", file=sys.stderr)
    failures = []
    check_completed(failures, gated.result)
    check_filtered(failures, view, identity)
    if view and (view["threads"] != str(threads) or view["children"]):
        failures.append(f"CHANNEL A: the parked workload must be {threads} thread(s) (the held one started or not) and no child; got {view}")
    said = check_said(failures, gated, expected, what)
    return said, gated.result, failures


@pytest.mark.parametrize("identity", IDENTITIES)
def test_deny_new_tasks_refuses_fork_threads_and_children_by_both_channels(identity):
    """Attack: under ChildSpawn DenyNewTasks, fork, start Python threads, pthread_create,
    run a subprocess, raw fork and clone3, then start a thread to outlive the park. Every one
    must fail with EPERM (a Python thread start as RuntimeError, pthread_create returning
    EPERM); the host reads Seccomp: 2, one thread and no child while the workload is parked."""
    expected = {
        "fork": EPERM,
        "pthread_create": EPERM,
        "subprocess": EPERM,
        "raw_fork": EPERM if "fork" in NUMBERS else "absent",
        "raw_clone3": EPERM,  # the spawn policy's EPERM decides clone3 before the baseline's ENOSYS
        "held_thread": "refused",
        "tasks": 1,
    }
    said, report, failures = run_spawn_policy(identity, SpawnPolicy.DenyNewTasks(), 1, expected, "every new task must be refused with EPERM")
    if said and not str(said.get("threads", "")).startswith("RuntimeError: can't start new thread"):
        failures.append(f"CHANNEL B: a Python thread must fail to start; threads={said.get('threads')!r}")
    check_attested(failures, report, [DENY_NEW_TASKS, *EVERY_RUN])
    check_admitted(failures, report, RequirementKind.ChildSpawnDenyNewTasks)
    for rule in ("clone: errno:EPERM always", "clone3: errno:EPERM always", "fork: errno:EPERM always", "vfork: errno:EPERM always"):
        if rule not in facts_of(report, "seccomp_rule"):
            failures.append(f"the report must list the rule {rule!r}; got {facts_of(report, 'seccomp_rule')}")
    assert not failures, f"DenyNewTasks oracle failures [{identity}]: {failures}"


# =============================================================================================
# 2. AllowThreadsWithinBoundary: threads run, no process is born.
# =============================================================================================


@pytest.mark.parametrize("identity", IDENTITIES)
def test_threads_only_runs_threads_but_refuses_fork_and_children_by_both_channels(identity):
    """Attack: the same workload under AllowThreadsWithinBoundary. Four threads must start,
    compute and join (their sum reported), pthread_create must return 0, the held thread must
    live through the park (the host reads Threads: 2); fork, the subprocess and raw fork fail
    with EPERM, clone3 with ENOSYS (so libc falls back to a clone the filter can read); the
    host reads Seccomp: 2 and no child."""
    expected = {
        "threads": WORKERS_SUM,
        "pthread_create": 0,
        "held_thread": "started",
        "fork": EPERM,
        "subprocess": EPERM,
        "raw_fork": EPERM if "fork" in NUMBERS else "absent",
        "raw_clone3": ENOSYS,
        "tasks": 2,
    }
    _, report, failures = run_spawn_policy(identity, SpawnPolicy.AllowThreadsWithinBoundary(), 2, expected, "threads must run and processes be refused")
    check_attested(failures, report, [THREADS_ONLY, *EVERY_RUN])
    check_admitted(failures, report, RequirementKind.ChildSpawnAllowThreads)
    if "clone: errno:EPERM if arg0 & 0x10000 == 0" not in facts_of(report, "seccomp_rule"):
        failures.append(f"the report must list clone's CLONE_THREAD rule; got {facts_of(report, 'seccomp_rule')}")
    assert not failures, f"threads-only oracle failures [{identity}]: {failures}"


def test_control_inert_the_same_workload_forks_threads_and_spawns():
    """Control for 1 and 2: the same workload unconfined (InertBackend) forks, runs its threads,
    its subprocess and its raw fork; clone3 fails only on its NULL arguments (EINVAL); the host
    reads no added filter and two threads."""
    marker = unique_marker("BVISOR-SC-SPAWN-CTL")
    gated = gated_run(InertBackend(), spec_for(spawn_argv(marker)), marker)
    view = gated.inspected
    print(f"spawn control: host={view} stdout={gated.stdout!r}", file=sys.stderr)
    failures = []
    check_completed(failures, gated.result)
    check_unfiltered(failures, view, "inert")
    expected = {
        "fork": "ok",
        "threads": WORKERS_SUM,
        "pthread_create": 0,
        "subprocess": "child-ran",
        "raw_fork": "ok" if "fork" in NUMBERS else "absent",
        "raw_clone3": EINVAL,
        "held_thread": "started",
    }
    check_said(failures, gated, expected, "without a filter every task must start", "CONTROL")
    if view and view["threads"] != "2":
        failures.append(f"CONTROL: the host must read two threads; got {view}")
    assert not failures, f"spawn control failures (the oracles would be vacuous): {failures}"


# =============================================================================================
# 3. The baseline: every listed syscall is EPERM (clone3 ENOSYS) under every boundary.
# =============================================================================================

ALL_PROBES = BASELINE_PROBES + ALLOWED_PROBES
INSTALL_THEN_EXEC = (
    "import os, sys\n"
    "from bvisor.launcher import seccomp\n"
    "seccomp.no_new_privs()\n"
    "seccomp.install(bytes.fromhex(sys.argv[1]))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


@pytest.fixture(scope="module")
def unfiltered():
    """The same probes without the boundary: ``root`` (InertBackend, this test's uid, every
    capability; host-read status), ``nobody`` (setpriv uid 65534, no capabilities, no filter)
    and ``root+program`` (root with every capability, under the baseline program this test
    compiles and installs itself, nothing else)."""
    columns, views = {}, {}
    marker = unique_marker("BVISOR-SC-BASE-CTL")
    gated = gated_run(InertBackend(), spec_for(probe_argv(marker, ALL_PROBES)), marker)
    columns["root"], views["root"] = result_of(gated.stdout), gated.inspected
    if os.geteuid() == 0:
        done = subprocess.run(
            [*UNPRIVILEGED_PREFIX, *probe_argv(marker, ALL_PROBES)], input=b"\n", capture_output=True, timeout=60, check=False
        )
        columns["nobody"] = result_of(done.stdout)
        program = seccomp.compile_program(seccomp.merged([BASELINE]), ARCH)
        done = subprocess.run(
            [sys.executable, "-c", INSTALL_THEN_EXEC, program.hex(), *probe_argv(marker, ALL_PROBES)],
            input=b"\n",
            capture_output=True,
            timeout=60,
            check=False,
        )
        columns["root+program"] = result_of(done.stdout)
        views["root+program stderr"] = done.stderr.decode(errors="replace")[-400:]
    return columns, views


@pytest.mark.parametrize("identity", IDENTITIES)
def test_baseline_refuses_every_listed_syscall_by_both_channels(identity, unfiltered):
    """Attack: from an ordinary run (no spawn or network policy) call every syscall the
    baseline names — with arguments the unfiltered kernel rejects harmlessly, mostly before any
    permission check — plus unshare and clone with each namespace bit (clone also with a bit
    above 32), clone3, personality(ADDR_NO_RANDOMIZE) and ioctl TIOCSTI/TIOCLINUX. Every one
    must say EPERM (clone3 ENOSYS); the narrow conditions must leave unshare(0), personality
    queries, ioctl(TCGETS) and a namespace-free clone to the kernel. The host reads Seccomp: 2;
    the report lists every rule and the digest of the very program this test compiles.

    Proof per syscall: where the capless control gets another errno, the boundary's EPERM is the
    filter's; where the kernel checks a capability first, the root+program control shows the
    program alone denies a process holding every capability."""
    columns, _ = unfiltered
    marker = unique_marker("BVISOR-SC-BASE")
    gated = gated_run(linux_backend(identity), spec_for(probe_argv(marker, ALL_PROBES)), marker)
    said, view, report = result_of(gated.stdout), gated.inspected, gated.result
    shown = {identity: said, **columns}
    print(f"baseline [{identity}] ({ARCH}): host={view}\n{table(shown, ALL_PROBES)}", file=sys.stderr)
    failures = []
    check_completed(failures, report)
    check_filtered(failures, view, identity)
    if said is None:
        failures.append(f"CHANNEL B: the workload must report; stdout={gated.stdout!r} stderr={gated.stderr!r}")
        said = {}
    absent = syscalls.ABSENT.get(ARCH, frozenset())
    for label, name, *_ in BASELINE_PROBES:
        wanted = "absent" if name in absent else EXPECTED_UNDER_BOUNDARY[label]
        if said.get(label) != wanted:
            failures.append(f"CHANNEL B: {label} must fail with {wanted} under the boundary; got {said.get(label)!r}")
    root = columns.get("root") or {}
    for label, *_ in ALLOWED_PROBES:
        # Success stays success; an error is the kernel's own, the same as unfiltered root's.
        wanted = "ok" if root.get(label) == "ok" else root.get(label)
        if said.get(label) == EPERM or said.get(label) != wanted:
            failures.append(f"CHANNEL B: {label} matches no baseline rule: it must behave as unfiltered ({wanted!r}); got {said.get(label)!r}")
    # Attribution: the capless control's EPERMs are the kernel's; everywhere else it must get
    # another errno, so the boundary's EPERM there can only be the filter's.
    boundary_eperm = {label for label in BASELINE_LABELS if said.get(label) == EPERM}
    nobody = columns.get("nobody")
    if nobody is not None:
        kernel_eperm = {label for label in BASELINE_LABELS if nobody.get(label) == EPERM}
        by_errno = sorted(boundary_eperm - kernel_eperm)
        print(f"baseline [{identity}]: the filter's EPERM proven by errno for {len(by_errno)}; by the program for {sorted(kernel_eperm)}", file=sys.stderr)
        if not kernel_eperm < boundary_eperm:
            failures.append(f"the capless control's EPERM set must be strictly smaller than the boundary's; control={sorted(kernel_eperm)}")
    # The report: the rules and the program, by digest. The fs.no_setid.v1 rules every run
    # also gets are tests/oracle/test_setid.py's to exercise.
    rules = [rule for rule in facts_of(report, "seccomp_rule") if rule not in seccomp.describe(seccomp.POLICIES[NO_SETID])]
    for name in ALWAYS_DENIED:
        if f"{name}: errno:EPERM always" not in rules:
            failures.append(f"the report must list {name!r} as always EPERM; rules={rules}")
    for rule in CONDITIONAL_RULES:
        if rule not in rules:
            failures.append(f"the report must list the rule {rule!r}; rules={rules}")
    probed = {name for _, name, *_ in BASELINE_PROBES}
    unexercised = [r for r in rules if r.partition(":")[0] not in probed]
    if unexercised:
        failures.append(f"the report lists rules this oracle does not exercise (extend it): {unexercised}")
    if len(rules) != len(ALWAYS_DENIED) + len(CONDITIONAL_RULES):
        failures.append(f"the baseline must have exactly {len(ALWAYS_DENIED) + len(CONDITIONAL_RULES)} rules; got {len(rules)}")
    check_attested(failures, report, EVERY_RUN)
    assert not failures, f"baseline oracle failures [{identity}]: {failures}"


def test_control_unfiltered_the_same_calls_fail_for_the_kernels_own_reasons(unfiltered):
    """Control for 3: without a filter, the same calls as root (every capability) never say
    EPERM (but where a host sysctl disables the facility) and clone3 says EINVAL, not ENOSYS;
    as uid 65534 (no capabilities) only the calls whose capability check comes first say
    EPERM. Under the baseline program alone — compiled here, installed in a root process that
    keeps every capability — every one of them says EPERM (clone3 ENOSYS): the program, not a
    missing capability, is what refuses them."""
    if os.geteuid() != 0:
        loud_skip("the unfiltered controls compare root (every capability) with uid 65534; these tests do not run as root")
    columns, views = unfiltered
    print(f"baseline controls ({ARCH}): host={views.get('root')}\n{table(columns, ALL_PROBES)}", file=sys.stderr)
    root, nobody, programmed = columns.get("root"), columns.get("nobody"), columns.get("root+program")
    failures = []
    check_unfiltered(failures, views.get("root"), "inert")
    if not root or not nobody or not programmed:
        pytest.fail(f"every control must report; root={root} nobody={nobody} root+program={programmed} stderr={views.get('root+program stderr')!r}")
    explained = set()
    if sysctl("kernel.io_uring_disabled") == "2":
        explained.add("io_uring_setup")
    if sysctl("kernel.kexec_load_disabled") == "1":
        explained |= {"kexec_load", "kexec_file_load"}
    if sysctl("kernel.modules_disabled") == "1":
        explained |= {"init_module", "finit_module", "delete_module"}
    root_eperm = sorted(label for label in BASELINE_LABELS if root.get(label) == EPERM and label not in explained)
    if root_eperm:
        failures.append(f"CONTROL: unfiltered root must get no EPERM from these calls (else the errno channel proves nothing); got {root_eperm}")
    if root.get("clone3") != EINVAL:
        failures.append(f"CONTROL: unfiltered clone3(NULL, 0) must be EINVAL; got {root.get('clone3')!r}")
    if root.get("personality") != "ok":
        failures.append(f"CONTROL: unfiltered personality(ADDR_NO_RANDOMIZE) must succeed; got {root.get('personality')!r}")
    nobody_eperm = {label for label in BASELINE_LABELS if nobody.get(label) == EPERM}
    if not nobody_eperm <= KERNEL_CHECKS_CAPABILITY_FIRST:
        failures.append(
            f"CONTROL: a capless process may get EPERM only where the kernel checks a capability first; "
            f"also got it for {sorted(nobody_eperm - KERNEL_CHECKS_CAPABILITY_FIRST)}"
        )
    wrong = {label: programmed.get(label) for label in BASELINE_LABELS if programmed.get(label) != EXPECTED_UNDER_BOUNDARY[label]}
    wrong = {k: v for k, v in wrong.items() if not (v == "absent" and k in syscalls.ABSENT.get(ARCH, ()))}
    if wrong:
        failures.append(f"the baseline program alone must refuse every call even to root with every capability; got {wrong}")
    allowed_wrong = {label: programmed.get(label) for label, *_ in ALLOWED_PROBES if programmed.get(label) == EPERM}
    if allowed_wrong:
        failures.append(f"the baseline program must leave these calls alone; got EPERM for {allowed_wrong}")
    assert not failures, f"baseline control failures (the oracle would be vacuous): {failures}"


# =============================================================================================
# 4. Ordinary programs run inside the baseline.
# =============================================================================================

SELF_STATUS = "grep '^Seccomp:' /proc/self/status"
PY_ORDINARY = (
    "import subprocess, threading\n"
    "parts = {}\n"
    "def work(k): parts[k] = sum(i * i for i in range(k * 1000, (k + 1) * 1000))\n"
    "ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]\n"
    "[t.start() for t in ts]; [t.join() for t in ts]\n"
    "child = subprocess.run(['/bin/echo', 'sub'], capture_output=True, check=True).stdout.decode().strip()\n"
    "mode = [l.split()[1] for l in open('/proc/self/status') if l.startswith('Seccomp:')][0]\n"
    "print(f'threads={sum(parts.values())} subprocess={child} seccomp={mode}')\n"
)
HELLO_C = '#include <stdio.h>\\nint main(void) { puts(\\"hello from gcc\\"); return 0; }\\n'
ORDINARY = {
    "sh": (["/bin/sh", "-c", f"echo ok; {SELF_STATUS}"], False, "ok\nSeccomp:\t2\n"),
    "python": ([PYTHON, "-c", PY_ORDINARY], False, f"threads={WORKERS_SUM} subprocess=sub seccomp=2\n"),
    "gcc": (
        ["/bin/sh", "-c", f'cd /tmp && printf "{HELLO_C}" > hello.c && gcc -o hello hello.c && ./hello && {SELF_STATUS}'],
        True,
        "hello from gcc\nSeccomp:\t2\n",
    ),
    "git": (
        ["/bin/sh", "-c", f"cd /tmp && git init -q repo && cd repo && echo x > f && git status --porcelain && {SELF_STATUS}"],
        True,
        "?? f\nSeccomp:\t2\n",
    ),
}


@pytest.mark.parametrize("program", list(ORDINARY))
@pytest.mark.parametrize("identity", IDENTITIES)
def test_ordinary_programs_run_inside_the_baseline(identity, program):
    """Not an attack: the baseline must not break ordinary work. ``sh``, python (threads and a
    subprocess), ``gcc`` compiling and running hello world, and ``git init`` + ``git status``
    (the last two in a private 128 MiB /tmp) complete with exit 0 and their expected output,
    including their own ``Seccomp: 2`` line, and the report attests the baseline program."""
    argv, temp, expected = ORDINARY[program]
    tool = {"gcc": "gcc", "git": "git"}.get(program)
    if tool and shutil.which(tool, path=PATH_ENV) is None:
        loud_skip(f"{tool} is not installed on this host")
    controls = [HostControl.TempRoot()] if temp else []
    env = [("PATH", PATH_ENV), ("HOME", "/tmp")]
    spec = spec_for(argv, controls=controls, env=env, storage=128 * MIB)
    out, err = bytearray(), bytearray()
    report = planned(linux_backend(identity), spec)[1](RunIO(stdout_sink=out.extend, stderr_sink=err.extend))
    print(f"ordinary {program} [{identity}]: {report.body.outcome} {report.body.exit} stdout={bytes(out)!r} stderr={bytes(err)[-600:]!r}", file=sys.stderr)
    failures = []
    check_completed(failures, report)
    if report.body.exit is None or report.body.exit.code != 0:
        failures.append(f"{program} must exit 0; got {report.body.exit}")
    if out.decode(errors="replace") != expected:
        failures.append(f"{program} must print {expected!r}; got {bytes(out)!r} (stderr {bytes(err)[-600:]!r})")
    check_attested(failures, report, EVERY_RUN)
    assert not failures, f"ordinary-program failures [{identity}/{program}]: {failures}"


# =============================================================================================
# 5. Network DenyAll: inet and packet sockets refused by the filter, in depth.
# =============================================================================================

AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 1, 2, 10, 16, 17
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_BAD = 1, 2, 3, 15  # 15 is above SOCK_MAX: EINVAL before any family code
SOCKET_PROBES = [
    ("inet_stream", "socket", [AF_INET, SOCK_STREAM, 0], "succeeds: creating a socket needs no network"),
    ("inet_dgram", "socket", [AF_INET, SOCK_DGRAM, 0], "succeeds"),
    ("inet6_stream", "socket", [AF_INET6, SOCK_STREAM, 0], "succeeds (EAFNOSUPPORT without IPv6)"),
    ("inet_badtype", "socket", [AF_INET, SOCK_BAD, 0], "EINVAL: type above SOCK_MAX"),
    # socket() takes an int domain: the kernel ignores bit 32, so must the filter.
    ("inet_bit32", "socket", [(1 << 32) | AF_INET, SOCK_STREAM, 0], "succeeds: the kernel reads the low 32 bits"),
    ("packet_raw", "socket", [AF_PACKET, SOCK_RAW, 0], "EPERM from the kernel for a capless process (CAP_NET_RAW)"),
    ("packet_badtype", "socket", [AF_PACKET, SOCK_BAD, 0], "EINVAL: type above SOCK_MAX, before the capability check"),
    ("unix_stream", "socket", [AF_UNIX, SOCK_STREAM, 0], "succeeds"),
    ("netlink_route", "socket", [AF_NETLINK, SOCK_RAW, 0], "succeeds"),
]
DENIED_SOCKETS = {"inet_stream", "inet_dgram", "inet6_stream", "inet_badtype", "inet_bit32", "packet_raw", "packet_badtype"}


def socket_run(identity: str, deny: bool):
    marker = unique_marker("BVISOR-SC-NET")
    backend = linux_backend(identity)
    if deny and backend.probe().fact("launcher.userns_netns") != "ok":
        loud_skip(f"Network DenyAll [{identity}]: this host cannot create an empty network namespace")
    spec = spec_for(probe_argv(marker, SOCKET_PROBES), [DENY_ALL_NETWORK] if deny else [])
    gated = gated_run(backend, spec, marker)
    return gated, result_of(gated.stdout)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_deny_all_refuses_inet_and_packet_sockets_but_not_unix(identity):
    """Attack: under Network DenyAll, open AF_INET, AF_INET6 and AF_PACKET sockets (also with a
    bad type, and AF_INET with bit 32 set in the domain). The empty network namespace alone
    would let every one be created (or fail with EINVAL); the filter must answer EPERM to all,
    while AF_UNIX and AF_NETLINK sockets still open. The host reads Seccomp: 2."""
    gated, said = socket_run(identity, deny=True)
    report = gated.result
    print(f"deny-all sockets [{identity}]: host={gated.inspected} said={said}", file=sys.stderr)
    failures = []
    check_completed(failures, report)
    check_filtered(failures, gated.inspected, identity)
    said = said or {}
    for label, *_ in SOCKET_PROBES:
        wanted = EPERM if label in DENIED_SOCKETS else "ok"
        if said.get(label) != wanted:
            failures.append(f"CHANNEL B: {label} must be {wanted} under deny-all; got {said.get(label)!r}")
    check_attested(failures, report, [DENY_INET, *EVERY_RUN])
    for af in (AF_INET, AF_INET6, AF_PACKET):
        rule = f"socket: errno:EPERM if arg0 == {af:#x}"
        if rule not in facts_of(report, "seccomp_rule"):
            failures.append(f"the report must list {rule!r}; got {facts_of(report, 'seccomp_rule')}")
    assert not failures, f"deny-all socket oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_deny_all_the_same_sockets_open(identity):
    """Control: the same backend without the Network capability. AF_INET (also with bit 32 set)
    opens; the bad types fail with EINVAL, not EPERM; only AF_PACKET/SOCK_RAW is EPERM — the
    kernel's, for a process without CAP_NET_RAW. The filter has no socket rule."""
    gated, said = socket_run(identity, deny=False)
    report = gated.result
    print(f"socket control [{identity}]: host={gated.inspected} said={said}", file=sys.stderr)
    failures = []
    check_completed(failures, report)
    check_filtered(failures, gated.inspected, identity)  # the baseline is still on
    said = said or {}
    expected = {"inet_stream": "ok", "inet_dgram": "ok", "inet_bit32": "ok", "inet_badtype": EINVAL, "packet_badtype": EINVAL,
                "unix_stream": "ok", "netlink_route": "ok"}
    wrong = {k: (said.get(k), v) for k, v in expected.items() if said.get(k) != v}
    if wrong:
        failures.append(f"CONTROL: without deny-all these sockets behave as the kernel says; (said, wanted): {wrong}")
    if said.get("inet6_stream") not in ("ok", 97):
        failures.append(f"CONTROL: AF_INET6 must open (or be EAFNOSUPPORT without IPv6); got {said.get('inet6_stream')!r}")
    check_attested(failures, report, EVERY_RUN)
    if any(r.startswith("socket:") for r in facts_of(report, "seccomp_rule")):
        failures.append(f"without deny-all the filter must have no socket rule; got {facts_of(report, 'seccomp_rule')}")
    assert not failures, f"socket control failures (the oracle would be vacuous): {failures}"


# =============================================================================================
# 6. A host without seccomp filter mode: the spawn cells refuse; plain runs say "none".
# =============================================================================================

NO_FILTER = {SECCOMP_FILTER_FACT: "failed forced-by-test"}


@pytest.mark.parametrize(
    ("policy", "kind"),
    [(SpawnPolicy.DenyNewTasks(), RequirementKind.ChildSpawnDenyNewTasks), (SpawnPolicy.AllowThreadsWithinBoundary(), RequirementKind.ChildSpawnAllowThreads)],
    ids=["deny_new_tasks", "threads_only"],
)
@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_host_without_filter_mode_refuses_the_spawn_policies_at_plan(identity, policy, kind):
    """Attack (on the planner): ask a host that cannot install a filter for a spawn policy only
    a filter gives. The plan must refuse with UnsupportedRequirement naming the kind and the
    missing filter; the same spec plans on the real host (control)."""
    spec = spec_for(["/bin/true"], [spawn(policy)])
    real = linux_backend(identity)
    admitted = planned(real, spec)[0].admitted
    simulated = LinuxBackend(launcher_as(identity), fact_overrides=NO_FILTER)
    failures = []
    try:
        planned(simulated, spec)
        failures.append(f"the plan must be refused on a host without seccomp filter mode ({kind.value})")
    except UnsupportedRequirement as exc:
        print(f"no filter mode [{identity}/{kind.value}]: refused: {exc} (remediation: {exc.remediation})", file=sys.stderr)
        if exc.kind is not kind or exc.requirement != kind.value:
            failures.append(f"the refusal must name {kind.value}; got {exc.kind} {exc.requirement!r}")
        if "seccomp filter" not in exc.reason or "forced-by-test" not in exc.reason:
            failures.append(f"the refusal must say the launcher cannot install a seccomp filter (with the proof); got {exc.reason!r}")
    if not any(a.kind is kind and a.enforcement is Enforcement.Enforced for a in admitted):
        failures.append(f"CONTROL: the real host must admit {kind.value} Enforced; admitted={admitted}")
    assert not failures, f"no-filter-mode plan failures [{identity}/{kind.value}]: {failures}"


NO_FILTER_PROBES = [
    ("personality", "personality", [0x0040000], "succeeds"),
    ("ioctl:TIOCSTI", "ioctl", [-1, TIOCSTI, 0], "EBADF"),
    ("setns", "setns", [-1, 0], "EBADF"),
    ("clone3", "clone3", [0, 0], "EINVAL"),
]


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_host_without_filter_mode_runs_plain_specs_without_a_filter_and_says_so(identity):
    """A plain run on a host simulated without filter mode gets no filter, and says so: the host
    reads the workload's seccomp state unchanged from this process's; the workload's baseline
    calls reach the kernel (EBADF, EINVAL, success — no EPERM, clone3 not ENOSYS); the report
    says ``seccomp_lowered: none: …``, lists no rule and has no filter note; the probe fact
    ``seccomp.baseline`` says it is not installed."""
    linux_backend(identity)  # a loud skip where the real host has no filter mode to take away
    backend = LinuxBackend(launcher_as(identity), fact_overrides=NO_FILTER)
    marker = unique_marker("BVISOR-SC-NOFILTER")
    gated = gated_run(backend, spec_for(probe_argv(marker, NO_FILTER_PROBES)), marker)
    said, report = result_of(gated.stdout), gated.result
    baseline_fact = backend.probe().fact("seccomp.baseline")
    print(f"no filter mode run [{identity}]: host={gated.inspected} said={said} lowered={lowered_of(report)!r} probe={baseline_fact!r}", file=sys.stderr)
    failures = []
    check_completed(failures, report)
    check_unfiltered(failures, gated.inspected, identity)
    expected = {"personality": "ok", "ioctl:TIOCSTI": EBADF, "setns": EBADF, "clone3": EINVAL}
    if said != expected:
        failures.append(f"CHANNEL B: without a filter the calls must reach the kernel; said {said}, wanted {expected}")
    if not lowered_of(report).startswith("none: "):
        failures.append(f"the report must say seccomp_lowered none: …; got {lowered_of(report)!r}")
    if facts_of(report, "seccomp_rule") or filter_note(report):
        failures.append(f"no rule and no filter note without a filter; rules={facts_of(report, 'seccomp_rule')} note={filter_note(report)!r}")
    assert not failures, f"no-filter-mode run failures [{identity}]: {failures}"


def test_a_host_without_filter_mode_does_not_advertise_the_baseline():
    """The snapshot a plan carries must not claim what its runs lack: on a host without filter
    mode the profile's ``seccomp.baseline`` fact says the baseline is not installed (a real
    host without filter mode does; the simulated one must agree with its own lowering, which
    says ``none``). Control: the real host advertises ``baseline.v1,fs.no_setid.v1`` with their
    policy digest."""
    real = linux_backend("caller")
    simulated = LinuxBackend(launcher_as("caller"), fact_overrides=NO_FILTER)
    advertised, control = simulated.probe().fact("seccomp.baseline"), real.probe().fact("seccomp.baseline")
    print(f"seccomp.baseline: simulated={advertised!r} real={control!r}", file=sys.stderr)
    assert field(control or "", "policy") == seccomp.policy_digest(EVERY_RUN), f"CONTROL: the real host must advertise the baseline; got {control!r}"
    assert (advertised or "").startswith("not installed"), f"the simulated host advertises a baseline its runs do not get: {advertised!r}"


# =============================================================================================
# 7. Digests: reproducible, tracking the policies, the same in the lowering and the launcher.
# =============================================================================================


def true_report(backend, capabilities=()):
    return planned(backend, spec_for(["/bin/true"], capabilities))[1](RunIO())


@pytest.mark.parametrize("identity", IDENTITIES)
def test_program_digests_are_reproducible_and_track_the_policies(identity):
    """Two plans of one spec on two backend instances name the same program; DenyNewTasks names
    another; in every report the lowered digest is the launcher's; the policy digest is the
    probe's ``seccomp.baseline`` one for a plain run, and the instruction count is the program's."""
    first, second = linux_backend(identity), LinuxBackend(launcher_as(identity))
    reports = {
        "plain#1": true_report(first),
        "plain#2": true_report(second),
        "deny": true_report(first, [spawn(SpawnPolicy.DenyNewTasks())]),
    }
    lowered = {name: lowered_of(r) for name, r in reports.items()}
    notes = {name: filter_note(r) for name, r in reports.items()}
    print(f"digests [{identity}]: lowered={lowered} notes={notes}", file=sys.stderr)
    failures = []
    for name, report in reports.items():
        check_completed(failures, report)
        if field(lowered[name], "program") is None or field(lowered[name], "program") != field(notes[name] or "", "program"):
            failures.append(f"{name}: the lowered program digest must be the launcher's; lowered={lowered[name]!r} note={notes[name]!r}")
        if field(lowered[name], "insns") != field(notes[name] or "", "insns"):
            failures.append(f"{name}: lowering and launcher must agree on the instruction count; {lowered[name]!r} vs {notes[name]!r}")
    if lowered["plain#1"] != lowered["plain#2"]:
        failures.append(f"two plans of one spec must lower to the same program; {lowered['plain#1']!r} vs {lowered['plain#2']!r}")
    if field(lowered["plain#1"], "program") == field(lowered["deny"], "program"):
        failures.append(f"DenyNewTasks must change the program digest; both {field(lowered['deny'], 'program')}")
    baseline_fact = first.probe().fact("seccomp.baseline") or ""
    if field(baseline_fact, "policy") != field(lowered["plain#1"], "policy") or field(baseline_fact, "policy") != seccomp.policy_digest(EVERY_RUN):
        failures.append(f"the probe's baseline policy digest must be the plain run's; probe={baseline_fact!r} lowered={lowered['plain#1']!r}")
    program = seccomp.compile_program(seccomp.merged(EVERY_RUN), ARCH)
    if field(lowered["plain#1"], "insns") != str(len(program) // 8):
        failures.append(f"insns must be the program's {len(program) // 8} instructions; got {lowered['plain#1']!r}")
    check_attested(failures, reports["plain#1"], EVERY_RUN)
    check_attested(failures, reports["deny"], [DENY_NEW_TASKS, *EVERY_RUN])
    assert not failures, f"digest oracle failures [{identity}]: {failures}"


# =============================================================================================
# 8. CLI: --no-spawn and --threads-only.
# =============================================================================================

FORK_ONCE = "/bin/true; echo rc=$?"


def bvisor_cli(identity: str, home: str, *args):
    """The CLI as the identity, its state (``BVISOR_HOME``) in ``home``: never the caller's own."""
    return subprocess.run(
        [*cli_prefix(identity), BVISOR, *args],
        capture_output=True,
        cwd="/",
        stdin=subprocess.DEVNULL,
        env={**os.environ, "BVISOR_HOME": home},
        timeout=120,
        check=False,
    )


def cli_run(identity: str, flags, argv):
    """``bvisor run --quiet --report R FLAGS -- ARGV`` as the identity; (completed, report dict)."""
    shared = shared_host_dir("bvisor-sc-cli-", mode=0o777)
    path = os.path.join(shared, "report.json")
    try:
        done = bvisor_cli(identity, shared, "run", "--quiet", "--no-stdin", "--report", path, *flags, "--", *argv)
        try:
            with open(path) as f:
                written = json.load(f)
        except (OSError, ValueError):
            written = None
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    return done, written


def written_lowered(written) -> str:
    return next((f["detail"] for f in (written or {}).get("observed", []) if f.get("kind") == "seccomp_lowered"), "")


@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_no_spawn_stops_a_shell_from_forking(identity):
    """Attack: ``bvisor run --no-spawn -- /bin/sh -c '/bin/true; echo rc=$?'``. The shell cannot
    fork its child: dash says "Cannot fork" and exits 2 without running the echo; the report
    names the deny-new-tasks policy. Control: without --no-spawn it prints rc=0 and exits 0."""
    linux_backend(identity)
    denied, report = cli_run(identity, ["--no-spawn"], ["/bin/sh", "-c", FORK_ONCE])
    allowed, control = cli_run(identity, [], ["/bin/sh", "-c", FORK_ONCE])
    print(
        f"CLI --no-spawn [{identity}]: exit {denied.returncode} stdout={denied.stdout!r} stderr={denied.stderr!r} "
        f"lowered={written_lowered(report)!r}\n  control: exit {allowed.returncode} stdout={allowed.stdout!r}",
        file=sys.stderr,
    )
    failures = []
    dash = os.path.realpath("/bin/sh").endswith("dash")
    if dash and (denied.returncode != 2 or b"Cannot fork" not in denied.stderr):
        failures.append(f"dash must say 'Cannot fork' and exit 2; got {denied.returncode} {denied.stderr!r}")
    if denied.returncode == 0 or b"fork" not in denied.stderr.lower():
        failures.append(f"the shell must fail, saying it cannot fork; got exit {denied.returncode} stderr={denied.stderr!r}")
    if b"rc=" in denied.stdout:
        failures.append(f"the shell must not get past its fork; stdout={denied.stdout!r}")
    if not written_lowered(report).startswith(f"policies={','.join([DENY_NEW_TASKS, *EVERY_RUN])} "):
        failures.append(f"the --report must lower {DENY_NEW_TASKS}; got {written_lowered(report)!r}")
    if allowed.returncode != 0 or allowed.stdout != b"rc=0\n":
        failures.append(f"CONTROL: without --no-spawn the shell forks; got exit {allowed.returncode} stdout={allowed.stdout!r} stderr={allowed.stderr!r}")
    if not written_lowered(control).startswith(f"policies={','.join(EVERY_RUN)} "):
        failures.append(f"CONTROL: a plain CLI run lowers the baseline only; got {written_lowered(control)!r}")
    assert not failures, f"CLI --no-spawn failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_threads_only_runs_threads_and_refuses_fork(identity):
    """Attack: the spawn workload through ``bvisor run --threads-only``: its threads compute
    and join, fork and the subprocess fail with EPERM, exit 0; the report names the
    threads-only policy."""
    linux_backend(identity)
    marker = unique_marker("BVISOR-SC-CLI-THREADS")
    done, report = cli_run(identity, ["--threads-only"], spawn_argv(marker))
    said = result_of(done.stdout)
    print(f"CLI --threads-only [{identity}]: exit {done.returncode} said={said} stderr={done.stderr[-400:]!r} lowered={written_lowered(report)!r}", file=sys.stderr)
    failures = []
    if done.returncode != 0:
        failures.append(f"the workload exits 0; got {done.returncode} stderr={done.stderr!r}")
    expected = {"threads": WORKERS_SUM, "pthread_create": 0, "fork": EPERM, "subprocess": EPERM, "raw_clone3": ENOSYS}
    wrong = {k: ((said or {}).get(k), v) for k, v in expected.items() if (said or {}).get(k) != v}
    if wrong:
        failures.append(f"CHANNEL B: threads must run and fork be refused; (said, wanted): {wrong}")
    if not written_lowered(report).startswith(f"policies={','.join([THREADS_ONLY, *EVERY_RUN])} "):
        failures.append(f"the --report must lower {THREADS_ONLY}; got {written_lowered(report)!r}")
    assert not failures, f"CLI --threads-only failures [{identity}]: {failures}"


# =============================================================================================
# 9. The launcher installs only the planned program.
# =============================================================================================


def launcher_plan_with(marker: str, request: SeccompRequest):
    """A hand-made launch plan: ``sh`` reporting its own seccomp mode, with ``request``."""
    base = plan(["/bin/sh", "-c", f"echo RAN; {SELF_STATUS}", marker], False, envp=[("PATH", PATH_ENV)])
    target = msgspec.structs.replace(base.body.target, seccomp=request)
    lowering = schedule(target, base.body.descriptor_table)  # its seccomp entry binds ``request``, whatever program digest it claims
    body = msgspec.structs.replace(base.body, target=target, lowering=lowering, h_l=lowering_hash(lowering))
    return msgspec.structs.replace(base, body=body)


LAUNCHER_CASES = {
    "planned": (lambda: SeccompRequest(policies=[BASELINE], program_digest=bytes.fromhex(expected_program([BASELINE]))), True),
    "zero_digest": (lambda: SeccompRequest(policies=[BASELINE], program_digest=bytes(32)), False),
    # The stronger program's digest claimed for a weaker policy list: the launcher compiles the
    # list it was given, so the digests differ and it must refuse.
    "policies_swapped": (lambda: SeccompRequest(policies=[BASELINE], program_digest=bytes.fromhex(expected_program([DENY_NEW_TASKS, BASELINE]))), False),
    "unknown_policy": (lambda: SeccompRequest(policies=["baseline.v0"], program_digest=bytes(32)), False),
}


@pytest.mark.parametrize("case", list(LAUNCHER_CASES))
@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_launcher_installs_only_the_planned_program(identity, case):
    """Attack (on the launcher): hand it a plan whose seccomp digest is not the program its
    policies compile to (zeros; a stronger program's digest; an unknown policy name). It must
    never exec the workload. Control ("planned"): the right digest execs, the workload reports
    Seccomp: 2 and the launcher attests the program."""
    make, runs = LAUNCHER_CASES[case]
    marker = unique_marker("BVISOR-SC-LAUNCHER")
    obs = launch.run_launcher(launcher_as(identity), launcher_plan_with(marker, make()), [sh_authority()], RunIO())
    stdout = obs.captured_stdout
    print(f"launcher seccomp [{identity}/{case}]: terminal={obs.terminal} stdout={stdout!r} notes={obs.notes}", file=sys.stderr)
    failures = []
    if runs:
        if not obs.exec_succeeded() or stdout != b"RAN\nSeccomp:\t2\n":
            failures.append(f"the planned program must be installed and the workload run filtered; terminal={obs.terminal} stdout={stdout!r}")
        if f"seccomp=filter policies={BASELINE} program={expected_program([BASELINE])}" not in " | ".join(obs.notes):
            failures.append(f"the launcher must attest the program; notes={obs.notes}")
    else:
        if obs.exec_succeeded() or b"RAN" in stdout:
            failures.append(f"a plan whose digest is not its program's must never exec; terminal={obs.terminal} stdout={stdout!r}")
        if obs.terminal not in (LauncherState.SetupRefused, LauncherState.SetupFaulted):
            failures.append(f"the launcher must refuse or fault the setup; terminal={obs.terminal}")
        if any(n.startswith("seccomp=filter") for n in obs.notes):
            failures.append(f"the launcher must not attest a filter it did not install; notes={obs.notes}")
    assert not failures, f"launcher seccomp failures [{identity}/{case}]: {failures}"


# =============================================================================================
# 10. Another syscall ABI: x32 and i386 calls kill the process.
# =============================================================================================

ABI_CALLS = {
    # getpid through the x32 table (nr | 0x40000000), whose numbers the filter does not describe.
    "x32": (
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.syscall.restype = ctypes.c_long\n"
        "call = lambda: libc.syscall(ctypes.c_long(0x40000000 | 39))\n"
    ),
    # getpid through the i386 entry (int 0x80, nr 20): another audit arch, other numbers.
    "ia32": (
        "import mmap\n"
        "page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "page.write(bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3]))  # mov eax, 20; int 0x80; ret\n"
        "call = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))\n"
    ),
}


def abi_argv(abi: str) -> list:
    code = "import ctypes\n" + ABI_CALLS[abi] + "print('before', flush=True)\nprint('after', call(), flush=True)\n"
    return [PYTHON, "-c", code]


@pytest.mark.parametrize("abi", list(ABI_CALLS))
@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_syscall_through_another_abi_kills_the_workload(identity, abi):
    """Attack: on x86_64, make a syscall through another ABI, where the same numbers name other
    calls: the x32 table (nr | 0x40000000) or the i386 entry (``int 0x80``). The filter must
    kill the process (SIGSYS) before the call runs: ``before`` but never ``after``. Control
    (InertBackend): the call returns (ENOSYS from a kernel without x32; the pid through i386)
    and the workload goes on — if it does not, this host cannot tell and the test skips loudly."""
    if ARCH != "x86_64":
        loud_skip(f"x32 and i386 are x86_64 ABIs; this host is {ARCH}")
    out, ctl = bytearray(), bytearray()
    control = planned(InertBackend(), spec_for(abi_argv(abi)))[1](RunIO(stdout_sink=ctl.extend))
    if control.body.outcome is not Outcome.Completed or not bytes(ctl).startswith(b"before\nafter "):
        loud_skip(f"CONTROL: unfiltered, the {abi} call does not return here ({control.body.exit} {bytes(ctl)!r})")
    report = planned(linux_backend(identity), spec_for(abi_argv(abi)))[1](RunIO(stdout_sink=out.extend))
    print(f"{abi} [{identity}]: {report.body.outcome} {report.body.exit} stdout={bytes(out)!r}; control {control.body.exit} {bytes(ctl)!r}", file=sys.stderr)
    failures = []
    if report.body.exit is None or report.body.exit.signal != SIGSYS:
        failures.append(f"the workload must die of SIGSYS; got {report.body.outcome} {report.body.exit}")
    if bytes(out) != b"before\n":
        failures.append(f"CHANNEL B: the workload must not get past the {abi} call; stdout={bytes(out)!r}")
    check_attested(failures, report, EVERY_RUN)
    assert not failures, f"{abi} oracle failures [{identity}]: {failures}"
