"""The import boundary, read from the source: an AST walk of every module under src/bvisor.

The host reaches the launcher only through the wire vocabulary (``bvisor.wire``) and the pure
mechanism modules (``bvisor.mechanism``):

1. nothing outside bvisor/launcher/ imports ``bvisor.launcher`` or a module of it (a string
   naming the launcher for ``python -m``, as launch.py has, runs it; it is not an import);
2. the launcher imports, directly or through the wire and mechanism modules it uses, only the
   stdlib, ``bvisor.launcher``, ``bvisor.wire``, ``bvisor.mechanism``, msgpack and blake3: it
   is a separate program that pays for its imports on every run, and trusts no host code;
3. ``bvisor.wire`` and ``bvisor.mechanism`` import neither the launcher nor the host side
   (``bvisor.backends``, ``bvisor.contract``);
4. ``bvisor.mechanism`` is pure: the stdlib without ctypes, blake3, and itself.
"""

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# Imports that break a rule, allowed until they are gone: (importer, imported) -> why. Exact:
# an entry for an import no longer made fails the test, so the list can only shrink.
TEMPORARILY_ALLOWED: dict[tuple[str, str], str] = {}

LAUNCHER = "bvisor.launcher"
WIRE = "bvisor.wire"
MECHANISM = "bvisor.mechanism"
HOST_SIDE = ("bvisor.backends", "bvisor.contract")
LAUNCHER_THIRD_PARTY = {"msgpack", "blake3"}
MECHANISM_THIRD_PARTY = {"blake3"}


def module_files(src: Path) -> dict:
    """Module name -> file, for every module under ``src``/bvisor (a package by its name)."""
    files = {}
    for path in sorted((src / "bvisor").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imports_of(name: str, modules: dict) -> list:
    """(module, line) for every import in module ``name``, at any depth (a function's lazy import
    runs too). ``from X import y`` imports X.y when that is a module, else X; relative imports
    are resolved; import_module/__import__ of a constant string is an import too."""
    path = modules[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0]
                base = f"{anchor}.{base}" if base else anchor
            found += [(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            found.append((node.args[0].value, node.lineno))
    return found


def _is_dynamic_import(call: ast.Call) -> bool:
    callee = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
    first = call.args[0] if call.args else None
    return callee in ("import_module", "__import__") and isinstance(first, ast.Constant) and isinstance(first.value, str)


def within(module: str, *packages: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def is_stdlib(module: str) -> bool:
    return module.partition(".")[0] in sys.stdlib_module_names


def violations_within(modules: dict, importers, allowed) -> list:
    """(importer, imported, line) for every import by a module ``importers`` takes that
    ``allowed`` refuses."""
    return [
        (name, imported, line)
        for name in modules
        if importers(name)
        for imported, line in imports_of(name, modules)
        if not allowed(imported)
    ]


def host_imports_of_the_launcher(modules: dict) -> list:
    return violations_within(modules, lambda name: not within(name, LAUNCHER), lambda imported: not within(imported, LAUNCHER))


def launcher_may_import(module: str) -> bool:
    if module == "bvisor":  # the root package, run before any of its modules: lazy names only
        return True
    return within(module, LAUNCHER, WIRE, MECHANISM) or is_stdlib(module) or module.partition(".")[0] in LAUNCHER_THIRD_PARTY


def launcher_reach_violations(modules: dict) -> list:
    """Each module the launcher may not import but does, directly or through bvisor modules it
    may import (an import of a module runs the packages above it first), as the chain that
    reaches it: ``(bvisor.wire.b, msgspec, 3, "bvisor.launcher.a -> bvisor.wire.b -> msgspec")``."""
    chains = {name: (name,) for name in modules if within(name, LAUNCHER)}
    todo, violations = list(chains), []
    while todo:
        name = todo.pop()
        for imported, line in imports_of(name, modules):
            if not launcher_may_import(imported):
                violations.append((name, imported, line, " -> ".join((*chains[name], imported))))
                continue
            parents = [imported.rsplit(".", depth)[0] for depth in range(imported.count("."), 0, -1)]
            for reached in [*parents, imported]:
                if reached in modules and reached not in chains:
                    chains[reached] = (*chains[name], reached)
                    todo.append(reached)
    return sorted(violations)


def wire_or_mechanism_may_import(module: str) -> bool:
    return not within(module, LAUNCHER, *HOST_SIDE)


def mechanism_may_import(module: str) -> bool:
    if within(module, "ctypes", "_ctypes"):
        return False
    return within(module, MECHANISM) or is_stdlib(module) or module.partition(".")[0] in MECHANISM_THIRD_PARTY


# --- the rules, on this source tree -----------------------------------------------------------

MODULES = module_files(SRC)


def unallowed(violations) -> str:
    """The violations not temporarily allowed, one line each ("" when none)."""
    lines = []
    for importer, imported, line, *reached in violations:
        if (importer, imported) not in TEMPORARILY_ALLOWED:
            lines.append(f"{importer} line {line} imports {imported}" + "".join(f" (reached as {chain})" for chain in reached))
    return "\n".join(lines)


def test_the_walk_sees_the_tree():
    # A walk of the wrong directory would find nothing and pass every rule.
    assert {"bvisor.launcher.coordinator", "bvisor.mechanism.seccomp", "bvisor.backends.linux.lowering"} <= set(MODULES)


def test_nothing_outside_the_launcher_imports_it():
    found = unallowed(host_imports_of_the_launcher(MODULES))
    assert not found, "the host reaches the launcher only through bvisor.wire and bvisor.mechanism:\n" + found


def test_the_launcher_imports_only_the_stdlib_wire_mechanisms_msgpack_and_blake3():
    found = unallowed(launcher_reach_violations(MODULES))
    assert not found, "the launcher imports what it may not:\n" + found


def test_wire_and_mechanism_import_neither_the_launcher_nor_the_host_side():
    found = unallowed(violations_within(MODULES, lambda name: within(name, WIRE, MECHANISM), wire_or_mechanism_may_import))
    assert not found, "bvisor.wire and bvisor.mechanism are shared by both sides:\n" + found


def test_mechanism_modules_are_pure():
    found = unallowed(violations_within(MODULES, lambda name: within(name, MECHANISM), mechanism_may_import))
    assert not found, "bvisor.mechanism imports only the stdlib (no ctypes), blake3 and itself:\n" + found


def test_every_temporarily_allowed_import_is_still_made():
    made = {(name, imported) for name in MODULES for imported, _ in imports_of(name, MODULES)}
    stale = sorted(set(TEMPORARILY_ALLOWED) - made)
    assert not stale, f"no longer imported, so no longer allowed: remove {stale} from TEMPORARILY_ALLOWED"


# --- the walk itself, on a made-up tree: every way to import is seen --------------------------


def test_every_form_of_import_is_seen_and_a_module_name_in_a_string_is_not(tmp_path):
    (tmp_path / "bvisor" / "launcher").mkdir(parents=True)
    (tmp_path / "bvisor" / "backends").mkdir()
    for name in ("__init__", "launcher/__init__", "launcher/seccomp", "backends/__init__"):
        (tmp_path / "bvisor" / f"{name}.py").write_text("")
    (tmp_path / "bvisor" / "backends" / "host.py").write_text(
        "import bvisor.launcher.seccomp\n"
        "from bvisor.launcher import seccomp\n"
        "from bvisor import launcher\n"
        "from ..launcher.seccomp import install\n"
        "def lazy():\n"
        "    import importlib\n"
        "    importlib.import_module('bvisor.launcher')\n"
        "ARGV = ('python', '-m', 'bvisor.launcher')\n"
    )
    found = [(imported, line) for _, imported, line in host_imports_of_the_launcher(module_files(tmp_path))]
    assert found == [
        ("bvisor.launcher.seccomp", 1),
        ("bvisor.launcher.seccomp", 2),
        ("bvisor.launcher", 3),
        ("bvisor.launcher.seccomp", 4),
        ("bvisor.launcher", 7),
    ]


def test_the_launcher_is_followed_through_the_modules_it_may_import(tmp_path):
    for package in ("launcher", "wire"):
        (tmp_path / "bvisor" / package).mkdir(parents=True)
        (tmp_path / "bvisor" / package / "__init__.py").write_text("")
    (tmp_path / "bvisor" / "__init__.py").write_text("")
    (tmp_path / "bvisor" / "launcher" / "run.py").write_text("import os\nimport msgpack\nfrom bvisor.wire import plan\n")
    (tmp_path / "bvisor" / "wire" / "plan.py").write_text("import blake3\nimport msgspec\n")
    assert launcher_reach_violations(module_files(tmp_path)) == [("bvisor.wire.plan", "msgspec", 2, "bvisor.launcher.run -> bvisor.wire.plan -> msgspec")]
