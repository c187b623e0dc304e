"""The exact environment a boundary gives its workload, computed in the host.

Shared by every backend: the declared table in order, secret leases resolved at the last
moment (raising ``SecretUnavailable``, never substituting a value), nothing inherited.
"""

from bvisor.contract import Capability, EnvPolicy, EnvSource


def declared_environment(capabilities):
    """The Environment capability's policy, or None when the spec declares none."""
    for cap in capabilities:
        if isinstance(cap, Capability.Environment) and isinstance(cap.policy, EnvPolicy.Exact):
            return cap.policy
    return None


def lower_environment(capabilities, resolver) -> list:
    """``[(name, value)]`` exactly as declared; empty when no environment is declared."""
    policy = declared_environment(capabilities)
    if policy is None:
        return []
    return [
        (e.name, resolver.resolve(e.source.ref) if isinstance(e.source, EnvSource.SecretLease) else e.source.value)
        for e in policy.entries
    ]
