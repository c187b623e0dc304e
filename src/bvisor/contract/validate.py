"""The contract gate: every rule a spec must meet before it is classified.

One function, ``spec_problems``, serves the decoder, the planner and the CLI, so a spec is
judged the same way however it was built. Field paths read like
``capabilities[1].policy.entries[0].name``.
"""

import re
from collections.abc import Callable, Iterator
from typing import TypeVar

import msgspec

# The bounds live beside the types they bound (so the schemas state them); this module
# enforces them.
from bvisor.contract.budget import LIMIT_CEILING
from bvisor.contract.spec import (
    ENV_NAME_FORBIDDEN,
    MAX_ENV_ENTRIES,
    MAX_ENV_TOTAL_BYTES,
    MAX_EXEC_STRING,
    PORT_RANGE,
    BoundarySpec,
    Capability,
    EnvPolicy,
    EnvSource,
    FdPolicy,
    HostControl,
    NetDest,
    NetPolicy,
)

# Kinds that may appear more than once; any other repeat is ambiguous (which policy wins?).
_REPEATABLE = (Capability.Filesystem, HostControl.ExposePath)
# A capability or a control: each list is checked by its own item rule.
_Requirement = TypeVar("_Requirement", bound=msgspec.Struct)


class SpecProblem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    field: str
    message: str


_AT_PATH = re.compile(r"^(?P<message>.*) - at `(?:key` in `)?\$\.?(?P<field>[^`]*)`$", re.DOTALL)


def problem_from_validation(error: msgspec.ValidationError) -> SpecProblem:
    """msgspec's "Expected `int`, got `str` - at `$.a.b`" as a problem at ``a.b``."""
    matched = _AT_PATH.match(str(error))
    if matched is None:
        return SpecProblem("", str(error))
    return SpecProblem(matched["field"], matched["message"])


def spec_problems(spec: BoundarySpec) -> list[SpecProblem]:
    """Every rule the spec breaks, in field order; empty when it is acceptable."""
    structural = _structure_problem(spec)
    if structural is not None:
        # The value-level rules below assume well-typed fields.
        return [structural]
    return [
        *_workload_problems(spec),
        *_requirement_problems("capabilities", spec.capabilities, _capability_problems),
        *_requirement_problems("controls", spec.controls, _control_problems),
        *_budget_problems(spec),
    ]


def _structure_problem(spec: BoundarySpec) -> SpecProblem | None:
    """A spec built in Python is not type-checked on construction: round-trip it through
    the strict decoder so a wrong type is reported with its path, exactly as in a file."""
    try:
        msgspec.convert(msgspec.to_builtins(spec), BoundarySpec)
    except msgspec.ValidationError as error:
        return problem_from_validation(error)
    except TypeError as error:
        return SpecProblem("", f"not a spec value: {error}")
    return None


def _path_problem(field: str, path: str) -> Iterator[SpecProblem]:
    if "\x00" in path:
        yield SpecProblem(field, "must not contain NUL")
    elif not path.startswith("/"):
        yield SpecProblem(field, f"expected absolute path, got {path!r}")


def _workload_problems(spec: BoundarySpec) -> Iterator[SpecProblem]:
    yield from _path_problem("workload.exe", spec.workload.exe)
    if spec.workload.cwd is not msgspec.UNSET:
        yield from _path_problem("workload.cwd", spec.workload.cwd)
    for index, arg in enumerate(spec.workload.args):
        if "\x00" in arg:
            yield SpecProblem(f"workload.args[{index}]", "must not contain NUL")
        elif len(arg.encode()) + 1 > MAX_EXEC_STRING:
            yield SpecProblem(f"workload.args[{index}]", f"longer than the kernel's {MAX_EXEC_STRING}-byte limit per argument")


def _requirement_problems(
    field: str, requirements: list[_Requirement], item_problems: Callable[[str, _Requirement], Iterator[SpecProblem]]
) -> Iterator[SpecProblem]:
    first_at: dict[type, int] = {}
    for index, requirement in enumerate(requirements):
        at = f"{field}[{index}]"
        earlier = first_at.setdefault(type(requirement), index)
        if earlier != index and not isinstance(requirement, _REPEATABLE):
            tag = requirement.__struct_config__.tag
            yield SpecProblem(at, f"a second {tag} (the first is {field}[{earlier}])")
        yield from item_problems(at, requirement)


def _capability_problems(field: str, capability: Capability.Any) -> Iterator[SpecProblem]:
    match capability:
        case Capability.Filesystem(roots=roots):
            if not roots:
                yield SpecProblem(f"{field}.roots", "must name at least one root")
            for index, root in enumerate(roots):
                yield from _path_problem(f"{field}.roots[{index}]", root)
        case Capability.Network(policy=NetPolicy.AllowList(dests=dests)):
            yield from _net_problems(f"{field}.policy.dests", dests)
        case Capability.Environment(policy=policy):
            yield from _env_problems(f"{field}.policy", policy)
        case Capability.InheritedFds(policy=FdPolicy.Only(fds=fds)):
            yield from _fd_problems(f"{field}.policy.fds", fds)


def _net_problems(field: str, dests: list[NetDest]) -> Iterator[SpecProblem]:
    for index, dest in enumerate(dests):
        if not dest.host or "\x00" in dest.host:
            yield SpecProblem(f"{field}[{index}].host", "must be a non-empty host name or address without NUL")
        if not PORT_RANGE[0] <= dest.port <= PORT_RANGE[1]:
            yield SpecProblem(f"{field}[{index}].port", f"expected a port in {PORT_RANGE[0]}..{PORT_RANGE[1]}, got {dest.port}")


def _fd_problems(field: str, fds: list[int]) -> Iterator[SpecProblem]:
    seen: set[int] = set()
    for index, fd in enumerate(fds):
        if fd < 0:
            yield SpecProblem(f"{field}[{index}]", f"expected a descriptor number >= 0, got {fd}")
        elif fd in seen:
            yield SpecProblem(f"{field}[{index}]", f"descriptor {fd} is listed twice")
        seen.add(fd)


_NOT_IN_ENV_NAME = re.compile(f"[{ENV_NAME_FORBIDDEN}]")


def env_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an environment variable, or None when it can."""
    if not name:
        return "must not be empty"
    if _NOT_IN_ENV_NAME.search(name):
        return f"{name!r} must not contain '=', NUL or a control character"
    return None


def _env_problems(field: str, policy: EnvPolicy.Any) -> Iterator[SpecProblem]:
    """First violation per entry wins, so one bad name gives one message."""
    entries = policy.entries
    if len(entries) > MAX_ENV_ENTRIES:
        yield SpecProblem(f"{field}.entries", f"{len(entries)} entries exceed the limit of {MAX_ENV_ENTRIES}")
    first_at: dict[str, int] = {}
    total = 0
    for index, entry in enumerate(entries):
        at = f"{field}.entries[{index}]"
        payload = entry.source.value if isinstance(entry.source, EnvSource.Literal) else entry.source.ref
        total += len(entry.name.encode()) + len(payload.encode())
        name_problem = env_name_problem(entry.name)
        if name_problem is not None:
            yield SpecProblem(f"{at}.name", name_problem)
        elif first_at.setdefault(entry.name, index) != index:
            yield SpecProblem(f"{at}.name", f"duplicate name {entry.name!r} (first at entries[{first_at[entry.name]}])")
        elif isinstance(entry.source, EnvSource.Literal) and "\x00" in payload:
            yield SpecProblem(f"{at}.source.value", f"the value of {entry.name!r} must not contain NUL")
        elif isinstance(entry.source, EnvSource.Literal) and len(entry.name.encode()) + len(payload.encode()) + 2 > MAX_EXEC_STRING:
            yield SpecProblem(f"{at}.source.value", f"{entry.name}=VALUE is longer than the kernel's {MAX_EXEC_STRING}-byte limit per string")
        elif isinstance(entry.source, EnvSource.SecretLease) and (not payload or "\x00" in payload):
            yield SpecProblem(f"{at}.source.ref", f"the lease reference of {entry.name!r} must be non-empty and NUL-free")
    if total > MAX_ENV_TOTAL_BYTES:
        yield SpecProblem(f"{field}.entries", f"{total} bytes exceed the limit of {MAX_ENV_TOTAL_BYTES}")


def _control_problems(field: str, control: HostControl.Any) -> Iterator[SpecProblem]:
    match control:
        case HostControl.TempRoot(path=path):
            yield from _path_problem(f"{field}.path", path)
        case HostControl.ExposePath(source=source, dest=dest):
            yield from _path_problem(f"{field}.source", source)
            yield from _path_problem(f"{field}.dest", dest)


def _budget_problems(spec: BoundarySpec) -> Iterator[SpecProblem]:
    for dimension, request in spec.budgets.items():
        ceiling, unit = LIMIT_CEILING[dimension]
        if not 0 <= request.limit <= ceiling:
            yield SpecProblem(f"budgets.{dimension.value}.limit", f"expected 0..{ceiling} {unit}, got {request.limit}")
