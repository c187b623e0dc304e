"""Network namespace: an empty one, created with the user namespace that owns it.

Nothing is configured inside: the kernel gives a new netns only a loopback device, down,
with no address and no route, so nothing (not even 127.0.0.1) is reachable. ``attest`` reads
the namespace back before the workload runs, so the note states what is, not what was asked.
"""

from bvisor.mechanism import fdio
from bvisor.wire.attest import NETWORK_NAMESPACE

CLONE_NEWNET = 0x40000000


def _device_rows() -> dict:
    """``{interface: [counters…]}`` from /proc/self/net/dev (rx bytes first, tx bytes ninth)."""
    lines = fdio.read_text("/proc/self/net/dev").splitlines()[2:]
    rows = (line.split(":", 1) for line in lines if ":" in line)
    return {name.strip(): [int(v) for v in counters.split()] for name, counters in rows}


def interfaces() -> list:
    return sorted(_device_rows())


_RTF_REJECT = 0x0200


def _ipv4_routes() -> int:
    return sum(1 for line in fdio.read_text("/proc/self/net/route").splitlines()[1:] if line.strip())


def _ipv6_routes() -> int:
    """IPv6 routes that lead somewhere; the kernel's built-in reject entries do not count."""
    try:
        rows = [line.split() for line in fdio.read_text("/proc/self/net/ipv6_route").splitlines() if line.strip()]
    except FileNotFoundError:  # IPv6 disabled: no IPv6 route can exist
        return 0
    return sum(1 for row in rows if not int(row[8], 16) & _RTF_REJECT)


def attest() -> str:
    """Check the namespace is empty (only ``lo``, no routes); raise if it is not."""
    names = interfaces()
    routes = _ipv4_routes() + _ipv6_routes()
    if names != ["lo"] or routes:
        raise OSError(0, f"network namespace not empty: interfaces={names} routes={routes}")
    return f"{NETWORK_NAMESPACE} interfaces=lo routes=0"


def usage_note() -> str:
    """Bytes received and sent on every interface but loopback: what crossed the boundary."""
    rows = _device_rows()
    crossed = sum(c[0] + c[8] for name, c in rows.items() if name != "lo")
    return f"network_usage bytes={crossed} interfaces={','.join(sorted(rows))}"
