"""A report records the file that ran: the ``exe_identity`` fact (device, inode, size, blake3
of the exe the host opened) against two channels. Channel A (host): stat and blake3 of the
file, read here by path. Channel B (workload): the running process stats and hashes its own
``/proc/self/exe`` and prints it. The launcher runs as the caller and as an unprivileged uid.
That a file put at the path after the host opened it changes neither the record nor what runs
(and the control, exec by path running the new file) is in tests/launcher/test_exe_identity.py.
"""

import hashlib
import os
from pathlib import Path

import blake3
import pytest

from bvisor import LinuxBackend
from bvisor.capture import RunIO
from helpers import IDENTITIES, check_completed, deny_all_spec, facts_of, launcher_as, runner_for

PYTHON = os.path.realpath("/usr/bin/python3")
SELF_REPORT = (
    "import hashlib, os; s = os.stat('/proc/self/exe'); "
    "print(f'dev={os.major(s.st_dev)}:{os.minor(s.st_dev)} ino={s.st_ino} size={s.st_size}'); "
    "print('sha256=' + hashlib.sha256(open('/proc/self/exe', 'rb').read()).hexdigest())"
)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_report_records_the_file_that_ran(identity):
    out = bytearray()
    run = runner_for(LinuxBackend(launcher_as(identity)), deny_all_spec(PYTHON, ["-c", SELF_REPORT]))
    report = run(RunIO(stdout_sink=out.extend, stderr_sink=lambda _: None))
    failures = []
    check_completed(failures, report)
    assert not failures, failures

    data = Path(PYTHON).read_bytes()
    status = os.stat(PYTHON)
    host = f"dev={os.major(status.st_dev)}:{os.minor(status.st_dev)} ino={status.st_ino} size={status.st_size}"
    assert facts_of(report, "exe_identity") == [f"{host} blake3={blake3.blake3(data).hexdigest()}"]
    assert out.decode().splitlines() == [host, f"sha256={hashlib.sha256(data).hexdigest()}"]
