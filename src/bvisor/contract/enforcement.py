"""How strongly a requirement holds: the answer a backend gives and the floor a caller asks."""

import enum


class Enforcement(enum.Enum):
    """How strongly a requirement or budget holds. ``enforced`` is structural (the kernel
    refuses or the run is killed); ``mediated`` is supervised per attempt with bounded
    overshoot (a budget: watched and reported, never capped); ``unsupported`` is only ever a
    backend's answer, never a request."""

    Enforced = "enforced"
    Mediated = "mediated"
    Unsupported = "unsupported"

    @property
    def strength(self) -> int:
        return _STRENGTH[self]

    def meet(self, other: "Enforcement") -> "Enforcement":
        """The weaker of the two: a chain holds only as well as its weakest link."""
        return self if self.strength <= other.strength else other

    def satisfies(self, guarantee: "MinGuarantee") -> bool:
        return self.strength >= guarantee.enforcement.strength


# Deliberately not an ordering on the enum itself: comparing names alphabetically would
# silently rank "enforced" below "mediated".
_STRENGTH = {Enforcement.Unsupported: 0, Enforcement.Mediated: 1, Enforcement.Enforced: 2}


class MinGuarantee(enum.Enum):
    """The least a caller accepts: ``enforced`` or ``mediated`` (``unsupported`` is not
    requestable)."""

    Mediated = "mediated"
    Enforced = "enforced"

    @property
    def enforcement(self) -> Enforcement:
        return Enforcement(self.value)
