"""TempRoot — a private, size-limited tmpfs at a declared path, gone when the run ends.

The workload writes a file with a unique marker name into its temp root and then parks.
Channel A (host): while it is parked, the host reads the workload's mount namespace from
outside — ``/proc/<pid>/mountinfo`` must show a tmpfs at the path with ``size=`` the storage
limit rounded up to pages, ``statvfs(/proc/<pid>/root/<path>)`` must report that size, the
marker must be reachable through ``/proc/<pid>/root`` — and its own view: the marker must NOT
be in the host's directory, and a file the host put there must not be in the workload's.
Channel B (workload): released, the workload lists its temp root, reads its file back and
reports the filesystem type and size it sees (``stat -f``), all through its captured stdout.
After the run nothing named by the marker remains anywhere under the host's /tmp. Writes past
the limit fail with ENOSPC (dd and a raw os.write loop both say "No space left on device")
and the report carries the workload's failing exit. Every positive test runs with the
launcher as the caller and as uid 65534. The controls run the same workloads on the same
backend without TempRoot: the marker lands in the host's /tmp and 2 MiB fit, so the oracle
is not vacuous. The workload is root in its user namespace, so it also tries to lift its own
cap (remount with a bigger size) and to uncover the host's /tmp (lazy unmount): neither may
work. A host without unprivileged mount namespaces refuses TempRoot at plan; the
CLI's ``--tmp [--storage N]`` gives the same private tmpfs (64 MiB by default).
"""

import functools
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from bvisor import Capability, HostControl, Outcome
from bvisor.backends.linux.budgets import temp_root_inodes
from bvisor.contract import BudgetDimension, FsAccess, RequirementKind
from helpers import (
    IDENTITIES,
    PARK,
    PARKED,
    check_completed,
    cli_prefix,
    facts_of,
    host_mount_at,
    host_paths_named,
    host_read_uid,
    read_text,
    scan_proc_cmdline,
    unique_marker,
)
from mount_oracles import (
    MIB,
    check_identity,
    check_mount_attested,
    check_no_leftovers,
    check_refused_without_mount_namespaces,
    mount_spec,
    reported,
    run_inspected,
    run_parked,
    run_with_a_missing_mountpoint,
)

PAGE = os.sysconf("SC_PAGE_SIZE")
BVISOR = str(Path(sys.executable).parent / "bvisor")
NO_SPACE = "No space left on device"


def tmpfs_bytes(limit: int) -> int:
    """The size a tmpfs mounted with ``size=limit`` has: the limit rounded up to whole pages."""
    return -(-limit // PAGE) * PAGE


def size_option(limit: int) -> str:
    """How mountinfo shows that size (the kernel prints it in KiB)."""
    return f"size={tmpfs_bytes(limit) // 1024}k"


@functools.cache
def lines_between(stdout: bytes, begin: str, end: str):
    """The lines the workload printed between two delimiter lines, or None if it never did."""
    text = stdout.decode(errors="replace")
    _, sep, rest = text.partition(begin + "\n")
    body, sep2, _ = rest.partition(end + "\n")
    return body.splitlines() if sep and sep2 else None


def host_statvfs_bytes(path: str):
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_blocks * st.f_frsize


def check_attested(failures: list, report, path: str, limit: int) -> None:
    check_mount_attested(failures, report, f"temp_root=tmpfs path={path} size={limit} nr_inodes={temp_root_inodes(limit)} verified=statvfs")
    storage = next((w for w in report.body.budget if w.dimension is BudgetDimension.Storage), None)
    if storage is None or storage.limit != limit or "tmpfs_size" not in storage.mechanism:
        failures.append(f"the storage witness must carry the limit {limit} and the tmpfs_size mechanism; got {storage}")


def temp_root_view(path: str, marker: str, foreign: str, content: str):
    """Channel A: what the host reads of a parked workload whose temp root is ``path``;
    ``foreign`` names a file that is not the run's (the host's own, or another run's)."""

    def inspect(pid: int) -> dict:
        inside = f"/proc/{pid}/root{path}"
        return {
            "uid": host_read_uid(pid),
            "mount": host_mount_at(pid, path),
            "host_mount": host_mount_at("self", path),
            "size": host_statvfs_bytes(inside),
            "dev_inside": os.stat(inside).st_dev,
            "dev_host": os.stat(path).st_dev,
            "content_inside": read_text(f"{inside}/{marker}"),
            "on_host": os.path.lexists(f"{path}/{marker}"),
            "foreign_inside": os.path.lexists(f"{inside}/{foreign}"),
            "content": content,
        }

    return inspect


def check_private_tmpfs(failures: list, gated, path: str, marker: str, foreign: str, limit: int) -> None:
    """Both channels of a parked temp-root workload that wrote ``path/marker`` and lists
    ``path``, where the file ``foreign`` is not the run's (the host's own, or another run's)."""
    host = gated.inspected or {}
    if not gated.seen or not host:
        failures.append(f"CHANNEL A: the host never inspected the parked workload; stdout={gated.stdout!r} stderr={gated.stderr!r}")
        return
    mount = host["mount"]
    if mount is None or mount[1] != "tmpfs" or size_option(limit) not in mount[3].split(","):
        failures.append(f"CHANNEL A: /proc/<pid>/mountinfo must show a tmpfs at {path} with {size_option(limit)}; got {mount}")
    if host["host_mount"] is not None and host["host_mount"][1] == "tmpfs" and size_option(limit) in host["host_mount"][3].split(","):
        failures.append(f"CHANNEL A: the host's own {path} shows the workload's tmpfs ({host['host_mount']})")
    if host["dev_host"] == host["dev_inside"]:
        failures.append(f"CHANNEL A: the workload's {path} is the host's filesystem (same st_dev {host['dev_host']})")
    if host["size"] != tmpfs_bytes(limit):
        failures.append(f"CHANNEL A: statvfs of the workload's {path} must be {tmpfs_bytes(limit)} bytes; got {host['size']}")
    if host["content_inside"] != host["content"]:
        failures.append(f"CHANNEL A: the workload's file must be in its own {path}; read {host['content_inside']!r}")
    if host["on_host"]:
        failures.append(f"CHANNEL A: the workload's file is visible in the host's {path}")
    if host["foreign_inside"]:
        failures.append(f"CHANNEL A: {foreign}, not the run's own file, is visible in the workload's {path}")
    listing = lines_between(gated.after_park(), "LS-BEGIN", "LS-END")
    if listing is None:
        failures.append(f"CHANNEL B: the workload never listed {path}; stdout={gated.stdout!r} stderr={gated.stderr!r}")
    else:
        if marker not in listing:
            failures.append(f"CHANNEL B: the workload must see its own file in {path}; it listed {listing}")
        if foreign in listing:
            failures.append(f"CHANNEL B: the workload sees {foreign}, not its own file, in {path}: {listing}")
    if reported(gated.stdout, "CONTENT") != host["content"]:
        failures.append(f"CHANNEL B: the workload must read its file back; stdout={gated.stdout!r}")
    want = f"tmpfs {PAGE} {tmpfs_bytes(limit) // PAGE}"
    if reported(gated.stdout, "STATFS") != want:
        failures.append(f"CHANNEL B: `stat -f {path}` must report {want!r}; got {reported(gated.stdout, 'STATFS')!r}")


# Writes "$1" into $TR/$0, parks, then lists $TR, reads the file back and reports stat -f.
TEMP_ROOT_SCRIPT = (
    'printf %s "$1" > "$TR/$0" && printf "WROTE\\n"; '
    + PARK
    + 'printf "LS-BEGIN\\n"; ls -a "$TR"; printf "LS-END\\n"; '
    'printf "CONTENT %s\\n" "$(cat "$TR/$0")"; '
    'stat -f -c "STATFS %T %S %b" "$TR"'
)


def temp_root_argv(path: str, marker: str, content: str) -> list:
    return ["/bin/sh", "-c", f"TR={path}; " + TEMP_ROOT_SCRIPT, marker, content]


def run_temp_root(identity: str, host_only: str, path: str | None = None, limit: int = MIB):
    """TEMP_ROOT_SCRIPT in a temp root of ``limit`` bytes at ``path`` (None: the default, /tmp),
    where the host keeps its own file ``host_only``: the run, and the failures of the checks
    every private temp root passes (check_private_tmpfs, as the identity, attested, nothing
    left behind)."""
    marker = unique_marker("BVISOR-TR-MARKER")
    content = f"content-{uuid.uuid4().hex}"
    where = path or "/tmp"
    spec = mount_spec(temp_root_argv(where, marker, content), [HostControl.TempRoot(path=path) if path else HostControl.TempRoot()], storage=limit)
    gated = run_parked(identity, spec, marker, temp_root_view(where, marker, host_only, content))
    print(f"TempRoot at {where} of {limit} [{identity}]: host={gated.inspected} stdout={gated.stdout!r} stderr={gated.stderr!r}", file=sys.stderr)
    failures = []
    check_completed(failures, gated.result)
    check_private_tmpfs(failures, gated, where, marker, host_only, limit)
    check_identity(failures, identity, gated.inspected or {})
    check_attested(failures, gated.result, where, limit)
    check_no_leftovers(failures, marker)
    return gated, failures


@pytest.fixture
def host_only_file():
    """A file the host keeps in its own /tmp; no temp root may show it."""
    name = unique_marker("BVISOR-TR-HOSTONLY")
    path = Path("/tmp") / name
    path.write_text("the host's own /tmp\n")
    try:
        yield name
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_temp_root_is_a_private_size_limited_tmpfs_by_both_channels(identity, host_only_file):
    _, failures = run_temp_root(identity, host_only_file)
    assert not failures, f"TempRoot privacy oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_two_concurrent_runs_do_not_see_each_others_temp_roots(identity):
    """Both workloads write their file and park; while BOTH are parked each is read from
    outside, then both are released and list their /tmp."""
    markers = [unique_marker("BVISOR-TR-TWIN-A"), unique_marker("BVISOR-TR-TWIN-B")]
    content = {m: f"content-{uuid.uuid4().hex}" for m in markers}
    both_parked, both_read = threading.Barrier(2, timeout=30), threading.Barrier(2, timeout=30)
    results, errors = {}, []

    def inspect_for(mine: str, other: str):
        """temp_root_view, the other run's file foreign to this one, read while both are parked."""
        view = temp_root_view("/tmp", mine, other, content[mine])

        def inspect(pid: int) -> dict:
            try:
                both_parked.wait()
                seen = view(pid)
                both_read.wait()
                return seen
            except threading.BrokenBarrierError:  # the other workload never parked
                return {}

        return inspect

    def drive(mine: str, other: str) -> None:
        try:
            spec = mount_spec(temp_root_argv("/tmp", mine, content[mine]), [HostControl.TempRoot()])
            results[mine] = run_parked(identity, spec, mine, inspect_for(mine, other), gate=30)
        except BaseException as exc:
            errors.append(exc)
            both_parked.abort()
            both_read.abort()

    threads = [threading.Thread(target=drive, args=(m, o)) for m, o in (markers, markers[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    failures = []
    for mine, other in (markers, markers[::-1]):
        gated = results[mine]
        print(f"twin {mine}: host={gated.inspected} stdout={gated.stdout!r}", file=sys.stderr)
        twin = []
        check_completed(twin, gated.result)
        check_private_tmpfs(twin, gated, "/tmp", mine, other, MIB)
        failures += [f"{mine}: {failure}" for failure in twin]
    views = [results[m].inspected or {} for m in markers]
    if all(views) and views[0]["dev_inside"] == views[1]["dev_inside"]:
        failures.append(f"CHANNEL A: the two runs share one /tmp filesystem (st_dev {views[0]['dev_inside']})")
    for marker in markers:
        check_no_leftovers(failures, marker, f"{marker}: ")
    assert not failures, f"concurrent TempRoot isolation failures [{identity}]: {failures}"


# Fill the temp root past its limit, report the error, park so the host can look, exit with
# the writer's own status.
DD_FILL = (
    '/bin/dd if=/dev/zero of="/tmp/$0" bs=65536 count=32; rc=$?; printf "WRITER-RC %s\\n" "$rc"; '
    + PARK
    + 'printf "SIZE %s\\n" "$(stat -c %s "/tmp/$0")"; exit $rc'
)
PY_FILL = f"""
import os, sys
name, data, rc = "/tmp/" + sys.argv[1], b"\\0" * (2 << 20), 0
fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
try:
    while data:
        data = data[os.write(fd, data):]
except OSError as exc:
    print("ERROR errno=%d %s" % (exc.errno, exc.strerror), file=sys.stderr)
    rc = 1
os.close(fd)
print("WRITER-RC", rc)
print("{PARKED}", flush=True)
sys.stdin.readline()
print("SIZE", os.stat(name).st_size, flush=True)
sys.exit(rc)
"""
FILLERS = {"dd": lambda marker: ["/bin/sh", "-c", DD_FILL, marker], "python": lambda marker: [sys.executable, "-c", PY_FILL, marker]}


def fill_view(marker: str):
    def inspect(pid: int) -> dict:
        inside = f"/proc/{pid}/root/tmp"
        try:
            st = os.statvfs(inside)
            free = st.f_bfree * st.f_frsize
        except OSError:
            free = None
        try:
            size = os.stat(f"{inside}/{marker}").st_size
        except OSError:
            size = None
        return {"uid": host_read_uid(pid), "free": free, "size": size, "on_host": os.path.lexists(f"/tmp/{marker}")}

    return inspect


@pytest.mark.parametrize("writer", sorted(FILLERS))
@pytest.mark.parametrize("identity", IDENTITIES)
def test_writes_beyond_the_storage_limit_fail_with_enospc(identity, writer):
    marker = unique_marker(f"BVISOR-TR-FILL-{writer}")
    spec = mount_spec(FILLERS[writer](marker), [HostControl.TempRoot()])
    gated = run_parked(identity, spec, marker, fill_view(marker))
    body, host = gated.result.body, gated.inspected or {}
    print(f"TempRoot fill [{identity}/{writer}]: host={host} stdout={gated.stdout!r} stderr={gated.stderr!r}", file=sys.stderr)
    failures = []
    if not host:
        failures.append(f"CHANNEL A: the host never inspected the parked workload; stdout={gated.stdout!r} stderr={gated.stderr!r}")
    else:
        if host["size"] is None or not 0 < host["size"] <= MIB:
            failures.append(f"CHANNEL A: the partly written file must hold at most the {MIB}-byte limit; st_size={host['size']}")
        if host["free"] != 0:
            failures.append(f"CHANNEL A: the workload's tmpfs must be full after ENOSPC; free bytes={host['free']}")
        if host["on_host"]:
            failures.append("CHANNEL A: the fill file is visible in the host's /tmp")
        check_identity(failures, identity, host)
    if NO_SPACE not in gated.stderr.decode(errors="replace"):
        failures.append(f"CHANNEL B: the writer must report {NO_SPACE!r}; stderr={gated.stderr!r}")
    if reported(gated.stdout, "WRITER-RC") in (None, "0"):
        failures.append(f"CHANNEL B: the writer must fail; stdout={gated.stdout!r}")
    size = reported(gated.stdout, "SIZE")
    if size is None or not 0 < int(size) <= MIB:
        failures.append(f"CHANNEL B: the workload must see at most {MIB} bytes written; reported {size!r}")
    if body.outcome != Outcome.Failed or body.exit is None or body.exit.code != 1:
        failures.append(f"the report must carry the workload's failing exit (Failed, code 1); got {body.outcome} {body.exit}")
    check_attested(failures, gated.result, "/tmp", MIB)
    check_no_leftovers(failures, marker)
    assert not failures, f"TempRoot storage-limit oracle failures [{identity}/{writer}]: {failures}"


@pytest.mark.parametrize("limit", [MIB, 1_000_000, 12_345, 3 * PAGE])
@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_tmpfs_size_is_the_storage_limit_rounded_up_to_pages(identity, limit, host_only_file):
    _, failures = run_temp_root(identity, host_only_file, limit=limit)
    assert not failures, f"TempRoot size oracle failures [{identity}/{limit}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_temp_root_at_a_declared_path_hides_the_host_directory_and_leaves_it_unchanged(identity, host_dir):
    root = host_dir("bvisor-tr-path-")
    host_only = "host-only.txt"
    Path(root, host_only).write_text("the host's own directory\n")
    _, failures = run_temp_root(identity, host_only, path=root)
    if sorted(os.listdir(root)) != [host_only]:
        failures.append(f"after the run the host directory must hold only its own file; it holds {sorted(os.listdir(root))}")
    assert not failures, f"declared-path TempRoot failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_missing_temp_root_path_ends_the_run_before_the_workload_runs(identity):
    marker = unique_marker("BVISOR-TR-MISSING")
    missing = f"/bvisor-missing-temp-root-{uuid.uuid4().hex}"
    argv = ["/bin/sh", "-c", PARK + 'printf ran > "/tmp/$0"', marker]
    _, failures = run_with_a_missing_mountpoint(identity, argv, [HostControl.TempRoot(path=missing)], marker, missing, missing)
    check_no_leftovers(failures, marker)
    assert not failures, f"missing temp-root path failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_under_landlock_the_temp_root_is_writable_and_a_root_beneath_it_stays_the_hosts(identity, host_dir):
    """Filesystem(read-write, [host dir under /tmp]) + TempRoot: the temp root gets full access
    though it is no declared root, the declared root is attached over the tmpfs (writes reach
    the host), and a path that is neither does not exist in the run."""
    root = host_dir("bvisor-tr-fsroot-", 0o777)
    outside = host_dir("bvisor-tr-outside-", 0o777, "/var/tmp")
    marker = unique_marker("BVISOR-TR-LANDLOCK")
    script = (
        'printf root > "$R/$0-root"; echo "ROOT-RC $?"; '
        'printf scratch > "/tmp/$0-scratch"; echo "SCRATCH-RC $?"; '
        'printf outside > "$O/$0-outside"; echo "OUTSIDE-RC $?"; '
        + PARK
        + 'echo "SCRATCH $(cat "/tmp/$0-scratch")"'
    )
    argv = ["/bin/sh", "-c", f"R={root}; O={outside}; " + script, marker]
    caps = [Capability.Filesystem(access=FsAccess.ReadWrite, roots=[root])]

    def inspect(pid: int) -> dict:
        return {
            "uid": host_read_uid(pid),
            "root_on_host": read_text(f"{root}/{marker}-root"),
            "scratch_inside": read_text(f"/proc/{pid}/root/tmp/{marker}-scratch"),
            "scratch_on_host": os.path.lexists(f"/tmp/{marker}-scratch"),
            "outside_on_host": os.path.lexists(f"{outside}/{marker}-outside"),
            "tmp_mount": host_mount_at(pid, "/tmp"),
        }

    spec = mount_spec(argv, [HostControl.TempRoot()], caps)
    gated, host, failures = run_inspected("TempRoot+landlock", identity, spec, marker, inspect)
    if host:
        if host["root_on_host"] != "root":
            failures.append(f"CHANNEL A: a write into the declared root beneath /tmp must reach the host; read {host['root_on_host']!r}")
        if host["scratch_inside"] != "scratch" or host["scratch_on_host"]:
            failures.append(f"CHANNEL A: the scratch file must be in the private tmpfs only; {host}")
        if host["outside_on_host"]:
            failures.append("CHANNEL A: landlock let the workload write outside its roots and temp root")
        if host["tmp_mount"] is None or host["tmp_mount"][1] != "tmpfs":
            failures.append(f"CHANNEL A: /tmp must be the private tmpfs; got {host['tmp_mount']}")
    for key, want in (("ROOT-RC", "0"), ("SCRATCH-RC", "0")):
        if reported(gated.stdout, key) != want:
            failures.append(f"CHANNEL B: {key} must be {want}; stdout={gated.stdout!r} stderr={gated.stderr!r}")
    if reported(gated.stdout, "OUTSIDE-RC") in (None, "0") or "nonexistent" not in gated.stderr.decode(errors="replace"):
        failures.append(f"CHANNEL B: the write outside must fail: its directory does not exist in the run; stdout={gated.stdout!r} stderr={gated.stderr!r}")
    if reported(gated.stdout, "SCRATCH") != "scratch":
        failures.append(f"CHANNEL B: the workload must read its scratch file back; stdout={gated.stdout!r}")
    if not facts_of(gated.result, "landlock_installed"):
        failures.append(f"the report must record landlock_installed; facts={gated.result.body.observed}")
    # The temp root's rule is a grant like any other: the plan and the report list it.
    tmpfs_grant = "read-write /tmp (private tmpfs)"
    plan_grants = [g for item in gated.result.body.admitted if item.kind is RequirementKind.TempRoot for g in item.grants]
    if plan_grants != [tmpfs_grant]:
        failures.append(f"the admitted TempRoot must grant {tmpfs_grant!r}; got {plan_grants}")
    confined = facts_of(gated.result, "filesystem_confined")
    if not confined or tmpfs_grant not in confined[0].partition("granted: ")[2].split("; "):
        failures.append(f"filesystem_confined must list {tmpfs_grant!r}; got {confined}")
    check_no_leftovers(failures, f"{marker}-scratch")
    assert not failures, f"TempRoot under landlock failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_host_without_unprivileged_mount_namespaces_refuses_temp_root_at_plan(identity):
    marker = unique_marker("BVISOR-TR-NOMNTNS")
    spec = mount_spec(["/bin/sh", "-c", 'printf ran > "/tmp/$0"', marker], [HostControl.TempRoot()])
    failures = []
    check_refused_without_mount_namespaces(failures, identity, spec, RequirementKind.TempRoot)
    if host_paths_named(marker) or scan_proc_cmdline(marker) is not None:
        failures.append("a refused spec's workload ran")
    assert not failures, f"TempRoot refusal failures [{identity}]: {failures}"


# The workload is root in its user namespace: it tries to lift its own cap (a remount with a
# bigger size) and to uncover the host's /tmp (a lazy unmount), then writes its marker and
# 2 MiB. Neither attempt may succeed: the file must stay private and the 2 MiB must not fit.
ESCAPE_SCRIPT = (
    "/bin/mount -o remount,size=64m /tmp; echo \"REMOUNT-RC $?\"; "
    "/bin/umount -l /tmp; echo \"UMOUNT-RC $?\"; "
    'printf escaped > "/tmp/$0"; '
    '/bin/dd if=/dev/zero of="/tmp/$0-fill" bs=65536 count=32; echo "DD-RC $?"; '
    + PARK
    + "true"
)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_workload_cannot_lift_its_storage_cap_or_uncover_the_hosts_tmp(identity):
    marker = unique_marker("BVISOR-TR-ESCAPE")
    spec = mount_spec(["/bin/sh", "-c", ESCAPE_SCRIPT, marker], [HostControl.TempRoot()])

    def inspect(pid: int) -> dict:
        return {
            "mount": host_mount_at(pid, "/tmp"),
            "size": host_statvfs_bytes(f"/proc/{pid}/root/tmp"),
            "on_host": sorted(host_paths_named(marker)),
        }

    try:
        gated, host, failures = run_inspected("TempRoot escape", identity, spec, marker, inspect)
        if host:
            if host["on_host"]:
                failures.append(f"CHANNEL A: the workload's writes reached the host's /tmp: {host['on_host']}")
            if host["mount"] is None or host["mount"][1] != "tmpfs" or size_option(MIB) not in host["mount"][3].split(","):
                failures.append(f"CHANNEL A: the workload's /tmp must still be the {size_option(MIB)} tmpfs; got {host['mount']}")
            if host["size"] != MIB:
                failures.append(f"CHANNEL A: the workload's /tmp must still be {MIB} bytes; statvfs says {host['size']}")
        if reported(gated.stdout, "REMOUNT-RC") in (None, "0"):
            failures.append(f"CHANNEL B: the workload remounted its temp root with another size; stdout={gated.stdout!r}")
        if reported(gated.stdout, "UMOUNT-RC") in (None, "0"):
            failures.append(f"CHANNEL B: the workload unmounted its temp root; stdout={gated.stdout!r}")
        if reported(gated.stdout, "DD-RC") in (None, "0") or NO_SPACE not in gated.stderr.decode(errors="replace"):
            failures.append(f"CHANNEL B: 2 MiB must not fit under a {MIB}-byte storage cap; stdout={gated.stdout!r} stderr={gated.stderr!r}")
    finally:
        for path in host_paths_named(marker):  # what an escape left in the host's /tmp
            os.unlink(path)
    assert not failures, f"TempRoot escape failures [{identity}]: {failures}"


# --- Controls: the same workloads on the same backend without TempRoot -----------------------


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_temp_root_the_workload_writes_into_the_hosts_tmp(identity):
    marker = unique_marker("BVISOR-TR-CONTROL")
    content = f"content-{uuid.uuid4().hex}"
    spec = mount_spec(temp_root_argv("/tmp", marker, content))

    def inspect(pid: int) -> dict:
        return {
            "on_host": read_text(f"/tmp/{marker}"),
            "dev_inside": os.stat(f"/proc/{pid}/root/tmp").st_dev,
            "dev_host": os.stat("/tmp").st_dev,
            "mount": host_mount_at(pid, "/tmp"),
        }

    try:
        gated = run_parked(identity, spec, marker, inspect)
        host = gated.inspected or {}
        print(f"TempRoot control [{identity}]: host={host} stdout={gated.stdout!r}", file=sys.stderr)
        failures = []
        if gated.result.body.outcome != Outcome.Completed:
            failures.append(f"the control must run to Completed; got {gated.result.body.outcome} facts={gated.result.body.observed}")
        if host.get("on_host") != content:
            failures.append(f"CONTROL CHANNEL A: without TempRoot the host must see the file in its /tmp; read {host.get('on_host')!r}")
        if host and host["dev_inside"] != host["dev_host"]:
            failures.append(f"CONTROL CHANNEL A: without TempRoot the workload's /tmp must be the host's; {host}")
        if host.get("mount") is not None and size_option(MIB) in host["mount"][3]:
            failures.append(f"CONTROL CHANNEL A: without TempRoot there must be no bvisor tmpfs at /tmp; {host['mount']}")
        listing = lines_between(gated.after_park(), "LS-BEGIN", "LS-END")
        if listing is None or marker not in listing:
            failures.append(f"CONTROL CHANNEL B: the workload must list its file in the host's /tmp; listed {listing}")
        if reported(gated.stdout, "STATFS") == f"tmpfs {PAGE} {MIB // PAGE}":
            failures.append("CONTROL CHANNEL B: without TempRoot the workload must not see a 1 MiB tmpfs")
    finally:
        for path in host_paths_named(marker):
            os.unlink(path)
    assert not failures, f"TempRoot control failures (the oracle would be vacuous) [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_temp_root_the_same_2mib_write_succeeds(identity):
    marker = unique_marker("BVISOR-TR-FILL-CONTROL")
    spec = mount_spec(FILLERS["dd"](marker))
    try:
        gated = run_parked(identity, spec, marker, lambda pid: {"size": os.stat(f"/tmp/{marker}").st_size})
        failures = []
        if (gated.inspected or {}).get("size") != 2 * MIB:
            failures.append(f"CONTROL CHANNEL A: the host must see 2 MiB in its /tmp; got {gated.inspected}")
        if reported(gated.stdout, "WRITER-RC") != "0" or NO_SPACE in gated.stderr.decode(errors="replace"):
            failures.append(f"CONTROL CHANNEL B: the write must succeed; stdout={gated.stdout!r} stderr={gated.stderr!r}")
        if gated.result.body.outcome != Outcome.Completed:
            failures.append(f"the control must run to Completed; got {gated.result.body.outcome}")
    finally:
        for path in host_paths_named(marker):
            os.unlink(path)
    assert not failures, f"TempRoot size control failures (the oracle would be vacuous) [{identity}]: {failures}"


# --- The CLI ----------------------------------------------------------------------------------


def find_cli_workload(marker: str):
    """The workload's pid: argv[0] is a shell and the marker is an argument (the bvisor CLI's
    own argv carries the marker too, so scan_proc_cmdline alone could find the CLI)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"sh" and marker.encode() in argv[1:]:
            return int(name)
    return None


def cli_gated(identity: str, flags: list, script: str, marker: str, inspect):
    """Run ``bvisor run FLAGS -- sh -c SCRIPT MARKER`` whose stdin the host holds; once the
    workload printed PARKED, inspect it, then close stdin to release it."""
    gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
    try:
        proc = subprocess.Popen(
            [*cli_prefix(identity), BVISOR, "run", "--quiet", *flags, "--", "sh", "-c", script, marker],
            stdin=gate_r,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
        )
    except BaseException:
        os.close(gate_w)
        raise
    finally:
        os.close(gate_r)
    watchdog = threading.Timer(120, proc.kill)  # a liveness bound, never a synchronisation
    watchdog.start()
    try:
        head, inspected = b"", None
        while True:
            line = proc.stdout.readline()
            head += line
            if not line or line == PARKED.encode() + b"\n":
                break
        if line:
            pid = find_cli_workload(marker)
            inspected = inspect(pid) if pid is not None else None
        os.close(gate_w)
        gate_w = None
        rest, err = proc.communicate()
    finally:
        if gate_w is not None:
            os.close(gate_w)
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, head, rest, err, inspected


CLI_SCRIPT = (
    'printf %s "$0" > "/tmp/$0"; '
    + PARK
    + 'stat -f -c "STATFS %T %S %b" /tmp; ls /tmp; '
    '/bin/dd if=/dev/zero of=/tmp/fill bs=65536 count=32 2>/dev/null; echo "DD-RC $?"'
)


# --storage is an Enforced cap, admitted only where the temp root is the only writable place:
# --ro / confines every other write (tests/oracle/test_storage.py has the refusals).
@pytest.mark.parametrize(("flags", "limit"), [(["--ro", "/", "--tmp", "--storage", "1M"], MIB), (["--tmp"], 64 * MIB)], ids=["storage-1M", "default-64M"])
@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_tmp_gives_a_private_tmpfs_sized_by_storage(identity, flags, limit):
    marker = unique_marker("BVISOR-TR-CLI")

    def inspect(pid: int) -> dict:
        return {
            "uid": host_read_uid(pid),
            "mount": host_mount_at(pid, "/tmp"),
            "size": host_statvfs_bytes(f"/proc/{pid}/root/tmp"),
            "inside": read_text(f"/proc/{pid}/root/tmp/{marker}"),
            "on_host": os.path.lexists(f"/tmp/{marker}"),
        }

    code, head, rest, err, host = cli_gated(identity, flags, CLI_SCRIPT, marker, inspect)
    print(f"CLI {flags} [{identity}]: code={code} host={host} out={head + rest!r} err={err!r}", file=sys.stderr)
    failures = []
    if b"Traceback" in err:
        failures.append(f"the CLI printed a traceback: {err!r}")
    if host is None:
        failures.append(f"CHANNEL A: the host never inspected the parked CLI workload; out={head!r} err={err!r}")
    else:
        if host["mount"] is None or host["mount"][1] != "tmpfs" or size_option(limit) not in host["mount"][3].split(","):
            failures.append(f"CHANNEL A: the workload's /tmp must be a tmpfs with {size_option(limit)}; got {host['mount']}")
        if host["size"] != limit:
            failures.append(f"CHANNEL A: statvfs of the workload's /tmp must be {limit}; got {host['size']}")
        if host["inside"] != marker or host["on_host"]:
            failures.append(f"CHANNEL A: the file must be in the private /tmp only; {host}")
        check_identity(failures, identity, host)
    if reported(rest, "STATFS") != f"tmpfs {PAGE} {limit // PAGE}":
        failures.append(f"CHANNEL B: `stat -f /tmp` must report a {limit}-byte tmpfs; out={rest!r}")
    if marker.encode() not in rest:
        failures.append(f"CHANNEL B: the workload must list its file; out={rest!r}")
    # 2 MiB fit in 64 MiB but not in 1 MiB; the workload's exit is the CLI's.
    want_rc = "1" if limit < 2 * MIB else "0"
    if reported(rest, "DD-RC") != want_rc:
        failures.append(f"CHANNEL B: a 2 MiB write into a {limit}-byte /tmp must exit {want_rc}; out={rest!r}")
    if code != 0:
        failures.append(f"the CLI must exit with the workload's status 0; got {code} err={err!r}")
    check_no_leftovers(failures, marker)
    assert not failures, f"CLI --tmp failures [{identity} {flags}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_cli_a_write_beyond_storage_fails_enospc_and_the_exit_passes_through(identity):
    marker = unique_marker("BVISOR-TR-CLI-FILL")
    script = '/bin/dd if=/dev/zero of="/tmp/$0" bs=65536 count=32'

    def write_2mib(storage: str):
        return subprocess.run(
            [*cli_prefix(identity), BVISOR, "run", "--quiet", "--ro", "/", "--tmp", "--storage", storage, "--", "sh", "-c", script, marker],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            cwd="/",
            timeout=120,
        )

    done, control = write_2mib("1M"), write_2mib("4M")
    failures = []
    if done.returncode != 1 or NO_SPACE.encode() not in done.stderr:
        failures.append(f"--storage 1M: dd must fail with {NO_SPACE!r} and its exit 1 pass through; got {done.returncode} {done.stderr!r}")
    if control.returncode != 0 or NO_SPACE.encode() in control.stderr:
        failures.append(f"CONTROL --storage 4M: the same 2 MiB write must succeed; got {control.returncode} {control.stderr!r}")
    check_no_leftovers(failures, marker)
    assert not failures, f"CLI storage-limit failures [{identity}]: {failures}"
