"""The launcher's fd helpers: closing by ranges, reading to EOF. Run in a forked child where
they change the fd table, so the test process keeps its own."""

import json
import os

from bvisor.launcher import fds
from bvisor.mechanism import fdio


def in_child(body) -> object:
    """Run ``body(report_fd)`` in a forked child; return what it wrote (JSON) to report_fd."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(body(write_end)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    data = fdio.read_all(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(data)


def test_close_all_but_leaves_exactly_the_kept_fds_open_wherever_they_sit():
    def body(report):
        # Open fds below, between and far above the kept ones.
        extra = [os.open(os.devnull, os.O_RDONLY) for _ in range(5)]
        os.dup2(extra[0], 1000)
        os.dup2(extra[1], 900)
        keep = {0, 1, 2, report, extra[2], 900}
        fds.close_all_but(keep)
        return sorted(fds.open_fds())

    left = in_child(body)
    assert 1000 not in left and {0, 1, 2, 900} <= set(left)
    assert len(left) == 6  # 0, 1, 2, the report pipe, extra[2], 900


def test_close_all_but_control_without_it_the_fds_stay_open():
    def body(report):
        os.dup2(os.open(os.devnull, os.O_RDONLY), 1000)
        return sorted(fds.open_fds())

    assert 1000 in in_child(body)


def test_read_all_reads_past_one_chunk_and_closes_the_fd():
    read_end, write_end = os.pipe()
    payload = os.urandom(50_000)
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        os.write(write_end, payload * 3)
        os._exit(0)
    os.close(write_end)
    assert fdio.read_all(read_end) == payload * 3
    os.waitpid(pid, 0)
    try:
        os.fstat(read_end)
        closed = False
    except OSError:
        closed = True
    assert closed


def test_read_text_reads_a_kernel_file_whole():
    status = fdio.read_text("/proc/self/status")
    assert status.startswith("Name:") and "\nCapEff:" in status and status.endswith("\n")
