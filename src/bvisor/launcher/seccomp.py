"""seccomp: syscall filtering (for now, only the proof that filter mode can be installed) and
no_new_privs, which every filter and landlock domain needs."""

import ctypes

from bvisor.launcher import libc

_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_BPF_RET_K = 0x06  # BPF_RET | BPF_K
_SECCOMP_RET_ALLOW = 0x7FFF0000


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def no_new_privs() -> str:
    """No exec can grant privileges again (setuid bits, file capabilities): required before an
    unprivileged process may install a seccomp filter or restrict itself with landlock."""
    libc.call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return "no_new_privs=1"


def install_allow_all() -> None:
    """Install a filter that allows everything: proves filter mode works, changes nothing.

    Irreversible for the calling process, so only a throwaway probe child calls it.
    """
    program = (_SockFilter * 1)(_SockFilter(_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    fprog = _SockFprog(1, program)
    no_new_privs()
    libc.syscall("seccomp", _SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(fprog))
