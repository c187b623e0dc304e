"""The Linux backend: probe → ceiling → execute through the separate launcher.

What each kind gets on this host is ``ceiling``'s; a budget's life is ``budgets``'; how a
run ended is ``verdict``'s. This class orchestrates them: it probes once, and executes an
admitted plan in its cgroup leaf through the launcher.
"""

import os
import time

import msgspec

from bvisor.backends.linux import cgroup, cgroup_orphans, cgroupfs, identity, probe
from bvisor.backends.linux.budgets import (
    RunSupervisor,
    budget_ending,
    leaf_facts,
    linux_budget_profile,
    make_leaf,
    run_usage,
    workload_rusage,
)
from bvisor.backends.linux.ceiling import BACKEND_ID, FAMILY, mechanism_name, profile_of
from bvisor.backends.linux.facts import LinuxFacts, linux_facts, parse_facts, probed_facts
from bvisor.backends.linux.filesystem import (
    exe_grant,
    exposed_grant,
    requirement_grants,
    temp_root_grant,
)
from bvisor.backends.linux.launch import HarnessError, LauncherProbe, default_launcher, run_launcher
from bvisor.backends.linux.lowering import LoweringFailed, compiled_filter, lower
from bvisor.backends.linux.verdict import judge, observation_facts, timeline_fact
from bvisor.backends.linux.warm import WarmLauncher
from bvisor.backends.observed import execution_record, observed_usage
from bvisor.capture import RunIO
from bvisor.contract import (
    BackendProfile,
    BackendProfileSnapshot,
    BoundaryPlan,
    BoundarySpec,
    Capability,
    Enforcement,
    ExecutionRecord,
    HostControl,
    ObservedFact,
    Outcome,
    RequirementKind,
    SupportMatrix,
)
from bvisor.contract.storage import storage_capped_by_temp_root
from bvisor.mechanism import landlock, seccomp
from bvisor.secrets import NoSecrets
from bvisor.wire.plan import encode_frame


def seccomp_baseline_facts(facts: LinuxFacts) -> dict:
    """The policies every run gets (the hardening baseline, the no-setid rules), named in the
    profile by their policy digest."""
    if not facts.seccomp_filter.ok:
        return {"seccomp.baseline": "not installed: no seccomp filter mode"}
    _, policy_digest, _, rules = compiled_filter(seccomp.EVERY_RUN_POLICIES, os.uname().machine)
    return {"seccomp.baseline": f"{','.join(seccomp.EVERY_RUN_POLICIES)} policy={policy_digest} rules={len(rules)}"}


def landlock_summary(facts: dict) -> str:
    """The ABI and the rights a ruleset handles on this host (a snapshot's facts, by name),
    for ``bvisor probe``."""
    abi = parse_facts(facts).landlock_abi
    return f"abi={abi} handled={','.join(landlock.right_names(landlock.handled_rights(abi))) or 'none'}"


class LinuxBackend:
    """Runs boundaries through ``bvisor-linux-launcher``.

    ``launcher``: a path or a command (default: this interpreter running ``bvisor.launcher``).
    ``fact_overrides`` replace probed facts, to simulate a weaker host in tests; they are part
    of the snapshot, so a plan made under them says so. ``warm``: run through a warm launcher
    server (call ``close()`` when done) instead of one launcher process per run.
    ``prestarted``: a ``PrestartedLauncher`` whose launcher, probe and warm server this backend
    adopts (``launcher`` and ``warm`` are then its own).
    ``evidence_paths``: directories of evidence (a store and its key) besides ``$BVISOR_HOME``
    that no run may see or write: masked in every view, and a run that would write them is
    refused.
    """

    def __init__(self, launcher=None, *, secret_resolver=None, fact_overrides=None, warm=None, prestarted=None, evidence_paths=()):
        self._resolver = secret_resolver or NoSecrets()
        self._evidence = tuple(evidence_paths)
        self._overrides = dict(fact_overrides or {})
        if prestarted is not None:  # its launcher, probe and warm server (``PrestartedLauncher``)
            self._launcher, launcher_probe, self._warm = prestarted.launcher, prestarted.probe, prestarted.warm
        else:
            self._launcher = launcher if launcher is not None else default_launcher()
            launcher_probe = LauncherProbe(self._launcher)  # runs while the cgroups are checked
            # warm: one pre-imported launcher server, started on the first run, forks a
            # coordinator per run (the same code from "plan received" on as the one-shot
            # launcher). Unset, BVISOR_LAUNCHER=warm chooses it (the suite runs oracles both ways).
            if warm is None:
                warm = os.environ.get("BVISOR_LAUNCHER") == "warm"
            self._warm = WarmLauncher(self._launcher) if warm else None
        try:
            self._layout = cgroup.current_layout()
            # Leaves a crashed host left behind are killed and removed before anything else.
            self.reconciled = cgroup_orphans.reconcile_orphans(self._layout)
            self._delegation = cgroup.prove_delegation(self._layout)
        except BaseException:
            launcher_probe.close()
            raise
        self._proven = {**probe.prove(launcher_probe), **self._delegation.facts()}

    def close(self) -> None:
        """Stop the warm launcher server, if one runs (a later run starts a new one)."""
        if self._warm is not None:
            self._warm.close()

    def warm_launcher_pid(self):
        """The warm launcher server's pid while one runs, else None."""
        return self._warm.server_pid() if self._warm is not None else None

    def id(self) -> str:
        return BACKEND_ID

    def support(self) -> SupportMatrix:
        return FAMILY

    def probe(self) -> BackendProfileSnapshot:
        facts = {**probe.read_live(), **self._proven, **self._overrides}
        typed = probed_facts(facts)
        facts.update(seccomp_baseline_facts(typed))  # derived after overrides: a simulated host says so
        # An overridden fact is marked, so a plan made on a simulated host says so.
        facts.update({f"override.{name}": "forced" for name in self._overrides})
        return BackendProfileSnapshot.of(BACKEND_ID, facts, linux_budget_profile(typed))

    def profile(self, snapshot: BackendProfileSnapshot) -> BackendProfile:
        return profile_of(linux_facts(snapshot))

    def mechanism(self, kind: RequirementKind, enforcement: Enforcement) -> str:
        return f"linux:{mechanism_name(kind)}:{enforcement.value}"

    def grants(self, requirement, spec: BoundarySpec, snapshot: BackendProfileSnapshot) -> list:
        if isinstance(requirement, Capability.Filesystem):
            return [grant.describe() for grant in requirement_grants(requirement, snapshot)]
        if isinstance(requirement, HostControl.ExposePath):
            return [exposed_grant(requirement).describe()]
        if isinstance(requirement, HostControl.LaunchWorkload):
            return [exe_grant(spec.workload).describe()]
        if isinstance(requirement, HostControl.TempRoot):
            return [temp_root_grant(requirement).describe()]
        return []

    def execute(self, plan: BoundaryPlan, attempt_id: str, io: RunIO) -> ExecutionRecord:
        started_ns, clock = time.time_ns(), time.monotonic_ns()
        try:
            leaf = make_leaf(self._layout, self._delegation, plan.budgets, attempt_id)
        except cgroupfs.CgroupError as exc:
            facts = [ObservedFact(kind="cgroup_setup_failed", detail=str(exc))]
            return execution_record(Outcome.SupervisorFault, None, facts, started_ns, observed_usage(clock))
        teardown = []
        try:
            lease = identity.run_identity(linux_facts(plan.profile).launcher_is_root)
        except identity.IdentityUnavailable as exc:
            if leaf is not None:
                leaf.teardown()
            facts = [ObservedFact(kind="identity_unavailable", detail=str(exc))]
            return execution_record(Outcome.Unsupported, None, facts, started_ns, observed_usage(clock))
        try:
            record = self._run_in(leaf, plan, attempt_id, io, started_ns, clock, lease.outside_id if lease else None)
        finally:
            if leaf is not None:
                teardown = leaf.teardown()
            if lease is not None:
                lease.release()  # only once nothing of the run is left: the id is free again
        if teardown:
            # The tree or its leaf outlived the run: never a clean ending.
            facts = record.observed + [ObservedFact(kind="cgroup_teardown_incomplete", detail="; ".join(teardown))]
            return msgspec.structs.replace(record, outcome=Outcome.SupervisorFault, observed=facts)
        return record

    def _run_in(self, leaf, plan: BoundaryPlan, attempt_id: str, io: RunIO, started_ns: int, clock: int, outside_id) -> ExecutionRecord:
        procs = leaf.open_procs() if leaf is not None else []
        try:
            lowered = lower(plan, attempt_id, self._resolver, procs, outside_id, self._evidence, io.terminal is not None)
        except LoweringFailed as exc:
            for fd in procs:
                os.close(fd)
            outcome = Outcome.Failed if exc.caller_error else Outcome.Unsupported
            return execution_record(outcome, None, [ObservedFact(kind=exc.fact, detail=exc.detail)], started_ns, observed_usage(clock))
        supervisor = RunSupervisor(plan.budgets, leaf, clock / 1e9)
        try:
            if self._warm is not None:
                observation = self._warm.run(encode_frame(lowered.plan), lowered.authorities, io, supervisor)
            else:
                observation = run_launcher(self._launcher, lowered.plan, lowered.authorities, io, supervisor)
        except HarnessError as exc:
            facts = lowered.facts + [ObservedFact(kind="launcher_harness_fault", detail=str(exc))]
            return execution_record(Outcome.SupervisorFault, None, facts, started_ns, observed_usage(clock))
        leaf_usage = leaf.usage() if leaf is not None else None
        outcome, exit_status, verdict_facts = judge(observation, lowered)
        outcome, exit_status, budget_facts = budget_ending(outcome, exit_status, supervisor, leaf_usage, plan.budgets)
        facts = lowered.facts + observation_facts(observation) + verdict_facts + budget_facts + leaf_facts(leaf, leaf_usage)
        facts.append(timeline_fact(observation, clock))
        usage = run_usage(observed_usage(clock, workload_rusage(observation)), leaf_usage, observation, storage_capped_by_temp_root(plan.spec))
        return execution_record(outcome, exit_status, facts, started_ns, usage, (observation.stdout, observation.stderr))
