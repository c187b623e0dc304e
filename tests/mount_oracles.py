"""Shared by the TempRoot, ExposePath and storage oracles: backends with a forceable mount
probe, the seed's budgets with a storage limit (the temp root's size), the spec built on
them, and report readers."""

import os
import shutil
import sys

import msgspec

from bvisor import BoundarySpec, BudgetRequirements, LinuxBackend, MinGuarantee, Outcome
from bvisor.contract import BudgetRequest, RequirementKind
from bvisor.contract.errors import UnsupportedRequirement
from helpers import (
    GatedRun,
    check_completed,
    facts_of,
    host_paths_named,
    launcher_as,
    run_gated,
    runner_for,
    scan_proc_cmdline,
    workload_uid_problem,
)
from oracle_specs import oracle_spec

MIB = 1 << 20
GATE = 10.0  # seconds the host waits for a workload to park: a liveness bound, not a timing assert


def budgets(storage: int = MIB, guarantee: MinGuarantee = MinGuarantee.Mediated) -> BudgetRequirements:
    """The seed's uniform(8, Mediated) with ``storage`` as the storage limit, which sizes the
    temp root whatever the guarantee. An Enforced one is admitted only where the temp root is
    the only writable place (tests/oracle/test_storage.py)."""
    return msgspec.structs.replace(
        BudgetRequirements.uniform(8, MinGuarantee.Mediated),
        storage=BudgetRequest(limit=storage, guarantee=guarantee),
    )


def mount_spec(argv, controls=(), capabilities=(), storage: int = MIB) -> BoundarySpec:
    """``argv`` with the mount ``controls`` under ``capabilities`` and ``budgets(storage)``."""
    return oracle_spec(argv, capabilities, controls, budgets(storage))


def run_parked(identity: str, spec: BoundarySpec, marker: str, inspect, gate: float = GATE) -> GatedRun:
    """``spec`` run on the identity's backend; the host calls ``inspect(pid)`` while the
    workload is parked (``helpers.run_gated``, which waits ``gate`` seconds for it)."""
    return run_gated(runner_for(linux_backend(identity), spec), marker, inspect, timeout=gate)


def run_inspected(what: str, identity: str, spec: BoundarySpec, marker: str, inspect):
    """``run_parked``: the run, what the host read of it parked ({} if nothing), and the
    failures of the checks every such run passes (it ran to Completed, the host read it)."""
    gated = run_parked(identity, spec, marker, inspect)
    host = gated.inspected or {}
    print(f"{what} [{identity}]: host={host} stdout={gated.stdout!r} stderr={gated.stderr!r}", file=sys.stderr)
    failures = []
    check_completed(failures, gated.result)
    if not host:
        failures.append(f"CHANNEL A: the host never inspected the parked workload; stdout={gated.stdout!r} stderr={gated.stderr!r}")
    return gated, host, failures


def check_mount_attested(failures: list, report, made: str) -> None:
    """The launcher attests a private mount namespace; the report records the mount ``made``."""
    notes = facts_of(report, "launcher_note")
    if not any(n.startswith("mount_namespace=private") for n in notes):
        failures.append(f"the launcher must attest a private mount namespace; notes={notes}")
    if made not in facts_of(report, "mount_made"):
        failures.append(f"the report must record mount_made {made!r}; facts={report.body.observed}")


def run_with_a_missing_mountpoint(identity: str, argv, controls, marker: str, dest: str, created: str):
    """Run ``argv`` with ``controls`` that mount at ``dest``, which has no mountpoint on the host
    (nor in any temp root): the run and the failures of the checks such a run passes. It ends
    before the workload runs, without an exit; the report names the missing ``dest``; the
    launcher did not make ``created`` (the dest or its topmost missing parent) on the host."""
    gated = run_parked(identity, mount_spec(argv, controls), marker, lambda pid: {"pid": pid})
    body = gated.result.body
    print(f"missing mountpoint {dest} [{identity}]: outcome={body.outcome} facts={body.observed}", file=sys.stderr)
    failures = []
    if body.outcome in (Outcome.Completed, Outcome.Failed) or body.exit is not None:
        failures.append(f"a missing mountpoint must end the run without a workload exit; got {body.outcome} {body.exit}")
    if not any(dest in d for d in facts_of(gated.result, "mountpoint_missing")):
        failures.append(f"the report must say why (mountpoint_missing naming {dest}); facts={body.observed}")
    if gated.seen or gated.stdout or gated.stderr:
        failures.append(f"the workload must never run; seen={gated.seen} stdout={gated.stdout!r} stderr={gated.stderr!r}")
    if os.path.lexists(created):
        failures.append(f"the launcher created {created} on the host")
        shutil.rmtree(created, ignore_errors=True)
    return gated, failures


def check_identity(failures: list, identity: str, host: dict) -> None:
    problem = workload_uid_problem(identity, host.get("uid"))
    if problem:
        failures.append(f"the {identity} workload {problem}")


def linux_backend(identity: str, userns_mount: str | None = None) -> LinuxBackend:
    overrides = {"launcher.userns_mount": userns_mount} if userns_mount is not None else None
    return LinuxBackend(launcher_as(identity), fact_overrides=overrides)


def check_no_leftovers(failures: list, marker: str, what: str = "", written_to: str | None = None) -> None:
    """Gone when the run ends: no process carries the marker and nothing under /tmp is named by
    it (but in ``written_to``, a host directory the run was given to write)."""
    left = [p for p in host_paths_named(marker) if written_to is None or not p.startswith(written_to + "/")]
    if left:
        failures.append(f"{what}after the run the host's /tmp still holds {left}")
    if scan_proc_cmdline(marker) is not None:
        failures.append(f"{what}a process carrying the marker outlived the run")


def check_refused_without_mount_namespaces(failures: list, identity: str, spec: BoundarySpec, kind: RequirementKind) -> None:
    """``spec`` is admitted on this host (the control) and refused, naming ``kind`` and why,
    where the probe says unprivileged mount namespaces fail."""
    try:
        runner_for(linux_backend(identity), spec)
    except UnsupportedRequirement as exc:
        failures.append(f"control: the same spec must be admitted on the real host; refused {exc}")
    try:
        runner_for(linux_backend(identity, userns_mount="failed forced"), spec)
        failures.append(f"the planner ADMITTED {kind.value} on a host without unprivileged mount namespaces")
    except UnsupportedRequirement as refusal:
        if refusal.requirement != kind.value or refusal.kind is not kind:
            failures.append(f"the refusal must name {kind.value}; got requirement={refusal.requirement!r} ({refusal})")
        if "mount namespace" not in refusal.reason:
            failures.append(f"the refusal must say why (mount namespace); got {refusal.reason!r}")


def reported(stdout: bytes, key: str):
    """The rest of the workload's first ``KEY ...`` line, or None."""
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith(key + " "):
            return line[len(key) + 1 :]
    return None

