"""Where the evidence store and the signing key live (imported by the host's lowering,
which masks it in every run's view: it stays free of the store's imports)."""

import errno
import functools
import os

STORES_FILE = "stores"  # in the home: every other directory a store and key were kept in
_MAX_LINKS = 40  # as the kernel's MAXSYMLINKS


@functools.lru_cache(maxsize=4)
def _platform_home() -> str:
    import platformdirs  # only when BVISOR_HOME does not say; it is not free to import

    return str(platformdirs.user_data_path("bvisor"))


def evidence_home() -> str:
    """``$BVISOR_HOME``, else the user data directory."""
    return os.path.abspath(os.environ.get("BVISOR_HOME") or _platform_home())


def ensure_home() -> None:
    """Make the home (0700) before a run: a mask covers only what exists when the run's view
    is built, and a home made later (``bvisor key``) would show live in a root above it.
    Where it cannot be made, no later bvisor of this user can make it either."""
    try:
        os.makedirs(evidence_home(), mode=0o700, exist_ok=True)
    except OSError:
        pass


def remember_store(directory: str) -> None:
    """Record a directory a store and its key are kept in besides the home, so that every
    later run masks it too, not only the runs that name it."""
    directory = os.path.realpath(directory)
    if directory == os.path.realpath(evidence_home()) or directory in other_stores():
        return
    ensure_home()
    with open(os.path.join(evidence_home(), STORES_FILE), "a") as f:
        f.write(directory + "\n")


def other_stores() -> list:
    """The directories ``remember_store`` recorded."""
    try:
        with open(os.path.join(evidence_home(), STORES_FILE)) as f:
            return [line.rstrip("\n") for line in f if line.startswith("/")]
    except OSError:
        return []


def evidence_dirs() -> list:
    """The home and every other directory that holds a store or a signing key."""
    return [evidence_home(), *other_stores()]


def lookups(path: str) -> list:
    """``(directory, name)`` for every name resolving the absolute ``path`` looks up, symlinks
    followed (in the directory of each link and along its target), directories as real paths;
    for a part that does not exist yet, where it would be made. Whoever may change one of
    those entries may make ``path`` name something else."""
    found, current, hops = [], "/", 0
    pending = [part for part in path.split("/") if part]
    while pending:
        name = pending.pop(0)
        if name in (".", ".."):
            current = current if name == "." else os.path.dirname(current)
            continue
        if (current, name) not in found:
            found.append((current, name))
        step = os.path.join(current, name)
        if os.path.islink(step):
            hops += 1
            if hops > _MAX_LINKS:
                raise OSError(errno.ELOOP, f"{path}: too many levels of symbolic links")
            target = os.readlink(step)
            current = "/" if target.startswith("/") else current
            pending = [part for part in target.split("/") if part] + pending
        else:
            current = step
    return found
