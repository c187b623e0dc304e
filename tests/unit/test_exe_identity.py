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

from bvisor.linux import exe_identity as module
from bvisor.linux.exe_identity import exe_identity
from bvisor.linux.lowering import open_exe

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
