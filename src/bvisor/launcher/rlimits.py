"""Resource limits: per-process kernel caps, set last before exec and read back.

Each limit is a hard cap for one process (children inherit the value, not a shared count):
``nofile`` bounds the fd numbers a process can open.
"""

import resource

from bvisor.wire import attest

_RESOURCES = {"nofile": resource.RLIMIT_NOFILE}


def apply(limits: list) -> str:
    """Set soft = hard = ``limit`` (never above the inherited hard limit, which only root in
    the initial namespace may raise) and attest what the kernel now holds."""
    attested = []
    for name, limit in limits:
        which = _RESOURCES[name]
        _, hard = resource.getrlimit(which)
        value = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(which, (value, value))
        soft_now, hard_now = resource.getrlimit(which)
        if (soft_now, hard_now) != (value, value):
            raise OSError(0, f"rlimit {name} reads back {soft_now}/{hard_now}, set {value}")
        attested.append(f"{name}={value}")
    return " ".join([attest.RLIMITS, *attested])
