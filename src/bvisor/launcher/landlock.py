"""Landlock installers: the ABI this kernel offers, and a ruleset built and put in force.

The ruleset is built from the root fds the host opened — never from paths — and applied with
restrict_self just before exec, after no_new_privs. Which rights a root gets is
``bvisor.mechanism.landlock``: the host names them too.
"""

import ctypes

from bvisor.launcher import libc
from bvisor.mechanism.landlock import handled_rights

_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1


def abi_version() -> int:
    """The landlock ABI this kernel offers; 0 when landlock is absent or disabled."""
    try:
        return libc.syscall("landlock_create_ruleset", None, 0, _CREATE_RULESET_VERSION)
    except OSError:
        return 0


class _RulesetAttr(ctypes.Structure):
    # Fields a kernel does not know must be zero; it accepts the larger struct then.
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the uapi struct is __attribute__((packed))
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def create_ruleset(abi: int, handle_fs: bool = True, scoped: int = 0) -> int:
    """A ruleset fd (close-on-exec) handling every filesystem right of ``abi`` (or none, for
    a scope-only domain), scoped by ``scoped``."""
    attr = _RulesetAttr(handled_rights(abi) if handle_fs else 0, 0, scoped)
    return libc.syscall("landlock_create_ruleset", ctypes.byref(attr), ctypes.sizeof(attr), 0)


def add_rule(ruleset: int, root_fd: int, allowed: int) -> None:
    attr = _PathBeneathAttr(allowed, root_fd)
    libc.syscall("landlock_add_rule", ruleset, _RULE_PATH_BENEATH, ctypes.byref(attr), 0)


def restrict_self(ruleset: int) -> None:
    libc.syscall("landlock_restrict_self", ruleset, 0)
