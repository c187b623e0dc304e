"""Host facts for the Linux backend's profile snapshot.

``prove`` does things (reads the launcher's own probe, run in throwaway children); it runs
once per backend. ``read_live`` only reads files and is cheap
enough to run at every plan and before every execute, to detect drift. The facts stay the
probe's strings, as the snapshot binds them; ``facts.parse_facts`` is what decisions read.
"""

import os

from bvisor.backends.linux.filesystem import probe_system_roots
from bvisor.mechanism.fdio import read_text

_SYSCTLS = (
    "user/max_user_namespaces",
    "kernel/unprivileged_userns_clone",
    "kernel/apparmor_restrict_unprivileged_userns",
)


def _read(path: str):
    try:
        return read_text(path).strip()
    except OSError:
        return None


def read_live() -> dict:
    facts = {"kernel_release": os.uname().release, "arch": os.uname().machine}
    for name in _SYSCTLS:
        value = _read(f"/proc/sys/{name}")
        if value is not None:
            facts["sysctl." + name.replace("/", ".")] = value
    facts.update(probe_system_roots())
    return facts


def prove(launcher_probe) -> dict:
    """What the launcher can install, proven by doing (a ``LauncherProbe``; cgroups are
    proven by ``cgroup``)."""
    return {f"launcher.{k}": v for k, v in launcher_probe.facts().items()}
