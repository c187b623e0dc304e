"""The commands on the path of a run: ``probe``, ``spec``, ``plan``, ``run``, ``verify``.

Their exit statuses are ``bvisor.cli.common``'s. The evidence store's side of ``run`` and
``verify --key`` is ``bvisor.cli.reports``, imported only when a command needs it.
"""

import contextlib
import errno
import os
import signal
import stat
import sys

from bvisor.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_KILLED,
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    EXIT_REFUSED_OR_FAULT,
    EXIT_TIMEOUT,
    BadInput,
    ReportTarget,
    StreamTarget,
    pass_through,
)
from bvisor.explain import budget_findings, why_no_exit


def _say(args, text: str) -> None:
    if not getattr(args, "quiet", False):
        sys.stderr.write(f"bvisor: {text}\n")


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
    from bvisor.backend import BackendRegistry
    from bvisor.backends.linux.backend import LinuxBackend
    from bvisor.planner import BoundaryPlanner
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
    """The CLI's exit status for a sealed report (see ``bvisor.cli.common``)."""
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
        from bvisor.cli import reports

        # Opened before anything runs: a run whose record cannot be kept does not start.
        key = reports.run_signer(args)
        pinned = reports.pin_home(args)
        evidence = reports
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
        stdout_sink=kept.sink("stdout", out) if kept else lambda data: pass_through(out, data),
        stderr_sink=kept.sink("stderr", 2) if kept else lambda data: pass_through(2, data),
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
        from bvisor.cli.reports import signature_verdict

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
