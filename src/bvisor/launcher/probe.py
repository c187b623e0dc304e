"""``--probe``: prove, by doing, which mechanisms this launcher identity can install.

Each proof runs in a throwaway child (a filter or a namespace cannot be undone), and the
result goes to stdout as ``name=value`` lines — no workload runs in this mode.
"""

import os

from bvisor.launcher import childproc, landlock, netns, seccomp, userns


def _userns_netns() -> None:
    userns.enter(netns.CLONE_NEWNET)
    netns.attest()


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
        "seccomp_filter": _prove(seccomp.install_allow_all),
    }
    os.write(1, "".join(f"{k}={v}\n" for k, v in facts.items()).encode())
    os._exit(0)
