"""Storage, honestly: an Enforced storage cap is admitted only where the temp root is the only
writable place, and there it caps bytes AND inodes.

The confined spec reads the whole host (``Filesystem(read, ["/"])``) and writes only its temp
root, a tmpfs of ``size`` = the cap and ``nr_inodes`` = max(64, cap / 4 KiB). The workload
(python, reporting through its captured stdout) writes 5 MB, then creates empty files until
the kernel says ENOSPC, parks, and after release swaps them for symlinks, again to ENOSPC.
Channel A (host): while it is parked the host reads statvfs of the workload's /tmp through
/proc/<pid>/root (the inode cap, none free) and after the run finds nothing named by the
marker in its own /tmp; the report's launcher notes carry the tmpfs's own statvfs
(``temp_root_usage ... nr_inodes=``) and the plan's ``mount_planned`` the caps lowered.
Channel B: the workload's counts of what it wrote and of the ENOSPC it met. Control: the same
workload under a 16 MiB cap writes all 5 MB and every file and symlink. Root and uid 65534.

The refusals: on the CLI, ``--storage`` without ``--tmp``, ``--tmp --storage`` with the host
tree writable, or with a ``--rw`` root, exits 125 with the reason and remedy on one line and
runs nothing; the control, the same workload without ``--storage``, writes 5 MB into the
host's /tmp (finding 9's attack). A Mediated storage budget is watched, not capped: its
witness counts the temp root only where the temp root was the only writable place, and says
``observation_unavailable`` where writes could land elsewhere. A core dump (the kernel's
write into the crashing workload's cwd, a host directory) does not land under the cap's
confinement; its control, unconfined, does.
"""

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from bvisor import (
    BoundarySpec,
    Capability,
    HostControl,
    MinGuarantee,
    Outcome,
)
from bvisor.backends.linux.budgets import temp_root_inodes
from bvisor.capture import RunIO
from bvisor.contract import BudgetDimension, BudgetFinding, FsAccess
from helpers import (
    IDENTITIES,
    PARKED,
    cli_prefix,
    facts_of,
    host_paths_named,
    host_read_uid,
    runner_for,
    shared_host_dir,
    unique_marker,
)
from mount_oracles import (
    MIB,
    budgets,
    check_identity,
    linux_backend,
    mount_spec,
    reported,
    run_parked,
)
from oracle_specs import oracle_spec

BVISOR = str(Path(sys.executable).parent / "bvisor")
BIG = 5_000_000
ATTEMPTS = 1000  # files, then symlinks: more than a 1 MiB cap's 256 inodes, fewer than 16 MiB's 4096
READ_EVERYTHING = Capability.Filesystem(access=FsAccess.Read, roots=["/"])

# argv[1] is the marker. Every count and errno goes to stdout; the host's gate is stdin.
FILLER = f"""
import errno, os, sys
marker = sys.argv[1]
big = "/tmp/" + marker + "-big"
written, failure = 0, "none"
fd = os.open(big, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
try:
    while written < {BIG}:
        written += os.write(fd, b"x" * min(65536, {BIG} - written))
except OSError as exc:
    failure = errno.errorcode[exc.errno]
os.close(fd)
print("BIG", written, failure, flush=True)
os.unlink(big)

def fill(make):
    made, nospace, other = [], 0, set()
    for i in range({ATTEMPTS}):
        path = "/tmp/%s-%d" % (marker, i)
        try:
            make(path)
            made.append(path)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                nospace += 1
            else:
                other.add(errno.errorcode[exc.errno])
    return made, nospace, other

files, nospace, other = fill(lambda p: os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)))
print("FILES", len(files), "ENOSPC", nospace, "OTHER", ",".join(sorted(other)) or "none", flush=True)
print("{PARKED}", flush=True)
sys.stdin.readline()
for path in files:
    os.unlink(path)
links, nospace, other = fill(lambda p: os.symlink("t", p))
print("SYMLINKS", len(links), "ENOSPC", nospace, "OTHER", ",".join(sorted(other)) or "none", flush=True)
"""


def filler_spec(marker: str, storage: int) -> BoundarySpec:
    return oracle_spec([sys.executable, "-c", FILLER, marker], [READ_EVERYTHING], [HostControl.TempRoot()], budgets(storage, MinGuarantee.Enforced))


def tmpfs_view(pid: int) -> dict:
    st = os.statvfs(f"/proc/{pid}/root/tmp")
    return {"uid": host_read_uid(pid), "files": st.f_files, "ffree": st.f_ffree, "bytes": st.f_blocks * st.f_frsize}


def counts(stdout: bytes, key: str):
    """``KEY made ENOSPC n OTHER errs`` → (made, n, errs), or None."""
    words = (reported(stdout, key) or "").split()
    return (int(words[0]), int(words[2]), words[4]) if len(words) == 5 else None


def note_fields(report, head: str) -> dict:
    note = next((n for n in facts_of(report, "launcher_note") if n.startswith(head + " ")), "")
    return dict(part.split("=", 1) for part in note.split()[1:] if "=" in part)


def run_filler(identity: str, storage: int):
    marker = unique_marker("BVISOR-STORAGE")
    try:
        gated = run_parked(identity, filler_spec(marker, storage), marker, tmpfs_view)
        left = host_paths_named(marker)
    finally:
        for path in host_paths_named(marker):
            os.unlink(path)
    print(f"storage {storage} [{identity}]: host={gated.inspected} stdout={gated.stdout!r} stderr={gated.stderr!r}", file=sys.stderr)
    return gated, left


@pytest.mark.parametrize("identity", IDENTITIES)
def test_an_enforced_storage_cap_stops_bytes_and_inodes_at_the_temp_roots_caps(identity):
    gated, left = run_filler(identity, MIB)
    inodes = temp_root_inodes(MIB)
    report, host, failures = gated.result, gated.inspected or {}, []
    if report.body.outcome is not Outcome.Completed:
        failures.append(f"the workload must run to Completed (it reports its own failures); got {report.body.outcome} {report.body.observed}")
    big = (reported(gated.stdout, "BIG") or "").split()
    if len(big) != 2 or big[1] != "ENOSPC" or not 0 < int(big[0]) <= MIB:
        failures.append(f"CHANNEL B: writing {BIG} bytes must stop with ENOSPC at most {MIB} in; reported {big}")
    for key in ("FILES", "SYMLINKS"):
        seen = counts(gated.stdout, key)
        # The tmpfs's root is one of its inodes.
        if seen is None or not 0 < seen[0] <= inodes - 1 or seen[1] != ATTEMPTS - seen[0] or seen[2] != "none":
            failures.append(f"CHANNEL B: at most {inodes - 1} {key.lower()} may fit, every other attempt ENOSPC; reported {seen}")
    if not host:
        failures.append(f"CHANNEL A: the host never inspected the parked workload; stdout={gated.stdout!r}")
    else:
        if (host["files"], host["ffree"], host["bytes"]) != (inodes, 0, MIB):
            failures.append(f"CHANNEL A: the workload's /tmp must be a {MIB}-byte tmpfs of {inodes} inodes, none free; statvfs={host}")
        check_identity(failures, identity, host)
    usage = note_fields(report, "temp_root_usage")
    if (usage.get("nr_inodes"), usage.get("inodes"), usage.get("size")) != (str(inodes), str(inodes), str(MIB)):
        failures.append(f"the report's temp_root_usage note must show the tmpfs's statvfs: {inodes} of {inodes} inodes used, size {MIB}; got {usage}")
    if f"temp_root=tmpfs path=/tmp size={MIB} nr_inodes={inodes} verified=statvfs" not in facts_of(report, "mount_made"):
        failures.append(f"the report must record the mount with both caps; mount_made={facts_of(report, 'mount_made')}")
    if f"tmpfs /tmp size={MIB} nr_inodes={inodes}" not in facts_of(report, "mount_planned"):
        failures.append(f"the plan must lower both caps; mount_planned={facts_of(report, 'mount_planned')}")
    # The witness is what the run left in its temp root (the big file is gone: 0 bytes).
    storage = next(w for w in report.body.budget if w.dimension is BudgetDimension.Storage)
    if storage.supplied.value != "enforced" or storage.observed is None or str(storage.observed) != usage.get("bytes"):
        failures.append(f"the storage witness must be an enforced cap observing the tmpfs's usage {usage}; got {storage}")
    if left:
        failures.append(f"CHANNEL A: the workload's writes reached the host's /tmp: {left}")
    assert not failures, f"storage cap oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_a_larger_cap_lets_the_same_writes_succeed(identity):
    gated, left = run_filler(identity, 16 * MIB)
    failures = []
    if reported(gated.stdout, "BIG") != f"{BIG} none":
        failures.append(f"CONTROL CHANNEL B: all {BIG} bytes must be written under a 16 MiB cap; stdout={gated.stdout!r} stderr={gated.stderr!r}")
    for key in ("FILES", "SYMLINKS"):
        if counts(gated.stdout, key) != (ATTEMPTS, 0, "none"):
            failures.append(f"CONTROL CHANNEL B: all {ATTEMPTS} {key.lower()} must be made; reported {counts(gated.stdout, key)}")
    host = gated.inspected or {}
    if host.get("files") != temp_root_inodes(16 * MIB) or not host.get("ffree"):
        failures.append(f"CONTROL CHANNEL A: the 16 MiB tmpfs must have {temp_root_inodes(16 * MIB)} inodes, some free; statvfs={host}")
    if left:
        failures.append(f"CONTROL CHANNEL A: the workload's writes reached the host's /tmp: {left}")
    assert not failures, f"storage control failures (the oracle would be vacuous) [{identity}]: {failures}"


# --- Refused where a writable place escapes the cap, on the CLI ------------------------------

WRITE_5MB = '/bin/dd if=/dev/zero of="$1/$0" bs=1000000 count=5 2>/dev/null; echo "DD-RC $?"'


def cli_run(identity: str, flags: list, marker: str, target: str):
    return subprocess.run(
        [*cli_prefix(identity), BVISOR, "run", "--quiet", "--no-stdin", "--no-store", *flags, "--", "sh", "-c", WRITE_5MB, marker, target],
        capture_output=True,
        cwd="/",
        timeout=120,
    )


@pytest.mark.parametrize(
    ("flags", "why", "remedy"),
    [
        (["--ro", "/", "--rw", "{dir}", "--tmp", "--storage", "1M"], "read-write root {dir}", "drop --rw {dir}"),
    ],
    ids=["tmp-with-a-rw-root"],
)
@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_refuses_a_storage_cap_a_writable_place_escapes(identity, flags, why, remedy):
    marker = unique_marker("BVISOR-STORAGE-CLI")
    outside = shared_host_dir("bvisor-storage-rw-", 0o777)
    try:
        flags = [f.format(dir=outside) for f in flags]
        done = cli_run(identity, flags, marker, outside)
        written = host_paths_named(marker, outside)
    finally:
        subprocess.run(["rm", "-rf", outside], check=False)
    err = done.stderr.decode(errors="replace")
    print(f"CLI {flags} [{identity}]: rc={done.returncode} out={done.stdout!r} err={err!r}", file=sys.stderr)
    failures = []
    if done.returncode != 125:
        failures.append(f"the CLI must refuse with 125; got {done.returncode}")
    lines = err.splitlines()
    if len(lines) != 1 or not lines[0].startswith("bvisor: refused: storage: uncapped_writable_place:"):
        failures.append(f"the refusal must be one line naming storage and its failure; got {err!r}")
    elif why.format(dir=outside) not in lines[0] or "(remediation: " not in lines[0] or remedy.format(dir=outside) not in lines[0].partition("(remediation: ")[2]:
        failures.append(f"the refusal must name {why.format(dir=outside)!r} and the remedy {remedy!r}; got {lines[0]!r}")
    if done.stdout or written:
        failures.append(f"nothing may run: stdout={done.stdout!r} written={written}")
    assert not failures, f"CLI storage refusal failures [{identity} {flags}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_storage_alone_caps_the_default_views_private_tmp(identity):
    """With no filesystem flag the run's only writable place is its private /tmp, so a bare
    ``--storage 1M`` is admitted Enforced and caps it: a 2 MiB write fails with ENOSPC
    (workload), the report's storage witness is enforced at 1 MiB (host)."""
    report = os.path.join(shared_host_dir("bvisor-storage-report-", 0o777), "report.json")
    try:
        done = subprocess.run(
            [*cli_prefix(identity), BVISOR, "run", "--quiet", "--no-stdin", "--no-store", "--report", report, "--storage", "1M", "--", "sh", "-c",
             "dd if=/dev/zero of=/tmp/big bs=1M count=2 2>/dev/null; echo DD-RC $?; echo SIZE $(stat -c %s /tmp/big)"],
            capture_output=True,
            cwd="/",
            timeout=120,
        )
        body = msgspec.json.decode(open(report, "rb").read()) if os.path.exists(report) else {}
    finally:
        subprocess.run(["rm", "-rf", os.path.dirname(report)], check=False)
    witness = next((b for b in body.get("budget", []) if b["dimension"] == "storage"), {})
    assert done.returncode == 0 and reported(done.stdout, "DD-RC") == "1" and reported(done.stdout, "SIZE") == str(MIB), (done.stdout, done.stderr)
    assert witness.get("supplied") == "enforced" and witness.get("limit") == MIB, witness


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_storage_the_same_cli_run_writes_5mb_to_the_host(identity):
    marker = unique_marker("BVISOR-STORAGE-CLI-CONTROL")
    outside = shared_host_dir("bvisor-storage-rw-", 0o777)
    try:
        done = cli_run(identity, ["--rw", outside], marker, outside)
        sizes = [os.stat(p).st_size for p in host_paths_named(marker, outside)]
    finally:
        subprocess.run(["rm", "-rf", outside], check=False)
    assert (done.returncode, reported(done.stdout, "DD-RC"), sizes) == (0, "0", [BIG]), (
        f"CONTROL: without --storage the workload writes 5 MB to the host; rc={done.returncode} out={done.stdout!r} err={done.stderr!r} sizes={sizes}"
    )


# --- A Mediated storage budget is watched, and its witness is honest -----------------------

TOUCH = 'printf %0100000d 0 > "/tmp/$0"; printf x > "$1/$0"; echo done'


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_mediated_storage_witness_counts_the_temp_root_only_where_it_is_the_only_writable_place(identity):
    outside = shared_host_dir("bvisor-storage-mediated-", 0o777)
    marker = unique_marker("BVISOR-STORAGE-MEDIATED")
    witnesses = {}
    try:
        for name, caps in (("only-temp-root", [READ_EVERYTHING]), ("with-a-rw-root", [READ_EVERYTHING, Capability.Filesystem(access=FsAccess.ReadWrite, roots=[outside])])):
            spec = mount_spec(["/bin/sh", "-c", TOUCH, marker, outside], [HostControl.TempRoot()], caps)
            report = runner_for(linux_backend(identity), spec)(RunIO())
            witnesses[name] = (report.body.outcome, next(w for w in report.body.budget if w.dimension is BudgetDimension.Storage), note_fields(report, "temp_root_usage"))
        on_host = os.path.exists(f"{outside}/{marker}")
    finally:
        subprocess.run(["rm", "-rf", outside], check=False)
    print(f"mediated storage witnesses [{identity}]: {witnesses}", file=sys.stderr)
    failures = []
    outcome, only, usage = witnesses["only-temp-root"]
    if outcome is not Outcome.Completed or only.supplied.value != "mediated" or only.observed is None or only.observed < 100_000:
        failures.append(f"the temp root alone: the witness must be mediated and count the 100 kB written; got {outcome} {only}")
    if usage.get("bytes") != str(only.observed):
        failures.append(f"the witness must be the tmpfs's own usage note {usage}; got {only.observed}")
    outcome, mixed, usage = witnesses["with-a-rw-root"]
    if outcome is not Outcome.Completed or mixed.observed is not None or mixed.finding is not BudgetFinding.ObservationUnavailable:
        failures.append(f"with a rw root the temp root's count is not all the run stored: observation_unavailable; got {outcome} {mixed}")
    if not usage.get("bytes") or not on_host:
        failures.append(f"CONTROL: the run did write to both places (tmpfs note {usage}, host file {on_host})")
    assert not failures, f"mediated storage witness failures [{identity}]: {failures}"


# --- A core dump is storage too ----------------------------------------------------------

# The kernel writes a core file (core_pattern "core": into the crashing process's cwd, a host
# directory) as the workload's own write: under the cap's confinement it must not land.
CRASH = """
import os, resource
soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
pid = os.fork()
if pid == 0:
    os.kill(os.getpid(), 11)
_, status = os.waitpid(pid, 0)
print("CORE", int(os.WCOREDUMP(status)), "LIMIT", hard, flush=True)
"""


def core_dumps_to_cwd() -> bool:
    try:
        with open("/proc/sys/kernel/core_pattern") as f:
            return f.read().strip().startswith("core")
    except OSError:
        return False


@pytest.mark.skipif(not core_dumps_to_cwd(), reason="core_pattern does not write cores into the cwd on this host")
@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_core_dump_cannot_land_outside_a_capped_temp_root(identity):
    cwd = shared_host_dir("bvisor-storage-core-", 0o777, parent="/var/tmp")
    try:
        runs = {}
        for name, flags in (("capped", ["--ro", "/", "--tmp", "--storage", "1M"]), ("control", ["--rw", cwd])):
            done = subprocess.run(
                [*cli_prefix(identity), BVISOR, "run", "--quiet", "--no-stdin", "--no-store", *flags, "--", sys.executable, "-c", CRASH],
                capture_output=True,
                cwd=cwd,
                timeout=120,
            )
            runs[name] = (done.returncode, reported(done.stdout, "CORE"), sorted(os.listdir(cwd)), done.stderr)
            for entry in os.listdir(cwd):
                os.unlink(os.path.join(cwd, entry))
    finally:
        subprocess.run(["rm", "-rf", cwd], check=False)
    print(f"core dumps [{identity}]: {runs}", file=sys.stderr)
    failures = []
    rc, core, files, err = runs["capped"]
    if rc != 0 or core is None or not core.startswith("0 ") or files:
        failures.append(f"capped: no core may be dumped into the host cwd (workload reports CORE 0, the host sees nothing); got rc={rc} CORE {core} files={files} err={err!r}")
    rc, core, files, err = runs["control"]
    if rc != 0 or core is None or not core.startswith("1 ") or not any(f.startswith("core") for f in files):
        failures.append(f"CONTROL: unconfined, the same crash dumps a core into the host cwd; got rc={rc} CORE {core} files={files} err={err!r}")
    assert not failures, f"core dump storage failures [{identity}]: {failures}"
