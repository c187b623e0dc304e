"""Capabilities: the workload holds none.

Root inside a new user namespace holds every capability in it — enough to undo our own
mounts (remount a read-only bind writable, lift a tmpfs size, unmount the temp root). So
before exec the child empties its bounding, ambient, inheritable, permitted and effective
sets and locks the securebits that would let uid 0 regain them; the result is read back
from /proc/self/status. A nested user namespace the workload creates later only sees our
mounts locked.
"""

import ctypes

from bvisor.launcher import libc
from bvisor.mechanism import fdio
from bvisor.wire import attest

_PR_CAPBSET_DROP = 24
_PR_SET_SECUREBITS = 28
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_SETPCAP = 8
# noroot, no_setuid_fixup, keep_caps and no_cap_ambient_raise, each with its lock bit.
_SECUREBITS_LOCKED_DOWN = 0b11101111
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_STATUS_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _status() -> dict:
    pairs = (line.split(":", 1) for line in fdio.read_text("/proc/self/status").splitlines() if ":" in line)
    return {k: int(v.strip(), 16) for k, v in pairs if k in _STATUS_FIELDS}


_last_cap = None  # a global, not functools.cache: importing functools costs ~0.7 ms a run


def last_cap() -> int:
    """The highest capability number this kernel knows (fixed while it runs: read once)."""
    global _last_cap
    if _last_cap is None:
        _last_cap = int(fdio.read_text("/proc/sys/kernel/cap_last_cap"))
    return _last_cap


def drop_all() -> str:
    """Empty every capability set; lock uid 0 out of regaining them where we may."""
    can_set_pcap = bool(_status()["CapEff"] >> _CAP_SETPCAP & 1)
    if can_set_pcap:
        libc.call("prctl", _PR_SET_SECUREBITS, _SECUREBITS_LOCKED_DOWN, 0, 0, 0)
        for cap in range(last_cap() + 1):
            libc.call("prctl", _PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.call("prctl", _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    libc.call("capset", ctypes.byref(_CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)), ctypes.byref((_CapData * 2)()))
    left = {name: value for name, value in _status().items() if value and (name != "CapBnd" or can_set_pcap)}
    if left:
        raise OSError(0, f"capabilities survived the drop: {left}")
    bounding = "empty" if can_set_pcap else "unchanged(no CAP_SETPCAP; no_new_privs keeps it unusable)"
    return f"{attest.CAPABILITIES} bounding={bounding} securebits={'locked' if can_set_pcap else 'unchanged'}"
