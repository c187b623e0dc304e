"""The Backend protocol and the registry the planner and runner look backends up in."""

from typing import TYPE_CHECKING, Protocol

from bvisor.contract import (
    BackendId,
    BackendProfile,
    BackendProfileSnapshot,
    BoundaryPlan,
    BoundarySpec,
    Enforcement,
    ExecutionRecord,
    Requirement,
    RequirementKind,
    SupportMatrix,
    UnknownBackend,
)

if TYPE_CHECKING:
    from bvisor.capture import RunIO
    from bvisor.contract import AttemptId


class Backend(Protocol):
    def id(self) -> BackendId: ...

    def support(self) -> SupportMatrix:
        """The family's best case, whatever this host can do."""
        ...

    def probe(self) -> BackendProfileSnapshot:
        """This host's facts, cheaply: expensive proofs are cached by the backend."""
        ...

    def profile(self, snapshot: BackendProfileSnapshot) -> BackendProfile:
        """The typed ceiling; a pure function of the snapshot."""
        ...

    def mechanism(self, kind: RequirementKind, enforcement: Enforcement) -> str:
        """How a plan names the mechanism that gives ``kind`` (``backend:mechanism:enforcement``),
        after the name the backend's ceiling table gives it."""
        ...

    def grants(self, requirement: Requirement, spec: BoundarySpec, snapshot: BackendProfileSnapshot) -> list[str]:
        """What admitting ``requirement`` concretely allows on this host, implicit grants
        included (a pure function of the requirement, its spec and the snapshot)."""
        ...

    def execute(self, plan: BoundaryPlan, attempt_id: "AttemptId", io: "RunIO") -> ExecutionRecord:
        """Run an admitted plan. Never raises for a controlled failure: every fault ends as
        an ``Outcome`` plus observed facts explaining it."""
        ...


class BackendRegistry:
    def __init__(self) -> None:
        self._backends: dict[BackendId, Backend] = {}

    def register(self, backend: Backend) -> None:
        backend_id = backend.id()
        if backend_id in self._backends:
            raise ValueError(f"a backend named {backend_id!r} is already registered")
        self._backends[backend_id] = backend

    def get(self, backend_id: BackendId) -> Backend:
        try:
            return self._backends[backend_id]
        except KeyError:
            raise UnknownBackend(backend_id, self.ids()) from None

    def ids(self) -> list[BackendId]:
        return sorted(self._backends)
