"""Where a spec lets the workload write, and which of those places a storage cap covers.

The storage budget is the temp root's size: a cap on it holds only when the temp root is the
only place the workload can write. A writable Filesystem root or ExposePath is a host
directory (its writes land on the host, whatever the dest), and a spec with no Filesystem
capability leaves the host's tree writable wherever the run's identity may write.
"""

from bvisor.contract.spec import BoundarySpec, Capability, HostControl

# Writable grants that store nothing: writes vanish.
_STORES_NOTHING = frozenset({"/dev/null"})


def has_temp_root(spec: BoundarySpec) -> bool:
    return any(isinstance(c, HostControl.TempRoot) for c in spec.controls)


def uncapped_writable_places(spec: BoundarySpec) -> list[tuple[str, str]]:
    """Every place the workload may write that the temp root's size does not cap, as
    (what it is, how to close it); empty when the temp root (if any) is the only one."""
    filesystems = [c for c in spec.capabilities if isinstance(c, Capability.Filesystem)]
    places = [] if filesystems else [("the host's tree (no Filesystem capability confines writes)", "confine the filesystem (--ro ROOT, or a Filesystem capability)")]
    places += [
        (f"read-write root {root}", f"drop --rw {root}")
        for cap in filesystems
        if cap.access.writes
        for root in cap.roots
        if root not in _STORES_NOTHING
    ]
    places += [
        (f"writable exposed path {c.source} (at {c.dest})", f"expose {c.source} read-only")
        for c in spec.controls
        if isinstance(c, HostControl.ExposePath) and c.access.writes and c.source not in _STORES_NOTHING
    ]
    return places


def storage_capped_by_temp_root(spec: BoundarySpec) -> bool:
    """The temp root exists and is the only writable place: its size caps all the run stores."""
    return has_temp_root(spec) and not uncapped_writable_places(spec)
