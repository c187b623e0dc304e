"""Landlock: the kernel's unprivileged file-access LSM. Only the ABI query for now."""

from bvisor.launcher import libc

_LANDLOCK_CREATE_RULESET_VERSION = 1


def abi_version() -> int:
    """The landlock ABI this kernel offers; 0 when landlock is absent or disabled."""
    try:
        return libc.syscall("landlock_create_ruleset", None, 0, _LANDLOCK_CREATE_RULESET_VERSION)
    except OSError:
        return 0
