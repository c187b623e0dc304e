"""seccomp installers: no_new_privs, and a compiled program put in force on this process.

What a program is (policies, compiler, digests) is ``bvisor.mechanism.seccomp``: the host
needs it too. Everything here calls into the kernel, irreversibly for the caller.
"""

import ctypes

from bvisor.launcher import libc
from bvisor.mechanism.seccomp import INSN_SIZE, allow_all_program
from bvisor.wire import attest

_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_FILTER_FLAG_NEW_LISTENER = 1 << 3


def no_new_privs() -> str:
    """No exec can grant privileges again (setuid bits, file capabilities): required before an
    unprivileged process may install a seccomp filter or restrict itself with landlock."""
    libc.call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return attest.NO_NEW_PRIVS


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(program: bytes, listener: bool = False) -> int:
    """seccomp(SET_MODE_FILTER): irreversible for the caller and its future children.
    ``listener``: the filter may return USER_NOTIF, and the call returns the notification
    fd (close-on-exec) its supervisor answers on; else 0.

    An unprivileged caller must have set no_new_privs first (the kernel refuses otherwise).
    """
    if not program or len(program) % INSN_SIZE:
        raise ValueError(f"not a sock_filter array: {len(program)} bytes")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // INSN_SIZE, ctypes.addressof(buffer))
    flags = _FILTER_FLAG_NEW_LISTENER if listener else 0
    return libc.syscall("seccomp", _SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(fprog))


def install_allow_all() -> None:
    """Install a filter that allows everything: proves filter mode works, changes nothing.

    Irreversible for the calling process, so only a throwaway probe child calls it.
    """
    no_new_privs()
    install(allow_all_program())
