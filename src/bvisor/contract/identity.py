"""Canonical bytes and the content identities built on them.

Every identity in the contract is a 64-character lowercase hex string: blake3-256 over a
per-kind domain tag, a NUL, and the canonical MessagePack bytes of the thing identified.
"""

import enum
import os
from typing import Annotated, NewType

import blake3
import msgspec

# Deterministic order sorts sets (and str-keyed maps), so equal values encode to equal bytes.
_canonical_encoder = msgspec.msgpack.Encoder(order="deterministic")

HEX_DIGEST = msgspec.Meta(pattern="^[0-9a-f]{64}$", description="blake3-256, lowercase hex")


def canonical_bytes(obj: object) -> bytes:
    return _canonical_encoder.encode(obj)


def domain_digest(domain: str, obj: object) -> str:
    """blake3(domain ‖ 0x00 ‖ canonical bytes): the domain keeps one kind's hash from
    ever standing in for another's."""
    return blake3.blake3(domain.encode() + b"\x00" + canonical_bytes(obj)).hexdigest()


class CanonicalEnum(enum.Enum):
    """An enum whose members sort in declaration order.

    Sets of these members appear inside hashed values; canonical encoding sorts them, and
    declaration order is the one order that never depends on spelling.
    """

    def __lt__(self, other: "CanonicalEnum") -> bool:
        if type(other) is not type(self):
            return NotImplemented
        names = type(self)._member_names_
        return names.index(self.name) < names.index(other.name)


BackendId = NewType("BackendId", str)
BoundaryPlanHash = NewType("BoundaryPlanHash", str)
BackendProfileHash = NewType("BackendProfileHash", str)
AdmissionProgramHash = NewType("AdmissionProgramHash", str)
ReportBodyHash = NewType("ReportBodyHash", str)
# An attempt is an occurrence, not content: two runs of one plan are two attempts.
AttemptId = NewType("AttemptId", str)


def fresh_attempt_id() -> AttemptId:
    """An attempt's identity is drawn at random, not computed: 32 bytes, hex."""
    return AttemptId(os.urandom(32).hex())


# Field annotations: the identity's name plus the hex shape strict decoding checks.
PlanIdField = Annotated[BoundaryPlanHash, HEX_DIGEST]
ProfileHashField = Annotated[BackendProfileHash, HEX_DIGEST]
AdmissionHashField = Annotated[AdmissionProgramHash, HEX_DIGEST]
ReportHashField = Annotated[ReportBodyHash, HEX_DIGEST]
AttemptIdField = Annotated[AttemptId, HEX_DIGEST]
