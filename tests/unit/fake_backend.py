"""A fake in-memory backend with a configurable ceiling and a probe counter, and the
seed's spec shape, for the contract/planner/runner unit tests."""

from bvisor.contract import (
    BackendProfile,
    BackendProfileSnapshot,
    BoundarySpec,
    BudgetAvailability,
    BudgetProfile,
    BudgetRequirements,
    BudgetUsage,
    Capability,
    CeilingCell,
    Enforcement,
    EnvPolicy,
    EvidenceClaim,
    EvidenceRequirements,
    ExecutionRecord,
    ExitStatus,
    HostControl,
    MinGuarantee,
    NetPolicy,
    ObservedFact,
    Outcome,
    RequirementKind,
    StdStreams,
    SupportMatrix,
    SupportVerdict,
    Workload,
)

ALL_CLAIMS = frozenset(EvidenceClaim)
UNLIMITED_MEDIATED = BudgetAvailability(
    available=2**63 - 1, enforcement=Enforcement.Mediated, evidence=frozenset(), mechanism="fake_watch"
)


def enforced_everywhere_but(*kinds: RequirementKind) -> dict[RequirementKind, CeilingCell]:
    """A ceiling like a capable Linux host's: Enforced with every claim, except ``kinds``."""
    return {
        kind: CeilingCell(
            kind=kind,
            verdict=SupportVerdict(Enforcement.Enforced, ALL_CLAIMS),
            mechanism=f"fake_{kind.value}",
        )
        for kind in RequirementKind
        if kind not in kinds
    }


class FakeBackend:
    """Everything is configurable after construction, so a test can change the host
    between planning and running (drift) or make execution fail."""

    def __init__(self, backend_id: str = "fake"):
        self.backend_id = backend_id
        self.family = SupportMatrix.of({kind: SupportVerdict(Enforcement.Enforced, ALL_CLAIMS) for kind in RequirementKind})
        self.ceiling = enforced_everywhere_but(RequirementKind.NetworkAllowList)
        self.facts = {"kernel": "6.1", "userns": "1"}
        self.budget = BudgetProfile.filled(UNLIMITED_MEDIATED)
        self.record = ExecutionRecord(
            outcome=Outcome.Completed,
            exit=ExitStatus(code=0),
            observed=[ObservedFact("stream_captured", "stdout=2 stderr=0")],
            usage=BudgetUsage(wall=5, process_count=1),
            started_unix_ns=1,
            finished_unix_ns=2,
        )
        self.execute_error: Exception | None = None
        self.probe_count = 0
        self.executions: list[tuple] = []

    def id(self):
        return self.backend_id

    def support(self):
        return self.family

    def probe(self):
        self.probe_count += 1
        return BackendProfileSnapshot.of(self.backend_id, self.facts, self.budget)

    def profile(self, snapshot):
        return BackendProfile(backend=self.backend_id, cells=list(self.ceiling.values()))

    def mechanism(self, kind, enforcement):
        return f"fake:{kind.value}:{enforcement.value}"

    def grants(self, requirement, spec, snapshot):
        return []

    def execute(self, plan, attempt_id, io):
        self.executions.append((plan, attempt_id, io))
        if self.execute_error is not None:
            raise self.execute_error
        return self.record


def unsupported_cell(kind: RequirementKind, reason: str = "the fake host lacks it") -> CeilingCell:
    return CeilingCell(
        kind=kind,
        verdict=SupportVerdict(Enforcement.Unsupported),
        mechanism="none",
        reason=reason,
        remediation="enable it on the fake host",
    )


def seed_spec(
    policy=None,
    *,
    args=("-c", "awk 'NR>2 && NF {print $1}' /proc/self/net/dev | wc -l; exit 0"),
    capabilities=None,
    controls=None,
    budgets=None,
    evidence=None,
) -> BoundarySpec:
    """The seed's ``net_spec``, with any part replaceable."""
    return BoundarySpec(
        workload=Workload.Process(exe="/bin/sh", args=list(args)),
        capabilities=capabilities
        if capabilities is not None
        else [
            Capability.Network(policy=policy if policy is not None else NetPolicy.DenyAll()),
            Capability.Environment(policy=EnvPolicy.Exact([])),
        ],
        controls=controls
        if controls is not None
        else [HostControl.LaunchWorkload(), HostControl.CaptureStreams(streams=StdStreams.capture_out_err())],
        budgets=budgets if budgets is not None else BudgetRequirements.uniform(8, MinGuarantee.Mediated),
        evidence=evidence if evidence is not None else EvidenceRequirements(),
    )
