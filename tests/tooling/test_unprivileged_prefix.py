"""The prefix the tests run uid 65534's commands with (``helpers.UNPRIVILEGED_PREFIX``): it
reaches this session's interpreter, virtualenv and checkout wherever they sit, and trees under
a directory uid 65534 cannot enter, without changing any host mode, showing nothing else of
that directory, touching the fds the caller passes, or leaving anything mounted."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from helpers import (
    SETPRIV_NOBODY,
    UNPRIVILEGED_PREFIX,
    free_fd_at_or_above,
    loud_skip,
    unprivileged_prefix,
)

# Run as uid 65534 from inside the tree: who it runs as, the inode it runs, whether it can see
# the private directory ($1: its listing, a file beside the tree) and what the fds after it are.
REPORT = """#!/bin/sh
echo "uid=$(id -u) ino=$(stat -c %i "$0")"
ls "$1" >/dev/null 2>&1 && echo "listed the private directory"
cat "$1/secret" 2>/dev/null && echo "read beside the tree"
shift
for fd; do echo "fd $fd=$(readlink /proc/self/fd/$fd)"; done
"""


def _needs_root() -> None:
    if os.geteuid() != 0:
        loud_skip("runs commands as uid 65534, which needs root")


def test_uid_65534_runs_this_sessions_interpreter_and_bvisor():
    _needs_root()
    done = subprocess.run(
        [*UNPRIVILEGED_PREFIX, sys.executable, "-I", "-c", "import os, sys, bvisor; print(os.getuid(), sys.prefix)"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.decode() == f"65534 {sys.prefix}\n", done.stderr.decode()


def test_a_tree_under_a_private_directory_is_reached_and_nothing_else():
    _needs_root()
    private = tempfile.mkdtemp(prefix="bvisor-private-")  # 0700, as root's home on a fresh machine
    read_end, write_end = os.pipe()
    # Every free fd a shell might open the trees on (3-9, and from 10 for bash's {var}<).
    passed = [fd for fd in range(3, 13) if free_fd_at_or_above(fd) == fd]
    for fd in passed:
        os.dup2(read_end, fd)
    try:
        tree = Path(private, "home", "tree")
        tree.mkdir(parents=True)
        Path(private, "home").chmod(0o700)  # a second closed directory, below the first
        Path(private, "secret").write_text("secret\n")
        script = tree / "report"
        script.write_text(REPORT)
        script.chmod(0o755)
        mounts_before = Path("/proc/self/mountinfo").read_text()
        argv = [str(script), private, *map(str, passed)]

        control = subprocess.run([*SETPRIV_NOBODY, *argv], capture_output=True, timeout=60, check=False)
        done = subprocess.run([*unprivileged_prefix([str(tree)]), *argv], pass_fds=passed, capture_output=True, timeout=60, check=False)

        assert control.returncode != 0 and b"Permission denied" in control.stderr, control
        pipe = os.readlink(f"/proc/self/fd/{read_end}")
        want = f"uid=65534 ino={script.stat().st_ino}\n" + "".join(f"fd {fd}={pipe}\n" for fd in passed)
        assert done.stdout.decode() == want, done.stderr.decode()
        assert oct(Path(private).stat().st_mode & 0o777) == oct(0o700)
        assert Path("/proc/self/mountinfo").read_text() == mounts_before
    finally:
        for fd in (read_end, write_end, *passed):
            os.close(fd)
        shutil.rmtree(private)
