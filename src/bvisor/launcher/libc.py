"""The one ctypes handle on libc, and errno-checked calls through it.

Only the launcher's mechanism modules call into this; each names its own syscalls.
"""

import ctypes
import os

from bvisor.mechanism import syscalls

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

MACHINE = os.uname().machine


def _checked(ret: int) -> int:
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def call(name: str, *args) -> int:
    """Call a libc function by name; -1 becomes OSError(errno)."""
    return _checked(getattr(_libc, name)(*args))


def syscall(name: str, *args) -> int:
    """Issue a raw syscall by name (numbered by ``syscalls.NUMBERS``, the one table the seccomp
    compiler uses too); -1 becomes OSError(errno). ENOSYS on an unknown arch."""
    numbers = syscalls.NUMBERS.get(MACHINE)
    if numbers is None:
        raise OSError(38, f"no syscall table for {MACHINE}")
    return _checked(_libc.syscall(ctypes.c_long(numbers[name]), *args))
