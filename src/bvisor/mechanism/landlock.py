"""Landlock: the kernel's unprivileged filesystem access control — its rights and scopes.

A ruleset handles every filesystem right the running kernel knows (so nothing it could
check is left unchecked), and grants rights only beneath the root fds the host opened.
Rights per ABI follow the kernel's uapi header. Pure: the host names what a plan gets, the
launcher builds the ruleset from the same tables (``bvisor.launcher.landlock`` applies it).
"""

# (name, bit, first ABI that knows it)
RIGHTS = (
    ("execute", 1 << 0, 1),
    ("write_file", 1 << 1, 1),
    ("read_file", 1 << 2, 1),
    ("read_dir", 1 << 3, 1),
    ("remove_dir", 1 << 4, 1),
    ("remove_file", 1 << 5, 1),
    ("make_char", 1 << 6, 1),
    ("make_dir", 1 << 7, 1),
    ("make_reg", 1 << 8, 1),
    ("make_sock", 1 << 9, 1),
    ("make_fifo", 1 << 10, 1),
    ("make_block", 1 << 11, 1),
    ("make_sym", 1 << 12, 1),
    ("refer", 1 << 13, 2),
    ("truncate", 1 << 14, 3),
    ("ioctl_dev", 1 << 15, 5),
)
# Rights that apply to a file (a rule on a non-directory may only grant these).
_FILE_RIGHTS = {"execute", "write_file", "read_file", "truncate", "ioctl_dev"}
_READ_RIGHTS = {"execute", "read_file", "read_dir"}

# Scopes (ABI 6): a scoped domain may not signal, nor connect to an abstract unix socket of,
# a process outside it.
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1
SCOPE_ABI = 6

# Below ABI 3 truncate(2) is not checked, so a file outside every write root could still be
# emptied: confinement would be partial. bvisor refuses rather than install it.
ABI_FLOOR = 3


def handled_rights(abi: int) -> int:
    return sum(bit for _, bit, since in RIGHTS if since <= abi)


def right_names(mask: int) -> list:
    return [name for name, bit, _ in RIGHTS if mask & bit]


def access_mask(abi: int, writable: bool, is_directory: bool) -> int:
    """A read root grants read and execute; a write root grants every handled right."""
    names = {name for name, _, since in RIGHTS if since <= abi}
    if not writable:
        names &= _READ_RIGHTS
    if not is_directory:
        names &= _FILE_RIGHTS
    return sum(bit for name, bit, _ in RIGHTS if name in names)

