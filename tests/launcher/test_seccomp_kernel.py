"""The seccomp filter on this machine's kernel: a forked child installs compiled programs and
the kernel enforces them (the compiler itself is tests/unit/test_seccomp.py); and what
importing the installer costs a fresh launcher interpreter."""

import ctypes
import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bvisor.launcher.seccomp import install, no_new_privs
from bvisor.mechanism import seccomp, syscalls
from test_seccomp import CLONE_NEWUSER, DENY_NEW_TASKS, EVERY_RUN, S_IFREG, THREADS_ONLY

MACHINE = os.uname().machine
needs_native_table = pytest.mark.skipif(MACHINE not in syscalls.NUMBERS, reason=f"no syscall table for {MACHINE}")


def _status_field(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def _errno_of(call) -> int:
    try:
        call()
    except OSError as error:
        return error.errno
    return 0


def _libc_errno(name: str, *args) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return ctypes.get_errno() if getattr(libc, name)(*args) == -1 else 0


def _fork_and_reap() -> None:
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)


def _in_filtered_child(policy_names, probes) -> tuple:
    """Fork; the child installs the compiled policies, waits until the parent has read its
    /proc status, runs ``probes`` (name -> callable giving an errno, 0 = success) and reports
    them as JSON. Returns (the child's Seccomp and Seccomp_filters, its report)."""
    program = seccomp.compile_program(seccomp.merged(policy_names), MACHINE)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            no_new_privs()
            install(program)
            os.write(ready_w, b"1")
            os.read(go_r, 1)
            report = {name: probe() for name, probe in probes.items()}
            os.write(report_w, json.dumps(report).encode())
            code = 0
        except BaseException as error:  # the child must never return into pytest
            os.write(report_w, json.dumps({"error": repr(error)}).encode())
        finally:
            os._exit(code)
    for fd in (ready_w, go_r, report_w):
        os.close(fd)
    try:
        assert os.read(ready_r, 1) == b"1", "the child did not install its filter"
        status = (_status_field(pid, "Seccomp"), _status_field(pid, "Seccomp_filters"))
        os.write(go_w, b"1")
        report = json.loads(os.read(report_r, 65536) or b"{}")
    finally:
        for fd in (ready_r, go_w, report_r):
            os.close(fd)
        _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0, report
    return status, report


@needs_native_table
def test_the_kernel_enforces_baseline_and_deny_new_tasks():
    probes = {
        "fork": lambda: _errno_of(_fork_and_reap),
        "ptrace_traceme": lambda: _libc_errno("ptrace", 0, 0, None, None),  # PTRACE_TRACEME
        "unshare_newuser": lambda: _libc_errno("unshare", CLONE_NEWUSER),
        "personality_query": lambda: _libc_errno("personality", ctypes.c_ulong(0xFFFFFFFF)),
        "getpid": lambda: 0 if os.getpid() > 0 else -1,
    }
    status, report = _in_filtered_child(DENY_NEW_TASKS, probes)
    filters_before = int(_status_field(os.getpid(), "Seccomp_filters"))
    assert status == ("2", str(filters_before + 1))  # SECCOMP_MODE_FILTER, one filter more
    assert report == {"fork": errno.EPERM, "ptrace_traceme": errno.EPERM, "unshare_newuser": errno.EPERM,
                      "personality_query": 0, "getpid": 0}


@needs_native_table
def test_the_kernel_lets_threads_through_threads_only():
    def thread():
        # glibc tries clone3 first; ENOSYS sends it to clone(CLONE_THREAD|...), which passes.
        worker = threading.Thread(target=lambda: None)
        worker.start()
        worker.join()

    probes = {"thread": lambda: _errno_of(thread), "fork": lambda: _errno_of(_fork_and_reap)}
    _, report = _in_filtered_child(THREADS_ONLY, probes)
    assert report == {"thread": 0, "fork": errno.EPERM}


@needs_native_table
def test_the_kernel_enforces_no_setid(tmp_path):
    # The child keeps root's capabilities: any refusal below is the filter's, not a permission
    # check.
    target = tmp_path / "file"
    target.write_bytes(b"x")
    path = str(target)

    def created(name: str, mode: int) -> int:
        return _errno_of(lambda: os.close(os.open(str(tmp_path / name), os.O_CREAT | os.O_WRONLY, mode)))

    probes = {
        "chmod_4755": lambda: _errno_of(lambda: os.chmod(path, 0o4755)),
        "chmod_2755": lambda: _errno_of(lambda: os.chmod(path, 0o2755)),
        "chmod_755": lambda: _errno_of(lambda: os.chmod(path, 0o755)),
        "open_creat_4755": lambda: created("setuid", 0o4755),
        "open_creat_644": lambda: created("plain", 0o644),
        "mknod_4755": lambda: _errno_of(lambda: os.mknod(str(tmp_path / "node"), S_IFREG | 0o4755)),
        "setxattr_user": lambda: _errno_of(lambda: os.setxattr(path, "user.x", b"1")),
        "openat2": lambda: _libc_errno("syscall", syscalls.NUMBERS[MACHINE]["openat2"], -100, path.encode(), None, 0),
    }
    _, report = _in_filtered_child(EVERY_RUN, probes)
    assert report == {"chmod_4755": errno.EPERM, "chmod_2755": errno.EPERM, "chmod_755": 0, "open_creat_4755": errno.EPERM,
                      "open_creat_644": 0, "mknod_4755": errno.EPERM, "setxattr_user": errno.EOPNOTSUPP, "openat2": errno.ENOSYS}
    assert target.stat().st_mode & 0o7777 == 0o755 and not (tmp_path / "setuid").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "plain"]


def test_import_stays_cheap():
    # A fresh interpreter: what importing the module costs the launcher, and what it drags in.
    code = "import sys; import bvisor.launcher.seccomp; print(sorted(m for m in ('msgspec', 'threading', 'enum', 'typing', 'dataclasses', 'functools') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
