"""The claims a report can back, and which of them a caller requires."""

from typing import Annotated

import msgspec

from bvisor.contract.annotate import doc
from bvisor.contract.identity import CanonicalEnum


class EvidenceClaim(CanonicalEnum):
    """What a report can back. Requirements back `terminal_outcome` and `process_tree`
    (launch_workload, kill, allowing descendants), `captured_streams` (capture_streams),
    `mechanism_attestation` (most kinds) and `allowed_actions` (filesystem); budget
    dimensions back `resource_usage`. Never backed in this version: denied_attempts,
    filesystem_delta, network_activity, artifact_lineage (a spec requiring one is refused)."""

    TerminalOutcome = "terminal_outcome"
    CapturedStreams = "captured_streams"
    ResourceUsage = "resource_usage"
    AllowedActions = "allowed_actions"
    DeniedAttempts = "denied_attempts"
    FilesystemDelta = "filesystem_delta"
    ProcessTree = "process_tree"
    NetworkActivity = "network_activity"
    ArtifactLineage = "artifact_lineage"
    MechanismAttestation = "mechanism_attestation"


class EvidenceRequirements(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The claims the report must be able to back, checked at plan against the evidence of
    the admitted requirements (a budget's own evidence is asked on the budget)."""

    require_captured_streams: Annotated[bool, doc("Require `captured_streams`.")] = False
    require_exit_status: Annotated[bool, doc("Require `terminal_outcome`: the workload's real exit code or signal.")] = False
    claims: Annotated[frozenset[EvidenceClaim], doc("Further claims to require; `resource_usage` is not backed here (ask it on a budget).")] = frozenset()

    def required_claims(self) -> frozenset[EvidenceClaim]:
        implied = {
            EvidenceClaim.CapturedStreams: self.require_captured_streams,
            EvidenceClaim.TerminalOutcome: self.require_exit_status,
        }
        return self.claims | {claim for claim, wanted in implied.items() if wanted}


def claim_names(claims: frozenset[EvidenceClaim]) -> str:
    """Claims in canonical order, for messages."""
    return ", ".join(claim.value for claim in sorted(claims))
