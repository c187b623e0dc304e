"""Launch latency alone: an API-level deny-all ``/bin/true`` boundary (warm and cold launcher)
next to ``/bin/true``, ``unshare -Urn /bin/true`` and ``bwrap --unshare-user --unshare-net``
(firejail too, where installed), measured in one run, as medians, p10/p90 and ratios to
bwrap. The latency section of ``make bench`` (``bench.py``), without the other sections.

    .venv/bin/python benchmarks/launch_latency.py [--runs N]
"""

import argparse
import sys

from bench import TRUE, Boundary, latency, peer_commands, render


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="timed launches per case (default 200; cold: a quarter)")
    args = parser.parse_args(argv)
    peers, skipped = peer_commands([TRUE])
    warm, cold = Boundary(warm=True), Boundary(warm=False)
    try:
        rows = latency(args.runs, warm, cold, peers)
    finally:
        warm.close()
        cold.close()
    baseline = next((name for name in ("bwrap", "unshare", "bare") if name in dict(rows)), None)
    print(render(f"latency of /bin/true, {args.runs} runs (cold launcher: a quarter as many)", rows, baseline))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
