"""Filesystem (landlock) — the workload reaches the host filesystem only beneath its roots.

Every test builds a fresh host tree under /tmp that uid 65534 can traverse, where every
directory is 0777 and every file 0666: the permission bits allow every attack, so whatever
is denied is landlock's doing, never DAC's.

    <base>/secret/secret.txt     the secret, outside every root
    <base>/outside/…             a writable directory outside every root
    <base>/ro/data.txt           a read root (read + execute only)
    <base>/rw/                   a write root (every handled right)

Channel A (host): the host reads the tree on disk after the run (nothing created, nothing
changed, the secret at its place with its own inode and link count; what the workload wrote
in a write root is there with the right content and owner) and, while the workload is
parked, reads its ``/proc/<pid>/fd`` — an attack that opened the secret leaves an fd leading
to it — and ``/proc/<pid>/status`` (the workload runs as the identity's uid).
Channel B (workload): every attack reports itself on the captured stdout as
``KEY=ok <output>`` or ``KEY=denied <error>``; the secret's content must never appear.
Every oracle runs with the launcher as the caller and as uid 65534 (``helpers.IDENTITIES``).
Each oracle has a control (``test_control_*``): the same workload, same identity, same spec
but without the Filesystem capability (and once through the unconfined InertBackend) — the
attack succeeds by both channels, so the oracle can fail.
"""

import functools
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import NamedTuple

import msgspec
import pytest

from bvisor import Capability, InertBackend, LinuxBackend, Outcome, RunIO
from bvisor.contract import Enforcement, FsAccess, RequirementKind, decode_report_json
from bvisor.contract.errors import UnsupportedRequirement
from helpers import (
    IDENTITIES,
    PARK,
    GatedRun,
    cli_prefix,
    facts_of,
    host_read_fds,
    host_read_uid,
    launcher_as,
    loud_skip,
    planned,
    run_gated,
    unique_marker,
    workload_uid_problem,
)
from oracle_specs import exact_environment, oracle_spec

GATE = 10.0  # seconds the host waits for a workload to park: a liveness bound, not a timing assert
BASH = "/bin/bash"  # unlike dash, a failed `exec 3<file` does not end a non-interactive bash
BVISOR = str(Path(sys.executable).parent / "bvisor")
ENV = exact_environment([("PATH", "/usr/bin:/bin"), ("LC_ALL", "C")])
# A truncate(2) by path (coreutils' truncate opens the file and uses ftruncate instead).
PERL = next((p for p in ("/usr/bin/perl", "/bin/perl") if os.path.exists(p)), None)

# Shell helpers every workload starts with: `say KEY STATUS OUTPUT` prints KEY=ok|denied.
PRELUDE = (
    'say() { if [ "$2" -eq 0 ]; then printf "%s=ok %s\\n" "$1" "$3"; '
    'else printf "%s=denied %s\\n" "$1" "$3"; fi; }; '
)


# --- the host tree ------------------------------------------------------------------------


def _write(path: str, content: str, mode: int = 0o666) -> None:
    Path(path).write_text(content)
    os.chmod(path, mode)


def _mkdir(path: str, mode: int = 0o777) -> str:
    os.mkdir(path)
    os.chmod(path, mode)
    return path


class Tree:
    """A fresh host tree (see the module docstring); permission bits allow everything."""

    def __init__(self, base: str):
        self.base = base
        self.secret_dir = _mkdir(os.path.join(self.base, "secret"))
        self.secret = os.path.join(self.secret_dir, "secret.txt")
        self.secret_content = f"BVISOR-FS-SECRET-{uuid.uuid4().hex}"
        _write(self.secret, self.secret_content)
        self.outside = _mkdir(os.path.join(self.base, "outside"))
        self.existing = os.path.join(self.outside, "existing.txt")
        self.existing_content = f"existing-{uuid.uuid4().hex}"
        _write(self.existing, self.existing_content)
        self.truncatable = os.path.join(self.outside, "truncate-me.txt")
        _write(self.truncatable, f"truncate-me-{uuid.uuid4().hex}")
        self.ro = _mkdir(os.path.join(self.base, "ro"))
        self.ro_file = os.path.join(self.ro, "data.txt")
        self.ro_content = f"read-root-data-{uuid.uuid4().hex}"
        _write(self.ro_file, self.ro_content)
        self.rw = _mkdir(os.path.join(self.base, "rw"))

    def caps(self, *, extra_read=(), write_access: FsAccess = FsAccess.Write) -> list:
        """A read root and a write root (system roots on, the default), plus the environment."""
        return [
            ENV,
            Capability.Filesystem(access=FsAccess.Read, roots=[self.ro, *extra_read]),
            Capability.Filesystem(access=write_access, roots=[self.rw]),
        ]


@pytest.fixture
def tree(host_dir):
    return Tree(host_dir("bvisor-fs-"))


def disk_state(top: str) -> dict:
    """Channel A on disk: every entry under ``top`` (not following symlinks) as
    ``{relative path: (type, inode, link count, size, content or link target)}``; a fifo or
    directory as its type and inode."""
    state = {}
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                body = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                body = Path(path).read_bytes()
            else:  # a directory's own size and link count follow its entries, listed on their own
                state[os.path.relpath(path, top)] = (stat.S_IFMT(st.st_mode), st.st_ino, None, None, None)
                continue
            state[os.path.relpath(path, top)] = (stat.S_IFMT(st.st_mode), st.st_ino, st.st_nlink, st.st_size, body)
    return state


def state_diff(before: dict, after: dict) -> dict:
    """What changed between two ``disk_state`` readings: created, removed, changed paths."""
    return {
        "created": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(p for p in set(before) & set(after) if before[p] != after[p]),
    }


# --- specs, backends, runs ----------------------------------------------------------------


@functools.cache
def linux_backend(identity: str, landlock_abi: str | None = None) -> LinuxBackend:
    overrides = {"launcher.landlock_abi": landlock_abi} if landlock_abi is not None else None
    return LinuxBackend(launcher_as(identity), fact_overrides=overrides)


def require_landlock(identity: str) -> LinuxBackend:
    """The backend for ``identity``, or a loud skip when this host cannot enforce Filesystem."""
    backend = linux_backend(identity)
    snapshot = backend.probe()
    cell = next(c for c in backend.profile(snapshot).cells if c.kind is RequirementKind.Filesystem)
    if cell.verdict.enforcement is not Enforcement.Enforced:
        loud_skip(f"Filesystem is not Enforced on this host for the {identity} launcher: {cell.reason}")
    return backend


def host_view(pid: int) -> dict:
    """Channel A while parked: the workload's uid and its open fds."""
    return {"uid": host_read_uid(pid), "fds": host_read_fds(pid)}


def workload(marker: str, body: str, *args) -> list:
    """argv of a bash that runs ``body`` (its attacks, reported with ``say``), then parks with
    whatever fds the attacks opened still open; ``marker`` is its $0, ``args`` its $1…"""
    return [BASH, "-c", PRELUDE + body + "; " + PARK, marker, *args]


def run_parked(backend, argv, capabilities, marker: str):
    _, run = planned(backend, oracle_spec(argv, capabilities))
    return run_gated(run, marker, host_view, timeout=GATE)


class TreeRun(NamedTuple):
    """One parked run against the tree: the host's disk readings around it, the run, and what
    the checks every run passes found (the test appends its own)."""

    before: dict
    gated: GatedRun
    after: dict
    failures: list


def run_on_tree(what: str, identity: str, tree: "Tree", argv, marker: str, *, control: bool = False, extra_read=()) -> TreeRun:
    """``argv`` parked under the tree's roots (a loud skip where landlock cannot enforce them);
    it must run as the identity, confined. A ``control`` run has the same identity's backend
    and no Filesystem capability, and must run unconfined."""
    backend = linux_backend(identity) if control else require_landlock(identity)
    before = disk_state(tree.base)
    gated = run_parked(backend, argv, [ENV] if control else tree.caps(extra_read=extra_read), marker)
    after = disk_state(tree.base)
    print(f"Filesystem {what} [{identity}]: host={gated.inspected} stdout={gated.stdout!r} stderr={gated.stderr!r}", file=sys.stderr)
    failures = []
    check_ran(failures, gated, identity)
    if control:
        check_unconfined(failures, gated.result)
    else:
        check_confined(failures, gated.result)
    return TreeRun(before, gated, after, failures)


def said(stdout: bytes, key: str):
    """The workload's own report for ``key``: ``"ok …"`` / ``"denied …"``, or None."""
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith(key + "="):
            return line[len(key) + 1 :]
    return None


def fds_on(gated, path: str) -> list:
    """Channel A: the parked workload's fds whose link leads to ``path``."""
    fds = (gated.inspected or {}).get("fds") or {}
    return sorted(fd for fd, target in fds.items() if target == os.path.realpath(path))


def check_ran(failures: list, gated, identity: str) -> None:
    """The workload started, parked, was read by the host, ran as the identity and ended 0."""
    body = gated.result.body
    if body.outcome != Outcome.Completed:
        failures.append(f"the workload must run to Completed; got {body.outcome} facts={body.observed} stderr={gated.stderr!r}")
    if not gated.seen or gated.inspected is None:
        failures.append(f"CHANNEL A: the host never read the parked workload (seen={gated.seen}); stdout={gated.stdout!r}")
        return
    uid = gated.inspected.get("uid")
    problem = workload_uid_problem(identity, uid)
    if problem:
        failures.append(f"the {identity} workload {problem}")
    if gated.inspected.get("fds") is None:
        failures.append("CHANNEL A: the host could not read /proc/<pid>/fd of the parked workload")


def check_confined(failures: list, report) -> None:
    if not facts_of(report, "landlock_installed"):
        failures.append(f"the report must record landlock_installed; facts={report.body.observed}")
    if not facts_of(report, "filesystem_confined"):
        failures.append(f"the report must record filesystem_confined; facts={report.body.observed}")


def check_unconfined(failures: list, report) -> None:
    """A control really ran without landlock."""
    if facts_of(report, "landlock_installed") or facts_of(report, "filesystem_confined"):
        failures.append(f"CONTROL: the control run must not be confined; facts={report.body.observed}")


def expect(failures: list, gated, key: str, verdict: str, channel: str = "CHANNEL B") -> None:
    """The workload's own report for ``key`` must start with ``verdict`` (ok / denied)."""
    value = said(gated.stdout, key)
    if value is None:
        failures.append(f"{channel}: the workload never reported {key}; stdout={gated.stdout!r} stderr={gated.stderr!r}")
    elif not value.startswith(verdict):
        failures.append(f"{channel}: {key} must be {verdict}; the workload reports {key}={value!r}")


def expect_secret_unseen(failures: list, gated, tree: Tree) -> None:
    if tree.secret_content.encode() in gated.stdout + gated.stderr:
        failures.append(f"CHANNEL B: the secret's content reached the workload's output: {gated.stdout!r}")


def expect_no_fd_on(failures: list, gated, path: str) -> None:
    held = fds_on(gated, path)
    if held:
        failures.append(f"CHANNEL A: the parked workload holds fds {held} open on {path}: {gated.inspected['fds']}")


def expect_fd_on(failures: list, gated, fd: int, path: str) -> None:
    fds = (gated.inspected or {}).get("fds") or {}
    if fds.get(fd) != os.path.realpath(path):
        failures.append(f"CHANNEL A: fd {fd} of the parked workload must lead to {path}; the host sees {fds}")


def expect_disk_unchanged(failures: list, before: dict, after: dict) -> None:
    diff = state_diff(before, after)
    if any(diff.values()):
        failures.append(f"CHANNEL A: the host tree changed on disk: {diff}")


def expect_secret_intact(failures: list, tree: Tree, before: dict, after: dict) -> None:
    rel = os.path.relpath(tree.secret, tree.base)
    if after.get(rel) != before[rel]:
        failures.append(f"CHANNEL A: the secret must stay at its place, same inode, link count and content; before={before[rel]} after={after.get(rel)}")


# --- the attacks (each a bash body; its $1… come after the marker) --------------------------

# Read the secret, outside every root: hold it on fd 3 if the open works, and cat it.
READ_SECRET = (
    'exec 3<"$1"; say open_secret $? ""; '
    'out=$(cat -- "$1" 2>&1); say cat_secret $? "$out"; '
    'out=$(ls "$(dirname "$1")" 2>&1); say list_secret_dir $? "$out"'
)

# Create or change files outside the write roots (and inside the read root).
# $1 outside dir, $2 existing file, $3 truncatable file, $4 secret, $5 read root, $6 a fresh name.
WRITE_OUTSIDE = (
    'out=$( { printf new > "$1/$6"; } 2>&1 ); say create_outside $? "$out"; '
    'out=$(mkdir "$1/$6.d" 2>&1); say mkdir_outside $? "$out"; '
    'out=$(ln -s /nowhere "$1/$6.lnk" 2>&1); say symlink_outside $? "$out"; '
    'out=$(mkfifo "$1/$6.fifo" 2>&1); say fifo_outside $? "$out"; '
    'out=$( { printf X >> "$2"; } 2>&1 ); say append_existing $? "$out"; '
    'out=$( { printf X > "$2"; } 2>&1 ); say overwrite_existing $? "$out"; '
    'out=$(rm -- "$2" 2>&1); say remove_existing $? "$out"; '
    'out=$( { printf X >> "$4"; } 2>&1 ); say append_secret $? "$out"; '
    'out=$( { printf new > "$5/$6"; } 2>&1 ); say create_in_read_root $? "$out"; '
    'out=$( { printf X >> "$5/data.txt"; } 2>&1 ); say append_in_read_root $? "$out"; '
    'out=$(rm -- "$5/data.txt" 2>&1); say remove_in_read_root $? "$out"'
)
# truncate(2) by path — the right landlock only handles from ABI 3 (the floor).
TRUNCATE = 'out=$(perl -e \'truncate($ARGV[0], 0) or die "$!\\n"\' "$3" 2>&1); say truncate_outside $? "$out"'

WRITE_OUTSIDE_KEYS = (
    "create_outside",
    "mkdir_outside",
    "symlink_outside",
    "fifo_outside",
    "append_existing",
    "overwrite_existing",
    "remove_existing",
    "append_secret",
    "create_in_read_root",
    "append_in_read_root",
    "remove_in_read_root",
)


def write_outside_body() -> tuple:
    if PERL is None:
        print("note: no perl on this host; truncate(2) by path is not attempted", file=sys.stderr)
        return WRITE_OUTSIDE, WRITE_OUTSIDE_KEYS
    return WRITE_OUTSIDE + "; " + TRUNCATE, WRITE_OUTSIDE_KEYS + ("truncate_outside",)


def write_outside_args(tree: Tree, name: str) -> tuple:
    return tree.outside, tree.existing, tree.truncatable, tree.secret, tree.ro, name


# Inside the roots: $1 write root, $2 read-root file, $3 content, $4 file name.
WRITE_INSIDE = (
    'out=$( { printf "%s" "$3" > "$1/$4"; } 2>&1 ); say create_in_write_root $? "$out"; '
    'out=$(cat -- "$1/$4" 2>&1); say read_back $? "$out"; '
    'out=$(mkdir "$1/sub" 2>&1 && { printf "%s" "$3" > "$1/sub/nested.txt"; } 2>&1); say nested $? "$out"; '
    'out=$(mv -- "$1/before.txt" "$1/after.txt" 2>&1); say rename_in_write_root $? "$out"; '
    'out=$(rm -- "$1/gone.txt" 2>&1); say remove_in_write_root $? "$out"; '
    'out=$(truncate -s 0 -- "$1/shrink.txt" 2>&1); say truncate_in_write_root $? "$out"; '
    'out=$(ln -s "$4" "$1/link" 2>&1); say symlink_in_write_root $? "$out"; '
    'exec 3<"$2"; say open_read_root $? ""; '
    'out=$(cat -- "$2" 2>&1); say read_read_root $? "$out"; '
    'out=$(ls "$(dirname "$2")" 2>&1); say list_read_root $? "$out"'
)

# Symlinks in the write root leading out: $1 the host-planted link (-> secret), $2 write
# root, $3 secret, $4 the existing file outside.
SYMLINKS = (
    'exec 3<"$1"; say open_planted $? ""; '
    'out=$(cat -- "$1" 2>&1); say cat_planted $? "$out"; '
    'out=$(ln -s "$3" "$2/own" 2>&1); say make_own_link $? "$out"; '
    'exec 4<"$2/own"; say open_own $? ""; '
    'out=$(cat -- "$2/own" 2>&1); say cat_own $? "$out"; '
    'out=$(ln -s "$4" "$2/own_w" 2>&1); say make_write_link $? "$out"; '
    'out=$( { printf X >> "$2/own_w"; } 2>&1 ); say write_through_link $? "$out"'
)


def symlinks_argv(tree: "Tree", marker: str) -> list:
    """The SYMLINKS attack, after the host planted a link to the secret in the write root."""
    planted = os.path.join(tree.rw, "planted")
    os.symlink(tree.secret, planted)
    return workload(marker, SYMLINKS, planted, tree.rw, tree.secret, tree.existing)

# Bring the secret into the write root: $1 secret, $2 write root.
LINK_RENAME = (
    'out=$(ln -- "$1" "$2/hardlink" 2>&1); say hardlink_secret $? "$out"; '
    'out=$(mv -- "$1" "$2/moved" 2>&1); say rename_secret $? "$out"; '
    'out=$(cat -- "$2/hardlink" "$2/moved" 2>&1); say read_brought_in $? "$out"'
)

# The secret through /proc's magic root links: $1 secret, $2 the test process's pid.
PROC_ROOTS = (
    'out=$(head -c 64 /proc/self/status 2>&1); say proc_readable $? "$out"; '
    'exec 3<"/proc/self/root$1"; say open_self_root $? ""; '
    'out=$(cat -- "/proc/self/root$1" 2>&1); say cat_self_root $? "$out"; '
    'exec 4<"/proc/$2/root$1"; say open_host_pid_root $? ""; '
    'out=$(cat -- "/proc/$2/root$1" 2>&1); say cat_host_pid_root $? "$out"; '
    'exec 5<"/proc/$PPID/root$1"; say open_parent_root $? ""; '
    'out=$(cat -- "/proc/$PPID/root$1" 2>&1); say cat_parent_root $? "$out"'
)


# --- oracles: reading the secret ----------------------------------------------------------


@pytest.mark.parametrize("identity", IDENTITIES)
def test_reading_a_secret_outside_every_root_is_denied(identity, tree):
    marker = unique_marker("BVISOR-FS-READ")
    before, gated, after, failures = run_on_tree("read", identity, tree, workload(marker, READ_SECRET, tree.secret), marker)
    expect_no_fd_on(failures, gated, tree.secret)
    expect_disk_unchanged(failures, before, after)
    for key in ("open_secret", "cat_secret", "list_secret_dir"):
        expect(failures, gated, key, "denied")
    expect_secret_unseen(failures, gated, tree)
    assert not failures, f"Filesystem read-denial oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_the_capability_the_workload_reads_the_secret(identity, tree):
    marker = unique_marker("BVISOR-FS-READ-CONTROL")
    _, gated, _, failures = run_on_tree("read control", identity, tree, workload(marker, READ_SECRET, tree.secret), marker, control=True)
    expect_fd_on(failures, gated, 3, tree.secret)
    for key in ("open_secret", "cat_secret", "list_secret_dir"):
        expect(failures, gated, key, "ok", "CONTROL CHANNEL B")
    if said(gated.stdout, "cat_secret") != f"ok {tree.secret_content}":
        failures.append(f"CONTROL CHANNEL B: the unconfined workload must print the secret; stdout={gated.stdout!r}")
    assert not failures, f"Filesystem read control failures (the oracle would be vacuous) [{identity}]: {failures}"


def test_control_through_the_inert_backend_the_workload_reads_and_writes_outside(tree):
    """The unconfined reference backend: the secret is read and a file outside is created."""
    marker = unique_marker("BVISOR-FS-INERT-CONTROL")
    name = f"inert-{uuid.uuid4().hex}"
    body = READ_SECRET + "; " + 'out=$( { printf new > "$2/$3"; } 2>&1 ); say create_outside $? "$out"'
    gated = run_parked(InertBackend(), workload(marker, body, tree.secret, tree.outside, name), [ENV], marker)
    failures = []
    if gated.result.body.outcome != Outcome.Completed or gated.inspected is None:
        failures.append(f"the control must run, park and complete; outcome={gated.result.body.outcome} stderr={gated.stderr!r}")
    expect_fd_on(failures, gated, 3, tree.secret)
    expect(failures, gated, "cat_secret", "ok", "CONTROL CHANNEL B")
    expect(failures, gated, "create_outside", "ok", "CONTROL CHANNEL B")
    if tree.secret_content.encode() not in gated.stdout:
        failures.append(f"CONTROL CHANNEL B: the inert workload must print the secret; stdout={gated.stdout!r}")
    if not os.path.exists(os.path.join(tree.outside, name)):
        failures.append("CONTROL CHANNEL A: the host must see the file the inert workload created outside")
    assert not failures, f"InertBackend control failures (the oracle would be vacuous): {failures}"


# --- oracles: writing outside and inside the write roots ----------------------------------


@pytest.mark.parametrize("identity", IDENTITIES)
def test_creating_or_changing_a_file_outside_the_write_roots_is_denied(identity, tree):
    marker = unique_marker("BVISOR-FS-WRITE")
    body, keys = write_outside_body()
    argv = workload(marker, body, *write_outside_args(tree, f"created-{uuid.uuid4().hex}"))
    before, gated, after, failures = run_on_tree("write-outside", identity, tree, argv, marker)
    expect_disk_unchanged(failures, before, after)
    for key in keys:
        expect(failures, gated, key, "denied")
    assert not failures, f"Filesystem write-denial oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_the_capability_the_workload_creates_and_changes_files_outside(identity, tree):
    marker = unique_marker("BVISOR-FS-WRITE-CONTROL")
    name = f"created-{uuid.uuid4().hex}"
    body, keys = write_outside_body()
    argv = workload(marker, body, *write_outside_args(tree, name))
    before, gated, after, failures = run_on_tree("write-outside control", identity, tree, argv, marker, control=True)
    diff = state_diff(before, after)
    for key in keys:
        expect(failures, gated, key, "ok", "CONTROL CHANNEL B")
    want_created = {f"outside/{name}", f"outside/{name}.d", f"outside/{name}.lnk", f"outside/{name}.fifo", f"ro/{name}"}
    if not want_created <= set(diff["created"]):
        failures.append(f"CONTROL CHANNEL A: the host must see {sorted(want_created)} created; diff={diff}")
    if not {"outside/existing.txt", "ro/data.txt"} <= set(diff["removed"]):
        failures.append(f"CONTROL CHANNEL A: the host must see the removals; diff={diff}")
    if "secret/secret.txt" not in diff["changed"]:
        failures.append(f"CONTROL CHANNEL A: the host must see the secret appended to; diff={diff}")
    if PERL is not None and os.path.getsize(tree.truncatable) != 0:
        failures.append("CONTROL CHANNEL A: the host must see truncate-me.txt truncated to 0 bytes")
    assert not failures, f"Filesystem write control failures (the oracle would be vacuous) [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_writing_inside_a_write_root_works_and_the_host_sees_it(identity, tree):
    """The other side: a write root grants everything, a read root grants read."""
    marker = unique_marker("BVISOR-FS-INSIDE")
    content, name = f"written-inside-{uuid.uuid4().hex}", "out.txt"
    for planted in ("before.txt", "gone.txt", "shrink.txt"):
        _write(os.path.join(tree.rw, planted), f"planted-{planted}")
    argv = workload(marker, WRITE_INSIDE, tree.rw, tree.ro_file, content, name)
    before, gated, after, failures = run_on_tree("inside", identity, tree, argv, marker)
    for key in (
        "create_in_write_root",
        "read_back",
        "nested",
        "rename_in_write_root",
        "remove_in_write_root",
        "truncate_in_write_root",
        "symlink_in_write_root",
        "open_read_root",
        "read_read_root",
        "list_read_root",
    ):
        expect(failures, gated, key, "ok")
    if said(gated.stdout, "read_back") != f"ok {content}":
        failures.append(f"CHANNEL B: the workload must read back what it wrote; got {said(gated.stdout, 'read_back')!r}")
    if said(gated.stdout, "read_read_root") != f"ok {tree.ro_content}":
        failures.append(f"CHANNEL B: the workload must read the read root's file; got {said(gated.stdout, 'read_read_root')!r}")
    expect_fd_on(failures, gated, 3, tree.ro_file)
    # Channel A on disk: exactly the expected changes, all inside the write root.
    out = os.path.join(tree.rw, name)
    for path, want in ((out, content), (os.path.join(tree.rw, "sub", "nested.txt"), content)):
        got = Path(path).read_text() if os.path.isfile(path) else None
        if got != want:
            failures.append(f"CHANNEL A: the host must find {path} holding {want!r}; got {got!r}")
    # The write root is one every user may write: the run writes there as itself.
    problem = workload_uid_problem(identity, os.stat(out).st_uid) if os.path.isfile(out) else None
    if problem:
        failures.append(f"CHANNEL A: {out}, made in a write root every user may write: its owner {problem}")
    diff = state_diff(before, after)
    want = {
        "created": sorted(["rw/out.txt", "rw/sub", "rw/sub/nested.txt", "rw/after.txt", "rw/link"]),
        "removed": sorted(["rw/before.txt", "rw/gone.txt"]),
        "changed": ["rw/shrink.txt"],
    }
    if diff != want:
        failures.append(f"CHANNEL A: the host tree must change exactly inside the write root; got {diff}, want {want}")
    if os.path.getsize(os.path.join(tree.rw, "shrink.txt")) != 0:
        failures.append("CHANNEL A: rw/shrink.txt must be truncated to 0 bytes")
    assert not failures, f"Filesystem write-root oracle failures [{identity}]: {failures}"


# --- oracles: symlinks, hard links, renames, /proc magic links ----------------------------


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_symlink_in_a_write_root_cannot_be_followed_out_of_the_roots(identity, tree):
    marker = unique_marker("BVISOR-FS-SYMLINK")
    before, gated, after, failures = run_on_tree("symlink", identity, tree, symlinks_argv(tree, marker), marker)
    expect_no_fd_on(failures, gated, tree.secret)
    for key in ("open_planted", "cat_planted", "open_own", "cat_own", "write_through_link"):
        expect(failures, gated, key, "denied")
    # Making a symlink inside a write root is allowed (make_sym); following it out is not.
    for key in ("make_own_link", "make_write_link"):
        expect(failures, gated, key, "ok")
    expect_secret_unseen(failures, gated, tree)
    diff = state_diff(before, after)
    if diff != {"created": ["rw/own", "rw/own_w"], "removed": [], "changed": []}:
        failures.append(f"CHANNEL A: only the two links may appear in the write root; secret and existing unchanged; got {diff}")
    assert not failures, f"Filesystem symlink oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_the_capability_a_symlink_in_the_write_root_reaches_the_secret(identity, tree):
    marker = unique_marker("BVISOR-FS-SYMLINK-CONTROL")
    _, gated, _, failures = run_on_tree("symlink control", identity, tree, symlinks_argv(tree, marker), marker, control=True)
    expect_fd_on(failures, gated, 3, tree.secret)
    expect_fd_on(failures, gated, 4, tree.secret)
    for key in ("open_planted", "cat_planted", "open_own", "cat_own", "write_through_link"):
        expect(failures, gated, key, "ok", "CONTROL CHANNEL B")
    if said(gated.stdout, "cat_planted") != f"ok {tree.secret_content}":
        failures.append(f"CONTROL CHANNEL B: the planted link must lead to the secret; stdout={gated.stdout!r}")
    if Path(tree.existing).read_text() != tree.existing_content + "X":
        failures.append("CONTROL CHANNEL A: the host must see the write through the link land in existing.txt")
    assert not failures, f"Filesystem symlink control failures (the oracle would be vacuous) [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_hard_linking_or_renaming_the_secret_into_a_write_root_is_denied(identity, tree):
    marker = unique_marker("BVISOR-FS-LINK")
    before, gated, after, failures = run_on_tree("link/rename", identity, tree, workload(marker, LINK_RENAME, tree.secret, tree.rw), marker)
    for key in ("hardlink_secret", "rename_secret", "read_brought_in"):
        expect(failures, gated, key, "denied")
    expect_secret_unseen(failures, gated, tree)
    expect_secret_intact(failures, tree, before, after)
    if os.listdir(tree.rw):
        failures.append(f"CHANNEL A: nothing may appear in the write root; the host finds {os.listdir(tree.rw)}")
    expect_disk_unchanged(failures, before, after)
    assert not failures, f"Filesystem link/rename oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_the_capability_the_secret_is_linked_and_moved_into_the_write_root(identity, tree):
    marker = unique_marker("BVISOR-FS-LINK-CONTROL")
    inode = os.stat(tree.secret).st_ino
    argv = workload(marker, LINK_RENAME, tree.secret, tree.rw)
    _, gated, _, failures = run_on_tree("link/rename control", identity, tree, argv, marker, control=True)
    for key in ("hardlink_secret", "rename_secret", "read_brought_in"):
        expect(failures, gated, key, "ok", "CONTROL CHANNEL B")
    if os.path.exists(tree.secret):
        failures.append("CONTROL CHANNEL A: the secret must have been moved away from its place")
    for name in ("hardlink", "moved"):
        path = os.path.join(tree.rw, name)
        if not os.path.exists(path) or os.stat(path).st_ino != inode:
            failures.append(f"CONTROL CHANNEL A: the host must find the secret's inode at {path}")
    assert not failures, f"Filesystem link/rename control failures (the oracle would be vacuous) [{identity}]: {failures}"


def proc_roots_reachable_unconfined(identity: str) -> list:
    """Which /proc/<pid>/root links a boundary workload of ``identity`` can follow WITHOUT
    landlock, as ``(fd, name)`` of PROC_ROOTS: only /proc/self/root. Every Linux boundary runs
    in its own pid namespace, where this test process has no pid at all, and the workload's
    parent is the run's init, which keeps its namespace capabilities while the workload drops
    all of them, so the ptrace check /proc/<pid>/root needs refuses it (see the InertBackend
    control for what an unconfined process reaches). ``identity`` is the same for both."""
    del identity
    return [(3, "self_root")]


@pytest.mark.parametrize("identity", IDENTITIES)
def test_proc_magic_root_links_do_not_reach_the_secret(identity, tree):
    """/proc is granted read, so a denial is landlock's on the secret, not a missing /proc.
    The attacks: /proc/self/root, /proc/<this test process>/root and /proc/<the launcher,
    the workload's unconfined parent>/root, each followed by the secret's path."""
    marker = unique_marker("BVISOR-FS-PROC")
    argv = workload(marker, PROC_ROOTS, tree.secret, str(os.getpid()))
    before, gated, after, failures = run_on_tree("/proc roots", identity, tree, argv, marker, extra_read=["/proc"])
    expect(failures, gated, "proc_readable", "ok")
    expect_no_fd_on(failures, gated, tree.secret)
    for key in ("open_self_root", "cat_self_root", "open_host_pid_root", "cat_host_pid_root", "open_parent_root", "cat_parent_root"):
        expect(failures, gated, key, "denied")
    expect_secret_unseen(failures, gated, tree)
    expect_disk_unchanged(failures, before, after)
    assert not failures, f"Filesystem /proc magic-link oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_the_capability_proc_magic_root_links_reach_the_secret(identity, tree):
    """The same workload without Filesystem (LinuxBackend, same identity) follows every
    /proc root link its capabilities allow (see proc_roots_reachable_unconfined) to the secret."""
    marker = unique_marker("BVISOR-FS-PROC-CONTROL")
    argv = workload(marker, PROC_ROOTS, tree.secret, str(os.getpid()))
    _, gated, _, failures = run_on_tree("/proc roots control", identity, tree, argv, marker, control=True)
    check_proc_roots_reached(failures, gated, tree, proc_roots_reachable_unconfined(identity))
    assert not failures, f"Filesystem /proc control failures (the oracle would be vacuous) [{identity}]: {failures}"


def test_control_through_the_inert_backend_proc_root_of_the_test_process_reaches_the_secret(tree):
    """/proc/<this test process>/root, which a boundary workload of a root caller cannot use
    once its capabilities are dropped, is a real path to the secret for an unconfined process
    of this test's uid: the InertBackend workload follows all three links."""
    marker = unique_marker("BVISOR-FS-PROC-INERT")
    argv = workload(marker, PROC_ROOTS, tree.secret, str(os.getpid()))
    gated = run_parked(InertBackend(), argv, [ENV], marker)
    print(f"Filesystem /proc inert control: host={gated.inspected} stdout={gated.stdout!r}", file=sys.stderr)
    failures = []
    if gated.result.body.outcome != Outcome.Completed or gated.inspected is None:
        failures.append(f"the control must run, park and complete; outcome={gated.result.body.outcome} stderr={gated.stderr!r}")
    check_proc_roots_reached(failures, gated, tree, [(3, "self_root"), (4, "host_pid_root"), (5, "parent_root")])
    assert not failures, f"InertBackend /proc control failures (the oracle would be vacuous): {failures}"


def check_proc_roots_reached(failures: list, gated, tree: Tree, reached: list) -> None:
    for fd, what in reached:
        expect_fd_on(failures, gated, fd, tree.secret)
        expect(failures, gated, f"open_{what}", "ok", "CONTROL CHANNEL B")
        if said(gated.stdout, f"cat_{what}") != f"ok {tree.secret_content}":
            failures.append(f"CONTROL CHANNEL B: /proc/…/{what} must reach the secret; stdout={gated.stdout!r}")


# --- refusal below the ABI floor ----------------------------------------------------------


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("abi", ["0", "2"])
def test_a_host_below_the_landlock_abi_floor_refuses_filesystem_at_plan(identity, abi, tree):
    backend = linux_backend(identity, landlock_abi=abi)
    marker_file = os.path.join(tree.rw, f"ran-{uuid.uuid4().hex}")
    spec = oracle_spec(["/bin/sh", "-c", 'printf ran > "$1"', "sh", marker_file], tree.caps())
    failures = []
    cell = next(c for c in backend.profile(backend.probe()).cells if c.kind is RequirementKind.Filesystem)
    if cell.verdict.enforcement is Enforcement.Enforced:
        failures.append(f"with landlock ABI {abi} the Filesystem cell must not be Enforced; got {cell}")
    try:
        planned(backend, spec)
        failures.append(f"the planner ADMITTED Filesystem on a host with landlock ABI {abi}")
    except UnsupportedRequirement as refusal:
        if refusal.requirement != "filesystem" or refusal.kind is not RequirementKind.Filesystem:
            failures.append(f"the refusal must name the filesystem requirement; got {refusal.requirement!r}")
        if abi == "2" and not ("truncate" in refusal.reason and "below" in refusal.reason):
            failures.append(f"below the floor the reason must name the ABI floor and truncate; got {refusal.reason!r}")
        if not refusal.remediation:
            failures.append("the refusal must carry a remediation")
    if os.path.exists(marker_file):
        failures.append("the refused workload ran: its marker file exists")
    assert not failures, f"landlock ABI floor refusal failures [{identity}/abi={abi}]: {failures}"


def test_at_the_abi_floor_filesystem_is_admitted():
    """The other side of the floor: ABI 3 is enough."""
    backend = linux_backend("caller", landlock_abi="3")
    cell = next(c for c in backend.profile(backend.probe()).cells if c.kind is RequirementKind.Filesystem)
    if backend.probe().fact("launcher.landlock_restrict") != "ok":
        loud_skip(f"landlock restrict_self does not work here: {cell.reason}")
    assert cell.verdict.enforcement is Enforcement.Enforced, cell
    plan, _ = planned(backend, oracle_spec(["/bin/true"], [Capability.Filesystem(access=FsAccess.Read, roots=["/tmp"])]))
    assert any(item.kind is RequirementKind.Filesystem for item in plan.admitted)


# --- plan and report list every root; the launcher attests ABI and handled rights ----------


def report_granted(report) -> list:
    """The grants the report's filesystem_confined fact lists."""
    facts = facts_of(report, "filesystem_confined")
    if not facts:
        return []
    return [g for g in facts[0].partition("granted: ")[2].split("; ") if g]


def expected_system_roots() -> list:
    """Independently of bvisor's own list: what a program needs, where the host has it."""
    lib = sorted(p for p in ("/lib", "/lib32", "/lib64", "/libx32") if os.path.exists(p))
    return ["/usr", "/bin", *lib, "/etc", "/dev/null"]


@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_plan_and_the_report_list_every_granted_root_and_the_landlock_abi(identity, tree):
    backend = require_landlock(identity)
    extra = _mkdir(os.path.join(tree.base, "rw2"))
    caps = [
        ENV,
        Capability.Filesystem(access=FsAccess.Read, roots=[tree.ro]),
        Capability.Filesystem(access=FsAccess.Write, roots=[tree.rw]),
        Capability.Filesystem(access=FsAccess.ReadWrite, roots=[extra]),
    ]
    marker = unique_marker("BVISOR-FS-GRANTS")
    admitted, run = planned(backend, oracle_spec(workload(marker, 'say ran 0 ""'), caps))
    gated = run_gated(run, marker, host_view, timeout=GATE)
    report = gated.result
    failures = []
    check_ran(failures, gated, identity)
    fs_items = [item for item in admitted.admitted if item.kind is RequirementKind.Filesystem]
    plan_grants = [g for item in fs_items for g in item.grants]
    if len(fs_items) != 3 or any(item.enforcement is not Enforcement.Enforced for item in fs_items):
        failures.append(f"the plan must admit three Filesystem requirements, Enforced; got {fs_items}")
    for want in (f"read {tree.ro}", f"read-write {tree.rw}", f"read-write {extra}"):
        if want not in plan_grants:
            failures.append(f"the plan must list {want!r}; it lists {plan_grants}")
    for root in expected_system_roots():
        if not any(g.endswith(f" {root} (system root)") for g in plan_grants):
            failures.append(f"the plan must list the system root {root} as '… {root} (system root)'; it lists {plan_grants}")
    if any(g.startswith("read-write /") and "(system root)" in g and "/dev/null" not in g for g in plan_grants):
        failures.append(f"system roots other than /dev/null must be read-only; the plan lists {plan_grants}")
    # The exe is granted too (the launcher's ruleset always lets it be read and executed):
    # the plan lists it under LaunchWorkload.
    exe_grants = [g for item in admitted.admitted if item.kind is RequirementKind.LaunchWorkload for g in item.grants]
    if exe_grants != [f"read {BASH} (the workload's exe)"]:
        failures.append(f"the plan must list the exe as read under launch_workload; got {exe_grants}")
    # The report: the same admitted grants, and the fact lists every granted root, implicit ones
    # included.
    if [i.grants for i in report.body.admitted] != [i.grants for i in admitted.admitted]:
        failures.append("the report's admitted requirements must carry the plan's grants")
    granted = report_granted(report)
    if set(granted) != set(plan_grants) | set(exe_grants):
        failures.append(f"filesystem_confined must list exactly the plan's roots and the exe; report={granted} plan={plan_grants + exe_grants}")
    # The launcher's own attestation: one pre-opened root fd per distinct root, the ABI, the rights.
    notes = facts_of(report, "launcher_note")
    abi_note = next((n for n in notes if n.startswith("landlock abi=")), None)
    probed_abi = backend.probe().fact("launcher.landlock_abi")
    if abi_note is None:
        failures.append(f"the launcher must attest 'landlock abi=… handled=…'; notes={notes}")
    else:
        fields = dict(p.split("=", 1) for p in abi_note.split()[1:] if "=" in p)
        handled = fields.get("handled", "").split(",")
        if fields.get("abi") != probed_abi or int(fields.get("abi", "0")) < 3:
            failures.append(f"the attested ABI must be the probed one ({probed_abi}) and at least 3; got {abi_note!r}")
        for right in ("truncate", "refer", "read_file", "write_file", "execute", "make_reg", "remove_file"):
            if right not in handled:
                failures.append(f"the ruleset must handle {right}; the launcher attests {abi_note!r}")
    if "landlock=restricted installed=true" not in notes:
        failures.append(f"the launcher must attest 'landlock=restricted installed=true'; notes={notes}")
    if not facts_of(report, "landlock_installed"):
        failures.append("the report must restate the installed ruleset as landlock_installed")
    root_rules = [n for n in notes if n.startswith("landlock_rule root ")]
    distinct_roots = {g.split(" ", 1)[1].split(" (")[0] for g in plan_grants}
    slots = {n.split("slot=")[1].split()[0] for n in root_rules}
    if len(root_rules) != len(distinct_roots) or len(slots) != len(root_rules):
        failures.append(f"one landlock rule per root, each on its own fd slot: {len(distinct_roots)} roots, rules={root_rules}")
    # A write root on a directory grants every handled right; on a file (/dev/null), every
    # right a file can hold. A read root grants read and execute only.
    handled = set(abi_note.split("handled=")[1].split()[0].split(",")) if abi_note else set()
    file_rights = handled & {"execute", "write_file", "read_file", "truncate", "ioctl_dev"}
    rule_access = [set(n.split("access=")[1].split(",")) for n in root_rules]
    full = [a for a in rule_access if a == handled]
    if len(full) != 2:  # rw and rw2
        failures.append(f"each of the two write directories must be granted every handled right {sorted(handled)}; rules={root_rules}")
    for access in rule_access:
        if "write_file" in access and access not in (handled, file_rights):
            failures.append(f"a write root must grant every right it can hold; got {sorted(access)}")
        if "write_file" not in access and not access <= {"execute", "read_file", "read_dir"}:
            failures.append(f"a read root grants only read and execute; got {sorted(access)}")
    assert not failures, f"Filesystem plan/report grant failures [{identity}]: {failures}"


def test_each_root_reaches_the_launcher_as_its_own_pre_opened_fd(tree):
    """Host side of the lowering (no launcher runs, so no identity): one authority fd per
    root, at its own slot, on that very object (same device and inode as the host path),
    read roots and write roots apart."""
    from bvisor.backends.linux.lowering import lower
    from bvisor.secrets import NoSecrets
    from bvisor.wire.plan import DescriptorRole

    backend = require_landlock("caller")
    admitted, _ = planned(backend, oracle_spec(["/bin/true"], tree.caps()))
    lowered = lower(admitted, uuid.uuid4().hex + uuid.uuid4().hex, NoSecrets())
    failures = []
    try:
        roles = {s.slot_index: s.role for s in lowered.plan.body.descriptor_table}
        by_slot = {a.slot_index: a.handle for a in lowered.authorities}
        grants = [g for item in admitted.admitted if item.kind is RequirementKind.Filesystem for g in item.grants]
        paths = {g.split(" ", 1)[1].split(" (")[0]: g.startswith("read-write") for g in grants}
        identity_of = {p: (os.stat(p).st_dev, os.stat(p).st_ino) for p in paths}  # follows /bin -> usr/bin
        root_slots = {slot: fd for slot, fd in by_slot.items() if roles.get(slot) in (DescriptorRole.ReadRoot, DescriptorRole.WriteRoot)}
        if len(root_slots) != len(paths):
            failures.append(f"one pre-opened fd per granted root: {len(paths)} roots {sorted(paths)}, {len(root_slots)} root slots")
        covered = set()
        for slot, fd in sorted(root_slots.items()):
            st = os.fstat(fd)
            match = [p for p, ident in identity_of.items() if ident == (st.st_dev, st.st_ino)]
            if not match:
                failures.append(f"slot {slot} holds an fd on no granted root")
                continue
            covered.update(match)
            for path in match:
                if (roles[slot] is DescriptorRole.WriteRoot) != paths[path]:
                    failures.append(f"{path} is passed as {roles[slot]}; the plan grants it {'read-write' if paths[path] else 'read'}")
        if covered != set(paths):
            failures.append(f"every granted root needs a pre-opened fd; missing {sorted(set(paths) - covered)}")
    finally:
        for authority in lowered.authorities:
            os.close(authority.handle)
    assert not failures, f"Filesystem root-fd lowering failures: {failures}"


# --- system roots -------------------------------------------------------------------------


@pytest.mark.parametrize("identity", IDENTITIES)
def test_without_system_roots_a_shell_cannot_even_start_and_with_them_it_runs(identity, tree):
    """Only a data root, system_roots=False: /bin/sh's own file is granted (the launcher
    execs the fd the host opened) but its loader and libraries under /usr/lib are not, so
    they do not exist in the run's root: the exec fails and the report says why. With system
    roots on, the same workload runs."""
    backend = require_landlock(identity)
    out = os.path.join(tree.rw, "started.txt")
    argv = ["/bin/sh", "-c", 'printf started > "$1"', "sh", out]
    failures = []

    bare = [Capability.Filesystem(access=FsAccess.ReadWrite, roots=[tree.rw], system_roots=False)]
    admitted, run = planned(backend, oracle_spec(argv, bare))
    grants = [g for i in admitted.admitted if i.kind is RequirementKind.Filesystem for g in i.grants]
    if grants != [f"read-write {tree.rw}"]:
        failures.append(f"with system_roots=False the plan must grant only the data root; got {grants}")
    stderr = bytearray()
    report = run(RunIO(stderr_sink=stderr.extend))
    body = report.body
    reasons = [f for f in body.observed if f.kind in ("exe_not_executable", "exe_not_found")]
    child_failed = [f.detail for f in body.observed if f.kind == "launcher_note" and f.detail.startswith("child_failed ")]
    print(f"Filesystem no system roots [{identity}]: outcome={body.outcome} facts={body.observed}", file=sys.stderr)
    if body.outcome is Outcome.Completed:
        failures.append("without system roots the shell must not run to Completed")
    # The loader under /usr/lib is not in the run's root: exec fails with ENOENT (2).
    if not reasons or not child_failed or "step=exec errno=2" not in child_failed[0]:
        failures.append(f"the report must say the exec failed (exe_not_found + child_failed step=exec errno=2); facts={body.observed}")
    if body.exit is not None or stderr:
        failures.append(f"no workload ran, so no exit status and no output; exit={body.exit} stderr={bytes(stderr)!r}")
    if os.path.exists(out):
        failures.append("CHANNEL A: the shell must never have run, yet its file exists")

    with_roots = [Capability.Filesystem(access=FsAccess.ReadWrite, roots=[tree.rw])]
    _, run = planned(backend, oracle_spec(argv, with_roots))
    report = run(RunIO())
    if report.body.outcome is not Outcome.Completed:
        failures.append(f"with system roots the shell must run to Completed; got {report.body.outcome} facts={report.body.observed}")
    got = Path(out).read_text() if os.path.exists(out) else None
    if got != "started":
        failures.append(f"CHANNEL A: with system roots the host must find started.txt; got {got!r}")
    assert not failures, f"system-roots failures [{identity}]: {failures}"


# --- the CLI, as a newcomer types it -------------------------------------------------------


CLI_SCRIPT = (
    "printf inside > work/inside.txt; echo inside=$?; "
    "printf outside > elsewhere.txt; echo outside=$?; "
    "cat work/inside.txt; echo"
)


@pytest.fixture
def cli_dir(host_dir):
    """A working directory with ``work/`` and a reports dir; 0777 so only landlock denies."""
    base = host_dir("bvisor-fs-cli-", 0o777)
    _mkdir(os.path.join(base, "work"))
    _mkdir(os.path.join(base, "reports"))
    return base


def bvisor(identity: str, cwd: str, *args):
    return subprocess.run(
        [*cli_prefix(identity), BVISOR, *args], capture_output=True, cwd=cwd, stdin=subprocess.DEVNULL, timeout=120, check=False
    )


def check_cli_confined(failures: list, done, cwd: str, report_path: str, identity: str) -> None:
    stdout = done.stdout.decode(errors="replace")
    if done.returncode != 0 or b"Traceback" in done.stderr:
        failures.append(f"bvisor run must exit 0; got {done.returncode} stderr={done.stderr.decode(errors='replace')!r}")
    lines = stdout.splitlines()
    if "inside=0" not in lines:
        failures.append(f"CHANNEL B: the write inside ./work must succeed; stdout={stdout!r}")
    if "outside=0" in lines or not any(line.startswith("outside=") for line in lines):
        failures.append(f"CHANNEL B: the write outside ./work must fail; stdout={stdout!r}")
    inside = os.path.join(cwd, "work", "inside.txt")
    if not os.path.isfile(inside) or Path(inside).read_text() != "inside":
        failures.append("CHANNEL A: the host must find work/inside.txt holding 'inside'")
    elif workload_uid_problem(identity, os.stat(inside).st_uid):  # ./work is 0777: the run writes as itself
        failures.append(f"CHANNEL A: work/inside.txt: its owner {workload_uid_problem(identity, os.stat(inside).st_uid)}")
    if os.path.exists(os.path.join(cwd, "elsewhere.txt")):
        failures.append("CHANNEL A: the host must find no elsewhere.txt beside ./work")
    try:
        report = decode_report_json(Path(report_path).read_bytes())
    except (OSError, ValueError) as exc:
        failures.append(f"the run must write a report: {exc}")
        return
    if report.body.outcome is not Outcome.Completed:
        failures.append(f"the report's outcome must be completed; got {report.body.outcome}")
    check_confined(failures, report)
    granted = report_granted(report)
    for want in ("read /usr", "read /lib", f"read-write {os.path.join(cwd, 'work')}"):
        if want not in granted:
            failures.append(f"the report must list {want!r} among the granted roots; got {granted}")


@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_ro_and_rw_flags_confine_writes_to_the_work_dir(identity, cli_dir):
    require_landlock(identity)
    report_path = os.path.join(cli_dir, "reports", "run.json")
    done = bvisor(
        identity, cli_dir, "run", "--quiet", "--ro", "/usr", "--ro", "/lib", "--rw", "./work",
        "--report", report_path, "--", "sh", "-c", CLI_SCRIPT,
    )  # fmt: skip
    print(f"CLI flags [{identity}]: rc={done.returncode} stdout={done.stdout!r} stderr={done.stderr!r}", file=sys.stderr)
    failures = []
    check_cli_confined(failures, done, cli_dir, report_path, identity)
    assert not failures, f"CLI --ro/--rw failures [{identity}]: {failures}"


def spec_toml(cwd: str) -> str:
    return f"""\
[workload]
kind = "process"
exe = "/bin/sh"
args = ["-c", {CLI_SCRIPT!r}]

[[capabilities]]
kind = "filesystem"
access = "read"
roots = ["/usr", "/lib"]

[[capabilities]]
kind = "filesystem"
access = "read_write"
roots = ["{os.path.join(cwd, "work")}"]

[[controls]]
kind = "launch_workload"

[[controls]]
kind = "capture_streams"
streams = {{ stdout = true, stderr = true, stdin = false }}

[budgets]
wall = {{ limit = 60_000_000, guarantee = "mediated" }}
cpu = {{ limit = 60_000_000, guarantee = "mediated" }}
resident_memory = {{ limit = 1_073_741_824, guarantee = "mediated" }}
process_count = {{ limit = 64, guarantee = "mediated" }}
handle_count = {{ limit = 1024, guarantee = "mediated" }}
storage = {{ limit = 67_108_864, guarantee = "mediated" }}
network = {{ limit = 0, guarantee = "mediated" }}
"""


@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_spec_file_with_filesystem_roots_behaves_like_the_flags(identity, cli_dir):
    require_landlock(identity)
    spec_path = os.path.join(cli_dir, "reports", "spec.toml")
    Path(spec_path).write_text(spec_toml(cli_dir))
    os.chmod(spec_path, 0o644)
    report_path = os.path.join(cli_dir, "reports", "run.json")
    done = bvisor(identity, cli_dir, "run", "--quiet", "--report", report_path, spec_path)
    print(f"CLI spec file [{identity}]: rc={done.returncode} stdout={done.stdout!r} stderr={done.stderr!r}", file=sys.stderr)
    failures = []
    check_cli_confined(failures, done, cli_dir, report_path, identity)
    assert not failures, f"CLI spec-file failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_cli_with_the_whole_host_writable_writes_land_everywhere(identity, cli_dir):
    # A flag-built run with no filesystem flag is confined too (system roots and a private
    # /tmp), so the control grants the whole directory read-write.
    done = bvisor(identity, cli_dir, "run", "--quiet", "--rw", cli_dir, "--", "sh", "-c", CLI_SCRIPT)
    lines = done.stdout.decode(errors="replace").splitlines()
    failures = []
    if done.returncode != 0:
        failures.append(f"the control run must exit 0; got {done.returncode} stderr={done.stderr!r}")
    if "inside=0" not in lines or "outside=0" not in lines:
        failures.append(f"CONTROL CHANNEL B: both writes must succeed unconfined; stdout={done.stdout!r}")
    elsewhere = os.path.join(cli_dir, "elsewhere.txt")
    if not os.path.isfile(elsewhere) or Path(elsewhere).read_text() != "outside":
        failures.append("CONTROL CHANNEL A: the host must find elsewhere.txt holding 'outside'")
    assert not failures, f"CLI control failures (the oracle would be vacuous) [{identity}]: {failures}"


def test_cli_probe_names_the_landlock_abi_and_its_handled_rights():
    done = subprocess.run([BVISOR, "probe"], capture_output=True, timeout=120, check=False)
    text = done.stdout.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("landlock:")), "")
    facts = msgspec.json.decode(
        subprocess.run([BVISOR, "probe", "--json"], capture_output=True, timeout=120, check=True).stdout
    )["snapshot"]["facts"]
    abi = next((f["value"] for f in facts if f["name"] == "launcher.landlock_abi"), None)
    failures = []
    if done.returncode != 0:
        failures.append(f"bvisor probe must exit 0; got {done.returncode}")
    if "landlock" not in text or f"abi={abi}" not in line:
        failures.append(f"probe must print the landlock ABI ({abi}); got line {line!r}")
    if abi is not None and int(abi) >= 3 and not ("truncate" in line and "refer" in line):
        failures.append(f"probe must list the handled rights, truncate and refer among them; got {line!r}")
    if "filesystem" not in text:
        failures.append("probe must list the filesystem requirement kind")
    assert not failures, f"bvisor probe landlock failures: {failures}"
