"""The qualification ledger: which tests prove each Enforced cell, and on what machine floor.

The ledger is data in the repository (``qualification/ledger.toml``). ``coupling_problems``
is the law a test enforces: the live ceiling may advertise ``Enforced`` for a kind only with
a ``proven`` row whose floor this host meets, whose mechanism is the backend's own, and
whose cited tests exist.
"""

import ast
import enum
import tomllib
from pathlib import Path

import msgspec

from bvisor.contract import BackendProfileSnapshot, BudgetDimension, Enforcement, RequirementKind


class Status(enum.Enum):
    Proven = "proven"
    FailClosed = "fail-closed"


class Floor(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The least a host must offer for a proof to transfer to it (proofs transfer upward)."""

    userns_netns: bool = False
    userns_mount: bool = False
    userns_pid: bool = False
    seccomp_filter: bool = False
    landlock_abi_min: int = 0
    cgroup_kill: bool = False  # the v2 leaf's cgroup.kill
    cgroup_pids: bool = False
    cgroup_memory: bool = False
    cgroup_cpu: bool = False


class LedgerRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    backend: str
    kind: RequirementKind
    status: Status
    mechanism: str
    floor: Floor = Floor()
    tests: list[str] = []


class BudgetRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A budget dimension the profile may call Enforced, with the mechanism it was proven on."""

    backend: str
    dimension: BudgetDimension
    status: Status
    mechanism: str
    floor: Floor = Floor()
    tests: list[str] = []


class Ledger(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    row: list[LedgerRow]
    budget: list[BudgetRow] = []


def load_ledger(path: Path) -> Ledger:
    return msgspec.convert(tomllib.loads(Path(path).read_text()), Ledger)


def floor_unmet(floor: Floor, snapshot: BackendProfileSnapshot) -> list:
    """The floor conditions this host does not meet (empty when it meets them all)."""
    unmet = []
    if floor.userns_netns and snapshot.fact("launcher.userns_netns") != "ok":
        unmet.append("userns_netns")
    if floor.userns_mount and snapshot.fact("launcher.userns_mount") != "ok":
        unmet.append("userns_mount")
    if floor.userns_pid and snapshot.fact("launcher.userns_pid") != "ok":
        unmet.append("userns_pid")
    if floor.seccomp_filter and snapshot.fact("launcher.seccomp_filter") != "ok":
        unmet.append("seccomp_filter")
    if floor.cgroup_kill and snapshot.fact("cgroup.kill") != "cgroup.kill":
        unmet.append("cgroup_kill")
    for name in ("pids", "memory", "cpu"):
        if getattr(floor, f"cgroup_{name}") and snapshot.fact(f"cgroup.{name}") not in ("v1", "v2"):
            unmet.append(f"cgroup_{name}")
    if int(snapshot.fact("launcher.landlock_abi") or 0) < floor.landlock_abi_min:
        unmet.append(f"landlock_abi>={floor.landlock_abi_min}")
    return unmet


def _test_exists(root: Path, test_id: str) -> bool:
    file, _, name = test_id.partition("::")
    path = root / file
    if not name or not path.is_file():
        return False
    tree = ast.parse(path.read_text())
    return any(isinstance(node, ast.FunctionDef) and node.name == name for node in tree.body)


def coupling_problems(ledger: Ledger, backend, snapshot: BackendProfileSnapshot, repo_root: Path) -> list:
    """Every way the live ceiling over-claims against the ledger, one line each."""
    rows = {(row.backend, row.kind): row for row in ledger.row}
    problems = []
    for row in ledger.row:
        problems += [f"{row.kind.value}: cited test {t} does not exist" for t in row.tests if not _test_exists(repo_root, t)]
    for row in ledger.budget:
        problems += [f"budget {row.dimension.value}: cited test {t} does not exist" for t in row.tests if not _test_exists(repo_root, t)]
    profile = backend.profile(snapshot)
    for kind in profile.enforced_kinds():
        row = rows.get((backend.id(), kind))
        if row is None or row.status is not Status.Proven:
            problems.append(f"{kind.value}: advertised enforced without a proven ledger row")
            continue
        if not row.tests:
            problems.append(f"{kind.value}: a proven row cites no test")
        if row.mechanism != backend.mechanism(kind, Enforcement.Enforced):
            problems.append(f"{kind.value}: ledger proves {row.mechanism}, backend installs {backend.mechanism(kind, Enforcement.Enforced)}")
        problems += _floor_problems(kind.value, row, snapshot)
    return problems + _budget_problems(ledger, backend.id(), snapshot)


def _floor_problems(name: str, row, snapshot: BackendProfileSnapshot) -> list:
    unmet = floor_unmet(row.floor, snapshot)
    return [f"{name}: advertised enforced on a host below the proof's floor ({', '.join(unmet)})"] if unmet else []


def _budget_problems(ledger: Ledger, backend_id: str, snapshot: BackendProfileSnapshot) -> list:
    """The budget profile may call a dimension Enforced only on its proven mechanism."""
    rows = {(row.backend, row.dimension): row for row in ledger.budget}
    problems = []
    for dimension, availability in snapshot.budget.items():
        if availability.enforcement is not Enforcement.Enforced:
            continue
        row = rows.get((backend_id, dimension))
        name = f"budget {dimension.value}"
        if row is None or row.status is not Status.Proven or not row.tests:
            problems.append(f"{name}: advertised enforced without a proven ledger row citing tests")
            continue
        if row.mechanism != availability.mechanism:
            problems.append(f"{name}: ledger proves {row.mechanism}, the profile says {availability.mechanism}")
        problems += _floor_problems(name, row, snapshot)
    return problems
