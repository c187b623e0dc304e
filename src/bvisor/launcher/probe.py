"""``--probe``: prove, by doing, which mechanisms this launcher identity can install.

Each proof runs in a throwaway child (a filter or a namespace cannot be undone), and the
result goes to stdout as ``name=value`` lines — no workload runs in this mode.
"""

import os

from bvisor.launcher import (
    cgroup,
    childproc,
    idmap,
    ipc,
    landlock,
    mounts,
    netns,
    pidns,
    seccomp,
    unixgate,
    userns,
    uts,
    view,
)
from bvisor.mechanism import fdio

# Each namespace proof is a child cloned into the namespaces a run's child is born in, as
# the launcher makes it (``childproc.fork_with_error_pipe``), mapping itself the same way.
_USERNS_NETNS = userns.CLONE_NEWUSER | netns.CLONE_NEWNET
_USERNS_MOUNT = userns.CLONE_NEWUSER | mounts.CLONE_NEWNS
_USERNS_PID = userns.CLONE_NEWUSER | mounts.CLONE_NEWNS | pidns.CLONE_NEWPID
_USERNS_ISOLATION = _USERNS_PID | ipc.CLONE_NEWIPC | uts.CLONE_NEWUTS
# The id a root launcher's transient-identity proof maps in-run root to (any unprivileged id
# proves the mechanism; a run's own comes from the host's lease).
_PROOF_ID = 65534


def _userns_netns() -> None:
    netns.attest()


def _userns_mount() -> None:
    mounts.make_private()
    mounts.mount_temp_root("/tmp", 4096, 2)


def _userns_pid() -> None:
    """Pid 1 of a new pid namespace, mounting its own /proc as every run's init does."""
    if os.getpid() != 1:
        raise OSError(0, f"the namespace's first process is pid {os.getpid()}, not 1")
    mounts.make_private()
    mounts.mount_proc()


def _userns_isolation() -> None:
    """The init of a run: its own IPC and UTS namespaces, a cgroup namespace, and a fresh
    root built and entered as a run's view is (a fresh tmpfs, a clone of / beneath it, a
    minimal /dev, pivot_root)."""
    _userns_pid()
    ipc.attest()
    uts.set_hostname("bvisor-probe")
    cgroup.enter_namespace()
    usr = os.open("/usr", os.O_PATH | os.O_CLOEXEC)
    tree = view.detached_clone(usr, writable=False)
    os.close(usr)
    devices = view.locate_devices(terminal=False)
    base, base_fd = view.new_base(host_tree=False)
    creatable = {os.fstat(base_fd).st_dev}
    view.attach_tree(tree, base + "/usr", creatable)
    os.close(tree)
    os.close(view.make_dev(base, devices, creatable)[1])
    os.close(base_fd)
    view.pivot(base, host_tree=False)


def _transient_identity() -> str:
    """Root only: a child mapped from outside to an unprivileged id takes it on, and an
    idmapped clone of the root directory can be made (and attached in its namespace)."""
    if os.geteuid() != 0:
        return "not_root"
    root = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        trees = idmap.clone_trees([root], _PROOF_ID)
    except OSError as exc:
        return f"failed errno={exc.errno} idmapped mount: {exc.strerror}"
    finally:
        os.close(root)
    mapped_r, mapped_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid, error_fd = childproc.fork_with_error_pipe(userns.CLONE_NEWUSER | mounts.CLONE_NEWNS)
    except OSError as exc:
        fdio.close_all((mapped_r, mapped_w, *trees.values()))
        return f"failed errno={exc.errno} clone: {exc.strerror}"
    if pid == 0:
        try:
            os.close(mapped_w)
            if os.read(mapped_r, 1) != b"m":
                raise OSError(0, "not mapped")
            userns.become_mapped_root(_PROOF_ID)
            mounts.make_private()
            view.attach_tree(*trees.values(), "/tmp", set())
        except BaseException as exc:
            childproc.fail(error_fd, "probe", exc)
        os._exit(0)
    os.close(mapped_r)
    for tree in trees.values():
        os.close(tree)
    try:
        userns.map_child(pid, _PROOF_ID)
        os.write(mapped_w, b"m")
    except OSError:
        pass  # the child reads EOF and says so
    os.close(mapped_w)
    return _verdict(pid, error_fd)


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
    return _verdict(pid, error_fd)


def _verdict(pid: int, error_fd: int) -> str:
    """"ok", or how the proof child failed."""
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
        "userns_isolation": _prove(_userns_isolation, _USERNS_ISOLATION),
        "userns_transient": _transient_identity(),
        "landlock_restrict": _prove(_landlock_restrict),
        "seccomp_filter": _prove(seccomp.install_allow_all),
        "unix_gate": _prove(_unix_gate, _USERNS_PID),
    }
    os.write(1, "".join(f"{k}={v}\n" for k, v in facts.items()).encode())
    os._exit(0)
