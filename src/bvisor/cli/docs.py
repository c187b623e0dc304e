"""The man page and the bash and zsh completions of ``bvisor``, generated from the one parser
(``bvisor.cli.parser.build_parser``), so they say what ``--help`` says and cannot drift from it.

``python -m bvisor.cli.docs PREFIX`` writes them where man, bash-completion and zsh look
under PREFIX; ``make`` runs it with the virtual environment as PREFIX. It needs the ``cli-docs``
extra (``argparse-manpage``, ``shtab``); ``bvisor`` itself never imports this module.
"""

import argparse
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from bvisor.cli.parser import build_parser

# Where each file goes under PREFIX: man's MANPATH layout, bash-completion's completions
# directory, a directory on zsh's default fpath.
MAN_PAGE = "share/man/man1/bvisor.1"
BASH_COMPLETION = "share/bash-completion/completions/bvisor"
ZSH_COMPLETION = "share/zsh/site-functions/_bvisor"

# Arguments whose value is a file name (by metavar, or by name for a positional): the
# completions offer file names there.
_FILE_VALUED = frozenset({"PATH", "FILE", "PEM", "PUBKEY", "spec", "report"})


@dataclass(frozen=True)
class GeneratedFile:
    path: str  # relative to the install prefix
    text: str


def commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every subcommand's parser under it (``bvisor``, ``bvisor run``,
    ``bvisor reports list`` ...), parents first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from commands(child)


def man_page() -> str:
    from importlib.metadata import version

    from argparse_manpage.manpage import Manpage

    parser = build_parser()
    page = Manpage(parser)
    page.description = parser.description
    page.source = f"bvisor {version('bvisor')}"
    page.manual = "bvisor manual"
    page.date = ""  # the same page from the same parser: a build date would make every build differ
    # argparse-manpage keeps only the top parser's epilog; a subcommand's (``run``'s exit
    # status and examples) becomes a section of its own, as laid out in its --help.
    return str(page) + "".join(_epilog_sections(command) for command in commands(parser) if command.epilog and command is not parser)


def _epilog_sections(command: argparse.ArgumentParser) -> str:
    """Each ``heading:`` paragraph of an epilog as a section, ``EXIT STATUS 'bvisor run'``,
    its lines kept as they are (the columns line up)."""
    sections = []
    for paragraph in command.epilog.strip().split("\n\n"):
        heading, _, body = paragraph.partition(":\n")
        sections.append(f"\n.SH {_roff(heading.upper())} \\fI'{_roff(command.prog)}'\\fR\n.nf\n{_roff(body)}\n.fi\n")
    return "".join(sections)


def _roff(text: str) -> str:
    """Text as roff prints it literally: backslashes and hyphens escaped, no line taken for a
    request."""
    escaped = text.replace("\\", "\\\\").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in escaped.split("\n"))


def completion(shell: str) -> str:
    """The ``shtab`` completion script for ``shell`` (``bash`` or ``zsh``)."""
    import shtab

    parser = build_parser()
    for command in commands(parser):
        for action in command._actions:
            if (action.metavar or action.dest) in _FILE_VALUED:
                action.complete = shtab.FILE
            if shell == "zsh" and action.metavar:
                # shtab puts a metavar into zsh's `_arguments` spec as it is, where a colon
                # (``SRC:DST[:ro]``, ``allow=HOST:PORT``) would end the message early.
                action.metavar = action.metavar.replace(":", "\\:")
    return shtab.complete(parser, shell)


def generated() -> tuple[GeneratedFile, ...]:
    return (
        GeneratedFile(MAN_PAGE, man_page()),
        GeneratedFile(BASH_COMPLETION, completion("bash")),
        GeneratedFile(ZSH_COMPLETION, completion("zsh")),
    )


def install(prefix: str) -> None:
    for file in generated():
        target = os.path.join(prefix, file.path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as out:
            out.write(file.text)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bvisor.cli.docs PREFIX  (writes the man page and completions under PREFIX/share)")
    install(sys.argv[1])
