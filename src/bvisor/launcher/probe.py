"""``--probe``: prove, by doing, which mechanisms this launcher identity can install.

Each proof runs in a throwaway child (a filter or a namespace cannot be undone), and the
result goes to stdout as ``name=value`` lines — no workload runs in this mode.
"""

import os

from bvisor.launcher import childproc, landlock, mounts, netns, pidns, seccomp, userns


def _userns_netns() -> None:
    userns.enter(netns.CLONE_NEWNET)
    netns.attest()


def _userns_mount() -> None:
    userns.enter(mounts.CLONE_NEWNS)
    mounts.make_private()
    mounts.mount_temp_root("/tmp", 4096)


def _userns_pid() -> None:
    """A pid namespace whose init mounts its own /proc, as every run's init does."""
    userns.enter(mounts.CLONE_NEWNS | pidns.CLONE_NEWPID)
    mounts.make_private()
    init = os.fork()
    if init == 0:
        try:
            mounts.mount_proc()
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(init, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError(1, "the namespace's init could not mount its own /proc")


def _landlock_restrict() -> None:
    """Restrict a throwaway child with every right this ABI knows handled."""
    abi = landlock.abi_version()
    if abi < 1:
        raise OSError(95, "landlock is not available")
    seccomp.no_new_privs()
    landlock.restrict_self(landlock.create_ruleset(abi))


def _prove(action) -> str:
    pid, error_fd = childproc.fork_with_error_pipe()
    if pid == 0:
        try:
            action()
        except BaseException as exc:
            childproc.fail(error_fd, "probe", exc)
        os._exit(0)
    failure = childproc.read_failure(error_fd)
    _, status = os.waitpid(pid, 0)
    if failure is not None:
        return f"failed errno={failure[1]} {failure[2]}"
    return "ok" if os.waitstatus_to_exitcode(status) == 0 else f"failed status={status}"


def main() -> None:
    facts = {
        "launcher_euid": str(os.geteuid()),
        "landlock_abi": str(landlock.abi_version()),
        "userns_netns": _prove(_userns_netns),
        "userns_mount": _prove(_userns_mount),
        "userns_pid": _prove(_userns_pid),
        "landlock_restrict": _prove(_landlock_restrict),
        "seccomp_filter": _prove(seccomp.install_allow_all),
    }
    os.write(1, "".join(f"{k}={v}\n" for k, v in facts.items()).encode())
    os._exit(0)
