"""The qualification ledger: which tests prove each Enforced cell, and on what machine floor.

The ledger ships inside the package (``bvisor/ledger.toml``) so an installed ``bvisor`` can
say how each cell it advertises was qualified. A row is keyed by (backend, cell, mechanism):
a cell whose mechanism differs by host (the run tree killed by ``cgroup.kill``, the v1
freezer or the pid namespace init) has one row per mechanism, each with its own floor and
tests, and the row that speaks for a live cell is the one whose mechanism is the live
ceiling cell's (or budget availability's) own string. ``coupling_problems`` is the law a
unit test enforces: the live ceiling may advertise ``Enforced`` for a cell only with a
proving row (``proven`` or ``fault-injected``) or an unexpired waiver for the mechanism it
advertises, whose floor this host meets, and every cited test must exist. ``gate_problems``
adds the same-run law the ``tests/ledger_gate.py`` plugin applies at the end of a session:
every test the gated rows cite ran in that session and passed. ``qualifications`` says, per
live cell, whether a row applies on this host and if not why not (``bvisor probe``).
"""

import ast
import datetime
import enum
import importlib.resources
import tomllib
from collections.abc import Callable, Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

import msgspec

from bvisor.backends.linux.facts import LinuxFacts, TreeKill, linux_facts
from bvisor.contract import BackendProfileSnapshot, BudgetDimension, Enforcement, RequirementKind

LEDGER: Traversable = importlib.resources.files("bvisor") / "ledger.toml"


class Status(enum.Enum):
    Proven = "proven"
    # Proven by tests that break the mechanism on purpose and show the run fails closed.
    FaultInjected = "fault-injected"
    FailClosed = "fail-closed"
    # Advertised without proof, on a named person's say-so, until a date.
    Waived = "waived"


# The statuses that stand for a proof: their rows must cite tests, and the gate reruns them.
PROOFS = frozenset({Status.Proven, Status.FaultInjected})

# How a cited test fared in one pytest session (a test absent from the map did not run).
TestResult = Literal["passed", "failed", "skipped"]


class Floor(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The least a host must offer for a proof to transfer to it (proofs transfer upward)."""

    userns_netns: bool = False
    userns_mount: bool = False
    userns_pid: bool = False
    seccomp_filter: bool = False
    unix_gate: bool = False  # the seccomp user-notification gate on unix sockets
    landlock_abi_min: int = 0
    cgroup_kill: bool = False  # the v2 leaf's cgroup.kill
    cgroup_pids: bool = False
    cgroup_memory: bool = False
    cgroup_cpu: bool = False


# Each boolean floor condition: whether a host's typed facts meet it.
_FLOOR_FACTS: dict[str, Callable[[LinuxFacts], bool]] = {
    "userns_netns": lambda facts: facts.userns_netns.ok,
    "userns_mount": lambda facts: facts.userns_mount.ok,
    "userns_pid": lambda facts: facts.userns_pid.ok,
    "seccomp_filter": lambda facts: facts.seccomp_filter.ok,
    "unix_gate": lambda facts: facts.unix_gate.ok,
    "cgroup_kill": lambda facts: facts.cgroup_kill is TreeKill.CgroupKill,
    "cgroup_pids": lambda facts: facts.cgroup_pids is not None,
    "cgroup_memory": lambda facts: facts.cgroup_memory is not None,
    "cgroup_cpu": lambda facts: facts.cgroup_cpu is not None,
}


def _cell_name(cell: RequirementKind | BudgetDimension) -> str:
    """How problems name a cell: budget dimensions are prefixed, kinds are bare."""
    return f"budget {cell.value}" if isinstance(cell, BudgetDimension) else cell.value


class Row(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What both kinds of row say. ``owner``, ``reason`` and ``expires`` belong to a waiver
    and only to a waiver, so a waiver cannot be anonymous, unexplained or open-ended."""

    backend: str
    status: Status
    mechanism: str
    floor: Floor = Floor()
    tests: list[str] = []
    owner: str = ""
    reason: str = ""
    expires: datetime.date | None = None

    def __post_init__(self):
        waiver = {"owner": self.owner, "reason": self.reason, "expires": self.expires}
        if self.status is Status.Waived:
            missing = [field for field, value in waiver.items() if not value]
            if missing:
                raise ValueError(f"a waived row needs {', '.join(missing)}")
        elif any(waiver.values()):
            raise ValueError(f"owner, reason and expires belong only to a waived row, not a {self.status.value} one")

    @property
    def name(self) -> str:
        return _cell_name(self.cell)


class LedgerRow(Row, frozen=True, forbid_unknown_fields=True, kw_only=True):
    kind: RequirementKind

    @property
    def cell(self) -> RequirementKind:
        return self.kind


class BudgetRow(Row, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A budget dimension the profile may call Enforced, with the mechanism it was proven on."""

    dimension: BudgetDimension

    @property
    def cell(self) -> BudgetDimension:
        return self.dimension


class Ledger(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    row: list[LedgerRow]
    budget: list[BudgetRow] = []

    def __post_init__(self):
        seen = set()
        for row in self.rows():
            key = (row.backend, row.cell, row.mechanism)
            if key in seen:
                raise ValueError(f"two {row.backend} rows for {row.name} by mechanism {row.mechanism!r}")
            seen.add(key)

    def rows(self) -> list[Row]:
        return [*self.row, *self.budget]


class Findings(msgspec.Struct, frozen=True):
    """Problems fail the gate; warnings (live waivers) are shown but do not."""

    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def __add__(self, other: "Findings") -> "Findings":
        return Findings(self.problems + other.problems, self.warnings + other.warnings)


def parse_ledger(text: str) -> Ledger:
    return msgspec.convert(tomllib.loads(text), Ledger)


def load_ledger(source: Traversable = LEDGER) -> Ledger:
    return parse_ledger(source.read_text())


def ledger_rows(ledger: Ledger, backend_id: str, cell: RequirementKind | BudgetDimension) -> list[Row]:
    """Every row for one cell of one backend, one per mechanism."""
    rows = ledger.budget if isinstance(cell, BudgetDimension) else ledger.row
    return [row for row in rows if row.backend == backend_id and row.cell is cell]


def _row_for(rows: list[Row], mechanism: str) -> Row | None:
    """Of one cell's rows, the one for ``mechanism`` (at most one: the ledger refuses
    duplicates)."""
    return next((row for row in rows if row.mechanism == mechanism), None)


def _mechanisms(rows: list[Row]) -> str:
    return ", ".join(sorted(row.mechanism for row in rows))


def floor_terms(floor: Floor) -> list[str]:
    """The conditions a floor sets, named as ``floor_unmet`` names them."""
    terms = [name for name in _FLOOR_FACTS if getattr(floor, name)]
    return terms + ([f"landlock_abi>={floor.landlock_abi_min}"] if floor.landlock_abi_min else [])


def floor_unmet(floor: Floor, snapshot: BackendProfileSnapshot) -> list[str]:
    """The floor conditions this host does not meet (empty when it meets them all)."""
    facts = linux_facts(snapshot)
    unmet = [name for name, meets in _FLOOR_FACTS.items() if getattr(floor, name) and not meets(facts)]
    if facts.landlock_abi < floor.landlock_abi_min:
        unmet.append(f"landlock_abi>={floor.landlock_abi_min}")
    return unmet


def _missing_tests(root: Path, test_ids: set[str]) -> set[str]:
    """The cited ids naming no module-level test function."""
    defined = {file: _test_functions(root / file) for file in {test_id.partition("::")[0] for test_id in test_ids}}
    return {t for t in test_ids if t.partition("::")[2] not in defined[t.partition("::")[0]]}


# The module-level functions of each test file, by (path, mtime, size): the gate and its
# tests ask of the same two dozen files again and again, and a parse costs ~10 ms.
_parsed: dict[tuple[Path, int, int], frozenset[str]] = {}


def _test_functions(path: Path) -> frozenset[str]:
    if not path.is_file():
        return frozenset()
    st = path.stat()
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _parsed:
        body = ast.parse(path.read_text()).body
        _parsed[key] = frozenset(node.name for node in body if isinstance(node, ast.FunctionDef))
    return _parsed[key]


def live_cells(backend, snapshot: BackendProfileSnapshot) -> list[tuple[RequirementKind | BudgetDimension, Enforcement, str]]:
    """Every cell of the live ceiling and budget profile, with its enforcement and the
    mechanism string this host's cell carries (``bvisor probe``'s mechanism column)."""
    kinds = [(cell.kind, cell.verdict.enforcement, cell.mechanism) for cell in backend.profile(snapshot).cells]
    budgets = [(dimension, a.enforcement, a.mechanism) for dimension, a in snapshot.budget.items()]
    return kinds + budgets


def _advertised(backend, snapshot: BackendProfileSnapshot) -> list[tuple[RequirementKind | BudgetDimension, str]]:
    """Every cell the live ceiling calls Enforced, with the mechanism its live cell names: a
    host-invariant string (``backend.mechanism``) could never fail to match."""
    return [(cell, mechanism) for cell, enforcement, mechanism in live_cells(backend, snapshot) if enforcement is Enforcement.Enforced]


def _row_findings(row: Row, missing: set[str], today: datetime.date) -> Findings:
    """What a row owes whatever the host: its tests exist, a proof cites some, a waiver is live."""
    problems = [f"{row.name}: cited test {t} does not exist" for t in row.tests if t in missing]
    if row.status in PROOFS and not row.tests:
        problems.append(f"{row.name}: a {row.status.value} row cites no test")
    if row.status is Status.Waived and row.expires < today:
        problems.append(f"{row.name}: the waiver by {row.owner} expired on {row.expires.isoformat()} ({row.reason})")
    return Findings(problems=tuple(problems))


def _advertised_findings(name: str, rows: list[Row], mechanism: str, snapshot: BackendProfileSnapshot, today: datetime.date) -> Findings:
    """What a cell advertised Enforced owes: a proof or a live waiver for the mechanism its
    live cell names, on a floor this host meets. An expired waiver is already a row problem."""
    if not rows:
        return Findings(problems=(f"{name}: advertised enforced without a proven ledger row",))
    row = _row_for(rows, mechanism)
    if row is None:
        return Findings(problems=(f"{name}: no ledger row for the mechanism this host installs, {mechanism} (rows are for {_mechanisms(rows)})",))
    if row.status is Status.FailClosed:
        return Findings(problems=(f"{name}: advertised enforced without a proven ledger row (the row for {mechanism} is fail-closed)",))
    warnings = []
    if row.status is Status.Waived and row.expires >= today:
        warnings.append(f"{name}: advertised enforced on a waiver, not a proof, until {row.expires.isoformat()} (owner {row.owner}: {row.reason})")
    unmet = floor_unmet(row.floor, snapshot)
    problems = [f"{name}: advertised enforced on a host below the row's floor ({', '.join(unmet)})"] if unmet else []
    return Findings(tuple(problems), tuple(warnings))


def coupling_problems(ledger: Ledger, backend, snapshot: BackendProfileSnapshot, repo_root: Path | None, today: datetime.date | None = None) -> Findings:
    """Every way the live ceiling over-claims against the ledger, one line each. ``repo_root``
    None (an installed package, no tests beside it) skips checking that cited tests exist."""
    today = today or datetime.date.today()
    cited = {t for row in ledger.rows() for t in row.tests}
    missing = _missing_tests(repo_root, cited) if repo_root is not None else set()
    findings = Findings()
    for row in ledger.rows():
        findings += _row_findings(row, missing, today)
    for cell, mechanism in _advertised(backend, snapshot):
        findings += _advertised_findings(_cell_name(cell), ledger_rows(ledger, backend.id(), cell), mechanism, snapshot, today)
    return findings


def _gated_rows(ledger: Ledger, backend, snapshot: BackendProfileSnapshot) -> list[Row]:
    """The rows this session must re-prove: this backend's proofs whose floor the host meets
    (below it the tests can only skip and the cell is refused anyway), and every row behind
    a cell the ceiling advertises (by the mechanism it advertises), whatever its floor."""
    advertised = set(_advertised(backend, snapshot))
    return [
        row
        for row in ledger.rows()
        if row.backend == backend.id()
        and ((row.status in PROOFS and not floor_unmet(row.floor, snapshot)) or (row.cell, row.mechanism) in advertised)
    ]


# How a cited test that did not pass fared (absent from the results: it never ran).
_FATES = {None: "did not run", "skipped": "was skipped", "failed": "failed"}


def gate_problems(
    ledger: Ledger,
    backend,
    snapshot: BackendProfileSnapshot,
    repo_root: Path,
    results: Mapping[str, TestResult],
    today: datetime.date | None = None,
) -> Findings:
    """``coupling_problems`` plus the same-run law: every test a gated row cites ran in this
    session (``results``, by node id without parameters) and passed."""
    same_run = tuple(
        f"{row.name} cites {t} which {_FATES[results.get(t)]} in this session"
        for row in _gated_rows(ledger, backend, snapshot)
        for t in row.tests
        if results.get(t) != "passed"
    )
    return coupling_problems(ledger, backend, snapshot, repo_root, today) + Findings(problems=same_run)


# Labels for ``bvisor probe`` --------------------------------------------------------------


class Qualification(msgspec.Struct, frozen=True):
    """How one live cell stands in the ledger on this host. ``applies``: a row for the cell's
    live mechanism exists, this host meets its floor, and it is not an expired waiver (nor a
    fail-closed row behind a cell advertised Enforced). ``status`` is that row's (None: no
    row for the mechanism); ``label`` says it in a line, or why no row applies."""

    mechanism: str
    applies: bool
    label: str
    status: Status | None = None
    tests: tuple[str, ...] = ()


def qualify(
    ledger: Ledger,
    backend_id: str,
    cell: RequirementKind | BudgetDimension,
    enforcement: Enforcement,
    mechanism: str,
    snapshot: BackendProfileSnapshot,
    today: datetime.date | None = None,
) -> Qualification:
    """One live cell's qualification: the row for its live mechanism, judged on this host."""
    today = today or datetime.date.today()
    rows = ledger_rows(ledger, backend_id, cell)
    if not rows:
        return Qualification(mechanism, False, "no ledger row")
    row = _row_for(rows, mechanism)
    if row is None:
        refused = "" if enforcement is Enforcement.Enforced else f"{enforcement.value} here; "
        return Qualification(mechanism, False, f"{refused}no row for mechanism {mechanism} (rows are for {_mechanisms(rows)})")
    applies, label = _judge(row, enforcement, snapshot, today)
    return Qualification(mechanism, applies, label, row.status, tuple(row.tests))


def _judge(row: Row, enforcement: Enforcement, snapshot: BackendProfileSnapshot, today: datetime.date) -> tuple[bool, str]:
    """Whether the row for a live cell's mechanism applies on this host, and its label."""
    unmet = floor_unmet(row.floor, snapshot)
    if unmet:
        return False, f"row floor not met: {', '.join(unmet)} (a {row.status.value} row)"
    if row.status is Status.Waived:
        if row.expires < today:
            return False, f"waiver expired on {row.expires.isoformat()} (by {row.owner}: {row.reason})"
        return True, f"waived until {row.expires.isoformat()} by {row.owner}: {row.reason}"
    if row.status is Status.FailClosed:
        if enforcement is Enforcement.Enforced:
            return False, "fail-closed row, yet the cell is advertised enforced"
        return True, row.status.value
    count = f"{len(row.tests)} test{'' if len(row.tests) == 1 else 's'}"
    terms = floor_terms(row.floor)
    return True, f"{row.status.value} ({count}; floor {', '.join(terms)})" if terms else f"{row.status.value} ({count})"


def qualifications(
    ledger: Ledger, backend, snapshot: BackendProfileSnapshot, today: datetime.date | None = None
) -> dict[RequirementKind | BudgetDimension, Qualification]:
    """Every live cell (kinds, then budget dimensions) with its qualification on this host."""
    return {
        cell: qualify(ledger, backend.id(), cell, enforcement, mechanism, snapshot, today)
        for cell, enforcement, mechanism in live_cells(backend, snapshot)
    }
