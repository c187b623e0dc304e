"""No setuid/setgid bit and no file capability on a file the workload writes (fs.no_setid.v1).

Attack (issue 12, findings 2 and 3): inside a boundary with a write root, the workload writes
files and tries to make them privileged on the host — chmod/fchmod/fchmodat/fchmodat2 to
04755, 02755 or 06755, an open or creat with O_CREAT or O_TMPFILE and mode 04755, a regular
file made by mknod with mode 04755 — and to plant metadata: setxattr ``security.capability``
(a file capability granting CAP_SETUID and CAP_SETGID) and ``user.x`` through each of
setxattr/fsetxattr/lsetxattr, removexattr of an xattr the host planted, and openat2 (whose
mode the filter cannot read).

Channel A (host): after the run, the host stats every file in the write root (no mode with
S_ISUID or S_ISGID; no file the refused creating calls would have made) and lists every
file's xattrs (the host's own planted ``user.keep`` only, still in place).
Channel B (workload): the workload reports each call's errno — EPERM for a setid mode,
EOPNOTSUPP for an xattr write, ENOSYS for openat2 — and the report names the policy and
lists its rules. Ordinary work is unaffected, by both channels: chmod 0755, open(O_CREAT,
0644) and ``cp -a`` (which carries on when xattrs are not supported) succeed, and the host
finds their files with those modes.
Control: the same program, run without bvisor as the same uid on a copy of the tree, makes
every one of those calls succeed and the host finds the setuid bits and the xattrs (but
security.capability as uid 65534, which needs CAP_SETFCAP) — so the attack is real.
Root and uid 65534 (``helpers.IDENTITIES``).
"""

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bvisor import BoundarySpec, Capability, LinuxBackend, RunIO
from bvisor.contract import Enforcement, FsAccess, RequirementKind
from bvisor.mechanism import syscalls
from helpers import (
    IDENTITIES,
    UNPRIVILEGED_PREFIX,
    check_completed,
    facts_of,
    identity_uid,
    launcher_as,
    loud_skip,
    planned,
    shared_host_dir,
    unique_marker,
)
from oracle_specs import exact_environment, oracle_spec

PYTHON = os.path.realpath(sys.executable)  # the pyenv shim on PATH fails in an empty environment
PYTHON_PREFIX = os.path.realpath(sys.base_prefix)  # a read root, so the interpreter runs inside
NUMBERS_JSON = json.dumps(syscalls.NUMBERS.get(os.uname().machine, {}))
ENV = [("PATH", "/usr/bin:/bin"), ("LC_ALL", "C")]
NO_SETID = "fs.no_setid.v1"
SETID = stat.S_ISUID | stat.S_ISGID

# The policy's rules as the report must word them, written out here (not read from src): a call
# dropped from the policy must fail this oracle, not silently shrink it.
NO_SETID_RULES = (
    "chmod: errno:EPERM if arg1 & 0xc00 != 0",
    "fchmod: errno:EPERM if arg1 & 0xc00 != 0",
    "fchmodat: errno:EPERM if arg2 & 0xc00 != 0",
    "fchmodat2: errno:EPERM if arg2 & 0xc00 != 0",
    "mknod: errno:EPERM if arg1 & 0xc00 != 0",
    "mknodat: errno:EPERM if arg2 & 0xc00 != 0",
    "creat: errno:EPERM if arg1 & 0xc00 != 0",
    "open: errno:EPERM if arg1 & 0x400040 != 0 and arg2 & 0xc00 != 0",
    "openat: errno:EPERM if arg2 & 0x400040 != 0 and arg3 & 0xc00 != 0",
    "openat2: errno:ENOSYS always",
    "setxattr: errno:EOPNOTSUPP always",
    "lsetxattr: errno:EOPNOTSUPP always",
    "fsetxattr: errno:EOPNOTSUPP always",
    "setxattrat: errno:EOPNOTSUPP always",
    "removexattr: errno:EOPNOTSUPP always",
    "lremovexattr: errno:EOPNOTSUPP always",
    "fremovexattr: errno:EOPNOTSUPP always",
    "removexattrat: errno:EOPNOTSUPP always",
)

# The workload: $1 marker, $2 the write root, $3 this arch's syscall numbers. Each probe's file
# is named after the probe; it prints one line, RESULT {probe: "ok" | errno | "absent"}.
PROGRAM = r'''
import ctypes, json, os, stat, struct, subprocess, sys
top, numbers = sys.argv[2], json.loads(sys.argv[3])
os.umask(0)
os.chdir(top)
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
# vfs_cap_data, VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE: permitted CAP_SETUID | CAP_SETGID.
CAPABILITY = struct.pack("<IIIII", 0x02000001, (1 << 7) | (1 << 6), 0, 0, 0)
OPEN_HOW = ctypes.create_string_buffer(struct.pack("<QQQ", os.O_RDONLY, 0, 0))  # struct open_how

def written(name):
    with open(name, "wb") as f:
        f.write(b"#!/bin/sh\nid\n")
    return name

def on_fd(name, call):
    fd = os.open(written(name), os.O_RDONLY)
    try:
        call(fd)
    finally:
        os.close(fd)

def created(name, flags, mode):
    os.close(os.open(name, flags | os.O_WRONLY, mode))

def raw(name, *args):
    if name not in numbers:
        return "absent"
    ctypes.set_errno(0)
    result = libc.syscall(numbers[name], *args)
    if result == -1:
        return ctypes.get_errno()
    if name in ("open", "creat", "openat2"):
        os.close(result)
    return "ok"

def copied():
    done = subprocess.run(["cp", "-a", "cp_src", "cp_copy"], capture_output=True)
    if done.returncode:
        raise OSError(done.returncode, done.stderr.decode(errors="replace"))

PROBES = {
    "chmod_4755": lambda: os.chmod(written("chmod_4755"), 0o4755),
    "chmod_2755": lambda: os.chmod(written("chmod_2755"), 0o2755),
    "chmod_2644": lambda: os.chmod(written("chmod_2644"), 0o2644),
    "chmod_raw_4755": lambda: raw("chmod", written("chmod_raw_4755").encode(), 0o4755),
    "fchmod_4755": lambda: on_fd("fchmod_4755", lambda fd: os.fchmod(fd, 0o4755)),
    "fchmodat_6755": lambda: os.chmod(written("fchmodat_6755"), 0o6755, dir_fd=os.open(".", os.O_RDONLY)),
    "fchmodat2_4755": lambda: raw("fchmodat2", AT_FDCWD, written("fchmodat2_4755").encode(), 0o4755, 0),
    "openat_creat_4755": lambda: created("openat_creat_4755", os.O_CREAT | os.O_EXCL, 0o4755),
    "openat_creat_2755": lambda: created("openat_creat_2755", os.O_CREAT | os.O_EXCL, 0o2755),
    "openat_tmpfile_4755": lambda: created(".", os.O_TMPFILE, 0o4755),
    "open_creat_4755": lambda: raw("open", b"open_creat_4755", os.O_CREAT | os.O_WRONLY, 0o4755),
    "creat_4755": lambda: raw("creat", b"creat_4755", 0o4755),
    "mknod_4755": lambda: os.mknod("mknod_4755", stat.S_IFREG | 0o4755),
    "mknod_raw_4755": lambda: raw("mknod", b"mknod_raw_4755", stat.S_IFREG | 0o4755, 0),
    "setxattr_capability": lambda: os.setxattr(written("setxattr_capability"), "security.capability", CAPABILITY),
    "setxattr_user": lambda: os.setxattr(written("setxattr_user"), "user.x", b"1"),
    "fsetxattr_user": lambda: on_fd("fsetxattr_user", lambda fd: os.setxattr(fd, "user.x", b"1")),
    "lsetxattr_user": lambda: os.setxattr(written("lsetxattr_user"), "user.x", b"1", follow_symlinks=False),
    "removexattr_user": lambda: os.removexattr("planted", "user.keep"),
    "openat2": lambda: raw("openat2", AT_FDCWD, b"planted", OPEN_HOW, 24),
    "ordinary_chmod_0755": lambda: os.chmod(written("ordinary_chmod_0755"), 0o755),
    "ordinary_creat_0644": lambda: created("ordinary_creat_0644", os.O_CREAT | os.O_EXCL, 0o644),
    "ordinary_cp_a": copied,
}

def outcome(probe):
    try:
        said = probe()
    except OSError as error:
        return error.errno
    return said if said is not None else "ok"

print("RESULT " + json.dumps({name: outcome(probe) for name, probe in PROBES.items()}), flush=True)
'''

MODE_ATTACKS = (
    "chmod_4755", "chmod_2755", "chmod_2644", "chmod_raw_4755", "fchmod_4755", "fchmodat_6755", "fchmodat2_4755",
    "openat_creat_4755", "openat_creat_2755", "openat_tmpfile_4755", "open_creat_4755", "creat_4755", "mknod_4755",
    "mknod_raw_4755",
)
XATTR_ATTACKS = ("setxattr_capability", "setxattr_user", "fsetxattr_user", "lsetxattr_user", "removexattr_user")
ORDINARY = ("ordinary_chmod_0755", "ordinary_creat_0644", "ordinary_cp_a")
# Attacks that create the file they name (the others change a file the workload wrote first).
CREATING = ("openat_creat_4755", "openat_creat_2755", "open_creat_4755", "creat_4755", "mknod_4755", "mknod_raw_4755")
# The calls aarch64 never had: their probes say "absent" there.
LEGACY = {"chmod_raw_4755": "chmod", "open_creat_4755": "open", "creat_4755": "creat", "mknod_raw_4755": "mknod"}
CP_SRC_MODE = 0o745  # readable by whatever uid the workload has on the host


def expected_in_boundary() -> dict:
    absent = syscalls.ABSENT.get(os.uname().machine, frozenset())
    wanted = dict.fromkeys(MODE_ATTACKS, errno.EPERM)
    wanted.update(dict.fromkeys(XATTR_ATTACKS, errno.EOPNOTSUPP))
    wanted.update(dict.fromkeys(ORDINARY, "ok"))
    wanted["openat2"] = errno.ENOSYS
    wanted.update({probe: "absent" for probe, call in LEGACY.items() if call in absent})
    return wanted


def make_tree(identity: str) -> str:
    """A fresh write root owned by the identity's uid (the run has its owner's rights there),
    holding two files the host planted, also the identity's: ``planted`` and ``cp_src``, each
    with the xattr ``user.keep``."""
    base = shared_host_dir("bvisor-setid-", 0o755)
    top = os.path.join(base, "rw")
    os.mkdir(top)
    os.chmod(top, 0o755)
    os.chown(top, identity_uid(identity), identity_uid(identity))
    for name, mode in (("planted", 0o644), ("cp_src", CP_SRC_MODE)):
        path = os.path.join(top, name)
        Path(path).write_bytes(b"planted by the host\n")
        os.chmod(path, mode)
        os.setxattr(path, "user.keep", b"host")
        os.chown(path, identity_uid(identity), identity_uid(identity))
    return top


def host_view(top: str) -> dict:
    """Channel A: every file in the write root, ``{name: (mode bits, sorted xattr names)}``."""
    view = {}
    for name in sorted(os.listdir(top)):
        path = os.path.join(top, name)
        view[name] = (stat.S_IMODE(os.lstat(path).st_mode), sorted(os.listxattr(path, follow_symlinks=False)))
    return view


def said(stdout: bytes):
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return None


def argv_for(marker: str, top: str) -> list:
    return [PYTHON, "-I", "-c", PROGRAM, marker, top, NUMBERS_JSON]


def spec_for(argv, top: str) -> BoundarySpec:
    return oracle_spec(
        argv,
        [
            exact_environment(ENV),
            Capability.Filesystem(access=FsAccess.Read, roots=[PYTHON_PREFIX]),
            Capability.Filesystem(access=FsAccess.ReadWrite, roots=[top]),
        ],
    )


def confined_backend(identity: str) -> LinuxBackend:
    """The backend for ``identity``, or a loud skip when this host cannot install the filter or
    confine the filesystem (the write root is the point of the attack)."""
    backend = LinuxBackend(launcher_as(identity))
    snapshot = backend.probe()
    if snapshot.fact("launcher.seccomp_filter") != "ok":
        loud_skip(f"the {identity} launcher cannot install a seccomp filter here: {snapshot.fact('launcher.seccomp_filter')}")
    cell = next(c for c in backend.profile(snapshot).cells if c.kind is RequirementKind.Filesystem)
    if cell.verdict.enforcement is not Enforcement.Enforced:
        loud_skip(f"Filesystem is not Enforced on this host for the {identity} launcher: {cell.reason}")
    return backend


def run_unconfined(identity: str, top: str) -> tuple:
    """The control: the same program without bvisor, as the identity's uid."""
    prefix = UNPRIVILEGED_PREFIX if identity == "unprivileged" and os.geteuid() == 0 else ()
    done = subprocess.run(
        [*prefix, *argv_for(unique_marker("BVISOR-SETID-CTL"), top)],
        env=dict(ENV), stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False,
    )
    return done.stdout, done.stderr


@pytest.fixture
def tree():
    made = []

    def make(identity: str) -> str:
        made.append(make_tree(identity))
        return made[-1]

    yield make
    for top in made:
        shutil.rmtree(os.path.dirname(top), ignore_errors=True)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_no_file_in_a_write_root_gets_a_setid_bit_or_an_xattr_by_both_channels(identity, tree):
    backend = confined_backend(identity)
    top = tree(identity)
    stdout = bytearray()
    report = planned(backend, spec_for(argv_for(unique_marker("BVISOR-SETID"), top), top))[1](RunIO(stdout_sink=stdout.extend))
    view = host_view(top)
    results = said(bytes(stdout))
    print(f"no-setid [{identity}]: workload={results} host={view}", file=sys.stderr)
    failures = []
    check_completed(failures, report)
    # Channel B: the workload's own errno for each call.
    if results is None:
        failures.append(f"CHANNEL B: the workload must report; stdout={bytes(stdout)!r} facts={report.body.observed}")
        results = {}
    for name, wanted in expected_in_boundary().items():
        if results.get(name) != wanted:
            failures.append(f"CHANNEL B: {name} must give {wanted!r} under the boundary; got {results.get(name)!r}")
    # Channel A: no setid bit, no xattr but the host's own, no file a refused call would create.
    for name, (mode, xattrs) in view.items():
        if mode & SETID:
            failures.append(f"CHANNEL A: {name} carries a setuid/setgid bit on the host: {oct(mode)}")
        if xattrs != (["user.keep"] if name in ("planted", "cp_src") else []):
            failures.append(f"CHANNEL A: {name} must carry only the host's own xattrs; the host lists {xattrs}")
    for name in CREATING:
        if name in view:
            failures.append(f"CHANNEL A: the refused {name} must create nothing; the host finds {name} {oct(view[name][0])}")
    for name, mode in (("ordinary_chmod_0755", 0o755), ("ordinary_creat_0644", 0o644), ("cp_copy", CP_SRC_MODE)):
        if view.get(name, (None,))[0] != mode:
            failures.append(f"CHANNEL A: ordinary work must land: {name} with mode {oct(mode)}; the host finds {view.get(name)}")
    # The report: the policy by name, and every one of its rules.
    lowered = " ".join(facts_of(report, "seccomp_lowered"))
    if NO_SETID not in lowered.partition("policies=")[2].split(" ")[0].split(","):
        failures.append(f"the report's seccomp_lowered must name {NO_SETID}; got {lowered!r}")
    rules = facts_of(report, "seccomp_rule")
    missing = [rule for rule in NO_SETID_RULES if rule not in rules]
    if missing:
        failures.append(f"the report must list every {NO_SETID} rule; missing {missing}")
    assert not failures, f"no-setid oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_bvisor_the_same_program_plants_setid_bits_and_xattrs(identity, tree):
    if identity == "unprivileged" and os.geteuid() != 0:
        loud_skip("the uid 65534 control needs root to drop to uid 65534")
    top = tree(identity)
    out, err = run_unconfined(identity, top)
    view = host_view(top)
    results = said(out)
    print(f"no-setid control [{identity}]: workload={results} host={view} stderr={err[-400:]!r}", file=sys.stderr)
    assert results is not None, f"CONTROL: the program must report; stdout={out!r} stderr={err!r}"
    absent = syscalls.ABSENT.get(os.uname().machine, frozenset())
    # security.capability needs CAP_SETFCAP: uid 65534 is refused by the kernel itself.
    privileged = os.geteuid() == 0 and identity == "caller"
    failures = []
    for name in (*MODE_ATTACKS, *XATTR_ATTACKS, *ORDINARY, "openat2"):
        wanted = "absent" if LEGACY.get(name) in absent else "ok"
        if name == "setxattr_capability" and not privileged:
            wanted = errno.EPERM
        if results.get(name) != wanted:
            failures.append(f"CONTROL: {name} must give {wanted!r} without bvisor; got {results.get(name)!r}")
    # Channel A: the bits and the xattrs are really there.
    setid = {name for name, (mode, _) in view.items() if mode & SETID}
    made = {name for name in MODE_ATTACKS if name not in ("openat_tmpfile_4755",) and LEGACY.get(name) not in absent}
    if setid != made:
        failures.append(f"CONTROL: the host must find a setid bit on exactly {sorted(made)}; found {sorted(setid)}")
    carrying = {name for name, (_, xattrs) in view.items() if "user.x" in xattrs}
    if carrying != {"setxattr_user", "fsetxattr_user", "lsetxattr_user"}:
        failures.append(f"CONTROL: the host must find user.x on the three setxattr files; found {sorted(carrying)}")
    if privileged and "security.capability" not in view.get("setxattr_capability", (0, []))[1]:
        failures.append(f"CONTROL: as root the host must find security.capability planted; {view.get('setxattr_capability')}")
    if "user.keep" in view["planted"][1] or "user.keep" not in view.get("cp_copy", (0, []))[1]:
        failures.append(f"CONTROL: removexattr must remove user.keep and cp -a must copy it; {view}")
    assert not failures, f"no-setid control failures [{identity}]: {failures}"
