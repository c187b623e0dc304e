"""InheritedFdsNone — no host fd survives into the workload beyond its standard streams.

The test process opens a file holding a unique secret WITHOUT close-on-exec and duplicates it
to a distinctive high number (57 unless that is taken), so every spawn from this process —
the launcher included — inherits it. Channel A (host): while the workload is parked, the host
lists /proc/<pid>/fd and reads every link; exactly 0, 1 and 2 must be there and none may lead
to the secret file. Channel B (workload): the workload tries to read the fd (`cat <&57`,
through bash, which unlike dash accepts multi-digit fds) and lists its own fd table through
its captured stdout. Positive runs use the launcher as the caller and as an unprivileged uid.
The control runs the same workload on the unconfined InertBackend without the capability: it
reads the secret through the inherited fd, by both channels, so the oracle is not vacuous.
"""

import os
import sys
import uuid
from pathlib import Path

import pytest

from bvisor import (
    Capability,
    FdPolicy,
    InertBackend,
    LinuxBackend,
    Outcome,
)
from bvisor.backends.linux import launch
from helpers import (
    EXE_SLOT,
    IDENTITIES,
    PARK,
    free_fd_at_or_above,
    host_read_fds,
    host_read_uid,
    launcher_as,
    plan,
    run_gated,
    runner_for,
    unique_marker,
    workload_uid_problem,
)
from oracle_specs import oracle_spec

BASH = "/bin/bash"
STDIO = [0, 1, 2]
WARM = os.environ.get("BVISOR_LAUNCHER") == "warm"


class InheritedSecret:
    """A secret file open in this process at ``number`` (and at ``original``), both inheritable."""

    def __init__(self, path: Path, secret: str, original: int, number: int):
        self.path, self.secret, self.original, self.number = path, secret, original, number

    @property
    def target(self) -> str:
        """What /proc/<pid>/fd/<n> reads for an fd open on the secret file."""
        return str(self.path.resolve())


@pytest.fixture
def inherited_secret(tmp_path):
    secret = f"BVISOR-FD-SECRET-{uuid.uuid4().hex}"
    path = tmp_path / "inherited-secret.txt"
    path.write_text(secret)
    # Both fds sit far above the harness's slot and channel numbers, so posix_spawn's
    # placement cannot overwrite either one and the launcher really inherits two.
    opened = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    original = free_fd_at_or_above(47)
    os.dup2(opened, original, inheritable=True)
    os.close(opened)
    number = None
    try:
        number = free_fd_at_or_above(57)
        os.dup2(original, number, inheritable=True)
        assert os.get_inheritable(original) and os.get_inheritable(number), "precondition: both fds must be inheritable"
        yield InheritedSecret(path, secret, original, number)
    finally:
        os.close(original)
        if number is not None:
            os.close(number)


def parked_bash(marker: str, fd: int) -> list:
    """argv of a bash that parks (so the host can read it), then tries fd ``fd`` and lists its
    fds."""
    script = PARK + (
        f"if /bin/cat <&{fd}; then printf '\\nfd{fd}=open\\n'; else printf 'fd{fd}=closed\\n'; fi; "
        "printf 'FDS-BEGIN\\n'; /bin/ls -l /proc/$$/fd; printf 'FDS-END\\n'"
    )
    return [BASH, "-c", script, marker]


def reported_fds(stdout: bytes):
    """``{fd: target}`` from the workload's own ``ls -l /proc/$$/fd``, or None if it never
    listed."""
    _, sep, rest = stdout.partition(b"FDS-BEGIN\n")
    listing, sep2, _ = rest.partition(b"FDS-END\n")
    if not (sep and sep2):
        return None
    links = {}
    for line in listing.decode(errors="replace").splitlines():
        if " -> " in line:
            left, target = line.split(" -> ", 1)
            links[int(left.split()[-1])] = target
    return links


def host_view(pid: int) -> dict:
    """Channel A: what the host reads of the parked workload."""
    return {"fds": host_read_fds(pid), "uid": host_read_uid(pid)}


NO_FDS = Capability.InheritedFds(policy=FdPolicy.Nothing())


def check_no_inherited_fds(failures: list, gated, inherited: InheritedSecret, identity: str, user_namespace: bool = True) -> None:
    """Both channels: exactly stdio, nothing open on the secret file, the fd read fails."""
    view = gated.inspected or {}
    host_fds, uid = view.get("fds"), view.get("uid")
    own = reported_fds(gated.after_park())
    n = inherited.number
    if not gated.seen:
        failures.append("CHANNEL A: the host never found the workload by its marker")
    if host_fds is None:
        failures.append("CHANNEL A: the host could not read /proc/<pid>/fd of the parked workload")
    else:
        if sorted(host_fds) != STDIO:
            failures.append(f"CHANNEL A: the workload must hold exactly fds {STDIO}; the host sees {host_fds}")
        if n in host_fds:
            failures.append(f"CHANNEL A: the inherited fd {n} survived into the workload: {host_fds[n]}")
        if inherited.target in host_fds.values():
            failures.append(f"CHANNEL A: an fd of the workload leads to the secret file: {host_fds}")
    problem = workload_uid_problem(identity, uid, user_namespace)
    if problem:
        failures.append(f"the {identity} workload {problem}")
    stdout = gated.after_park().decode(errors="replace")
    if f"fd{n}=closed" not in stdout.splitlines():
        failures.append(f"CHANNEL B: the workload must report fd{n}=closed; stdout={stdout!r} stderr={gated.stderr!r}")
    if inherited.secret in gated.stdout.decode(errors="replace"):
        failures.append(f"CHANNEL B: the workload read the secret through an inherited fd: {stdout!r}")
    if own is None:
        failures.append(f"CHANNEL B: the workload never listed its fds; stdout={stdout!r} stderr={gated.stderr!r}")
    else:
        if sorted(own) != STDIO:
            failures.append(f"CHANNEL B: the workload must list exactly fds {STDIO}; it lists {own}")
        if inherited.target in own.values():
            failures.append(f"CHANNEL B: the workload lists an fd leading to the secret file: {own}")


def scrub_note_closed(notes) -> int | None:
    """How many fds the launcher's attested scrubs closed: the one of every undeclared fd it
    inherited (``undeclared_fd_scrub kept=… closed=N``) plus the workload's own last scrub
    (``fd_scrub …``); None when the last scrub is not attested."""
    counts = {}
    for note in notes:
        head = note.split(" ", 1)[0]
        if head in ("undeclared_fd_scrub", "fd_scrub"):
            fields = dict(p.split("=", 1) for p in note.split()[1:] if "=" in p)
            counts[head] = int(fields.get("closed", "-1"))
    return None if "fd_scrub" not in counts else sum(counts.values())


@pytest.mark.parametrize("identity", IDENTITIES)
def test_no_inherited_fd_reaches_the_workload_through_the_execute_path(identity, inherited_secret):
    marker = unique_marker("BVISOR-FD-MARKER")
    backend = LinuxBackend(launcher_as(identity))
    run = runner_for(backend, oracle_spec(parked_bash(marker, inherited_secret.number), [NO_FDS]))
    gated = run_gated(run, marker, host_view)
    body = gated.result.body
    print(f"InheritedFdsNone [{identity}]: host={gated.inspected} stdout={gated.stdout!r}", file=sys.stderr)
    failures = []
    if body.outcome != Outcome.Completed:
        failures.append(f"the workload must run to Completed; got {body.outcome} facts={body.observed}")
    check_no_inherited_fds(failures, gated, inherited_secret, identity)
    kinds = {f.kind for f in body.observed}
    if "inherited_fds_lowered" not in kinds:
        failures.append(f"the report must record the fd lowering; facts={body.observed}")
    closed = scrub_note_closed([f.detail for f in body.observed if f.kind == "launcher_note"])
    # A one-shot launcher inherited at least the two fds this test left open without
    # close-on-exec; a warm launcher's coordinator never received them (its server closes
    # what it inherits), so only the attestation itself is required there.
    if closed is None or (closed < 2 and not WARM):
        failures.append(f"the report must carry the launcher's fd_scrub attestation closing >= 2 fds; got closed={closed}")
    assert not failures, f"InheritedFdsNone execute-path oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_launcher_scrubs_inherited_fds_before_exec(identity, inherited_secret):
    """One layer down: a hand-made launch plan through ``run_launcher``."""
    marker = unique_marker("BVISOR-FD-LAUNCHER-MARKER")
    launch_plan = plan(parked_bash(marker, inherited_secret.number), False)

    def run(io):
        exe = launch.AuthorityFd(slot_index=EXE_SLOT, handle=os.open(BASH, os.O_RDONLY | os.O_CLOEXEC))
        return launch.run_launcher(launcher_as(identity), launch_plan, [exe], io)

    gated = run_gated(run, marker, host_view)
    obs = gated.result
    print(f"InheritedFdsNone launcher [{identity}]: host={gated.inspected} notes={obs.notes}", file=sys.stderr)
    failures = []
    if not obs.exec_succeeded():
        failures.append(f"the workload must run to ExecSucceeded; terminal={obs.terminal} notes={obs.notes}")
    exit_status = obs.workload_exit()
    if exit_status is None or exit_status.code != 0:
        failures.append(f"the workload must exit 0; got {exit_status}")
    closed = scrub_note_closed(obs.notes)
    if closed is None or closed < 2:  # run_launcher is always the one-shot path
        failures.append(f"the launcher must attest an fd_scrub closing >= 2 fds; notes={obs.notes}")
    check_no_inherited_fds(failures, gated, inherited_secret, identity, user_namespace=False)
    assert not failures, f"launcher-level InheritedFdsNone oracle failures [{identity}]: {failures}"


def test_control_without_the_capability_the_unconfined_workload_reads_the_inherited_secret(inherited_secret):
    """Control: the same workload on the InertBackend with no InheritedFds capability keeps
    the inheritable fd, and reads the secret through it — by both channels."""
    marker = unique_marker("BVISOR-FD-CONTROL-MARKER")
    n = inherited_secret.number
    run = runner_for(InertBackend(), oracle_spec(parked_bash(marker, n), []))
    gated = run_gated(run, marker, host_view)
    host_fds = (gated.inspected or {}).get("fds") or {}
    own = reported_fds(gated.after_park()) or {}
    stdout = gated.after_park().decode(errors="replace")
    failures = []
    if gated.result.body.outcome != Outcome.Completed:
        failures.append(f"the control workload must run to Completed; got {gated.result.body.outcome}")
    if host_fds.get(n) != inherited_secret.target:
        failures.append(f"CONTROL CHANNEL A: the host must see fd {n} -> the secret file; got {host_fds}")
    if own.get(n) != inherited_secret.target:
        failures.append(f"CONTROL CHANNEL B: the workload must list fd {n} -> the secret file; got {own}")
    if f"fd{n}=open" not in stdout.splitlines() or inherited_secret.secret not in stdout:
        failures.append(f"CONTROL CHANNEL B: the workload must read the secret through fd {n}; stdout={stdout!r}")
    assert not failures, f"InheritedFds control failures (the oracle would be vacuous): {failures}"
