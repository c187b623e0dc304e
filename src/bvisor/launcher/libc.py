"""The one ctypes handle on libc, and errno-checked calls through it.

Only the launcher's mechanism modules call into this; each names its own syscalls.
"""

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

MACHINE = os.uname().machine

# Syscall numbers without a libc wrapper, per architecture. landlock_* and the new mount API
# share numbers on every architecture (they postdate the unified table); seccomp(2) does not.
_UNIFIED = {
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "landlock_create_ruleset": 444,
    "landlock_add_rule": 445,
    "landlock_restrict_self": 446,
}
_SYSCALLS = {
    "x86_64": {"seccomp": 317, **_UNIFIED},
    "aarch64": {"seccomp": 277, **_UNIFIED},
}


def _checked(ret: int) -> int:
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def call(name: str, *args) -> int:
    """Call a libc function by name; -1 becomes OSError(errno)."""
    return _checked(getattr(_libc, name)(*args))


def syscall(name: str, *args) -> int:
    """Issue a raw syscall by name; -1 becomes OSError(errno). ENOSYS on an unknown arch."""
    numbers = _SYSCALLS.get(MACHINE)
    if numbers is None:
        raise OSError(38, f"no syscall table for {MACHINE}")
    return _checked(_libc.syscall(ctypes.c_long(numbers[name]), *args))
