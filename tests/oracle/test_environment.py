"""Environment (EnvPolicy.Exact) — the workload's environment is exactly the declared table.

Channel A (host): while the workload is parked, the host reads its /proc/<pid>/environ — the
envp the kernel handed to exec — and it must equal the declared table byte for byte: same
entries, same order, NUL-separated, nothing added. Channel B (workload): the workload reports
its own environment through its captured stdout (the shell prints its own environ; `env -0`
exec'd directly lists what libc sees). A sentinel set in the test process's environment must
be absent from both. Every positive test runs with the launcher as the caller and as an
unprivileged uid. The control (test_control_*) runs the same workload through the unconfined
InertBackend without the capability and sees the sentinel by both channels: the leak the
boundary prevents is real, so the oracle is not vacuous.
"""

import functools
import sys
import uuid

import msgspec
import pytest

from bvisor import Capability, EnvEntry, EnvPolicy, InertBackend, LinuxBackend, Outcome, RunIO
from bvisor.backends.linux import launch
from bvisor.contract import InvalidPolicy, encode_report_json, spec_problems
from bvisor.secrets import MapSecretResolver
from helpers import (
    IDENTITIES,
    PARK,
    check_completed,
    host_read_environ,
    host_read_uid,
    launcher_as,
    plan,
    planned,
    run_gated,
    scan_proc_cmdline,
    sh_authority,
    unique_marker,
    workload_uid_problem,
)
from oracle_specs import exact_environment, oracle_spec

SENTINEL_NAME = "BVISOR_SENTINEL_LEAK"

# Ordered deliberately non-alphabetically; an empty value, a value holding '=' and spaces,
# and a non-ASCII value all have to arrive byte-exact.
DECLARED = [
    ("PATH", "/usr/bin:/bin"),
    ("BVISOR_DECLARED", "yes"),
    ("EMPTY", ""),
    ("WITH_EQUALS", "a=b c"),
    ("UNICODE", "h\u00e9llo \u2713"),
]

# The shell prints its own environ (the one the kernel gave it) between delimiters.
SELF_REPORT = "printf 'ENVIRON-BEGIN:'; /bin/cat /proc/$$/environ; printf ':ENVIRON-END\\n'"


def environ_bytes(pairs) -> bytes:
    """What /proc/<pid>/environ holds for an exact envp: ``NAME=VALUE\\0`` per entry, in order."""
    return b"".join(f"{name}={value}".encode() + b"\0" for name, value in pairs)


def reported_environ(stdout: bytes):
    """The bytes the workload printed between its delimiters, or None if it never did."""
    _head, sep, rest = stdout.partition(b"ENVIRON-BEGIN:")
    body, sep2, _ = rest.partition(b":ENVIRON-END\n")
    return body if sep and sep2 else None


def parked_sh(marker: str) -> list:
    """argv of a shell that parks (so the host can read it), then self-reports; ``marker`` is
    its $0."""
    return ["/bin/sh", "-c", PARK + SELF_REPORT, marker]


@functools.cache
def linux_backend(identity: str) -> LinuxBackend:
    return LinuxBackend(launcher_as(identity))


@pytest.fixture
def sentinel(monkeypatch) -> bytes:
    """A unique secret in the test process's own environment; it must never reach a boundary."""
    value = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv(SENTINEL_NAME, value)
    return f"{SENTINEL_NAME}={value}".encode()


def host_view(pid: int) -> dict:
    """Channel A: what the host reads of the parked workload."""
    return {"environ": host_read_environ(pid), "uid": host_read_uid(pid)}


def check_identity(failures: list, identity: str, gated, user_namespace: bool = True) -> None:
    """The parametrization is real: the workload runs as the identity's uid."""
    uid = (gated.inspected or {}).get("uid")
    problem = workload_uid_problem(identity, uid, user_namespace)
    if problem:
        failures.append(f"the {identity} workload {problem}")


def check_both_channels(failures: list, gated, expected: bytes, sentinel: bytes) -> None:
    """Channel A (host) and channel B (workload) must each equal ``expected`` and lack
    ``sentinel``."""
    host, reported = (gated.inspected or {}).get("environ"), reported_environ(gated.after_park())
    if not gated.seen:
        failures.append("CHANNEL A: the host never found the workload by its marker")
    if host is None:
        failures.append("CHANNEL A: the host could not read /proc/<pid>/environ of the parked workload")
    elif host != expected:
        failures.append(f"CHANNEL A: /proc/<pid>/environ must equal the declared table exactly; got {host!r}, want {expected!r}")
    if reported is None:
        failures.append(f"CHANNEL B: the workload never reported its environ; stdout={gated.stdout!r} stderr={gated.stderr!r}")
    elif reported != expected:
        failures.append(f"CHANNEL B: the workload's own environ must equal the declared table; got {reported!r}, want {expected!r}")
    if host is not None and reported is not None and host != reported:
        failures.append(f"the two channels disagree: host={host!r} workload={reported!r}")
    for channel, seen in (("A (host)", host), ("B (workload)", reported)):
        if seen is not None and sentinel in seen:
            failures.append(f"CHANNEL {channel}: the test process's sentinel leaked into the boundary: {seen!r}")


@pytest.mark.parametrize("identity", IDENTITIES)
def test_exact_environment_is_the_declared_table_by_both_channels(identity, sentinel):
    marker = unique_marker("BVISOR-ENV-MARKER")
    _, run = planned(linux_backend(identity), oracle_spec(parked_sh(marker), [exact_environment(DECLARED)]))
    gated = run_gated(run, marker, host_view)
    print(f"Environment exact [{identity}]: host={gated.inspected} stdout={gated.stdout!r}", file=sys.stderr)
    failures = []
    check_completed(failures, gated.result)
    check_both_channels(failures, gated, environ_bytes(DECLARED), sentinel)
    check_identity(failures, identity, gated)
    facts = {f.kind: f.detail for f in gated.result.body.observed}
    if "environment_lowered" not in facts:
        failures.append(f"the report must record the environment lowering; facts={gated.result.body.observed}")
    assert not failures, f"Environment exact-table oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_env_exec_directly_lists_exactly_the_declared_table(identity, sentinel):
    """Channel B without a shell in between: /usr/bin/env -0 prints what libc sees, nothing more."""
    out = bytearray()
    _, run = planned(linux_backend(identity), oracle_spec(["/usr/bin/env", "-0"], [exact_environment(DECLARED)]))
    report = run(RunIO(stdout_sink=out.extend))
    failures = []
    check_completed(failures, report)
    if bytes(out) != environ_bytes(DECLARED):
        failures.append(f"CHANNEL B: `env -0` must print exactly the declared table; got {bytes(out)!r}")
    if sentinel in out:
        failures.append(f"CHANNEL B: the sentinel leaked: {bytes(out)!r}")
    assert not failures, f"Environment `env -0` self-report failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_launcher_itself_execs_exactly_the_plans_envp(identity, sentinel):
    """The same oracle one layer down: a hand-made launch plan through ``run_launcher``. The
    launcher's own environment (its plan and control fd variables) must not reach the workload."""
    marker = unique_marker("BVISOR-ENV-LAUNCHER-MARKER")
    launch_plan = plan(parked_sh(marker), False, envp=DECLARED)
    gated = run_gated(
        lambda io: launch.run_launcher(launcher_as(identity), launch_plan, [sh_authority()], io), marker, host_view
    )
    obs = gated.result
    failures = []
    if not obs.exec_succeeded():
        failures.append(f"the workload must run to ExecSucceeded; terminal={obs.terminal} notes={obs.notes}")
    if not any(n.startswith(f"environment=exact entries={len(DECLARED)}") for n in obs.notes):
        failures.append(f"the launcher must attest the exact environment; notes={obs.notes}")
    check_both_channels(failures, gated, environ_bytes(DECLARED), sentinel)
    check_identity(failures, identity, gated, user_namespace=False)
    assert not failures, f"launcher-level Environment oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_no_environment_capability_gives_a_genuinely_empty_environment(identity, sentinel):
    marker = unique_marker("BVISOR-ENV-EMPTY-MARKER")
    _, run = planned(linux_backend(identity), oracle_spec(parked_sh(marker), []))
    gated = run_gated(run, marker, host_view)
    print(f"Environment none [{identity}]: host={gated.inspected} stdout={gated.stdout!r}", file=sys.stderr)
    failures = []
    check_completed(failures, gated.result)
    check_both_channels(failures, gated, b"", sentinel)
    check_identity(failures, identity, gated)
    assert not failures, f"empty-environment oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_secret_lease_reaches_the_workload_but_never_the_plan_or_the_report(identity, sentinel):
    secret = f"s3cr3t-value-{uuid.uuid4().hex}"
    backend = LinuxBackend(launcher_as(identity), secret_resolver=MapSecretResolver({"ref1": secret}))
    entries = [EnvEntry.literal("PATH", "/usr/bin:/bin"), EnvEntry.lease("TOKEN", "ref1")]
    marker = unique_marker("BVISOR-ENV-LEASE-MARKER")
    spec = oracle_spec(parked_sh(marker), [Capability.Environment(policy=EnvPolicy.Exact(entries))])
    admitted, run = planned(backend, spec)
    gated = run_gated(run, marker, host_view)
    report = gated.result
    failures = []
    check_completed(failures, report)
    check_both_channels(failures, gated, environ_bytes([("PATH", "/usr/bin:/bin"), ("TOKEN", secret)]), sentinel)
    check_identity(failures, identity, gated)
    plan_json = msgspec.json.encode(admitted)
    report_json = encode_report_json(report)
    if b"ref1" not in plan_json:
        failures.append("the plan must carry the lease reference (else this check looks at the wrong bytes)")
    if secret.encode() in plan_json:
        failures.append("the PLAN must never contain a resolved secret value")
    if secret.encode() in report_json:
        failures.append("the sealed REPORT must never contain a resolved secret value")
    assert not failures, f"secret-lease oracle failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_an_unresolvable_lease_ends_unsupported_before_the_workload_runs(identity, sentinel):
    backend = LinuxBackend(launcher_as(identity), secret_resolver=MapSecretResolver({}))
    marker = unique_marker("BVISOR-ENV-NOLEASE-MARKER")
    entries = [EnvEntry.literal("PATH", "/usr/bin:/bin"), EnvEntry.lease("TOKEN", "missing-ref")]
    _, run = planned(backend, oracle_spec(parked_sh(marker), [Capability.Environment(policy=EnvPolicy.Exact(entries))]))
    gated = run_gated(run, marker, host_view)
    body = gated.result.body
    failures = []
    if body.outcome != Outcome.Unsupported:
        failures.append(f"an unresolvable lease must end the run Unsupported; got {body.outcome}")
    if not any(f.kind == "environment_lowering_failed" for f in body.observed):
        failures.append(f"the report must name environment_lowering_failed; facts={body.observed}")
    if gated.seen or gated.stdout or gated.stderr:
        failures.append(f"the workload must never run; marker seen={gated.seen} stdout={gated.stdout!r} stderr={gated.stderr!r}")
    if body.exit is not None:
        failures.append(f"no workload ran, so there is no exit status; got {body.exit}")
    assert not failures, f"unresolvable-lease oracle failures [{identity}]: {failures}"


_BIG = 128 * 1024

INVALID_TABLES = {
    "name_with_equals": [("A=B", "x")],
    "name_with_nul": [("A\x00B", "x")],
    "duplicate_name": [("DUP", "1"), ("OTHER", "2"), ("DUP", "3")],
    "empty_name": [("", "x")],
    "value_with_nul": [("V", "a\x00b")],
    "too_many_entries": [(f"V{i}", "") for i in range(257)],
    "too_many_bytes": [("BIG1", "x" * (_BIG // 2)), ("BIG2", "x" * (_BIG // 2))],
}


@pytest.mark.parametrize("case", sorted(INVALID_TABLES))
def test_an_invalid_environment_policy_is_refused_at_plan_and_nothing_runs(case):
    marker = unique_marker("BVISOR-ENV-INVALID-MARKER")
    spec = oracle_spec(parked_sh(marker), [exact_environment(INVALID_TABLES[case])])
    failures = []
    try:
        planned(linux_backend("caller"), spec)
        failures.append(f"{case}: the planner ADMITTED an invalid environment policy")
    except InvalidPolicy as refusal:
        if "policy.entries" not in refusal.field:
            failures.append(f"{case}: the refusal must name the entries field; got field={refusal.field!r} ({refusal})")
    if scan_proc_cmdline(marker) is not None:
        failures.append(f"{case}: a refused spec's workload is running")
    assert not failures, f"invalid-policy refusal failures: {failures}"


def test_an_environment_at_the_entry_and_byte_limits_is_admitted_and_arrives_exactly():
    """The other side of the refusals: 256 entries totalling exactly 128 KiB are fine."""
    names = [f"E{i:03d}" for i in range(256)]
    room = _BIG - sum(len(n) for n in names)
    pairs = [(n, "v" * (room // 256 + (1 if i < room % 256 else 0))) for i, n in enumerate(names)]
    assert sum(len(n) + len(v) for n, v in pairs) == _BIG
    out = bytearray()
    _, run = planned(linux_backend("caller"), oracle_spec(["/usr/bin/env", "-0"], [exact_environment(pairs)]))
    report = run(RunIO(stdout_sink=out.extend))
    failures = []
    check_completed(failures, report)
    if bytes(out) != environ_bytes(pairs):
        failures.append(f"the at-limit table must arrive exactly; got {len(out)} bytes, want {len(environ_bytes(pairs))}")
    assert not failures, f"at-limit environment failures: {failures}"


def test_control_without_the_capability_the_unconfined_workload_sees_the_host_sentinel(sentinel):
    """Control: the same parked workload on the InertBackend with no Environment capability
    inherits the test process's environment, sentinel included, by both channels."""
    marker = unique_marker("BVISOR-ENV-CONTROL-MARKER")
    _, run = planned(InertBackend(), oracle_spec(parked_sh(marker), []))
    gated = run_gated(run, marker, host_view)
    host, reported = (gated.inspected or {}).get("environ"), reported_environ(gated.after_park())
    failures = []
    check_completed(failures, gated.result)
    if host is None or sentinel not in host:
        failures.append(f"CONTROL CHANNEL A: the host must see the sentinel in the unconfined environ; got {host!r}")
    if reported is None or sentinel not in reported:
        failures.append(f"CONTROL CHANNEL B: the unconfined workload must report the sentinel; got {reported!r}")
    assert not failures, f"Environment control failures (the oracle would be vacuous): {failures}"


def test_an_entry_beyond_the_kernels_per_string_limit_is_refused_at_plan_not_at_exec():
    """execve counts NAME=VALUE plus its NUL against MAX_ARG_STRLEN (131072): the planner must
    refuse what exec would reject with E2BIG, rather than admit a run that cannot start."""
    from bvisor.contract.validate import MAX_EXEC_STRING

    fits = EnvEntry.literal("BIG", "x" * (MAX_EXEC_STRING - len("BIG") - 2))
    too_long = EnvEntry.literal("BIG", "x" * (MAX_EXEC_STRING - len("BIG") - 1))
    assert not spec_problems(oracle_spec(["/bin/true"], [Capability.Environment(policy=EnvPolicy.Exact([fits]))]))
    problems = spec_problems(oracle_spec(["/bin/true"], [Capability.Environment(policy=EnvPolicy.Exact([too_long]))]))
    assert problems and problems[0].field.endswith("entries[0].source.value"), problems
