"""The inert backend: launches the workload with no confinement at all.

It admits only what it truly gives — launching, capturing streams, an exact environment
(the spawn's envp) and closing inherited fds (the spawn's close_fds) — and refuses every
other requirement. Without an Environment or InheritedFds requirement it passes the host's
environment and inheritable fds through, which is what makes it the control run for the
oracles: the attack the boundary stops succeeds here.
"""

import os
import subprocess
import time

from bvisor.backends.observed import (
    Rusage,
    execution_record,
    observed_usage,
    uncapped_budget_profile,
)
from bvisor.capture import RunIO, StreamCapture, pump
from bvisor.contract import (
    BackendProfile,
    BackendProfileSnapshot,
    BoundaryPlan,
    Capability,
    CeilingCell,
    Enforcement,
    EvidenceClaim,
    ExecutionRecord,
    ExitStatus,
    FdPolicy,
    ObservedFact,
    Outcome,
    RequirementKind,
    SupportMatrix,
    SupportVerdict,
)
from bvisor.environment import declared_environment, lower_environment
from bvisor.secrets import NoSecrets, SecretUnavailable

BACKEND_ID = "inert"

_GIVES = {
    RequirementKind.LaunchWorkload: ("spawn", frozenset({EvidenceClaim.TerminalOutcome})),
    RequirementKind.CaptureStreams: ("pipe_capture", frozenset({EvidenceClaim.CapturedStreams})),
    RequirementKind.Environment: ("spawn_envp", frozenset({EvidenceClaim.MechanismAttestation})),
    RequirementKind.InheritedFdsNone: ("spawn_close_fds", frozenset({EvidenceClaim.MechanismAttestation})),
}
FAMILY = SupportMatrix.of({k: SupportVerdict(Enforcement.Enforced, evidence) for k, (_, evidence) in _GIVES.items()})


class InertBackend:
    def __init__(self, *, secret_resolver=None):
        self._resolver = secret_resolver or NoSecrets()

    def id(self) -> str:
        return BACKEND_ID

    def support(self) -> SupportMatrix:
        return FAMILY

    def probe(self) -> BackendProfileSnapshot:
        return BackendProfileSnapshot.of(BACKEND_ID, {}, uncapped_budget_profile())

    def profile(self, snapshot: BackendProfileSnapshot) -> BackendProfile:
        cells = [
            CeilingCell(kind=kind, verdict=FAMILY.best_case(kind), mechanism=mechanism)
            for kind, (mechanism, _) in _GIVES.items()
        ]
        return BackendProfile(backend=BACKEND_ID, cells=cells)

    def mechanism(self, kind: RequirementKind, enforcement: Enforcement) -> str:
        return f"inert:{_GIVES[kind][0] if kind in _GIVES else 'none'}:{enforcement.value}"

    def grants(self, requirement, spec, snapshot: BackendProfileSnapshot) -> list:
        return []

    def execute(self, plan: BoundaryPlan, attempt_id: str, io: RunIO) -> ExecutionRecord:
        started_ns, clock = time.time_ns(), time.monotonic_ns()
        spec = plan.spec
        caps = spec.capabilities
        exact_env = declared_environment(caps) is not None
        try:
            env = dict(lower_environment(caps, self._resolver)) if exact_env else None
        except SecretUnavailable as exc:
            fact = ObservedFact(kind="environment_lowering_failed", detail=str(exc))
            return execution_record(Outcome.Unsupported, None, [fact], started_ns, observed_usage(clock))
        close_fds = any(isinstance(c, Capability.InheritedFds) and isinstance(c.policy, FdPolicy.Nothing) for c in caps)
        argv = [spec.workload.exe, *spec.workload.args]
        facts = [ObservedFact(kind="workload_launched", detail=f"{argv[0]} unconfined close_fds={close_fds} exact_env={exact_env}")]
        try:
            proc = subprocess.Popen(
                argv,
                executable=argv[0],
                env=env,
                close_fds=close_fds,
                stdin=io.stdin_fd if io.stdin_fd is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            kind = "exe_not_found" if isinstance(exc, FileNotFoundError) else "exe_not_executable"
            facts.append(ObservedFact(kind=kind, detail=f"{argv[0]}: {exc.strerror}"))
            return execution_record(Outcome.Failed, None, facts, started_ns, observed_usage(clock))
        stdout = StreamCapture("stdout", io.capture_limit, io.stdout_sink)
        stderr = StreamCapture("stderr", io.capture_limit, io.stderr_sink)
        pidfd = os.pidfd_open(proc.pid)
        try:
            pump({proc.stdout.fileno(): stdout.feed, proc.stderr.fileno(): stderr.feed}, pidfd)
        finally:
            os.close(pidfd)
            proc.stdout.close()
            proc.stderr.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, for the rusage
        if os.WIFSIGNALED(status):
            exit_status, outcome = ExitStatus(signal=os.WTERMSIG(status)), Outcome.Failed
        else:
            code = os.WEXITSTATUS(status)
            exit_status, outcome = ExitStatus(code=code), (Outcome.Completed if code == 0 else Outcome.Failed)
        rusage = Rusage(round((usage.ru_utime + usage.ru_stime) * 1e6), usage.ru_maxrss)
        return execution_record(outcome, exit_status, facts, started_ns, observed_usage(clock, rusage), (stdout, stderr))
