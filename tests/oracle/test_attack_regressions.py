"""What a fresh-eyes attack on the constructed world found, each kept as an oracle with its
control (issue 12's review before resolving).

1. ``--report`` inside a ``--rw`` root: the workload plants a symlink at the report's name
   (and the temp names beside it) to a host file; host root then wrote through it. Now the
   host file is untouched (host) and the report is a regular file (host); control: a naive
   writer following the same name writes into the host file.
2. The evidence home reached through a writable root declared by a symlinked path: the run
   is refused, naming the evidence (exit 125, nothing runs); read-only, the home is masked
   by its real path and the key does not exist in the run (workload). Control: without
   bvisor the key is readable by that path.
3. A read-only root inside a writable root: refused (the run could rename its parents).
4. /proc/self/exe and a file as stdin: chmod and utime of the host's files through them
   fail (workload: EROFS / no such fd as a file; host: mode and times unchanged). Control:
   the same program without bvisor changes both.
5. The same two refusals and the mask reached through a bind mount of the evidence home (or
   of a read-only root) at a second path, which a comparison of path strings does not see:
   writable, refused; read-only, the key does not exist in the run at the alias either;
   exposed at another path, masked there too. Control: the alias reaches the key.
Root and rootless (the whole bvisor as uid 65534) where it applies; the aliases are bind
mounts the test makes as root on the host.
"""

import json
import os
import shutil
import stat
import subprocess
import sys

import msgspec
import pytest

from bvisor import Capability, HostControl
from bvisor.contract import FsAccess
from helpers import (
    IDENTITIES,
    PARK,
    UNPRIVILEGED_PREFIX,
    check_completed,
    cli_prefix,
    identity_uid,
    loud_skip,
    unique_marker,
)
from mount_oracles import mount_spec, run_parked
from oracle_specs import exact_environment

BVISOR = os.path.join(os.path.dirname(sys.executable), "bvisor")
PYTHON = os.path.realpath(sys.executable)
PYTHON_PREFIX = os.path.realpath(sys.base_prefix)


def bvisor_run(identity: str, *args, stdin=subprocess.DEVNULL, home=None, store=False):
    """``bvisor run --no-store ARGS`` as the identity (``store``: kept in the store);
    ``home``: its BVISOR_HOME."""
    prefix = list(cli_prefix(identity)) if home is None else _with_home(identity, home)
    return subprocess.run(
        [*prefix, BVISOR, "run", "--quiet", *(() if store else ("--no-store",)), *args],
        capture_output=True,
        stdin=stdin,
        timeout=120,
        cwd="/",
    )


def _with_home(identity: str, home: str) -> list:
    """The prefix that runs a command as the identity with ``home`` as its BVISOR_HOME."""
    return [*(UNPRIVILEGED_PREFIX if identity_uid(identity) != os.geteuid() else ()), "/usr/bin/env", f"BVISOR_HOME={home}"]


@pytest.fixture
def place(host_dir):
    return host_dir("bvisor-attack-", 0o777, "/var/tmp")


def _victim(place: str) -> str:
    victim = os.path.join(place, "victim")
    with open(victim, "w") as f:
        f.write("untouched\n")
    os.chmod(victim, 0o666)
    return victim


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_report_inside_a_writable_root_cannot_be_redirected(identity, place):
    rw = os.path.join(place, "rw")
    os.mkdir(rw)
    os.chmod(rw, 0o777)
    victim = _victim(place)
    report = os.path.join(rw, "report.json")
    plant = f"ln -s {victim} {report}; for p in $(seq 1 300); do ln -s {victim} {rw}/.report.json.$p.tmp; done; echo planted"
    done = bvisor_run(identity, "--rw", rw, "--report", report, "--", "/bin/sh", "-c", plant)
    print(f"report redirect [{identity}]: rc={done.returncode} out={done.stdout!r} err={done.stderr!r}", file=sys.stderr)
    assert done.stdout == b"planted\n", done.stderr  # channel B: the attack ran
    with open(victim) as f:
        assert f.read() == "untouched\n", "CHANNEL A: the host file behind the planted symlink was written"
    assert stat.S_ISREG(os.lstat(report).st_mode), "CHANNEL A: the report must be a regular file, not the planted link"
    with open(report) as f:
        assert json.load(f)["outcome"] == "completed"


def test_control_a_writer_following_the_reports_name_writes_through_the_link(place):
    victim = _victim(place)
    os.symlink(victim, os.path.join(place, "report.json"))
    with open(os.path.join(place, "report.json"), "w") as f:  # what a plain open() does
        f.write("redirected\n")
    with open(victim) as f:
        assert f.read() == "redirected\n"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_evidence_home_behind_a_symlink_is_refused_writable_and_masked_read_only(identity, place):
    real = os.path.join(place, "realhome")
    os.mkdir(real, 0o777)
    link = os.path.join(place, "homelink")
    os.symlink(real, link)
    home = os.path.join(real, "evidence")
    os.mkdir(home, 0o777)
    key = os.path.join(home, "signing-key.pem")
    with open(key, "w") as f:
        f.write("PRIVATE\n")
    os.chmod(key, 0o644)
    home = os.path.join(link, "evidence")
    writable = bvisor_run(identity, "--rw", link, "--", "/bin/cat", os.path.join(home, "signing-key.pem"), home=home)
    read_only = bvisor_run(identity, "--ro", link, "--", "/bin/cat", os.path.join(home, "signing-key.pem"), home=home)
    print(f"evidence [{identity}]: rw={writable.returncode} {writable.stderr!r} ro={read_only.returncode} {read_only.stderr!r}", file=sys.stderr)
    assert writable.returncode == 125 and b"evidence_in_writable_root" in writable.stderr and not writable.stdout
    assert read_only.returncode != 0 and b"PRIVATE" not in read_only.stdout and b"No such file" in read_only.stderr
    with open(key) as f:  # channel A: the key is still the host's own
        assert f.read() == "PRIVATE\n"
    with open(os.path.join(link, "evidence", "signing-key.pem")) as f:  # control: the path reaches it
        assert f.read() == "PRIVATE\n"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_read_only_root_inside_a_writable_root_is_refused(identity, place):
    nested = os.path.join(place, "a", "cfg")
    os.makedirs(nested)
    done = bvisor_run(identity, "--rw", place, "--ro", nested, "--", "/bin/sh", "-c", f"mv {place}/a {place}/moved; echo ran")
    assert done.returncode == 125 and b"read_only_root_inside_writable_root" in done.stderr and not done.stdout, done
    assert os.path.isdir(nested), "CHANNEL A: nothing ran, so the path is unchanged"
    control = bvisor_run(identity, "--rw", place, "--", "/bin/sh", "-c", f"mv {place}/a {place}/moved; echo ran")
    assert control.stdout == b"ran\n" and not os.path.exists(nested), "CONTROL: the writable parent can be renamed away"


ATTACK = r"""
import os, stat, sys
said = {"stdin_is_a_pipe": stat.S_ISFIFO(os.fstat(0).st_mode)}
for name, fd in (("exe", os.open("/proc/self/exe", os.O_RDONLY)), ("stdin", 0)):
    for what, action in (("chmod", lambda p: os.chmod(p, 0o777)), ("utime", lambda p: os.utime(p, (0, 0)))):
        try:
            action(f"/proc/self/fd/{fd}")
            said[f"{name}_{what}"] = "ok"
        except OSError as exc:
            said[f"{name}_{what}"] = exc.errno
print(said)
"""


def _tool_and_input(place: str, identity: str) -> tuple:
    """A copy of the interpreter (the exe) and an input file, both owned by the run's caller."""
    tool = os.path.join(place, "tool")
    shutil.copy2(PYTHON, tool)
    data = os.path.join(place, "input.txt")
    with open(data, "w") as f:
        f.write("input\n")
    for path, mode in ((tool, 0o755), (data, 0o600)):
        os.chmod(path, mode)
        os.chown(path, identity_uid(identity), -1)
    return tool, data


def _unchanged(paths: dict) -> dict:
    return {p: (stat.S_IMODE(os.stat(p).st_mode), os.stat(p).st_mtime_ns) for p in paths}


@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_exe_and_a_stdin_file_cannot_be_chmodded_through_proc(identity, place):
    tool, data = _tool_and_input(place, identity)
    before = _unchanged([tool, data])
    with open(data, "rb") as stdin:
        done = bvisor_run(identity, "--ro", PYTHON_PREFIX, "--", tool, "-c", ATTACK, stdin=stdin)
    said = done.stdout.decode(errors="replace")
    print(f"proc fd metadata [{identity}]: rc={done.returncode} said={said!r} err={done.stderr[-500:]!r}", file=sys.stderr)
    assert done.returncode == 0 and "'exe_chmod'" in said, done.stderr
    # The exe's clone is read-only; stdin is the relay's pipe (whatever it allows touches no file).
    assert "'stdin_is_a_pipe': True" in said and "'exe_chmod': 'ok'" not in said and "'exe_utime': 'ok'" not in said, said
    assert _unchanged([tool, data]) == before, "CHANNEL A: the host's files changed"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_bvisor_the_owner_changes_both_through_proc(identity, place):
    tool, data = _tool_and_input(place, identity)
    before = _unchanged([tool, data])
    prefix = list(UNPRIVILEGED_PREFIX) if identity_uid(identity) != os.geteuid() else []
    with open(data, "rb") as stdin:
        done = subprocess.run([*prefix, tool, "-c", ATTACK], capture_output=True, stdin=stdin, timeout=60)
    said = done.stdout.decode(errors="replace")
    assert said.count("'ok'") == 4 and "'stdin_is_a_pipe': False" in said, (said, done.stderr)
    assert _unchanged([tool, data]) != before


@pytest.fixture
def bind_alias():
    """``bind_alias(source, alias)``: a host bind mount at ``alias``, unmounted at the end."""
    if os.geteuid() != 0:
        loud_skip("a bind mount alias on the host needs root")
    made = []

    def mount(source: str, alias: str) -> str:
        os.makedirs(alias, exist_ok=True)
        subprocess.run(["mount", "--bind", source, alias], check=True)
        made.append(alias)
        return alias

    yield mount
    for alias in reversed(made):
        subprocess.run(["umount", "-l", alias], check=False)


def _evidence(place: str) -> tuple:
    """An evidence home holding a key, under ``place/real``."""
    home = os.path.join(place, "real", "evidence")
    os.makedirs(home)
    for directory in (os.path.dirname(home), home):
        os.chmod(directory, 0o777)
    key = os.path.join(home, "signing-key.pem")
    with open(key, "w") as f:
        f.write("PRIVATE\n")
    os.chmod(key, 0o644)
    return home, key


@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_evidence_home_behind_a_bind_mount_is_refused_writable_and_masked_read_only(identity, place, bind_alias):
    home, key = _evidence(place)
    alias = bind_alias(os.path.dirname(home), os.path.join(place, "alias"))
    aliased_key = os.path.join(alias, "evidence", "signing-key.pem")
    with open(aliased_key) as f:  # control: the alias reaches the key
        assert f.read() == "PRIVATE\n"
    writable = bvisor_run(identity, "--rw", alias, "--", "/bin/cat", aliased_key, home=home)
    read_only = bvisor_run(identity, "--ro", alias, "--", "/bin/cat", aliased_key, home=home)
    inner = bind_alias(home, os.path.join(place, "inner"))
    inside = bvisor_run(identity, "--rw", inner, "--", "/bin/cat", os.path.join(inner, "signing-key.pem"), home=home)
    print(f"evidence alias [{identity}]: rw={writable.returncode} {writable.stderr!r} ro={read_only.returncode} "
          f"{read_only.stderr!r} inside={inside.returncode} {inside.stderr!r}", file=sys.stderr)
    assert writable.returncode == 125 and b"evidence_in_writable_root" in writable.stderr and not writable.stdout
    assert inside.returncode == 125 and b"evidence_in_writable_root" in inside.stderr and not inside.stdout
    assert read_only.returncode != 0 and b"PRIVATE" not in read_only.stdout and b"No such file" in read_only.stderr
    with open(key) as f:  # channel A: the key is still the host's own
        assert f.read() == "PRIVATE\n"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_evidence_home_exposed_at_another_path_is_masked_there(identity, place, monkeypatch):
    home, _key = _evidence(place)
    monkeypatch.setenv("BVISOR_HOME", home)
    dest = os.path.join(place, "dest")
    os.mkdir(dest)
    marker = unique_marker("BVISOR-EXPOSED-EVIDENCE")
    shown = os.path.join(dest, "evidence", "signing-key.pem")
    argv = ["/bin/sh", "-c", PARK + f'cat {shown}; echo "listed $(ls -A {dest})"', marker]
    exposed = HostControl.ExposePath(source=os.path.dirname(home), dest=dest, access=FsAccess.Read)
    spec = mount_spec(argv, [exposed], [Capability.Filesystem(access=FsAccess.Read, roots=["/bin", "/usr", "/lib", "/lib64"])])
    gated = run_parked(identity, spec, marker, lambda pid: os.path.lexists(f"/proc/{pid}/root{shown}"))
    said = gated.after_park()
    print(f"evidence exposed [{identity}]: inside={gated.inspected} said={said!r} err={gated.stderr[-800:]!r}", file=sys.stderr)
    failures = []
    check_completed(failures, gated.result)
    if gated.inspected is not False:
        failures.append(f"CHANNEL A: the key must not exist at the exposed path in the run's view; host saw {gated.inspected}")
    if b"PRIVATE" in said or b"No such file" not in gated.stderr or b"listed evidence" not in said:
        failures.append(f"CHANNEL B: the exposed dest shows an empty evidence directory; said {said!r}")
    with open(os.path.join(place, "real", "evidence", "signing-key.pem")) as f:  # control: the source holds the key
        if f.read() != "PRIVATE\n":
            failures.append("control: the key must be readable at its source")
    assert not failures, failures


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_read_only_root_bound_from_inside_a_writable_root_is_refused(identity, place, bind_alias):
    writable = os.path.join(place, "rw")
    config = os.path.join(writable, "cfg")
    os.makedirs(config)
    os.chmod(writable, 0o777)
    os.chmod(config, 0o777)
    alias = bind_alias(config, os.path.join(place, "cfg-alias"))
    write = f"echo planted > {config}/planted; echo ran"
    done = bvisor_run(identity, "--rw", writable, "--ro", alias, "--", "/bin/sh", "-c", write)
    print(f"ro alias [{identity}]: rc={done.returncode} err={done.stderr!r}", file=sys.stderr)
    assert done.returncode == 125 and b"read_only_root_inside_writable_root" in done.stderr and not done.stdout, done
    assert not os.path.exists(os.path.join(alias, "planted")), "CHANNEL A: nothing ran, so the read-only root is unchanged"
    control = bvisor_run(identity, "--rw", writable, "--", "/bin/sh", "-c", write)
    assert control.stdout == b"ran\n" and os.path.exists(os.path.join(alias, "planted")), "CONTROL: the writable root writes it"


SHARED_ATTACK = (
    "cat {d}/private/secret 2>/dev/null && echo read-secret; echo owned >> {d}/rootfile 2>/dev/null && echo appended; "
    "echo new > {d}/made && echo made"
)


def _root_owned_tree(place: str, mode: int) -> str:
    """A root-owned directory of ``mode`` holding a 0700 directory with a 0600 secret and a
    0644 file, all root's."""
    tree = os.path.join(place, "tree")
    os.mkdir(tree)
    os.chmod(tree, mode)
    os.mkdir(os.path.join(tree, "private"), 0o700)
    for path, mode_ in ((os.path.join(tree, "private", "secret"), 0o600), (os.path.join(tree, "rootfile"), 0o644)):
        with open(path, "w") as f:
            f.write("root's\n")
        os.chmod(path, mode_)
    return tree


def attack_a_root_owned_tree(host_dir, mode: int) -> tuple:
    """``SHARED_ATTACK`` in a root-owned tree of ``mode`` given to a root-invoked run as
    ``--rw`` (a loud skip where bvisor does not run as root): (the tree, the finished run)."""
    if os.geteuid() != 0:
        loud_skip("the transient identity is made only when bvisor runs as root")
    tree = _root_owned_tree(host_dir("bvisor-shared-", 0o755, "/var/tmp"), mode)
    return tree, bvisor_run("caller", "--rw", tree, "--", "/bin/sh", "-c", SHARED_ATTACK.format(d=tree))


def test_a_shared_writable_root_is_written_as_the_runs_own_id_not_its_owners(host_dir):
    """Finding 2 of the third review: ``--rw /tmp`` as root idmapped /tmp's owner (root) to
    the run, which then read and wrote every root-owned file in it. A directory every user may
    write is attached without the idmap: the run is one more user there."""
    tree, done = attack_a_root_owned_tree(host_dir, 0o1777)
    print(f"shared rw root: rc={done.returncode} out={done.stdout!r} err={done.stderr[-600:]!r}", file=sys.stderr)
    assert done.stdout == b"made\n", "CHANNEL B: the run may create its own file, and neither read nor append root's"
    with open(os.path.join(tree, "rootfile")) as f:
        assert f.read() == "root's\n", "CHANNEL A: root's file changed"
    made = os.stat(os.path.join(tree, "made")).st_uid
    assert made not in (0, os.geteuid()), f"CHANNEL A: the run's file must belong to its transient id, not {made}"


def test_control_a_writable_root_the_owner_keeps_for_itself_gives_the_owners_rights(host_dir):
    """The idmap the shared directory no longer gets: in a root-owned 0755 writable root the
    same attack reads and appends root's files (what --rw of one's own tree means)."""
    tree, done = attack_a_root_owned_tree(host_dir, 0o755)
    assert done.stdout == b"root's\nread-secret\nappended\nmade\n", (done.stdout, done.stderr[-600:])
    assert os.stat(os.path.join(tree, "made")).st_uid == 0



@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_symlink_naming_the_evidence_home_inside_a_writable_root_is_refused(identity, place):
    """Third review, finding 1a: the home's real path was out of the writable root, but the
    symlink that names it was in it; the run re-pointed it, and later commands signed with a
    key the workload chose."""
    project, real = os.path.join(place, "proj"), os.path.join(place, "ev")
    for directory in (project, real):
        os.mkdir(directory)
        os.chmod(directory, 0o777)
    link = os.path.join(project, "evidence")
    os.symlink(real, link)
    swap = f"rm {link} && mkdir {link} && echo swapped"
    done = bvisor_run(identity, "--rw", project, "--", "/bin/sh", "-c", swap, home=link)
    print(f"evidence symlink [{identity}]: rc={done.returncode} err={done.stderr!r}", file=sys.stderr)
    assert done.returncode == 125 and b"evidence_in_writable_root" in done.stderr and not done.stdout, done
    assert os.path.islink(link) and os.readlink(link) == real, "CHANNEL A: the link that names the home is unchanged"
    prefix = list(UNPRIVILEGED_PREFIX) if identity_uid(identity) != os.geteuid() else []
    control = subprocess.run([*prefix, "/bin/sh", "-c", swap], capture_output=True, timeout=60)
    assert control.stdout == b"swapped\n" and not os.path.islink(link), "CONTROL: the identity re-points it without bvisor"


def _watching(prefix: list, root: str, target: str) -> subprocess.Popen:
    """A ``--no-store`` run with ``root`` read-only that waits (4 s at most) for ``target`` to
    appear and prints it; returned once the run has started, its view built."""
    watch = subprocess.Popen(
        [*prefix, BVISOR, "run", "--quiet", "--no-store", "--ro", root, "--", "/bin/sh", "-c", KEY_WATCH.format(key=target)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd="/",
    )
    assert watch.stdout.readline() == b"started\n"
    return watch


KEY_WATCH = "echo started; i=0; while [ $i -lt 40 ]; do [ -e {key} ] && break; sleep 0.1; i=$((i+1)); done; cat {key} 2>&1 || :; echo watched"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_an_evidence_home_made_during_a_run_does_not_show_in_a_read_root_above_it(identity, place):
    """Third review, finding 3: a ``--no-store`` run's view was built before the home
    existed, so a read root above it showed the key ``bvisor key`` made later. The home is
    made before every run, so its mask is in place."""
    home = os.path.join(place, "later", "home")
    os.makedirs(os.path.dirname(home))
    os.chmod(os.path.dirname(home), 0o777)
    key = os.path.join(home, "signing-key.pem")
    watch = _watching(_with_home(identity, home), place, key)  # the run's view is built: now the key is made
    made = subprocess.run([*_with_home(identity, home), BVISOR, "key"], capture_output=True, timeout=60)
    out, err = watch.communicate(timeout=60)
    print(f"late home [{identity}]: key={made.returncode} out={out!r} err={err[-400:]!r}", file=sys.stderr)
    assert made.returncode == 0 and os.path.exists(key), made.stderr  # channel A: the key exists on the host
    assert out.endswith(b"watched\n") and b"PRIVATE KEY" not in out, f"CHANNEL B: the key must not show in the run: {out!r}"
    # Control: the same watch over a directory that is no evidence sees a file made meanwhile.
    plain = os.path.join(place, "later", "plain")
    os.mkdir(plain, 0o777)
    os.chmod(plain, 0o777)
    control = _watching(_with_home(identity, home), place, plain + "/file")
    with open(plain + "/file", "w") as f:
        f.write("PRIVATE KEY\n")
    os.chmod(plain + "/file", 0o644)
    out, _ = control.communicate(timeout=60)
    assert b"PRIVATE KEY" in out, f"CONTROL: a file made during the run shows in a read root above it: {out!r}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_store_kept_elsewhere_stays_out_of_reach_of_runs_that_do_not_name_it(identity, place):
    """Third review, finding 4: only the store a run named was masked; a project's store
    and key, kept with ``--store``, were open to every other run."""
    home = os.path.join(place, "home")
    store = os.path.join(place, "proj", "evidence", "ev.sqlite3")
    os.makedirs(os.path.dirname(store))
    for directory in (os.path.dirname(os.path.dirname(store)), os.path.dirname(store)):
        os.chmod(directory, 0o777)
    kept = bvisor_run(identity, "--store", store, "--sign", "--", "/bin/true", home=home, store=True)
    assert kept.returncode == 0, kept.stderr
    key = os.path.join(os.path.dirname(store), "signing-key.pem")
    project = os.path.dirname(os.path.dirname(store))
    writable = bvisor_run(identity, "--rw", project, "--", "/bin/cat", key, home=home)
    read_only = bvisor_run(identity, "--ro", project, "--", "/bin/cat", key, home=home)
    print(f"store elsewhere [{identity}]: rw={writable.returncode} {writable.stderr!r} ro={read_only.returncode} {read_only.stderr!r}", file=sys.stderr)
    assert writable.returncode == 125 and b"evidence_in_writable_root" in writable.stderr and not writable.stdout
    assert read_only.returncode != 0 and b"PRIVATE" not in read_only.stdout and b"No such file" in read_only.stderr
    with open(key) as f:  # control: the path reaches the key
        assert "PRIVATE KEY" in f.read()


def _host_tree_spec(script: str) -> bytes:
    """A spec with no Filesystem requirement (the run sees the host's tree), as JSON."""
    return msgspec.json.encode(mount_spec(["/bin/sh", "-c", script], capabilities=[exact_environment([("PATH", "/usr/bin:/bin")])]))


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_host_tree_run_cannot_leave_its_own_evidence_home_for_later_commands(identity, place):
    """Third review, finding 1b: with no Filesystem requirement the run sees the host's tree;
    it renamed a directory above the (masked) home and made its own at the old path. As
    root, the transient id could do that only through a directory every user may write: such
    a plan is refused. Rootless, the run holds the caller's rights over the caller's files:
    the run goes ahead, and its report is not kept in a home that is no longer the one it was."""
    parent = os.path.join(place, "user", "local")
    home = os.path.join(parent, "bvisor")
    os.makedirs(home)
    os.chmod(os.path.dirname(parent), 0o777)
    os.chmod(parent, 0o777)
    os.chmod(home, 0o777)
    spec = os.path.join(place, "host-tree.json")
    with open(spec, "wb") as f:
        f.write(_host_tree_spec(f"mv {parent} {parent}.moved && mkdir -p {home} && echo moved"))
    os.chmod(spec, 0o644)
    kept = bvisor_run(identity, "--", "/bin/true", home=home, store=True)
    assert kept.returncode == 0, kept.stderr
    done = subprocess.run([*_with_home(identity, home), BVISOR, "run", "--quiet", spec], capture_output=True, stdin=subprocess.DEVNULL, timeout=120, cwd="/")
    print(f"host tree home [{identity}]: rc={done.returncode} out={done.stdout!r} err={done.stderr!r}", file=sys.stderr)
    if identity_uid(identity) == 0:
        assert done.returncode == 125 and b"evidence_path_writable_by_run" in done.stderr and not done.stdout, done
        assert os.path.isdir(home) and not os.path.exists(parent + ".moved"), "CHANNEL A: nothing ran"
    else:
        assert done.stdout == b"moved\n", "CHANNEL B: the run moved the home's parent (it holds the caller's rights)"
        assert done.returncode == 125 and b"is no longer the directory it was before the run" in done.stderr, done
        assert os.listdir(home) == [], "CHANNEL A: nothing was kept in the home the run made"
        assert "evidence.sqlite3" in os.listdir(parent + ".moved/bvisor"), "the real store is where the run moved it"
