"""UTS namespace: the run's own hostname, so the host's name is neither seen nor changed.

Created with the user namespace that owns it; the child names it before the workload exists
and reads the name back for the note.
"""

import ctypes
import os

from bvisor.launcher import libc
from bvisor.wire import attest

CLONE_NEWUTS = 0x04000000


def set_hostname(name: str) -> str:
    raw = name.encode()
    libc.call("sethostname", ctypes.c_char_p(raw), ctypes.c_size_t(len(raw)))
    if os.uname().nodename != name:
        raise OSError(0, f"hostname reads {os.uname().nodename!r}, not {name!r}")
    return attest.uts_namespace(name)
