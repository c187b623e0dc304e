"""``bvisor.cli``'s modules import each other one way only (issue 14, point 5): the entry point
over the commands, the commands over what they share. An import inside a function counts: a
lazy import is still a loop."""

import ast
import graphlib
from pathlib import Path

import bvisor.cli

CLI = Path(bvisor.cli.__file__).parent


def module_name(path: Path) -> str:
    return "bvisor.cli" if path.stem == "__init__" else f"bvisor.cli.{path.stem}"


def cli_imports(path: Path) -> set:
    """The ``bvisor.cli`` modules the file at ``path`` imports, anywhere in it."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "bvisor.cli":
            # `from bvisor.cli import run` imports the module run; `import command`, the package.
            imported |= {f"bvisor.cli.{a.name}" if (CLI / f"{a.name}.py").is_file() else "bvisor.cli" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    return {name for name in imported if name == "bvisor.cli" or name.startswith("bvisor.cli.")}


def test_the_cli_modules_import_each_other_without_a_loop():
    graph = {module_name(path): cli_imports(path) - {module_name(path)} for path in CLI.glob("*.py")}
    assert graph["bvisor.cli.common"] == set(), "what the commands share imports none of them"
    graphlib.TopologicalSorter(graph).prepare()  # CycleError names the loop
