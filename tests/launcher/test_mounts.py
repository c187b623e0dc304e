"""The temp root's landlock rule is built from the fd the mount itself gave, not by opening
the mountpoint's path again: a path can be renamed or replaced once the tmpfs is attached
(any process of the user can, when the temp root lives in a directory it may write), and a
re-opened path would then put the run's write rule on whatever the path names by then."""

import json
import os
import subprocess
import sys
import tempfile

from helpers import loud_skip

# Runs in a fresh interpreter: unshare(CLONE_NEWUSER) refuses a multi-threaded process. The
# swap happens from the test's own mount namespace, as a host process would do it (inside
# the run's namespace the kernel refuses to rename a mountpoint; outside it, it does not).
SWAP = r"""
import json, os, sys
from bvisor.launcher import libc, mounts, userns
path = sys.argv[1]
ids = (os.geteuid(), os.getegid())
try:
    libc.call("unshare", userns.CLONE_NEWUSER | mounts.CLONE_NEWNS)
    userns.map_self(*ids)
except OSError as exc:
    print(json.dumps({"skip": f"no user+mount namespace here: {exc}"}), flush=True)
    sys.exit(0)
mounts.make_private()
note, root = mounts.mount_temp_root(path, 1 << 20, 256)
print(json.dumps({"mounted": note}), flush=True)
sys.stdin.readline()                    # the host has swapped the mountpoint by now
reopened = os.open(path, os.O_PATH)     # what a path-based rule would be built on
print(json.dumps({
    "fd": os.fstat(root).st_dev,
    "moved": os.stat(path + ".moved").st_dev,
    "impostor": os.stat(path).st_dev,
    "reopened": os.fstat(reopened).st_dev,
}), flush=True)
"""


def test_the_temp_root_fd_stays_on_the_tmpfs_when_its_mountpoint_is_swapped():
    parent = tempfile.mkdtemp(prefix="bvisor-mounts-")
    path = os.path.join(parent, "scratch")
    os.mkdir(path)
    host_dev = os.stat(path).st_dev
    child = subprocess.Popen([sys.executable, "-c", SWAP, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(child.stdout.readline() or "{}")
        if "skip" in first:
            loud_skip(first["skip"])
        assert "mounted" in first, f"the tmpfs was not mounted: {child.stderr.read()[-600:]}"
        os.rename(path, path + ".moved")  # the attack: the mountpoint moves away ...
        os.mkdir(path)  # ... and an impostor takes its name
        child.stdin.write("go\n")
        child.stdin.flush()
        seen = json.loads(child.stdout.readline() or "{}")
        assert seen, f"the swap script failed: {child.stderr.read()[-600:]}"
    finally:
        child.kill()
        child.wait()
        for name in ("scratch", "scratch.moved"):
            if os.path.isdir(os.path.join(parent, name)):
                os.rmdir(os.path.join(parent, name))
        os.rmdir(parent)
    # Inside the run's namespace the tmpfs moved along with its mountpoint.
    assert seen["moved"] == seen["fd"] != host_dev, f"the fd must be the tmpfs's root, now at .moved: {seen}"
    assert seen["fd"] != seen["impostor"], f"the fd must not follow the path to the impostor: {seen}"
    # Control: re-opening the path (the old way) lands on the impostor, a host directory.
    assert seen["reopened"] == seen["impostor"] == host_dev, f"control: the path now names the impostor: {seen}"
