"""``bvisor``'s argument grammar, every command's in one parser: ``bvisor.cli`` parses with it,
``bvisor.cli.docs`` makes the man page and the completions from it."""

import argparse

from bvisor.cli.common import Parser

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
    parser = Parser(prog="bvisor", description="Run a process inside a declared boundary; prove what was enforced.")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

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

    _add_evidence_parsers(sub, run)
    return parser


STORE_HELP = "the evidence store to read (default: $BVISOR_HOME/evidence.sqlite3); it must exist"


def _add_evidence_parsers(sub, run) -> None:
    """The evidence options of ``run`` and the ``reports`` and ``key`` commands."""
    run.add_argument("--store", metavar="PATH", help="the evidence store (default: $BVISOR_HOME/evidence.sqlite3)")
    run.add_argument("--no-store", action="store_true", help="do not keep this run in the evidence store")
    run.add_argument("--sign", action="store_true", help="sign the report with this host's key")

    reports = sub.add_parser("reports", help="the evidence store: list, show, verify, export, output, prune")
    reports.add_argument("--store", metavar="PATH", help=STORE_HELP)
    actions = reports.add_subparsers(dest="action", required=True, parser_class=Parser)
    listing = actions.add_parser("list", help="stored runs, newest first")
    listing.add_argument("--outcome", help="only runs with this outcome (completed, failed, timeout, killed, …)")
    listing.add_argument("--since", help="only runs started at or after this ISO 8601 time (UTC if no zone)")
    listing.add_argument("--exe", help="only runs of this executable (absolute path)")
    listing.add_argument("--limit", type=_positive, help="at most this many rows")
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="one stored report: a summary, or the exact JSON")
    show.add_argument("id", help="a report id (its body hash) or a unique prefix of at least 4 hex digits")
    show.add_argument("--json", action="store_true")
    verify = actions.add_parser("verify", help="verify the whole chain (0 intact, 1 broken: the first bad row is named)")
    verify.add_argument(
        "--key", metavar="PEM", help="require the store's head signed by this public key (default: this host's key, if the store is signed)"
    )
    export = actions.add_parser("export", help="write one stored report's exact JSON (bvisor verify accepts it)")
    export.add_argument("id")
    export.add_argument("-o", "--output", metavar="FILE")
    output = actions.add_parser("output", help="a stored run's captured stdout or stderr")
    output.add_argument("id")
    which = output.add_mutually_exclusive_group(required=True)
    which.add_argument("--stdout", dest="stream", action="store_const", const="stdout")
    which.add_argument("--stderr", dest="stream", action="store_const", const="stderr")
    prune = actions.add_parser(
        "prune",
        help="drop the oldest reports; the chain still verifies from a checkpoint of what was dropped (signed in a signed store)",
    )
    cut = prune.add_mutually_exclusive_group(required=True)
    cut.add_argument("--keep", metavar="N", type=_whole, help="keep the newest N reports, drop the rest")
    cut.add_argument(
        "--older-than",
        metavar="DAYS",
        type=_whole,
        help="drop the reports stored more than DAYS days ago (oldest first, up to the first newer one)",
    )
    # Also after the action (`reports list --store X`); absent there, the one before stands.
    for action in (listing, show, verify, export, output, prune):
        action.add_argument("--store", metavar="PATH", default=argparse.SUPPRESS, help=STORE_HELP)

    key = sub.add_parser("key", help="this host's report-signing public key (created on first use)")
    key.add_argument("--store", metavar="PATH", help="the key lives beside this store")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _whole(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0 or more)")
    return int(text)
