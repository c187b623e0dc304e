"""The launcher's attestations: the notes that say what it installed, each made here once.

The launcher writes each (where it knows more, followed by a space and more fields); the
host requires the same text before a run may count as confined
(``backends/linux/verdict.required_attestations``), and a note counts when it is that text
alone or that text and a space. Stdlib only: the launcher imports this on every run.
"""

LAUNCHER_LIFETIME = "launcher_lifetime=pdeathsig_sigkill"
INIT_LIFETIME = "lifetime=pdeathsig_sigkill(init)"
NO_CONTROLLING_TERMINAL = "controlling_terminal=none"
RUN_TERMINAL = "controlling_terminal=run_pty session=new"
TERMINAL_NODE = "terminal_node=unchangeable"
FD_SCRUB = "fd_scrub"
ENVIRONMENT = "environment=exact"
NO_NEW_PRIVS = "no_new_privs=1"
CAPABILITIES = "capabilities=none"
USER_NAMESPACE = "user_namespace=mapped"
NETWORK_NAMESPACE = "network_namespace=empty_netns"
MOUNT_NAMESPACE = "mount_namespace=private"
IPC_NAMESPACE = "ipc_namespace=new shm=0 msg=0 sem=0"
CGROUP_NAMESPACE = "cgroup_namespace=new root=leaf"
PID_NAMESPACE = "pid_namespace=init pid=1 proc=own"
CGROUP_PLACED = "cgroup=placed"
RLIMITS = "rlimits=set"
LANDLOCK = "landlock=restricted installed=true"
LANDLOCK_SCOPE = "landlock_scope=signal,abstract_unix_socket installed=true"
VIEW_DEVICES = "view_dev devices=null,zero,full,random,urandom"


def user_namespace(outside_id: int) -> str:
    return f"{USER_NAMESPACE} uid0={outside_id} gid0={outside_id}"


def uts_namespace(hostname: str) -> str:
    return f"uts_namespace=new hostname={hostname}"


def view(host_tree: bool) -> str:
    return f"view=pivoted root={'host_tree' if host_tree else 'fresh'}"


def view_devices(terminal: bool) -> str:
    return VIEW_DEVICES + (",tty" if terminal else "")


def view_exe(path: str) -> str:
    return f"view_exe path={path} read_only=true"


def view_root(path: str, writable: bool, run_root_owns: bool) -> str:
    return f"view_root path={path} writable={str(writable).lower()}" + (" owner=run_root" if run_root_owns else "")


def temp_root(path: str, size_bytes: int, max_inodes: int) -> str:
    return f"temp_root=tmpfs path={path} size={size_bytes} nr_inodes={max_inodes} verified=statvfs"


def bind(dest: str) -> str:
    return f"bind dest={dest}"


def unix_gate(mechanism: str) -> str:
    return f"unix_gate={mechanism} supervisor=init"


def seccomp(policies: list[str], program_digest: str) -> str:
    return f"seccomp=filter policies={','.join(policies)} program={program_digest}"
