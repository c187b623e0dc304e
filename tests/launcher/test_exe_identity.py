"""The exe identity a report records: the host's stat and blake3 of the file, read through
the fd the host opened, so a file put at the path afterwards changes neither what is recorded
nor what runs (the control: the path really names the new file, and exec by path runs it);
the hash cache serves a settled file and is dropped when the file changes in place."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import blake3
import pytest

from bvisor.backends.linux import exe_identity as module
from bvisor.backends.linux.exe_identity import exe_identity
from bvisor.backends.linux.lowering import open_exe
from helpers import UNPRIVILEGED_PREFIX, shared_host_dir

# Runs the O_PATH fd in argv[1] with fexecve (execveat on the fd): what the launcher does.
FEXECVE = "import os, sys; os.execve(int(sys.argv[1]), ['prog', 'from-the-fd'], {})"


def host_blake3(path) -> str:
    return blake3.blake3(Path(path).read_bytes()).hexdigest()


def host_detail(path) -> str:
    status = os.stat(path)
    dev = f"{os.major(status.st_dev)}:{os.minor(status.st_dev)}"
    return f"dev={dev} ino={status.st_ino} size={status.st_size} blake3={host_blake3(path)}"


@pytest.fixture
def hashes(monkeypatch) -> list:
    """An empty cache, and every file the module hashes (by inode), in order."""
    monkeypatch.setattr(module, "_digests", type(module._digests)())
    seen, real = [], module._hash_through

    def counting(exe_fd, status):
        seen.append(status.st_ino)
        return real(exe_fd, status)

    monkeypatch.setattr(module, "_hash_through", counting)
    return seen


@pytest.mark.parametrize("path", ["/bin/true", os.path.realpath(sys.executable)])
def test_the_identity_is_the_host_stat_and_blake3_of_the_file(path, hashes):
    fd = open_exe(path)
    try:
        assert exe_identity(fd).detail() == host_detail(path)
    finally:
        os.close(fd)


def test_a_file_put_at_the_path_after_opening_changes_neither_record_nor_run(tmp_path, hashes):
    prog = tmp_path / "prog"
    shutil.copy("/bin/echo", prog)
    recorded_before = host_detail(prog)
    fd = open_exe(str(prog))
    try:
        shutil.copy("/bin/true", tmp_path / "new")
        os.replace(tmp_path / "new", prog)
        # The control: the path now names another file, and exec by path runs that one.
        assert host_blake3(prog) == host_blake3("/bin/true") != host_blake3("/bin/echo")
        by_path = subprocess.run([str(prog), "from-the-path"], capture_output=True, check=True)
        assert by_path.stdout == b""
        # The record and the run both follow the fd: the echo the host opened.
        assert exe_identity(fd).detail() == recorded_before
        by_fd = subprocess.run([sys.executable, "-c", FEXECVE, str(fd)], pass_fds=[fd], capture_output=True, check=True)
        assert by_fd.stdout == b"from-the-fd\n"
    finally:
        os.close(fd)


def flip_a_byte_in_place(path: Path) -> None:
    """Same inode, same size, one byte different."""
    with open(path, "r+b") as file:
        file.seek(100)
        byte = file.read(1)
        file.seek(100)
        file.write(bytes([byte[0] ^ 0xFF]))


def test_the_cache_serves_a_settled_file_and_is_dropped_when_it_changes(tmp_path, hashes):
    prog = tmp_path / "prog"
    shutil.copy("/bin/true", prog)
    fd = open_exe(str(prog))
    try:
        # Just written: a change within the same timestamp tick could not be told apart.
        assert exe_identity(fd) == exe_identity(fd)
        assert len(hashes) == 2, "a file changed moments ago is hashed every time"
        time.sleep(module._SETTLED_NS / 1e9 + 0.1)
        settled = exe_identity(fd)
        assert exe_identity(fd) == settled and len(hashes) == 3, "a settled file is hashed once"
        flip_a_byte_in_place(prog)
        changed = exe_identity(fd)
        assert len(hashes) == 4, "the change dropped the cached hash"
        assert changed.detail() == host_detail(prog) and changed.blake3 != settled.blake3
        assert (changed.ino, changed.size) == (settled.ino, settled.size)
    finally:
        os.close(fd)


def test_a_file_changed_while_being_hashed_is_recorded_unhashed_and_not_cached(tmp_path, hashes, monkeypatch):
    prog = tmp_path / "prog"
    shutil.copy("/bin/true", prog)
    counting = module._hash_through

    def hash_then_write(exe_fd, status):
        digest = counting(exe_fd, status)
        flip_a_byte_in_place(prog)
        return digest

    monkeypatch.setattr(module, "_hash_through", hash_then_write)
    monkeypatch.setattr(module, "_SETTLED_NS", -(10**18))  # would cache anything that held still
    fd = open_exe(str(prog))
    try:
        identity = exe_identity(fd)
    finally:
        os.close(fd)
    assert identity.blake3 is None and identity.detail().endswith("blake3=none (it changed while being hashed)")
    assert not module._digests


# Run as uid 65534: exe_identity of a file it may exec but not read.
EXEC_ONLY = (
    "import os, sys; from bvisor.backends.linux.exe_identity import exe_identity; "
    "fd = os.open(sys.argv[1], os.O_PATH | os.O_CLOEXEC); print(exe_identity(fd).detail())"
)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a file uid 65534 can exec but not read")
def test_an_exec_only_file_is_recorded_with_no_hash_and_says_why():
    directory = shared_host_dir("bvisor-exec-only-")
    try:
        prog = Path(directory) / "prog"
        shutil.copy("/bin/echo", prog)
        prog.chmod(0o711)
        ran = subprocess.run([*UNPRIVILEGED_PREFIX, str(prog), "ran"], capture_output=True, check=False)
        assert ran.stdout == b"ran\n", ran.stderr.decode()  # it may run it
        done = subprocess.run([*UNPRIVILEGED_PREFIX, sys.executable, "-c", EXEC_ONLY, str(prog)], capture_output=True, check=False)
        status = prog.stat()
    finally:
        shutil.rmtree(directory)
    dev = f"{os.major(status.st_dev)}:{os.minor(status.st_dev)}"
    want = f"dev={dev} ino={status.st_ino} size={status.st_size} blake3=none (cannot read it: Permission denied)\n"
    assert done.stdout.decode() == want, done.stderr.decode()
