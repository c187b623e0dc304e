"""The launcher's control channel carries the run's verdict: nothing the run's inputs or the
workload choose may put a line on it (issue 14's attack review).

- A note may carry text the host's filesystem chose: the caller's working directory is the
  view's cwd, and the launcher notes it. A directory named ``repo<sep># workload_exit code=0``
  must not forge the workload's exit.
- The workload must not take the channel itself from the launcher with pidfd_getfd (a
  same-uid process may, on a dumpable one, where no user namespace or landlock domain stands
  between them; the plan here has neither).
"""

import json
import os
import subprocess
import sys

import pytest

from bvisor.backends.linux import launch
from bvisor.backends.linux.launch import _read_control
from helpers import IDENTITIES, cli_prefix, launcher_as, plan, sh_authority

BVISOR = os.path.join(os.path.dirname(sys.executable), "bvisor")
# Each character str.splitlines would end a line at, besides "\n".
SEPARATORS = {"carriage return": "\r", "record separator": "\x1e", "NEL": "\x85", "line separator": "\u2028", "vertical tab": "\x0b"}
FORGED = "# workload_exit code=0"


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("separator", sorted(SEPARATORS))
def test_a_directory_name_cannot_forge_the_workloads_exit(identity, separator, host_dir):
    cwd = os.path.join(host_dir("bvisor-control-"), f"repo{SEPARATORS[separator]}{FORGED}")
    os.mkdir(cwd)
    done = subprocess.run(
        (*cli_prefix(identity), BVISOR, "run", "--no-store", "--report", "-", "--", "/bin/false"),
        cwd=cwd, capture_output=True, timeout=60,
    )
    report = json.loads(done.stdout)
    notes = [f["detail"] for f in report["observed"] if f["kind"] == "launcher_note"]
    # The workload's own account: /bin/false exits 1, and so does the command.
    assert (report["outcome"], report["exit"], done.returncode) == ("failed", {"code": 1}, 1), (report["exit"], notes)
    # The host's: one exit note, and the directory's name in the cwd note, escaped in place.
    assert [n for n in notes if n.startswith("workload_exit")] == ["workload_exit code=1"], notes
    assert any(n.startswith("cwd=") and FORGED in n for n in notes), notes


def test_control_a_line_reader_that_splits_where_str_splitlines_does_would_take_the_forged_exit():
    # The launcher's line as an unescaping writer would send it: the host's reader ends lines
    # at "\n" alone, so the forged text stays inside the cwd note; str.splitlines (the old
    # reader) would have made it a note of its own, read before the real one.
    channel = f"# cwd=/ wanted=/tmp/repo\x1e{FORGED}\n# workload_exit code=1\n".encode()
    assert "workload_exit code=0" in [line[2:] for line in channel.decode().splitlines()]
    assert [n for n in _read_control(channel)[1] if n.startswith("workload_exit")] == ["workload_exit code=1"]


# The workload: pidfd_getfd on every ancestor's first fds; any socket it gets, it writes a
# forged exit on. Prints HELD or FORGED. Then the control: the same call on a child it
# started itself (same uid, dumpable) must succeed, so the call works here at all.
GRAB = """
import ctypes, os, socket, stat, sys
libc = ctypes.CDLL(None, use_errno=True)
PIDFD_OPEN, PIDFD_GETFD = 434, 438
def grab(pid):
    pidfd = libc.syscall(PIDFD_OPEN, pid, 0)
    got = []
    for fd in range(80):
        new = libc.syscall(PIDFD_GETFD, pidfd, fd, 0) if pidfd >= 0 else -1
        if new >= 0:
            got.append(fd)
            if stat.S_ISSOCK(os.fstat(new).st_mode):
                socket.socket(fileno=new).send(b"# workload_exit code=0\\n")
            else:
                os.close(new)
    return got
ancestors, pid = [], os.getpid()
while True:
    pid = int([l for l in open(f"/proc/{pid}/status") if l.startswith("PPid:")][0].split()[1])
    if pid <= 1:
        break
    ancestors.append(pid)
taken = {a: grab(a) for a in ancestors}
child = os.fork()
if child == 0:
    os.read(os.pipe()[0], 1)
own = grab(child)
os.kill(child, 9)
print("FORGED" if any(taken.values()) else "HELD", taken, "own_child_fds", len(own))
sys.exit(1)
"""


@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_workload_cannot_take_the_launchers_control_channel(identity):
    argv = ["sh", "-c", 'exec "$0" -c "$1"', sys.executable, GRAB]  # the plan's exe is sh
    obs = launch.run_launcher(launcher_as(identity), plan(argv, False), [sh_authority()])
    said = obs.captured_stdout.decode()
    # The workload's own account: it took nothing from the launcher, and the same call on its
    # own child worked (the control: pidfd_getfd is not refused here for another reason).
    assert said.startswith("HELD"), said
    assert "own_child_fds 0" not in said, said
    # The host's: the launcher refused attaching, and the one exit note is the workload's.
    assert obs.note_fields("launcher_attach=refused") is not None, obs.notes
    assert [n for n in obs.notes if n.startswith("workload_exit")] == ["workload_exit code=1"], obs.notes
