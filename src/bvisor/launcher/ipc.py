"""IPC namespace: no SysV shared memory, semaphore or message queue of the host (nor POSIX
message queue) is visible, and what the run makes dies with it.

Created with the user namespace that owns it. ``attest`` counts the SysV objects this
process can see (/proc/sysvipc lists the reader's IPC namespace): a new one has none.
"""

from bvisor.mechanism import fdio
from bvisor.wire.attest import IPC_NAMESPACE

CLONE_NEWIPC = 0x08000000


def _objects(kind: str) -> int:
    return sum(1 for line in fdio.read_text(f"/proc/sysvipc/{kind}").splitlines()[1:] if line.strip())


def attest() -> str:
    counts = {kind: _objects(kind) for kind in ("shm", "msg", "sem")}
    if any(counts.values()):
        raise OSError(0, f"the new IPC namespace already holds objects: {counts}")
    return IPC_NAMESPACE
