"""bvisor against its peers, side by side, in one run on one host (``make bench``).

Sections, each printed as a table with medians, spreads (p10/p90) and ratios:

  latency      one launch of /bin/true, sequential: bare, ``unshare -Urn``, ``bwrap
               --unshare-user --unshare-net --clearenv``, bwrap-full (bwrap with the pid, ipc,
               uts namespaces too, a read-only root, its own /proc, /dev and /tmp: the closest
               bwrap comes to bvisor's boundary), firejail (where installed), the API-level
               deny-all + exact-env + fd-scrub boundary through the warm launcher and the
               one-shot (cold) launcher, and python-floor: a warm run's three Python
               processes with nothing else (``python_floor.py``)
  throughput   runs/s: bwrap sequential, bvisor warm sequential and with 2 concurrent callers
  cli          the whole `bvisor run --net none -- /bin/true` command, cold, with and without
               its evidence store, against the same peers as commands, and python+msgspec:
               the interpreter importing the contract's one required library, nothing else
  host path    planning + sealing alone (no launch)
  steps        where a warm run's time goes, step by step, from each report's launch_timeline
  cpu          a CPU-bound workload inside a full boundary vs bare, alternating: the overhead
               in percent (median of the per-pair ratios)
  syscall      a C loop of getppid(2) bare, inside a full boundary, and under a one-instruction
               allow filter (what any seccomp filter costs a syscall on this kernel): ns per call
  cpu per run  CPU time per warm run: every process of the run, and the host's share
  memory       the warm launcher's resident set, and the host's resident growth per run
  targets      each of the issue's targets against this run's figures: met or not

Peers that are absent are skipped and said so (``apt-get install bubblewrap firejail`` adds
them). Nothing asserts: it prints, writes ``benchmarks/results/bench.json`` and a PNG plot of
the latency distributions (``--no-plot`` to skip; needs the ``bench`` extra: matplotlib).

    .venv/bin/python benchmarks/bench.py [--runs N] [--out DIR] [--no-plot]
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from timing import timed

TRUE = "/bin/true"
BVISOR = str(Path(sys.executable).parent / "bvisor")
# The CPU-bound workload: a fixed amount of pure-Python arithmetic (0.3-0.9 s here) that
# reports its own loop time, wall and CPU, so the comparison is of the work, not of the
# launch. CPU time does not count the time a shared machine's other tenants take (steal).
CPU_PROGRAM = (
    "import time\nstart, cpu = time.perf_counter(), time.process_time()\nn = 0\nfor i in range(6_000_000):\n    n += i * i\n"
    "print((time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000)"
)
CPU_MEASURES = ("loop wall time", "loop CPU time")
PYTHON = os.path.realpath(sys.executable)
# bwrap's flags for the boundary closest to bvisor's deny-all one that bwrap can express:
# the same namespaces and more, a read-only root, its own /proc, /dev and /tmp, the run tied
# to its parent, a new session. (No cgroup leaf, landlock or seccomp filter: bwrap's
# --seccomp takes a program the caller compiles.)
BWRAP_FULL = [
    "--unshare-user", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
    "--die-with-parent", "--new-session", "--clearenv",
    "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
]
FLOOR = str(Path(__file__).with_name("python_floor.py"))


# --- statistics (pure) -------------------------------------------------------------------


def percentile(samples: list, q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(samples: list) -> dict:
    return {
        "median_ms": percentile(samples, 50),
        "p10_ms": percentile(samples, 10),
        "p90_ms": percentile(samples, 90),
        "samples_ms": samples,
    }


def render(title: str, rows: list, baseline: str | None) -> str:
    """A table of ``(name, stats)`` rows with each median's ratio to ``baseline``'s."""
    base = dict(rows).get(baseline, {}).get("median_ms") if baseline else None
    header = ["case", "median ms", "p10 ms", "p90 ms", f"x {baseline}" if base else "x -"]
    lines = [header]
    for name, stats in rows:
        ratio = f"{stats['median_ms'] / base:.2f}" if base else "-"
        lines.append([name, f"{stats['median_ms']:.3f}", f"{stats['p10_ms']:.3f}", f"{stats['p90_ms']:.3f}", ratio])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = [title]
    for i, row in enumerate(lines):
        out.append("  " + "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(out)


# --- cases --------------------------------------------------------------------------------


def command_case(argv: list, env: dict | None = None):
    """Spawn ``argv`` (with ``env`` added to this environment) and wait; a non-zero exit is a
    failure."""
    environment = {**os.environ, **env} if env else None

    def once() -> None:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-300:]!r}")

    return once


def peer_commands(program: list) -> tuple[dict, dict]:
    """``({name: argv}, {name: why skipped})`` for running ``program`` bare and under each peer
    that is installed and runs here (each tried once)."""
    peers = {
        "unshare": ("unshare", ["-Urn"]),
        "bwrap": ("bwrap", ["--unshare-user", "--unshare-net", "--clearenv", "--dev-bind", "/", "/"]),
        "bwrap-full": ("bwrap", BWRAP_FULL),
        "firejail": ("firejail", ["--quiet", "--noprofile", "--net=none"]),
    }
    found, skipped = {"bare": program}, {}
    for name, (tool, flags) in peers.items():
        path = shutil.which(tool)
        if path is None:
            skipped[name] = f"{tool} is not installed"
            continue
        argv = [path, *flags, *program]
        # Installed is not enough: firejail refuses users not in firejail.users, bwrap fails
        # where user namespaces are off. Such a peer is skipped with its own words.
        try:
            command_case(argv)()
        except RuntimeError as exc:
            skipped[name] = f"{tool} cannot run here: {exc}"
            continue
        found[name] = argv
    return found, skipped


def boundary_spec(argv: list):
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
        workload=Workload.Process(exe=argv[0], args=argv[1:]),
        capabilities=[
            Capability.Network(policy=NetPolicy.DenyAll()),
            Capability.Environment(policy=EnvPolicy.Exact([])),
            Capability.InheritedFds(policy=FdPolicy.Nothing()),
        ],
        controls=[HostControl.LaunchWorkload(), HostControl.CaptureStreams(streams=StdStreams.capture_out_err())],
        budgets=BudgetRequirements.uniform(1_000_000, MinGuarantee.Mediated),  # watched, never capped
    )


class Boundary:
    """One backend (warm or cold launcher), its planner and runner, and one plan per argv."""

    def __init__(self, warm: bool):
        from bvisor import BackendRegistry, BoundaryPlanner, BoundaryRunner, LinuxBackend

        self.backend = LinuxBackend(warm=warm)
        registry = BackendRegistry()
        registry.register(self.backend)
        self.planner, self.runner = BoundaryPlanner(registry), BoundaryRunner(registry)

    def plan(self, argv: list):
        return self.planner.plan(boundary_spec(argv), self.backend.id())

    def run(self, plan):
        from bvisor import Outcome

        report = self.runner.run(plan)
        if report.body.outcome != Outcome.Completed:
            raise RuntimeError(f"bvisor run ended {report.body.outcome.value}: {report.body.observed[-3:]}")
        return report

    def close(self) -> None:
        self.backend.close()


# --- sections -----------------------------------------------------------------------------


def latency(runs: int, warm: "Boundary", cold: "Boundary", peers: dict) -> list:
    """``peers``: ``peer_commands([TRUE])``'s commands."""
    rows = [(name, summarise(timed(command_case(argv), runs, 5))) for name, argv in peers.items()]
    plan = warm.plan([TRUE])
    rows.append(("bvisor-warm", summarise(timed(lambda: warm.run(plan), runs, 5))))
    cold_plan = cold.plan([TRUE])
    rows.append(("bvisor-cold", summarise(timed(lambda: cold.run(cold_plan), max(runs // 4, 10), 2))))
    floor = subprocess.run([sys.executable, "-E", "-s", FLOOR, str(runs)], capture_output=True, text=True, check=True)
    rows.append(("python-floor", summarise(json.loads(floor.stdout))))
    return rows


def throughput(runs: int, warm: "Boundary", peers: dict) -> dict:
    """Runs per second: bvisor warm with 1 and 2 concurrent callers, bwrap sequential."""
    plan = warm.plan([TRUE])
    result = {}
    for callers in (1, 2):
        per_caller = runs // callers
        errors = []

        def caller(per_caller: int = per_caller, errors: list = errors) -> None:
            try:
                for _ in range(per_caller):
                    warm.run(plan)
            except Exception as exc:  # reported, never swallowed
                errors.append(exc)

        threads = [threading.Thread(target=caller) for _ in range(callers)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise errors[0]
        result[f"bvisor-warm x{callers}"] = per_caller * callers / elapsed
    bwrap = peers.get("bwrap")
    if bwrap:
        start = time.perf_counter()
        for _ in range(runs):
            command_case(bwrap)()
        result["bwrap x1"] = runs / (time.perf_counter() - start)
    return result


def cli(runs: int, peers: dict) -> list:
    rows = [(name, summarise(timed(command_case(argv), runs, 2))) for name, argv in peers.items()]
    # DESIGN names msgspec for the host-side contract; no Python CLI that uses it starts faster.
    rows.append(("python+msgspec", summarise(timed(command_case([sys.executable, "-I", "-c", "import msgspec"]), runs, 2))))
    ours = [BVISOR, "run", "--quiet", "--no-stdin", "--net", "none", "--", TRUE]
    rows.append(("bvisor-cli --no-store", summarise(timed(command_case(ours[:2] + ["--no-store"] + ours[2:]), runs, 2))))
    # As the issue writes it: the run is kept in an evidence store (a throwaway one here).
    with tempfile.TemporaryDirectory(prefix="bvisor-bench-") as home:
        rows.append(("bvisor-cli stored", summarise(timed(command_case(ours, {"BVISOR_HOME": home}), runs, 2))))
    return rows


def host_path(runs: int, warm: "Boundary") -> list:
    """Planning alone, and sealing a real report body alone."""
    from bvisor.contract import seal

    spec = boundary_spec([TRUE])
    planning = timed(lambda: warm.planner.plan(spec, warm.backend.id()), runs, 5)
    body = warm.runner.run(warm.plan([TRUE])).body
    sealing = timed(lambda: seal(body), runs, 5)
    return [("plan", summarise(planning)), ("seal", summarise(sealing))]


def step_durations(timeline: str) -> list:
    """``[(step, ms)]`` from a report's ``launch_timeline`` fact: each state's time since the
    one before it (the first since the run began)."""
    marks = [(name, float(at.removesuffix("ms"))) for name, at in (item.split("=") for item in timeline.split())]
    return [(name, at - before) for (name, at), before in zip(marks, [0.0] + [at for _, at in marks], strict=False)]


def steps(runs: int, warm: "Boundary") -> list:
    """Where a warm /bin/true run's time goes: each launcher state's median time since the one
    before, as the host saw it (the report's ``launch_timeline``), and what follows the
    launcher's exit (usage, leaf teardown, sealing) up to the report."""
    plan = warm.plan([TRUE])
    per_step: dict = {}
    for _ in range(runs):
        started = time.perf_counter_ns()
        report = warm.run(plan)
        took = (time.perf_counter_ns() - started) / 1e6
        timeline = next(f.detail for f in report.body.observed if f.kind == "launch_timeline")
        durations = step_durations(timeline)
        for name, ms in durations + [("host_rest (drift check, usage, teardown, seal)", took - sum(ms for _, ms in durations))]:
            per_step.setdefault(name, []).append(ms)
    return [(name, summarise(samples)) for name, samples in per_step.items()]


def inside_vs_bare(argv: list, measures: tuple, pairs: int, warm: "Boundary") -> tuple[list, dict]:
    """A workload that prints its own figures (``measures``, in order), bare and inside a full
    boundary (deny-all network with its seccomp filters and unix gate, exact environment, fd
    scrub, pid namespace, cgroup leaf), and the overhead in percent of each. Runs alternate
    bare/inside and each overhead is the median of each pair's ratio: on a shared machine the
    speed drifts by tens of percent within a minute, and a pair sees the same drift on both
    sides. Rows: the first measure's samples."""
    from bvisor import RunIO

    def bare() -> tuple:
        # The same (empty) environment the boundary gives it: its size alone moves the stack.
        return tuple(map(float, subprocess.run(argv, capture_output=True, env={}, check=True).stdout.split()))

    plan = warm.plan(argv)

    def inside() -> tuple:
        out = bytearray()
        warm.runner.run(plan, RunIO(stdout_sink=out.extend))
        return tuple(map(float, out.split()))

    measured = [(bare(), inside()) for _ in range(pairs)]
    overhead = {
        measure: 100 * (percentile([within[i] / alone[i] for alone, within in measured], 50) - 1)
        for i, measure in enumerate(measures)
    }
    rows = [("bare", summarise([alone[0] for alone, _ in measured])), ("bvisor-warm", summarise([within[0] for _, within in measured]))]
    return rows, overhead


# Exec argv[1:] under a one-instruction allow filter: what any seccomp filter costs a syscall
# on this kernel (its entry's slow path), which no design of the filter itself removes.
ALLOW_ALL_WRAPPER = (
    "import os, sys; from bvisor.launcher import seccomp; from bvisor.mechanism.seccomp import allow_all_program; "
    "seccomp.no_new_privs(); seccomp.install(allow_all_program()); os.execv(sys.argv[1], sys.argv[1:])"
)


def under_allow_all(binary: str, runs: int) -> tuple:
    """The loop's row under ``ALLOW_ALL_WRAPPER``."""
    samples = [float(subprocess.run([sys.executable, "-c", ALLOW_ALL_WRAPPER, binary], capture_output=True, env={}, check=True).stdout) for _ in range(runs)]
    return ("seccomp allow-all (floor)", summarise(samples))


def getppid_loop(directory: str) -> str | None:
    """``getppid_loop.c`` built with gcc into ``directory`` (which a run's transient id can
    reach); None where gcc is absent."""
    if shutil.which("gcc") is None:
        return None
    binary = os.path.join(directory, "getppid_loop")
    source = str(Path(__file__).parent / "getppid_loop.c")
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", binary, source], check=True)
    return binary


def cpu_per_run(runs: int, warm: "Boundary") -> dict:
    """CPU time per warm run of /bin/true, in ms: every process of the run (the warm server
    reaps each coordinator, which reaped the run's init, which reaped the workload, so their
    times add up in the server's children's times) and the host's share (this process). Clock
    ticks are coarse (10 ms), so this is the total over ``runs`` divided."""
    import resource

    plan = warm.plan([TRUE])
    warm.run(plan)
    server = warm.backend.warm_launcher_pid()

    def server_ticks() -> int:
        with open(f"/proc/{server}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(ticks) for ticks in fields[11:15])  # utime, stime, cutime, cstime

    def host_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    ticks, host = server_ticks(), host_seconds()
    for _ in range(runs):
        warm.run(plan)
    run_ms = (server_ticks() - ticks) / os.sysconf("SC_CLK_TCK") / runs * 1000
    host_ms = (host_seconds() - host) / runs * 1000
    return {"run_processes_ms": round(run_ms, 2), "host_ms": round(host_ms, 2), "total_ms": round(run_ms + host_ms, 2)}


def memory(warm: "Boundary") -> dict:
    """Resident memory: the warm server and its idle spare coordinator (RSS, and PSS, which
    splits the pages they share), and the host's growth per run."""

    def kib(pid, path: str, field: str) -> int:
        with open(f"/proc/{pid}/{path}") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

    plan = warm.plan([TRUE])
    warm.run(plan)
    before = kib("self", "status", "VmRSS")
    for _ in range(200):
        warm.run(plan)
    after = kib("self", "status", "VmRSS")
    server = warm.backend.warm_launcher_pid()
    with open(f"/proc/{server}/task/{server}/children") as f:
        spares = [int(pid) for pid in f.read().split()]
    return {
        "warm_server_rss_kib": kib(server, "status", "VmRSS"),
        "warm_server_pss_kib": kib(server, "smaps_rollup", "Pss"),
        "spare_coordinator_pss_kib": sum(kib(pid, "smaps_rollup", "Pss") for pid in spares),
        "host_rss_growth_kib_per_run_over_200": (after - before) / 200,
        "host_rss_kib": after,
    }


def targets(
    latency_rows: list, cli_rows: list, host_rows: list, rates: dict, overhead: dict, syscall_overhead: dict | None = None, per_run: dict | None = None
) -> list:
    """``[(target, measured, met)]``: each of the issue's targets against this run's figures;
    ``met`` is None where a peer it is a ratio to is absent. Ratios are of medians."""
    lat, cl, host = ({name: stats["median_ms"] for name, stats in rows} for rows in (latency_rows, cli_rows, host_rows))

    def ratio(table: dict, name: str, base: str):
        return table[name] / table[base] if base in table else None

    def row(target: str, value, limit: float, at_most: bool, shown: str, floor: str = "") -> tuple:
        if value is None:
            return target, "not measured: its peer is absent or cannot run here (see skipped)", None
        return target, shown.format(value) + floor, value <= limit if at_most else value >= limit

    warm, warm_floor = ratio(lat, "bvisor-warm", "bwrap"), ratio(lat, "python-floor", "bwrap")
    command, command_floor = ratio(cl, "bvisor-cli stored", "firejail"), ratio(cl, "python+msgspec", "firejail")
    pair = rates["bvisor-warm x2"] / rates["bwrap x1"] if "bwrap x1" in rates else None
    return [
        row("warm API latency p50 <= 1.0x bwrap", warm, 1.0, True, "{:.2f}x",
            f" (python-floor alone {warm_floor:.2f}x)" if warm_floor is not None else ""),
        row("2 concurrent callers >= 1.5x bwrap's sequential runs/s", pair, 1.5, False, "{:.2f}x"),
        row("plan + seal <= 0.5 ms", host["plan"] + host["seal"], 0.5, True, "{:.3f} ms"),
        row("CLI cold p50 <= 2x firejail", command, 2.0, True, "{:.2f}x",
            f" (python+msgspec alone {command_floor:.2f}x)" if command_floor is not None else ""),
        row("CPU-bound overhead inside a full boundary <= 2%", max(overhead.values()), 2.0, True, "{:+.1f}% (the larger of wall and CPU time)"),
        row("syscall overhead inside a full boundary <= +5%", syscall_overhead["getppid"] if syscall_overhead else None, 5.0, True, "{:+.1f}% (getppid)",
            f" (a one-instruction allow filter alone {syscall_overhead['allow-all floor']:+.1f}%)" if syscall_overhead else ""),
        row("CPU per warm run <= 3 ms", per_run["total_ms"] if per_run else None, 3.0, True, "{:.1f} ms",
            f" (run's processes {per_run['run_processes_ms']} ms, host {per_run['host_ms']} ms)" if per_run else ""),
    ]


def plot(path: Path, sections: dict) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install -e '.[bench]')"
    panels = [(title, rows) for title, rows in sections.items() if rows]
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels) + 1))
    for axis, (title, rows) in zip(axes if len(panels) > 1 else [axes], panels, strict=True):
        axis.boxplot([stats["samples_ms"] for _, stats in rows], orientation="horizontal", tick_labels=[name for name, _ in rows], showfliers=False)
        axis.set_xscale("log")
        axis.set_title(title)
        axis.set_xlabel("ms (log scale)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return f"plot written to {path}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="timed launches per latency case (default 200)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"), help="where bench.json and bench.png go")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    peers, skipped = peer_commands([TRUE])
    warm, cold = Boundary(warm=True), Boundary(warm=False)
    try:
        latency_rows, cli_rows, host_rows = latency(args.runs, warm, cold, peers), cli(30, peers), host_path(args.runs, warm)
        sections = {
            f"latency of /bin/true, {args.runs} runs (API; cold: a quarter as many)": latency_rows,
            "the bvisor command, cold, 30 runs": cli_rows,
            f"host path alone, {args.runs} runs": host_rows,
            f"where a warm run's time goes: ms since the step before, {args.runs} runs": steps(args.runs, warm),
        }
        cpu_title = "CPU-bound workload (its own loop wall time), 30 alternating pairs"
        sections[cpu_title], overhead = inside_vs_bare([PYTHON, "-c", CPU_PROGRAM], CPU_MEASURES, 30, warm)
        with tempfile.TemporaryDirectory() as scratch:
            os.chmod(scratch, 0o755)
            loop = getppid_loop(scratch)
            if loop is None:
                skipped["syscall overhead"] = "gcc is not installed"
                syscall_overhead = None
            else:
                title = "syscall cost: ns per getppid(2), 15 alternating pairs"
                sections[title], syscall_overhead = inside_vs_bare([loop], ("getppid",), 15, warm)
                floor = under_allow_all(loop, 15)
                sections[title].append(floor)
                bare_ns = dict(sections[title])["bare"]["median_ms"]
                syscall_overhead["allow-all floor"] = 100 * (floor[1]["median_ms"] / bare_ns - 1)
        rates = throughput(args.runs, warm, peers)
        per_run = cpu_per_run(args.runs, warm)
        mem = memory(warm)
    finally:
        warm.close()
        cold.close()
    verdicts = targets(latency_rows, cli_rows, host_rows, rates, overhead, syscall_overhead, per_run)
    # The CLI's target is a ratio to firejail's command; bwrap's where firejail is absent.
    baselines = ["bwrap", "firejail", None, None, "bare", "bare"][: len(sections)]
    print(f"bvisor benchmark — uid {os.geteuid()}, kernel {platform.release()}, {os.cpu_count()} CPUs\n")
    for (title, rows), baseline in zip(sections.items(), baselines, strict=True):
        present = next((name for name in (baseline, "bwrap", "unshare") if baseline and name in dict(rows)), None)
        print(render(title, rows, present) + "\n")
    print(
        "CPU-bound overhead inside the boundary (median of the per-pair ratios): "
        + ", ".join(f"{measure} {value:+.1f}%" for measure, value in overhead.items())
    )
    if syscall_overhead is not None:
        print(
            f"syscall overhead inside the boundary (median of the per-pair ratios): getppid {syscall_overhead['getppid']:+.1f}%; "
            f"any seccomp filter here (a one-instruction allow, medians): {syscall_overhead['allow-all floor']:+.1f}%"
        )
    print("throughput (runs/s): " + ", ".join(f"{name} {rate:.1f}" for name, rate in rates.items()))
    print("cpu per warm run (ms): " + ", ".join(f"{k} {v}" for k, v in per_run.items()))
    print("memory: " + ", ".join(f"{k} {v}" for k, v in mem.items()))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    print("\ntargets, against this run's figures:")
    for target, measured, met in verdicts:
        print(f"  {({True: 'met', False: 'NOT MET', None: '-'})[met]:7}  {target}: {measured}")
    document = {
        "host": {"kernel": platform.release(), "uid": os.geteuid(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "sections": {title: dict(rows) for title, rows in sections.items()},
        "cpu_overhead_percent": overhead,
        "syscall_overhead_percent": syscall_overhead,
        "throughput_runs_per_s": rates,
        "cpu_per_run_ms": per_run,
        "memory": mem,
        "targets": [{"target": target, "measured": measured, "met": met} for target, measured, met in verdicts],
        "skipped": skipped,
    }
    (out / "bench.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"results written to {out / 'bench.json'}")
    if not args.no_plot:
        print(plot(out / "bench.png", {title: rows for title, rows in sections.items() if "latency" in title or "command" in title}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
