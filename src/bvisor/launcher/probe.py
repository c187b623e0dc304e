"""``--probe``: prove, by doing, which mechanisms this launcher identity can install.

Each proof runs in a throwaway child (a filter or a namespace cannot be undone), and the
result goes to stdout as ``name=value`` lines — no workload runs in this mode.
"""

import os

from bvisor.launcher import childproc, landlock, mounts, netns, pidns, seccomp, unixgate, userns


# Each namespace proof is a child cloned into the namespaces a run's child is born in, as
# the launcher makes it (``childproc.fork_with_error_pipe``), mapping itself the same way.
_USERNS_NETNS = userns.CLONE_NEWUSER | netns.CLONE_NEWNET
_USERNS_MOUNT = userns.CLONE_NEWUSER | mounts.CLONE_NEWNS
_USERNS_PID = userns.CLONE_NEWUSER | mounts.CLONE_NEWNS | pidns.CLONE_NEWPID


def _userns_netns() -> None:
    netns.attest()


def _userns_mount() -> None:
    mounts.make_private()
    mounts.mount_temp_root("/tmp", 4096)


def _userns_pid() -> None:
    """Pid 1 of a new pid namespace, mounting its own /proc as every run's init does."""
    if os.getpid() != 1:
        raise OSError(0, f"the namespace's first process is pid {os.getpid()}, not 1")
    mounts.make_private()
    mounts.mount_proc()


def _unix_gate() -> None:
    """The unix socket gate, as a run's init serves it: its own /proc, a child under the
    gate's filter, its listener taken and a connect to a host path refused."""
    _userns_pid()
    unixgate.prove()


def _landlock_restrict() -> None:
    """Restrict a throwaway child with every right this ABI knows handled."""
    abi = landlock.abi_version()
    if abi < 1:
        raise OSError(95, "landlock is not available")
    seccomp.no_new_privs()
    landlock.restrict_self(landlock.create_ruleset(abi))


def _prove(action, namespaces: int = 0) -> str:
    """``action`` in a throwaway child, born in ``namespaces`` (then first mapped to root in
    its user namespace, as a run's child is): "ok" or how it failed."""
    ids = (os.geteuid(), os.getegid())
    try:
        pid, error_fd = childproc.fork_with_error_pipe(namespaces)
    except OSError as exc:  # the kernel refused the namespaces
        return f"failed errno={exc.errno} clone: {exc.strerror}"
    if pid == 0:
        try:
            if namespaces:
                userns.map_self(*ids)
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
        "userns_netns": _prove(_userns_netns, _USERNS_NETNS),
        "userns_mount": _prove(_userns_mount, _USERNS_MOUNT),
        "userns_pid": _prove(_userns_pid, _USERNS_PID),
        "landlock_restrict": _prove(_landlock_restrict),
        "seccomp_filter": _prove(seccomp.install_allow_all),
        "unix_gate": _prove(_unix_gate, _USERNS_PID),
    }
    os.write(1, "".join(f"{k}={v}\n" for k, v in facts.items()).encode())
    os._exit(0)
