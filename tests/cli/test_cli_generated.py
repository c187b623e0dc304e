"""The man page and the bash and zsh completions are generated from the one parser
(``bvisor.cli.parser.build_parser``) and installed by ``make`` (issue 13, point 3): each names every
subcommand and every flag of every command, exactly the set the parser has and ``--help``
prints, and what ``make`` installed in the virtual environment is what the parser gives now."""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bvisor.cli.docs import commands, completion, generated, man_page
from bvisor.cli.parser import build_parser

BVISOR = str(Path(sys.executable).parent / "bvisor")
PARSER_COMMANDS = list(commands(build_parser()))
PROGS = [command.prog for command in PARSER_COMMANDS]


def _subcommands(command) -> set:
    return {name for action in command._actions if isinstance(action, argparse._SubParsersAction) for name in action.choices}


def _flags(command, *, with_help=True) -> set:
    return {flag for action in command._actions if with_help or action.dest != "help" for flag in action.option_strings}


def _parser_view():
    """What the parser has: each command's subcommands (where it has any) and flags."""
    return (
        {command.prog: _subcommands(command) for command in PARSER_COMMANDS if _subcommands(command)},
        {command.prog: _flags(command) for command in PARSER_COMMANDS},
    )


def test_the_parser_view_is_what_the_cli_has():
    """The oracle below is read from the parser: it must hold what a user types."""
    subcommands, flags = _parser_view()
    assert subcommands["bvisor"] >= {"probe", "spec", "plan", "run", "verify", "reports", "key"}
    assert subcommands["bvisor reports"] >= {"list", "show", "verify", "export", "output"}
    assert flags["bvisor run"] >= {"--net", "--ro", "--rw", "--timeout", "--memory", "--report", "--tty", "--store"}
    assert "--version" in flags["bvisor"] and "-o" in flags["bvisor reports export"]


# --- --help ---------------------------------------------------------------------------


def _help_view():
    subcommands, flags = {}, {}
    for prog in PROGS:
        done = subprocess.run([BVISOR, *prog.split()[1:], "--help"], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        usage = done.stdout.split("\n\n", 1)[0]
        choices = re.search(r"\{([\w,-]+)\} \.\.\.", usage)
        if choices:
            subcommands[prog] = set(choices.group(1).split(","))
        # The invocation column of the options list: "  -o FILE, --output FILE   help...".
        columns = re.findall(r"^  (-\S.*?)(?: {2,}|$)", done.stdout, re.M)
        flags[prog] = {flag for column in columns for flag in re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", column)}
    return subcommands, flags


def test_help_lists_every_subcommand_and_flag_the_parser_has():
    assert _help_view() == _parser_view()


# --- the man page ---------------------------------------------------------------------


def _man_view(page: str):
    """Subcommands from the page's ``COMMAND 'bvisor X Y'`` sections, flags from each
    command's ``OPTIONS`` section (argparse-manpage leaves -h/--help out)."""
    subcommands, flags = {}, {}
    for section in re.split(r"(?m)^(?=\.SH )", page.replace("\\-", "-")):
        header = re.match(r"\.SH (COMMAND|OPTIONS)(?: \\fI\\,'([^']+)'\\/\\fR)?\n", section)
        if header is None:
            continue
        prog = header.group(2) or "bvisor"
        if header.group(1) == "COMMAND":
            parent, _, name = prog.rpartition(" ")
            subcommands.setdefault(parent, set()).add(name)
        else:
            flags[prog] = set(re.findall(r"\\fB(-[\w-]+)\\fR", section))
    return subcommands, flags


def test_man_page_has_every_subcommand_and_flag_the_parser_has():
    subcommands, flags = _man_view(man_page())
    assert subcommands == _parser_view()[0]
    # A command with no option but --help has no OPTIONS section.
    assert {prog: flags.get(prog, set()) for prog in PROGS} == {command.prog: _flags(command, with_help=False) for command in PARSER_COMMANDS}


def test_man_page_carries_run_exit_status_and_examples():
    page = man_page().replace("\\-", "-")
    exit_status = page.split(".SH EXIT STATUS \\fI'bvisor run'\\fR\n", 1)[1].split(".SH", 1)[0]
    assert "125  plan refused" in exit_status and "137  killed for a budget" in exit_status
    assert ".SH EXAMPLES \\fI'bvisor run'\\fR" in page
    assert '.TH BVISOR "1" ""' in page and "\nbvisor - Run a process inside a declared boundary" in page


# --- bash: the completion function itself, driven as bash calls it ---------------------


def _bash_completions(script: Path, words: list) -> set:
    driver = f'source {script}; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _shtab_bvisor; printf "%s\\n" "${{COMPREPLY[@]}}"'
    done = subprocess.run(["bash", "--norc", "-c", driver, "bash", *words], capture_output=True, text=True, timeout=60, check=True)
    return set(done.stdout.split())


def test_bash_completes_every_subcommand_and_flag_the_parser_has(tmp_path):
    script = tmp_path / "bvisor.bash"
    script.write_text(completion("bash"))
    subcommands, flags = _parser_view()
    for prog, names in subcommands.items():
        assert _bash_completions(script, [*prog.split(), ""]) == names, prog
    for prog, options in flags.items():
        assert _bash_completions(script, [*prog.split(), "-"]) == options, prog


def test_bash_completes_file_names_for_a_path_valued_flag(tmp_path):
    script = tmp_path / "bvisor.bash"
    script.write_text(completion("bash"))
    (tmp_path / "report-target.json").write_text("")
    assert _bash_completions(script, ["bvisor", "run", "--report", str(tmp_path / "report-")]) == {str(tmp_path / "report-target.json")}


# --- zsh: its _arguments specs, read as zsh reads them ----------------------------------


def _zsh_arrays(script: str, suffix: str) -> dict:
    """``_shtab_bvisor_reports_list_options=( ... )`` as {"bvisor reports list": [lines]}."""
    found = {}
    for name, body in re.findall(rf"(?ms)^_shtab_(\w+?)_{suffix}=\(\n(.*?)\n *\)$", script):
        found[" ".join(name.split("_"))] = [line.strip() for line in body.splitlines()]
    return found


def _zsh_view(script: str):
    command_lists = dict(re.findall(r"(?ms)^_shtab_(\w+?)_commands\(\) \{\n  local _commands=\(\n(.*?)\n  \)", script))
    subcommands = {" ".join(name.split("_")): set(re.findall(r"(?m)^ *([\w-]+):", body)) for name, body in command_lists.items()}
    flags = {
        prog: {flag for line in lines for flag in re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", re.split(r"(?<!\\)\[", line, maxsplit=1)[0])}
        for prog, lines in _zsh_arrays(script, "options").items()
    }
    return subcommands, flags


def test_zsh_completes_every_subcommand_and_flag_the_parser_has():
    assert _zsh_view(completion("zsh")) == _parser_view()


def test_zsh_specs_keep_a_metavar_colon_inside_the_message():
    """``_arguments`` splits ``--bind[help]:MESSAGE:ACTION`` at colons: an unescaped one in
    ``SRC:DST[:ro]`` would make zsh run ``DST[`` as the completion action."""
    specs = [line for lines in _zsh_arrays(completion("zsh"), "options").values() for line in lines if line.startswith(('"--', '"*--'))]
    bind = next(spec for spec in specs if spec.startswith('"*--bind['))
    assert bind.endswith(':SRC\\:DST[\\:ro]:"'), bind
    for spec in specs:
        after_help = re.split(r"(?<!\\)\]", spec, maxsplit=1)[1]
        assert len(re.findall(r"(?<!\\):", after_help)) in (0, 2), spec


# --- what make installed ----------------------------------------------------------------


@pytest.mark.parametrize("file", generated(), ids=lambda file: file.path)
def test_make_installed_what_the_parser_generates_now(file):
    installed = Path(sys.prefix, file.path)
    assert installed.is_file(), f"{installed} is missing: `make` installs it (python -m bvisor.cli.docs {sys.prefix})"
    assert installed.read_text() == file.text, f"{installed} is stale: `make` generates it again from the parser"


def test_cli_docs_writes_the_three_files_under_a_prefix(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bvisor.cli.docs", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    written = {os.path.relpath(path, tmp_path) for path in tmp_path.rglob("*") if path.is_file()}
    assert written == {"share/man/man1/bvisor.1", "share/bash-completion/completions/bvisor", "share/zsh/site-functions/_bvisor"}
