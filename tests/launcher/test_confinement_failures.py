"""A host that cannot drop the workload's privileges: the run is refused as confinement the
host cannot give (Unsupported, ``confinement_unavailable``), never run, and never reported as
a bare supervisor fault. (The dispatch by schedule once reported this failure under another
step name, which the host's verdict did not read as such: issue 14's attack review.)"""

import errno
import os
import struct
import subprocess
import sys

from bvisor.backends.linux import launch
from helpers import launcher_path, loud_skip, plan, sh_authority

# Exec the launcher under a filter that answers capset(2) with EPERM, as a container profile
# or an old kernel may: the capability drop fails. Classic BPF, x86_64 (capset is 126).
_INSN = struct.Struct("<HBBI")
CAPSET_EPERM = b"".join(
    [
        _INSN.pack(0x20, 0, 0, 4),  # load the audit arch
        _INSN.pack(0x15, 1, 0, 0xC000003E),  # x86_64: on to the number
        _INSN.pack(0x06, 0, 0, 0x7FFF0000),  # another arch: allow
        _INSN.pack(0x20, 0, 0, 0),  # load the syscall number
        _INSN.pack(0x15, 0, 1, 126),  # capset?
        _INSN.pack(0x06, 0, 0, 0x00050000 | 1),  # errno EPERM
        _INSN.pack(0x06, 0, 0, 0x7FFF0000),  # allow
    ]
)


def _under_capset_eperm(argv: list) -> list:
    wrap = (
        "import os, sys; from bvisor.launcher import seccomp; "
        f"seccomp.install({CAPSET_EPERM!r}); os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", wrap, *argv]


def test_a_capability_drop_the_host_refuses_is_confinement_unavailable():
    if os.uname().machine != "x86_64":
        loud_skip("the capset filter is written for x86_64")
    marker = f"BVISOR-NEVER-RUNS-{os.getpid()}"
    plan_ = plan(["sh", "-c", f"echo {marker}"], False)
    obs = launch.run_launcher(_under_capset_eperm([str(launcher_path())]), plan_, [sh_authority()])
    failed = obs.note_fields("child_failed")
    assert failed is not None and failed["step"] == "confinement", obs.notes
    assert launch.launch_confinement_unavailable(obs), obs.notes
    assert marker.encode() not in obs.captured_stdout
    # The control: the same launcher and plan without the filter runs the workload.
    control = launch.run_launcher(launcher_path(), plan_, [sh_authority()])
    assert marker.encode() in control.captured_stdout and control.note_fields("child_failed") is None, control.notes


def test_the_filter_answers_capset_with_eperm_and_lets_the_rest_run():
    # capset(NULL, NULL) fails EFAULT where nothing stops it, EPERM under the wrapper's filter.
    probe = "import ctypes; libc = ctypes.CDLL(None, use_errno=True); libc.syscall(126, 0, 0); print(ctypes.get_errno())"
    under = subprocess.run(_under_capset_eperm([sys.executable, "-c", probe]), capture_output=True, text=True, timeout=30)
    bare = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert (under.stdout.strip(), bare.stdout.strip()) == (str(errno.EPERM), str(errno.EFAULT)), (under, bare)
