"""ExposePath — a host path bound at a declared dest inside the boundary, read-only or
read-write as declared, in the run's private mount namespace.

Sources are fresh host directories under /tmp that uid 65534 can traverse and write
(0777/0666), so a denied write is the mount's doing (EROFS), never a permission bit. Dests
are either existing host directories (left empty by the host) or paths inside the temp root,
which the launcher creates in the private tmpfs. Channel A (host): while the workload is
parked, the host reads its mount namespace from outside — ``/proc/<pid>/mountinfo`` must show
the dest with ``ro``/``rw`` as declared, and the dest seen through ``/proc/<pid>/root`` must be
the source (same device and inode) — and reads the source on disk: unchanged after a denied
write, holding the new file after an allowed one; the host's own dest stays empty.
Channel B (workload): released, it reads the exposed file, tries to write, and reports every
result through its captured stdout. Every positive test runs with the launcher as the caller
and as uid 65534. A dest that does not exist (outside any temp root) ends the run before the
workload with ``mountpoint_missing``; with a Filesystem capability the dest gets its declared
access in landlock while the source path itself stays denied; the workload (root in its user
namespace) cannot remount a read-only bind read-write; a host without unprivileged
mount namespaces refuses ExposePath at plan. The control runs the same workload without
ExposePath: the dest shows nothing of the source, so the oracle is not vacuous.
"""

import functools
import os
import sys
import uuid
from pathlib import Path

import pytest

from bvisor import Capability, HostControl
from bvisor.contract import FsAccess, RequirementKind
from helpers import (
    IDENTITIES,
    PARK,
    check_completed,
    facts_of,
    host_mount_at,
    host_read_uid,
    planned,
    read_text,
    scan_proc_cmdline,
    unique_marker,
)
from mount_oracles import (
    check_identity,
    check_mount_attested,
    check_no_leftovers,
    check_refused_without_mount_namespaces,
    linux_backend,
    mount_spec,
    reported,
    run_inspected,
    run_parked,
    run_with_a_missing_mountpoint,
)

READ_ONLY_FS = "Read-only file system"
FILE = "exposed.txt"


@functools.cache
def expose(source: str, dest: str, access: FsAccess) -> HostControl.ExposePath:
    return HostControl.ExposePath(source=source, dest=dest, access=access)


def dev_ino(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Source:
    """A host directory (anyone may write it) holding one file with unique content."""

    def __init__(self, directory: str):
        self.dir = directory
        self.content = f"exposed-{uuid.uuid4().hex}"
        self.file = os.path.join(self.dir, FILE)
        Path(self.file).write_text(self.content)
        os.chmod(self.file, 0o666)

    def listing(self) -> list:
        return sorted(os.listdir(self.dir))

    def check_unchanged(self, failures: list, when: str = "after the run") -> None:
        """On disk: its one file, with its own content, and nothing beside it."""
        if read_text(self.file) != self.content or self.listing() != [FILE]:
            failures.append(f"{when} the source must be unchanged; content={read_text(self.file)!r} listing={self.listing()}")


@pytest.fixture
def source(host_dir):
    return Source(host_dir("bvisor-expose-src-", 0o777))


@pytest.fixture
def host_dest(host_dir):
    """An existing, empty host directory to bind over; it must stay empty."""
    return host_dir("bvisor-expose-dest-")


def check_bind_attested(failures: list, report, dest: str, writable: bool) -> None:
    check_mount_attested(failures, report, f"bind dest={dest} writable={str(writable).lower()} verified=dev_ino")


def bind_view(src: Source, dest: str):
    """Channel A: what the host reads of a parked workload with ``src`` bound at ``dest``."""

    def inspect(pid: int) -> dict:
        return {
            "uid": host_read_uid(pid),
            "mount": host_mount_at(pid, dest),
            "dest_inside": dev_ino(f"/proc/{pid}/root{dest}"),
            "source": dev_ino(src.dir),
            "host_dest": sorted(os.listdir(dest)) if os.path.isdir(dest) else None,
            "host_dest_exists": os.path.lexists(dest),
            "source_listing": src.listing(),
            "source_content": read_text(src.file),
        }

    return inspect


def check_bind_channel_a(failures: list, host: dict, src: Source, dest: str, writable: bool) -> None:
    if not host:
        failures.append("CHANNEL A: the host never inspected the parked workload")
        return
    mount = host["mount"]
    want = "rw" if writable else "ro"
    if mount is None or want not in mount[2].split(","):
        failures.append(f"CHANNEL A: /proc/<pid>/mountinfo must show a {want} mount at {dest}; got {mount}")
    if host["dest_inside"] is None or host["dest_inside"] != host["source"]:
        failures.append(f"CHANNEL A: the workload's {dest} must be the source (dev, ino) {host['source']}; got {host['dest_inside']}")


# Reads the exposed file, tries to overwrite it and to create a new file, parks, reports.
BIND_SCRIPT = (
    'echo "CONTENT $(cat "$D/exposed.txt")"; '
    'printf overwritten > "$D/exposed.txt"; echo "OVERWRITE-RC $?"; '
    'printf "%s" "$1" > "$D/$0"; echo "CREATE-RC $?"; '
    + PARK
    + 'echo "AFTER $(cat "$D/exposed.txt")"'
)


def bind_argv(dest: str, marker: str, payload: str, first: str = "") -> list:
    """BIND_SCRIPT on ``dest``, after the shell commands ``first``."""
    return ["/bin/sh", "-c", f"D={dest}; " + first + BIND_SCRIPT, marker, payload]


def run_bind(identity: str, marker: str, src: Source, dest: str, access: FsAccess, payload: str = "payload", controls=(), capabilities=(), first: str = ""):
    """``bind_argv`` with ``src`` bound at ``dest``: the run, what the host read of it parked, and
    the failures of the checks every bind passes. It completed as the identity; channel A: the
    dest is the source, mounted ro or rw as declared; channel B: the workload read the source's
    content and its writes succeeded or failed as declared; the report attests the bind."""
    spec = mount_spec(bind_argv(dest, marker, payload, first), [*controls, expose(src.dir, dest, access)], capabilities)
    gated = run_parked(identity, spec, marker, bind_view(src, dest))
    host = gated.inspected or {}
    print(f"ExposePath {access.value} at {dest} [{identity}]: host={host} stdout={gated.stdout!r} stderr={gated.stderr!r}", file=sys.stderr)
    failures = []
    check_completed(failures, gated.result)
    check_bind_channel_a(failures, host, src, dest, writable=access.writes)
    check_identity(failures, identity, host)
    if reported(gated.stdout, "CONTENT") != src.content:
        failures.append(f"CHANNEL B: the workload must read the source's content at {dest}; stdout={gated.stdout!r}")
    for key in ("OVERWRITE-RC", "CREATE-RC"):
        if (reported(gated.stdout, key) == "0") != access.writes or reported(gated.stdout, key) is None:
            failures.append(f"CHANNEL B: {key} must {'succeed' if access.writes else 'fail'}; stdout={gated.stdout!r} stderr={gated.stderr!r}")
    check_bind_attested(failures, gated.result, dest, writable=access.writes)
    return gated, host, failures


# The workload is root in its user namespace: first it tries to remount its bind read-write.
REMOUNT = '/bin/mount -o remount,bind,rw "$D"; echo "REMOUNT-RC $?"; '


@pytest.mark.parametrize("first", ["", REMOUNT], ids=["writes", "remount-then-writes"])
@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_read_only_bind_shows_the_source_and_refuses_writes(identity, first, source, host_dest):
    """The workload reads the source through the bind and tries to overwrite the file and to
    create one, after trying to remount the bind read-write (``first``); the source on the
    host must stay unchanged."""
    gated, host, failures = run_bind(identity, unique_marker("BVISOR-EXPOSE-RO"), source, host_dest, FsAccess.Read, first=first)
    if first and reported(gated.stdout, "REMOUNT-RC") in (None, "0"):
        failures.append(f"CHANNEL B: the workload remounted its read-only bind read-write; stdout={gated.stdout!r}")
    if host:
        if host["source_content"] != source.content or host["source_listing"] != [FILE]:
            failures.append(f"CHANNEL A: the source must be unchanged; content={host['source_content']!r} listing={host['source_listing']}")
        if host["host_dest"] != []:
            failures.append(f"CHANNEL A: the host's own dest must stay empty; it holds {host['host_dest']}")
    if gated.stderr.decode(errors="replace").count(READ_ONLY_FS) != 2:
        failures.append(f"CHANNEL B: both writes must fail with {READ_ONLY_FS!r} (EROFS, not a permission bit); stderr={gated.stderr!r}")
    if reported(gated.stdout, "AFTER") != source.content:
        failures.append(f"CHANNEL B: the file must read unchanged after the attempts; stdout={gated.stdout!r}")
    source.check_unchanged(failures)
    assert not failures, f"read-only ExposePath oracle failures [{identity}{' after a remount' if first else ''}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_read_write_bind_carries_the_workloads_writes_to_the_host(identity, source, host_dest):
    marker = unique_marker("BVISOR-EXPOSE-RW")
    payload = f"written-{uuid.uuid4().hex}"
    gated, host, failures = run_bind(identity, marker, source, host_dest, FsAccess.ReadWrite, payload)
    if host:
        if host["source_content"] != "overwritten":
            failures.append(f"CHANNEL A: the host must see the overwrite in the source file; read {host['source_content']!r}")
        if host["source_listing"] != sorted([FILE, marker]):
            failures.append(f"CHANNEL A: the host must see the new file in the source; listing={host['source_listing']}")
        if host["host_dest"] != []:
            failures.append(f"CHANNEL A: the host's own dest must stay empty; it holds {host['host_dest']}")
    if read_text(os.path.join(source.dir, marker)) != payload:
        failures.append(f"the new file must hold the workload's content on the host; read {read_text(os.path.join(source.dir, marker))!r}")
    if reported(gated.stdout, "AFTER") != "overwritten":
        failures.append(f"CHANNEL B: the workload must read its own overwrite back; stdout={gated.stdout!r}")
    assert not failures, f"read-write ExposePath oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("access", [FsAccess.Read, FsAccess.ReadWrite], ids=["ro", "rw"])
@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_dest_inside_the_temp_root_is_created_privately(identity, access, source):
    """dest /tmp/<marker>/data does not exist anywhere: the launcher creates it in the private
    tmpfs (parents included). The source itself lives under /tmp — located before the tmpfs
    hides it."""
    marker = unique_marker("BVISOR-EXPOSE-INTMP")
    dest = f"/tmp/{marker}/data"
    _gated, host, failures = run_bind(identity, marker, source, dest, access, f"written-{uuid.uuid4().hex}", [HostControl.TempRoot()])
    if host.get("host_dest_exists"):
        failures.append(f"CHANNEL A: the dest {dest} must not appear on the host")
    expected_listing = sorted([FILE, marker]) if access.writes else [FILE]
    if source.listing() != expected_listing:
        failures.append(f"the source must hold {expected_listing} after the run; it holds {source.listing()}")
    check_no_leftovers(failures, marker, written_to=source.dir)
    assert not failures, f"ExposePath inside the temp root failures [{identity}/{access.value}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_single_file_can_be_exposed_read_only_inside_the_temp_root(identity, source):
    marker = unique_marker("BVISOR-EXPOSE-FILE")
    dest = f"/tmp/{marker}.txt"
    script = 'echo "CONTENT $(cat "$0.txt")"; printf x > "$0.txt"; echo "WRITE-RC $?"; ' + PARK + "true"
    argv = ["/bin/sh", "-c", script, f"/tmp/{marker}"]

    def inspect(pid: int) -> dict:
        return {"uid": host_read_uid(pid), "mount": host_mount_at(pid, dest), "inside": dev_ino(f"/proc/{pid}/root{dest}")}

    spec = mount_spec(argv, [HostControl.TempRoot(), expose(source.file, dest, FsAccess.Read)])
    gated = run_parked(identity, spec, marker, inspect)
    host = gated.inspected or {}
    failures = []
    check_completed(failures, gated.result)
    if host.get("mount") is None or "ro" not in host["mount"][2].split(","):
        failures.append(f"CHANNEL A: mountinfo must show a ro bind at {dest}; got {host.get('mount')}")
    if host.get("inside") != dev_ino(source.file):
        failures.append(f"CHANNEL A: the workload's {dest} must be the source file; got {host.get('inside')}")
    check_identity(failures, identity, host)
    if reported(gated.stdout, "CONTENT") != source.content:
        failures.append(f"CHANNEL B: the workload must read the file; stdout={gated.stdout!r}")
    if reported(gated.stdout, "WRITE-RC") in (None, "0") or READ_ONLY_FS not in gated.stderr.decode(errors="replace"):
        failures.append(f"CHANNEL B: the write must fail with {READ_ONLY_FS!r}; stdout={gated.stdout!r} stderr={gated.stderr!r}")
    if read_text(source.file) != source.content:
        failures.append("the source file changed")
    check_no_leftovers(failures, marker)
    check_bind_attested(failures, gated.result, dest, writable=False)
    assert not failures, f"single-file ExposePath failures [{identity}]: {failures}"


@pytest.mark.parametrize("temp_root", [False, True], ids=["no-temp-root", "dest-outside-temp-root"])
@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_missing_dest_outside_any_temp_root_ends_the_run_before_the_workload(identity, temp_root, source):
    marker = unique_marker("BVISOR-EXPOSE-MISSING")
    missing_parent = f"/bvisor-missing-dest-{uuid.uuid4().hex}"
    dest = f"{missing_parent}/data"
    # Were it to run, the workload would leave a file named by the marker in the (writable) source.
    argv = ["/bin/sh", "-c", f'printf ran > "{source.dir}/$0"; ' + PARK + "true", marker]
    controls = ([HostControl.TempRoot()] if temp_root else []) + [expose(source.dir, dest, FsAccess.ReadWrite)]
    _, failures = run_with_a_missing_mountpoint(identity, argv, controls, marker, dest, missing_parent)
    if source.listing() != [FILE]:
        failures.append(f"the marker was written: the workload ran; source holds {source.listing()}")
    assert not failures, f"missing-dest failures [{identity}/{temp_root}]: {failures}"


# Reads and writes through the dest $D, then tries the source's own host path $S and a sibling
# $X beside it, and parks.
GRANT_SCRIPT = (
    'echo "DEST-READ $(cat "$D/exposed.txt")"; '
    'printf via-dest > "$D/$0-via-dest"; echo "DEST-WRITE-RC $?"; '
    'cat "$S/exposed.txt" >/dev/null; echo "SOURCE-READ-RC $?"; '
    'printf via-source > "$S/$0-via-source"; echo "SOURCE-WRITE-RC $?"; '
    'printf escape > "$X/$0-escape"; echo "SIBLING-WRITE-RC $?"; '
    + PARK
    + "true"
)


@pytest.mark.parametrize("temp_root", [False, True], ids=["host-dest", "dest-in-temp-root"])
@pytest.mark.parametrize("identity", IDENTITIES)
def test_with_a_filesystem_capability_the_exposed_object_is_granted_and_nothing_beside_it(identity, temp_root, host_dest, host_dir):
    """Filesystem(read, [an unrelated dir]) + a read-write ExposePath. The run's root is built
    from nothing: the exposed directory is there at its dest, with its declared access (the
    landlock rule rides the object), and the plan and the report say so; its own host path
    and a sibling beside it do not exist in the run, so the grant is exactly the exposed object."""
    src = Source(host_dir("bvisor-expose-src-", 0o777, "/var/tmp"))
    sibling = host_dir("bvisor-expose-sibling-", 0o777, "/var/tmp")
    unrelated = host_dir("bvisor-expose-unrelated-")
    marker = unique_marker("BVISOR-EXPOSE-LANDLOCK")
    dest = f"/tmp/{marker}-data" if temp_root else host_dest
    argv = ["/bin/sh", "-c", f"D={dest}; S={src.dir}; X={sibling}; " + GRANT_SCRIPT, marker]
    caps = [Capability.Filesystem(access=FsAccess.Read, roots=[unrelated])]
    controls = ([HostControl.TempRoot()] if temp_root else []) + [expose(src.dir, dest, FsAccess.ReadWrite)]
    spec = mount_spec(argv, controls, caps)

    def inspect(pid: int) -> dict:
        return {"uid": host_read_uid(pid), "source_listing": src.listing(), "mount": host_mount_at(pid, dest)}

    gated, host, failures = run_inspected(f"ExposePath+landlock {temp_root}", identity, spec, marker, inspect)
    if host:
        if host["source_listing"] != sorted([FILE, f"{marker}-via-dest"]):
            failures.append(f"CHANNEL A: the source must hold the write through the dest and nothing else; listing={host['source_listing']}")
        if host["mount"] is None or "rw" not in host["mount"][2].split(","):
            failures.append(f"CHANNEL A: mountinfo must show a rw bind at {dest}; got {host['mount']}")
    if os.listdir(sibling):
        failures.append(f"CHANNEL A: the sibling beside the source must stay untouched; it holds {os.listdir(sibling)}")
    check_identity(failures, identity, host)
    if reported(gated.stdout, "DEST-READ") != src.content:
        failures.append(f"CHANNEL B: the workload must read the source's content through the dest; stdout={gated.stdout!r}")
    if reported(gated.stdout, "DEST-WRITE-RC") != "0":
        failures.append(f"CHANNEL B: DEST-WRITE-RC: the exposed object is granted read-write; stdout={gated.stdout!r} stderr={gated.stderr!r}")
    errors = gated.stderr.decode(errors="replace")
    for key in ("SOURCE-READ-RC", "SOURCE-WRITE-RC", "SIBLING-WRITE-RC"):
        if reported(gated.stdout, key) in (None, "0"):
            failures.append(f"CHANNEL B: {key}: the source's host path and its sibling do not exist in the run; stdout={gated.stdout!r}")
    if errors.count("No such file") + errors.count("nonexistent") < 3:
        failures.append(f"CHANNEL B: each path outside the grants must fail as nonexistent; stderr={errors!r}")
    if not facts_of(gated.result, "landlock_installed"):
        failures.append(f"the report must record landlock_installed; facts={gated.result.body.observed}")
    if not any(n.startswith(f"landlock_rule mount path={dest} ") and "write_file" in n for n in facts_of(gated.result, "launcher_note")):
        failures.append(f"the launcher must attest a writable landlock rule on {dest}; notes={facts_of(gated.result, 'launcher_note')}")
    granted = f"read-write {src.dir} (exposed at {dest})"
    if not any(granted in f for f in facts_of(gated.result, "filesystem_confined")):
        failures.append(f"the report's filesystem_confined must list {granted!r}")
    plan, _ = planned(linux_backend(identity), spec)
    if not any(granted in g for a in plan.admitted for g in a.grants):
        failures.append(f"the plan must list {granted!r} among its grants; admitted={plan.admitted}")
    check_bind_attested(failures, gated.result, dest, writable=True)
    if temp_root and os.path.lexists(dest):
        failures.append(f"the private dest {dest} appeared on the host")
    assert not failures, f"ExposePath under landlock failures [{identity}/{temp_root}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_with_a_filesystem_capability_a_read_only_dest_stays_read_only_in_landlock(identity, source, host_dest, host_dir):
    """The dest's landlock rule carries the declared access: read, not write."""
    caps = [Capability.Filesystem(access=FsAccess.ReadWrite, roots=[host_dir("bvisor-expose-unrelated-", 0o777)])]
    gated, _, failures = run_bind(identity, unique_marker("BVISOR-EXPOSE-LANDLOCK-RO"), source, host_dest, FsAccess.Read, capabilities=caps)
    source.check_unchanged(failures)
    notes = facts_of(gated.result, "launcher_note")
    rule = next((n for n in notes if n.startswith(f"landlock_rule mount path={host_dest} ")), None)
    if rule is None or "read_file" not in rule or "write_file" in rule:
        failures.append(f"the landlock rule on {host_dest} must grant read and not write; got {rule!r}")
    assert not failures, f"read-only ExposePath under landlock failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_host_without_unprivileged_mount_namespaces_refuses_expose_path_at_plan(identity, source, host_dest):
    marker = unique_marker("BVISOR-EXPOSE-NOMNTNS")
    argv = ["/bin/sh", "-c", f'printf ran > "{source.dir}/$0"', marker]
    spec = mount_spec(argv, [expose(source.dir, host_dest, FsAccess.ReadWrite)])
    failures = []
    check_refused_without_mount_namespaces(failures, identity, spec, RequirementKind.ExposePath)
    if source.listing() != [FILE] or scan_proc_cmdline(marker) is not None:
        failures.append(f"a refused spec's workload ran; source holds {source.listing()}")
    assert not failures, f"ExposePath refusal failures [{identity}]: {failures}"


# --- Control: the same workload without ExposePath ---------------------------------------------


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_expose_path_the_dest_shows_nothing_of_the_source(identity, source, host_dest):
    marker = unique_marker("BVISOR-EXPOSE-CONTROL")

    def inspect(pid: int) -> dict:
        return {"dest_inside": dev_ino(f"/proc/{pid}/root{host_dest}"), "mount": host_mount_at(pid, host_dest)}

    gated = run_parked(identity, mount_spec(bind_argv(host_dest, marker, "payload")), marker, inspect)
    host = gated.inspected or {}
    print(f"ExposePath control [{identity}]: host={host} stdout={gated.stdout!r} stderr={gated.stderr!r}", file=sys.stderr)
    failures = []
    if not host:
        failures.append("CONTROL CHANNEL A: the host never inspected the parked workload")
    else:
        if host["dest_inside"] != dev_ino(host_dest) or host["dest_inside"] == dev_ino(source.dir):
            failures.append(f"CONTROL CHANNEL A: without ExposePath the workload's {host_dest} must be the host's own; {host}")
        if host["mount"] is not None:
            failures.append(f"CONTROL CHANNEL A: without ExposePath nothing is mounted at {host_dest}; {host['mount']}")
    if reported(gated.stdout, "CONTENT") == source.content or source.content.encode() in gated.stdout:
        failures.append(f"CONTROL CHANNEL B: without ExposePath the dest must not show the source; stdout={gated.stdout!r}")
    source.check_unchanged(failures, "CONTROL: without ExposePath")
    assert not failures, f"ExposePath control failures (the oracle would be vacuous) [{identity}]: {failures}"
