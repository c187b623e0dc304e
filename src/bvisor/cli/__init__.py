"""``bvisor``: probe, plan, run, verify; the evidence store's reports and key.

The entry point only. The argument grammar is ``bvisor.cli.parser``; the commands are
``bvisor.cli.run`` (probe, spec, plan, run, verify) and ``bvisor.cli.reports`` (reports, key,
the store's side of a run); what they share, the exit statuses among it, is
``bvisor.cli.common``; ``bvisor.cli.docs`` makes the man page and completions.
"""

import os
import signal
import sys

from bvisor.cli.common import EXIT_BAD_INPUT, BadInput
from bvisor.cli.parser import build_parser


def _prestart(argv: list):
    """For ``run``: begin the launcher's probe and a warm launcher server before anything
    else is imported, so their start-up (an interpreter each, ~50 ms) overlaps ours."""
    if argv[:1] != ["run"]:
        return None
    from bvisor.backends.linux.warm import PrestartedLauncher

    return PrestartedLauncher()


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
        # A command's module is imported once it is known: `--help` and `--version` load neither.
        if args.command in ("reports", "key"):
            from bvisor.cli import reports

            return {"reports": reports.cmd_reports, "key": reports.cmd_key}[args.command](args)
        from bvisor.cli import run

        if args.command == "run":
            return run.cmd_run(args, command, prestarted)
        return {"probe": run.cmd_probe, "spec": run.cmd_spec, "plan": run.cmd_plan, "verify": run.cmd_verify}[args.command](args)
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
