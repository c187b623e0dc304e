"""``bvisor``: probe, plan, run, verify.

Exit status of ``run``: the workload's own code; 128+N if it died of signal N; 124 wall
timeout; 137 killed for a budget; 125 refused at admission or a bvisor fault; 126 exe not
executable; 127 exe not found; 2 bad input or usage. Bad input never prints a traceback
and never writes a report. ``plan``: 0 admitted, 125 refused. A refused plan has one code
under ``plan`` and ``run``: 125, as env(1), timeout(1) and docker use it (the tool could not
run the command).
"""

import argparse
import contextlib
import errno
import os
import signal
import stat
import sys

from bvisor.explain import budget_findings, why_no_exit

EXIT_BAD_INPUT = 2
EXIT_TIMEOUT = 124
EXIT_REFUSED_OR_FAULT = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
EXIT_KILLED = 137


class BadInput(Exception):
    """Caller input that bvisor will not act on; the message is one line."""


def _say(args, text: str) -> None:
    if not getattr(args, "quiet", False):
        sys.stderr.write(f"bvisor: {text}\n")


def _write_out(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _pass_through(fd: int, data: bytes) -> None:
    """The workload's output to the caller. A reader that has gone (``| head``) ends the
    workload's stream, as in a shell pipeline: the workload's EPIPE, not bvisor's failure."""
    try:
        _write_out(fd, data)
    except BrokenPipeError:
        from bvisor.capture import ReaderGone

        raise ReaderGone from None


class ReportTarget:
    """Where ``--report`` goes: its directory pinned by an fd before anything runs, so a run
    that could write there (a ``--rw`` root holding the report) can neither redirect the
    write with a symlink nor swap the directory. Written whole or not at all."""

    __slots__ = ("path", "name", "_dir")

    def __init__(self, path: str):
        self.path, self.name = path, os.path.basename(path)
        self._dir = os.open(os.path.dirname(os.path.abspath(path)), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def write(self, data: bytes) -> None:
        """A fresh temp file (never an existing name: O_EXCL|O_NOFOLLOW), renamed over the
        name, which replaces whatever is there (a planted symlink too) and follows nothing."""
        for _ in range(16):
            temp = f".{self.name}.{os.urandom(8).hex()}.tmp"
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=self._dir)
            except FileExistsError:
                continue
            try:
                _write_out(fd, data)
                os.close(fd)
                os.rename(temp, self.name, src_dir_fd=self._dir, dst_dir_fd=self._dir)
            except OSError:
                try:
                    os.unlink(temp, dir_fd=self._dir)
                except OSError:
                    pass  # already gone: the error that matters is the one raised
                raise
            return
        raise OSError(17, "no free temporary name beside the report")  # EEXIST


# ---------------------------------------------------------------------------------------
# probe


def cmd_probe(args) -> int:
    import msgspec

    from bvisor.backends.linux.backend import LinuxBackend
    from bvisor.qualification import load_ledger, qualifications

    backend = LinuxBackend()
    snapshot = backend.probe()
    profile = backend.profile(snapshot)
    # Each live cell's ledger row, judged on this host: its mechanism and floor must match.
    qualified = qualifications(load_ledger(), backend, snapshot)
    if args.json:
        body = {"snapshot": snapshot, "profile": profile, "qualification": _probe_qualification(qualified)}
        print(msgspec.json.format(msgspec.json.encode(body).decode()))
        return 0
    from bvisor.backends.linux.backend import landlock_summary

    print("host facts:")
    for fact in snapshot.facts:
        print(f"  {fact.name:<40} {fact.value}")
    print(f"\nlandlock: {landlock_summary({f.name: f.value for f in snapshot.facts})}")
    print("\nrequirement kinds on this host (backend linux), with their qualification in the ledger:")
    for cell in profile.cells:
        print(f"  {cell.kind.value:<30} {cell.verdict.enforcement.value:<12} {cell.mechanism}")
        print(f"  {'':<30} ledger: {qualified[cell.kind].label}")
        if cell.reason:
            print(f"  {'':<30} why: {cell.reason}")
            print(f"  {'':<30} fix: {cell.remediation}")
    print("\nbudgets (limit guarantee this host can supply):")
    for dimension, availability in snapshot.budget.items():
        print(f"  {dimension.value:<30} {availability.enforcement.value:<12} {availability.mechanism}")
        print(f"  {'':<30} ledger: {qualified[dimension].label}")
    return 0


def _probe_qualification(qualified: dict) -> dict:
    """``probe --json``'s qualification: per kind and per budget dimension, by name."""
    from bvisor.contract import BudgetDimension

    return {
        "kinds": {cell.value: q for cell, q in qualified.items() if not isinstance(cell, BudgetDimension)},
        "budget": {cell.value: q for cell, q in qualified.items() if isinstance(cell, BudgetDimension)},
    }


# ---------------------------------------------------------------------------------------
# spec


def cmd_spec(args) -> int:
    from bvisor.example_spec import EXAMPLE_TOML

    if not args.example:
        raise BadInput("spec: only --example is supported (it prints a complete, commented spec)")
    if args.format == "toml":
        sys.stdout.write(EXAMPLE_TOML)
    else:
        import msgspec

        from bvisor.contract import decode_spec_toml

        print(msgspec.json.format(msgspec.json.encode(decode_spec_toml(EXAMPLE_TOML)).decode()))
    return 0


# ---------------------------------------------------------------------------------------
# plan and run


def _load_spec(path: str):
    from bvisor.contract import SpecError, load_spec

    try:
        return load_spec(path)
    except SpecError as exc:
        raise BadInput(f"{path}: {exc}") from None


def _checked_spec(spec):
    """Flag-built specs pass the same validation a spec file does."""
    from bvisor.contract import spec_problems

    problems = spec_problems(spec)
    if problems:
        raise BadInput(f"invalid spec: {problems[0].field}: {problems[0].message}")
    return spec


def _planner(prestarted=None, evidence_paths=()):
    from bvisor.backends.linux.backend import LinuxBackend
    from bvisor.planner import BoundaryPlanner
    from bvisor.backend import BackendRegistry
    from bvisor.secrets import EnvSecretResolver

    registry = BackendRegistry()
    # --env-secret NAME=env:VAR leases the caller's own VAR to the workload.
    backend = LinuxBackend(secret_resolver=EnvSecretResolver(), prestarted=prestarted, evidence_paths=evidence_paths)
    registry.register(backend)
    return registry, BoundaryPlanner(registry), backend.id()


def cmd_plan(args) -> int:
    import msgspec

    from bvisor.contract import PlanError

    spec = _load_spec(args.spec)
    _, planner, backend_id = _planner()
    try:
        plan = planner.plan(spec, backend_id)
    except PlanError as exc:
        if args.json:
            print(msgspec.json.encode({"refused": exc.refusal()}).decode())
        else:
            print(f"refused: {exc.requirement}: {exc.reason}\n  remediation: {exc.remediation}")
        return EXIT_REFUSED_OR_FAULT
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(plan).decode()))
        return 0
    print(f"admitted on {plan.backend}: plan {plan.plan_id}")
    for item in plan.admitted:
        print(f"  {item.kind.value:<30} {item.enforcement.value:<10} {item.mechanism}")
    for budget in plan.budgets:
        print(f"  budget {budget.dimension.value:<23} {budget.supplied.value:<10} limit={budget.limit} {budget.mechanism}")
    return 0


def exit_code_for(report) -> int:
    """The CLI's exit status for a sealed report (see the module docstring)."""
    from bvisor.contract import Outcome

    body = report.body
    facts = {fact.kind for fact in body.observed}
    if body.outcome is Outcome.Timeout:
        return EXIT_TIMEOUT
    if body.outcome is Outcome.Killed:
        return EXIT_KILLED
    if body.exit is not None:
        return body.exit.code if body.exit.code is not None else 128 + body.exit.signal
    if "exe_not_found" in facts:
        return EXIT_NOT_FOUND
    if facts & {"exe_not_executable", "exec_arguments_too_long"}:
        return EXIT_NOT_EXECUTABLE
    return EXIT_REFUSED_OR_FAULT


def _summary(report, report_path, stored=None, verbose=False) -> str:
    """One line: the outcome, the budget that ended the run (limit and observed), where the
    report went; with ``verbose`` the plan, every admitted requirement, the view and the seal."""
    body = report.body
    exit_text = "none" if body.exit is None else (f"code {body.exit.code}" if body.exit.code is not None else f"signal {body.exit.signal}")
    findings = budget_findings(body)
    line = f"outcome {body.outcome.value} (exit {exit_text}){': ' + findings if findings else ''}"
    line += f"; report {report_path}" if report_path else ""
    line += f"; stored {stored[:12]}" if stored else "; not stored"
    if not verbose:
        return line
    lines = [line, f"  plan      {body.plan_id}"]
    for item in body.admitted:
        lines.append(f"  admitted  {item.kind.value:<22} {item.enforcement.value:<9} {item.mechanism}")
    lines += [f"  view      {f.detail}" for f in body.observed if f.kind == "view_lowered"]
    lines.append(f"  sealed    body_hash {report.body_hash}")
    lines.append(f"  stored    {stored} (bvisor reports show {stored[:12]})" if stored else "  stored    no")
    return "\n".join(lines)


def _prestart(argv: list):
    """For ``run``: begin the launcher's probe and a warm launcher server before anything
    else is imported, so their start-up (an interpreter each, ~50 ms) overlaps ours."""
    if argv[:1] != ["run"]:
        return None
    from bvisor.backends.linux.warm import PrestartedLauncher

    return PrestartedLauncher()


def cmd_run(args, command: list, prestarted=None) -> int:
    from bvisor.flags import CommandNotFound, FlagError, spec_from_flags

    terminal = wants_terminal(args)  # decided once, before anything is planned
    if args.spec is not None:
        if command or _spec_flags_given(args):
            raise BadInput("run: give either a spec file or flags with -- EXE [ARGS...], not both")
        spec = _load_spec(args.spec)
    else:
        try:
            spec = _checked_spec(spec_from_flags(args, command, terminal=terminal))
        except CommandNotFound as exc:
            sys.stderr.write(f"bvisor: {exc}\n")
            return EXIT_NOT_FOUND
        except FlagError as exc:
            raise BadInput(str(exc)) from None
    return _plan_and_run(args, spec, prestarted, terminal)


def wants_terminal(args) -> bool:
    """A pseudo-terminal for the run: with ``--tty``, or by default when bvisor's stdin and
    stdout are both terminals (and neither ``--no-stdin``, ``--no-tty`` nor ``--report -``)."""
    if args.tty:
        if args.no_stdin or args.no_tty:
            raise BadInput("--tty: not with --no-stdin or --no-tty")
        if not os.isatty(0):
            raise BadInput("--tty: bvisor's stdin is not a terminal")
        return True
    return not (args.no_stdin or args.no_tty or args.report == "-") and os.isatty(0) and os.isatty(1)


def _attached_terminal(terminal: bool):
    """The caller's terminal attached for the run (``bvisor.terminal``), or nothing."""
    if not terminal:
        return contextlib.nullcontext()
    from bvisor.terminal import Terminal

    return Terminal(0).attached()


def _report_target(path):
    """Where ``--report`` goes, checked before anything runs (a report that could not be
    written is bad input): ``-`` is stdout; a pipe or a device, named directly or through a
    link (``/dev/stdout``, ``/dev/fd/N``, a FIFO), is opened now and written as a stream; any
    other name is a regular file, replaced whole. A link to anything else is refused: bvisor
    never writes through a link to a file, nor replaces one."""
    if path is None:
        return None
    if path == "-":
        return StreamTarget("-", os.dup(1))
    try:
        named = os.lstat(path)
    except FileNotFoundError:
        named = None
    except OSError as exc:
        raise BadInput(f"--report: {path}: {exc.strerror}") from None
    if named is not None and not stat.S_ISREG(named.st_mode):
        return StreamTarget(path, _open_stream(path, stat.S_ISLNK(named.st_mode)))
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
        raise BadInput(f"--report: cannot write into {directory}")
    return ReportTarget(path)


def _open_stream(path: str, through_link: bool) -> int:
    """An fd on the pipe or device ``path`` names; a FIFO must have its reader already."""
    try:
        shape = os.stat(path).st_mode
    except OSError as exc:
        raise BadInput(f"--report: {path}: {exc.strerror}") from None
    if stat.S_ISDIR(shape):
        raise BadInput(f"--report: {path} is a directory")
    if through_link and stat.S_ISREG(shape):
        raise BadInput(f"--report: {path} is a symbolic link to a file: name the file itself (bvisor never writes through a link)")
    if not (stat.S_ISFIFO(shape) or stat.S_ISCHR(shape)):
        raise BadInput(f"--report: {path} is not a regular file, a pipe or a device")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        why = "a FIFO with no reader" if exc.errno == errno.ENXIO else exc.strerror
        raise BadInput(f"--report: {path}: {why}") from None
    os.set_blocking(fd, True)
    return fd


class StreamTarget:
    """A report written as a stream to an fd opened before the run (stdout, a pipe, a device)."""

    __slots__ = ("path", "_fd")

    def __init__(self, path: str, fd: int):
        self.path, self._fd = path, fd

    def write(self, data: bytes) -> None:
        try:
            _write_out(self._fd, data)
        finally:
            os.close(self._fd)


def _save_report(target, data: bytes) -> bool:
    try:
        target.write(data)
        return True
    except OSError as exc:
        sys.stderr.write(f"bvisor: cannot write the report to {target.path}: {exc.strerror}\n")
        return False


def _plan_and_run(args, spec, prestarted, terminal: bool) -> int:
    from bvisor.capture import RunIO
    from bvisor.contract import PlanError, encode_report_json
    from bvisor.runner import BoundaryRunner

    report_target = _report_target(args.report)
    evidence = None
    if not args.no_store:
        from bvisor import cli_reports

        # Opened before anything runs: a run whose record cannot be kept does not start.
        key = cli_reports.run_signer(args)
        pinned = cli_reports.pin_home(args)
        evidence = cli_reports
    elif args.sign:
        raise BadInput("--sign: a signed report is kept in the store; drop --no-store")
    # The store and key this run is kept with stay out of its reach (beside $BVISOR_HOME's).
    registry, planner, backend_id = _planner(prestarted, [evidence.key_home(args)] if evidence else [])
    try:
        plan = planner.plan(spec, backend_id)
    except PlanError as exc:
        if report_target:
            import msgspec

            _save_report(report_target, msgspec.json.encode({"refused": exc.refusal()}))
        sys.stderr.write(f"bvisor: refused: {exc.requirement}: {exc.reason} (remediation: {exc.remediation})\n")
        return EXIT_REFUSED_OR_FAULT
    kept = evidence.KeptStreams(evidence.stream_cap()) if evidence else None
    out = 2 if args.report == "-" else 1  # stdout carries the report: the workload's goes to stderr
    io = RunIO(
        stdin_fd=None if args.no_stdin else 0,
        stdout_sink=kept.sink("stdout", out) if kept else lambda data: _pass_through(out, data),
        stderr_sink=kept.sink("stderr", 2) if kept else lambda data: _pass_through(2, data),
    )
    # A terminal Ctrl-C reaches the workload directly; bvisor stays to seal what happened.
    # A handler (not SIG_IGN) so the launcher starts with the default disposition.
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        with _attached_terminal(terminal) as attached:
            io.terminal = attached
            report = BoundaryRunner(registry).run(plan, io)
    finally:
        signal.signal(signal.SIGINT, previous)
    if args.sign:
        report = key.sign(report)
    stored = evidence.store_run(args, report, kept, key, pinned) if evidence else None
    if report_target and not _save_report(report_target, encode_report_json(report)):
        return EXIT_REFUSED_OR_FAULT
    if evidence and stored is None:
        return EXIT_REFUSED_OR_FAULT
    code = exit_code_for(report)
    if report.body.exit is None:
        sys.stderr.write(f"bvisor: {why_no_exit(report)}\n")
    _say(args, _summary(report, args.report, stored, args.verbose))
    return code


_SPEC_FLAGS = ("net", "ro", "rw", "bind", "env", "env_secret", "clear_env", "cwd", "no_spawn", "threads_only", "tmp", "no_system_roots") + (
    "timeout",
    "cpu",
    "memory",
    "pids",
    "fds",
    "storage",
)


def _spec_flags_given(args) -> bool:
    return any(getattr(args, name) not in (None, False, []) for name in _SPEC_FLAGS)


# ---------------------------------------------------------------------------------------
# verify


def cmd_verify(args) -> int:
    from bvisor.contract import InputFileError, ReportVerdict, read_input_file, verify_report_json

    try:
        data = read_input_file(args.report)
    except InputFileError as exc:
        raise BadInput(str(exc)) from None
    verdict = verify_report_json(data)
    if isinstance(verdict, ReportVerdict.Valid) and args.key:
        from bvisor.cli_reports import signature_verdict

        signed, why = signature_verdict(verdict.report, args.key)
        if not signed:
            print(f"TAMPERED: signature: {why}")
            return 1
    if isinstance(verdict, ReportVerdict.Valid):
        body = verdict.report.body
        signed_by = f", signed by {verdict.report.signature.public_key}" if args.key else ""
        print(f"valid: body_hash {verdict.report.body_hash} (outcome {body.outcome.value}, plan {body.plan_id}{signed_by})")
        return 0
    if isinstance(verdict, ReportVerdict.Tampered):
        print(f"TAMPERED: {verdict.reason}")
        return 1
    sys.stderr.write(f"bvisor: {args.report}: not a report: {verdict.reason}\n")
    return EXIT_BAD_INPUT


# ---------------------------------------------------------------------------------------
# argument parsing


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        subcommand = self.prog.removeprefix("bvisor").strip()
        raise BadInput(f"{subcommand}: {message}" if subcommand else message)


RUN_EPILOG = """exit status:
  the workload's own code; 128+N if it died of signal N
  124  stopped at its --timeout        137  killed for a budget (the outcome line says which)
  125  plan refused, or a bvisor fault  126  exe not executable   127  exe not found
  2    bad input or usage

examples:
  bvisor run --net none -- curl https://example.com          curl finds no network
  bvisor run --rw ./work --timeout 10 -- make -C work        a build in one directory
  bvisor run spec.toml                                       what `bvisor spec --example` shows
"""


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, looked up only when asked."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print bvisor's version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import version

        print(f"bvisor {version('bvisor')}")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bvisor", description="Run a process inside a declared boundary; prove what was enforced.")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    probe = sub.add_parser("probe", help="what this host can enforce, per requirement kind")
    probe.add_argument("--json", action="store_true")

    spec = sub.add_parser("spec", help="print an example spec")
    spec.add_argument("--example", action="store_true")
    spec.add_argument("--format", choices=("toml", "json"), default="toml")

    plan = sub.add_parser("plan", help="admit or refuse a spec (exit 0 admitted, 125 refused, as run)")
    plan.add_argument("spec")
    plan.add_argument("--json", action="store_true")

    run = sub.add_parser(
        "run",
        help="plan, run, seal: `run SPEC` or `run [FLAGS] -- EXE [ARGS...]`",
        usage="bvisor run SPEC\n       bvisor run [FLAGS] -- EXE [ARGS...]",
        description="Plan the boundary, run the workload inside it, seal (and store) the report. Every flag asks "
        "enforced: a flag this host cannot enforce refuses the plan (exit 125), it is never dropped.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("spec", nargs="?", help="a spec file (.toml or .json); instead of flags and -- EXE")
    run.add_argument("--net", action="append", default=[], metavar="none|allow=HOST:PORT", help="none: an empty network namespace, no socket outside the run")
    run.add_argument("--ro", action="append", default=[], metavar="PATH", help="grant PATH read-only (repeatable)")
    run.add_argument("--rw", action="append", default=[], metavar="PATH", help="grant PATH read-write (repeatable)")
    run.add_argument("--bind", action="append", default=[], metavar="SRC:DST[:ro]", help="show host path SRC at DST in the run, read-write unless :ro (repeatable)")
    run.add_argument("--cwd", metavar="DIR", help="start in DIR of the run's view (relative: to yours); the run fails if the view has no DIR (default: your directory if the view has it, else /)")
    run.add_argument("--no-system-roots", action="store_true", help="do not add the read-only system roots (/usr, /bin, /lib..., /etc)")
    run.add_argument("--tmp", action="store_true", help="a private tmpfs at /tmp (default with no --ro/--rw), sized by --storage")
    run.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]", help="an environment entry over the baseline (PATH=/usr/local/bin:/usr/bin:/bin, LANG=C.UTF-8, HOME=/tmp or /, your TERM with a terminal); NAME alone passes your value; nothing else is inherited")
    run.add_argument("--clear-env", action="store_true", help="no baseline: the environment is exactly the --env and --env-secret entries")
    run.add_argument("--env-secret", action="append", default=[], metavar="NAME=REF", help="an environment entry leased from a secret (REF: env:VAR)")
    run.add_argument("--no-spawn", action="store_true", help="no new process or thread (fork fails with EPERM)")
    run.add_argument("--threads-only", action="store_true", help="threads, but no new process")
    run.add_argument("--timeout", metavar="SECONDS", help="wall-clock cap, decimals allowed (exit 124 when reached)")
    run.add_argument("--cpu", metavar="SECONDS", help="CPU time cap for the whole run (exit 137)")
    run.add_argument("--memory", metavar="BYTES", help="memory cap, K/M/G 1024-based (exit 137)")
    run.add_argument("--pids", metavar="N", help="at most N processes and threads (fork fails with EAGAIN beyond)")
    run.add_argument("--fds", metavar="N", help="open files per process (RLIMIT_NOFILE)")
    run.add_argument("--storage", metavar="BYTES", help="size of the private /tmp (default 64M); a cap only where it is the one writable place")
    run.add_argument("--report", metavar="PATH", help="write the sealed report here: a file (replaced whole), '-' for stdout (the workload's stdout then goes to stderr), or a pipe or device such as /dev/fd/N")
    run.add_argument("--quiet", action="store_true", help="no bvisor messages (never silences the workload)")
    run.add_argument("-v", "--verbose", action="store_true", help="after the one-line summary: the plan, each admitted requirement and its mechanism, the view, the seal")
    run.add_argument("--no-stdin", action="store_true", help="the workload's stdin is /dev/null")
    run.add_argument("--tty", action="store_true", help="give the run a terminal of its own (default when stdin and stdout are terminals)")
    run.add_argument("--no-tty", action="store_true", help="no terminal: the workload's stdio are pipes even on a terminal")

    verify = sub.add_parser("verify", help="recompute a report's seal (0 valid, 1 tampered, 2 not a report)")
    verify.add_argument("report")
    verify.add_argument("--key", metavar="PUBKEY", help="also check the report's signature against this public key (PEM)")

    from bvisor import cli_reports

    cli_reports.add_parsers(sub, run)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is the workload's command line, untouched.
    command = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    prestarted = _prestart(argv)
    try:
        args = build_parser().parse_args(argv)
        if command and args.command != "run":
            raise BadInput(f"{args.command}: unexpected arguments after --")
        if args.command == "run":
            return cmd_run(args, command, prestarted)
        if args.command in ("reports", "key"):
            from bvisor import cli_reports

            return {"reports": cli_reports.cmd_reports, "key": cli_reports.cmd_key}[args.command](args)
        return {"probe": cmd_probe, "spec": cmd_spec, "plan": cmd_plan, "verify": cmd_verify}[args.command](args)
    except BadInput as exc:
        sys.stderr.write(f"bvisor: error: {exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("bvisor: interrupted\n")
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (`bvisor probe --json | head -1`): as SIGPIPE would end it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    finally:
        if prestarted is not None:  # bad input included: no probe or server outlives the command
            prestarted.close()


def command() -> int:
    """The ``bvisor`` program: ``main`` in a process of its own."""
    # msgspec imports typing_extensions when it is installed (blake3 requires it) only for
    # what the typing module already has on Python >= 3.11. A process of our own can keep
    # it out: ~20 ms of every command. (Never in main: a library caller's process is theirs.)
    sys.modules.setdefault("typing_extensions", None)
    return main()


if __name__ == "__main__":
    sys.exit(command())
