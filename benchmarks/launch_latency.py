"""Launch latency, side by side: what a bvisor boundary costs compared with its peers.

Each case launches ``/bin/true`` and waits for it, N times after a warm-up, in one process
on one host so the numbers are comparable:

  true          posix_spawn + wait, no confinement (the floor)
  unshare       unshare -Urn /bin/true (user + network namespace), if ``unshare`` exists
  bwrap         bwrap --unshare-user --unshare-net --dev-bind / / /bin/true, if on PATH
  bvisor-run    a BoundarySpec (NetworkDenyAll + empty exact environment + no inherited fds)
                planned once, then BoundaryRunner.run per iteration
  bvisor-plan+run   the same spec planned and run every iteration

Peers that are absent (or fail their warm-up) are skipped and said so. Nothing here asserts:
it prints a table (median, p10, p90 in ms and the ratio of each median to bwrap's — or
unshare's when bwrap is absent — and to /bin/true's) and optionally writes JSON.

    .venv/bin/python benchmarks/launch_latency.py [--runs N] [--warmup N] [--json PATH]
"""

import argparse
import json
import os
import platform
import shutil
import sys
import time

TRUE = "/bin/true"


# --- cases: each is a zero-argument callable doing one complete launch, raising on failure ---


def spawn_case(argv: list):
    """posix_spawn ``argv`` and wait for it; a non-zero exit is a failure."""

    def once() -> None:
        pid = os.posix_spawn(argv[0], argv, os.environ)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {code}")

    return once


def boundary_spec():
    from bvisor import (
        BoundarySpec,
        BudgetRequirements,
        Capability,
        EnvPolicy,
        FdPolicy,
        HostControl,
        MinGuarantee,
        NetPolicy,
        StdStreams,
        Workload,
    )

    return BoundarySpec(
        workload=Workload.Process(exe=TRUE, args=[]),
        capabilities=[
            Capability.Network(policy=NetPolicy.DenyAll()),
            Capability.Environment(policy=EnvPolicy.Exact([])),
            Capability.InheritedFds(policy=FdPolicy.Nothing()),
        ],
        controls=[HostControl.LaunchWorkload(), HostControl.CaptureStreams(streams=StdStreams.capture_out_err())],
        budgets=BudgetRequirements.uniform(8, MinGuarantee.Mediated),
    )


def bvisor_cases() -> dict:
    """The two API-level cases, sharing one backend (constructed — and probed — once)."""
    from bvisor import BackendRegistry, BoundaryPlanner, BoundaryRunner, LinuxBackend, Outcome

    backend = LinuxBackend()
    registry = BackendRegistry()
    registry.register(backend)
    planner, runner, spec = BoundaryPlanner(registry), BoundaryRunner(registry), boundary_spec()
    planned_once = planner.plan(spec, backend.id())  # raises PlanError if this host refuses

    def run(plan) -> None:
        report = runner.run(plan)
        if report.body.outcome != Outcome.Completed:
            raise RuntimeError(f"bvisor run ended {report.body.outcome.value}: {report.body.observed}")

    return {
        "bvisor-run": lambda: run(planned_once),
        "bvisor-plan+run": lambda: run(planner.plan(spec, backend.id())),
    }


def all_cases() -> tuple[dict, dict]:
    """``({name: once}, {name: why skipped})`` in table order."""
    cases, skipped = {"true": spawn_case([TRUE])}, {}
    peers = {
        "unshare": ("unshare", ["-Urn", TRUE]),
        "bwrap": ("bwrap", ["--unshare-user", "--unshare-net", "--dev-bind", "/", "/", TRUE]),
    }
    for name, (program, args) in peers.items():
        path = shutil.which(program)
        if path is None:
            skipped[name] = f"{program} is not on PATH"
        else:
            cases[name] = spawn_case([path, *args])
    try:
        cases.update(bvisor_cases())
    except Exception as exc:  # a refusal on this host is a result to report, not a crash
        skipped["bvisor"] = f"{type(exc).__name__}: {exc}"
    return cases, skipped


# --- measurement and statistics (pure apart from the clock) ---


def measure(once, runs: int, warmup: int) -> list:
    """Milliseconds per launch over ``runs`` iterations, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        once()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        once()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def percentile(samples: list, q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(samples: list) -> dict:
    return {"median_ms": percentile(samples, 50), "p10_ms": percentile(samples, 10), "p90_ms": percentile(samples, 90)}


def with_ratios(results: dict) -> dict:
    """Add each median's ratio to the peer baseline (bwrap, else unshare) and to /bin/true."""
    peer = next((name for name in ("bwrap", "unshare") if name in results), None)
    out = {}
    for name, stats in results.items():
        ratios = {"vs_true": stats["median_ms"] / results["true"]["median_ms"]}
        if peer is not None:
            ratios[f"vs_{peer}"] = stats["median_ms"] / results[peer]["median_ms"]
        out[name] = {**stats, **ratios}
    return out


def table(results: dict, skipped: dict, runs: int) -> str:
    peer = next((name for name in ("bwrap", "unshare") if name in results), None)
    header = ["case", "median ms", "p10 ms", "p90 ms", f"x {peer or 'peer'}", "x true"]
    rows = [header]
    for name, r in results.items():
        vs_peer = f"{r[f'vs_{peer}']:.2f}" if peer else "-"
        rows.append([name, f"{r['median_ms']:.3f}", f"{r['p10_ms']:.3f}", f"{r['p90_ms']:.3f}", vs_peer, f"{r['vs_true']:.1f}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [f"launch latency of /bin/true, {runs} runs each (uid {os.geteuid()}, {platform.release()})"]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [f"skipped {name}: {why}" for name, why in skipped.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="timed iterations per case (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed iterations per case first (default 10)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")

    cases, skipped = all_cases()
    results = {}
    for name, once in cases.items():
        try:
            results[name] = summarise(measure(once, args.runs, args.warmup))
        except Exception as exc:  # a peer that cannot run here is skipped, never fatal
            skipped[name] = f"failed: {exc}"
    if "true" not in results:
        print(f"cannot even spawn {TRUE}: {skipped.get('true')}", file=sys.stderr)
        return 1
    results = with_ratios(results)
    print(table(results, skipped, args.runs))
    if args.json:
        document = {
            "runs": args.runs,
            "warmup": args.warmup,
            "host": {"kernel": platform.release(), "uid": os.geteuid(), "python": platform.python_version()},
            "results": results,
            "skipped": skipped,
        }
        with open(args.json, "w") as f:
            json.dump(document, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
