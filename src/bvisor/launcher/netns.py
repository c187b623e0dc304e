"""Network namespace: an empty one, created with the user namespace that owns it.

Nothing is configured inside: the kernel gives a new netns only a loopback device, down,
with no address and no route, so nothing (not even 127.0.0.1) is reachable. ``attest`` reads
the namespace back before the workload runs, so the note states what is, not what was asked.
"""

CLONE_NEWNET = 0x40000000


def interfaces() -> list:
    with open("/proc/self/net/dev") as f:
        lines = f.read().splitlines()[2:]
    return sorted(line.split(":", 1)[0].strip() for line in lines if ":" in line)


_RTF_REJECT = 0x0200


def _ipv4_routes() -> int:
    with open("/proc/self/net/route") as f:
        return sum(1 for line in f.read().splitlines()[1:] if line.strip())


def _ipv6_routes() -> int:
    """IPv6 routes that lead somewhere; the kernel's built-in reject entries do not count."""
    try:
        with open("/proc/self/net/ipv6_route") as f:
            rows = [line.split() for line in f.read().splitlines() if line.strip()]
    except FileNotFoundError:  # IPv6 disabled: no IPv6 route can exist
        return 0
    return sum(1 for row in rows if not int(row[8], 16) & _RTF_REJECT)


def attest() -> str:
    """Check the namespace is empty (only ``lo``, no routes); raise if it is not."""
    names = interfaces()
    routes = _ipv4_routes() + _ipv6_routes()
    if names != ["lo"] or routes:
        raise OSError(0, f"network namespace not empty: interfaces={names} routes={routes}")
    return "network_namespace=empty_netns interfaces=lo routes=0"
