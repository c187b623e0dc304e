"""The claims a report can back, and which of them a caller requires."""

import msgspec

from bvisor.contract.identity import CanonicalEnum


class EvidenceClaim(CanonicalEnum):
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
    require_captured_streams: bool = False
    require_exit_status: bool = False
    claims: frozenset[EvidenceClaim] = frozenset()

    def required_claims(self) -> frozenset[EvidenceClaim]:
        implied = {
            EvidenceClaim.CapturedStreams: self.require_captured_streams,
            EvidenceClaim.TerminalOutcome: self.require_exit_status,
        }
        return self.claims | {claim for claim, wanted in implied.items() if wanted}


def claim_names(claims: frozenset[EvidenceClaim]) -> str:
    """Claims in canonical order, for messages."""
    return ", ".join(claim.value for claim in sorted(claims))
