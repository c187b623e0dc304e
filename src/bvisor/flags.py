"""``bvisor run [FLAGS] -- EXE ARGS…``: turn command-line flags into a ``BoundarySpec``.

Pure apart from resolving a bare command name on the caller's PATH. Every flag becomes a
requirement asked at ``Enforced``; a flag whose capability this host or version cannot
enforce makes the plan refuse — it is never ignored. Budget dimensions without a flag are
watched (``Mediated``) up to the largest limit the contract accepts.
"""

import os
import shutil

from bvisor.contract import (
    BoundarySpec,
    BudgetDimension,
    BudgetRequest,
    BudgetRequirements,
    Capability,
    EnvEntry,
    EnvPolicy,
    EvidenceRequirements,
    FdPolicy,
    FsAccess,
    HostControl,
    MinGuarantee,
    NetDest,
    NetPolicy,
    SpawnPolicy,
    StdStreams,
    Workload,
)
from bvisor.contract.validate import LIMIT_CEILING, env_name_problem
from bvisor.planner import BUDGET_FLAGS


class FlagError(ValueError):
    """Bad command-line input; ``str()`` is one line naming the flag."""


class CommandNotFound(FlagError):
    pass


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
DEFAULT_TMP_STORAGE = 64 * 1024**2


def parse_bytes(flag: str, text: str) -> int:
    """``64M`` → 67108864 (K/M/G/T are 1024-based; an optional trailing B or iB is allowed)."""
    raw = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (raw[:-1], raw[-1]) if raw[-1:] in _SIZE_UNITS and raw[-1:].isalpha() else (raw, "")
    if not number.isdigit():
        raise FlagError(f"{flag}: expected a byte count like 512, 64K, 64M or 2G, got {text!r}")
    return _positive(flag, int(number) * _SIZE_UNITS[unit])


def parse_seconds(flag: str, text: str) -> int:
    """Seconds (decimals allowed) → whole microseconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise FlagError(f"{flag}: expected seconds like 10 or 0.5, got {text!r}") from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise FlagError(f"{flag}: expected a finite number of seconds, got {text!r}")
    return _positive(flag, round(seconds * 1_000_000))


def parse_count(flag: str, text: str) -> int:
    if not text.strip().isdigit():
        raise FlagError(f"{flag}: expected a whole number, got {text!r}")
    return _positive(flag, int(text))


def _positive(flag: str, value: int) -> int:
    if value <= 0:
        raise FlagError(f"{flag}: must be greater than zero")
    return value


def parse_net(values: list) -> Capability.Network | None:
    if not values:
        return None
    if values == ["none"]:
        return Capability.Network(policy=NetPolicy.DenyAll())
    if "none" in values:
        raise FlagError("--net: 'none' cannot be combined with allow= destinations")
    return Capability.Network(policy=NetPolicy.AllowList([_net_dest(v) for v in values]))


def _net_dest(value: str) -> NetDest:
    if not value.startswith("allow="):
        raise FlagError(f"--net: expected 'none' or 'allow=HOST:PORT', got {value!r}")
    target = value[len("allow=") :]
    if target.startswith("["):  # [IPv6]:port
        host, _, port = target[1:].partition("]:")
    else:
        host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FlagError(f"--net: expected allow=HOST:PORT (IPv6 as [::1]:443), got {value!r}")
    return NetDest(host=host, port=int(port))


def parse_env(flag: str, values: list, secret: bool) -> list:
    entries = []
    for value in values:
        name, sep, rest = value.partition("=")
        problem = env_name_problem(name) if name else None
        if problem is not None:
            raise FlagError(f"{flag}: {problem}")
        if not name or (secret and not sep):
            raise FlagError(f"{flag}: expected {'NAME=REF' if secret else 'NAME=VALUE or NAME'}, got {value!r}")
        if not sep:  # `--env NAME`: the caller's value, declared in the spec like any other
            if name not in os.environ:
                raise FlagError(f"{flag}: {name} is not set in your environment (give NAME=VALUE)")
            rest = os.environ[name]
        entries.append(EnvEntry.lease(name, rest) if secret else EnvEntry.literal(name, rest))
    return entries


def parse_bind(values: list) -> list:
    """``--bind SRC:DST[:ro|:rw]``: the host path SRC shown at DST in the run (read-write unless
    ``:ro``); DST need not exist on the host, the run's root is built for it."""
    binds = []
    for value in values:
        parts = value.split(":")
        access = FsAccess.ReadWrite
        if len(parts) == 3 and parts[2] in ("ro", "rw"):
            access = FsAccess.Read if parts.pop() == "ro" else FsAccess.ReadWrite
        if len(parts) != 2 or not parts[0] or not parts[1].startswith("/"):
            raise FlagError(f"--bind: expected SRC:DST[:ro] with an absolute DST, got {value!r}")
        (source,) = _existing_paths("--bind", [parts[0]])
        binds.append(HostControl.ExposePath(source=source, dest=os.path.normpath(parts[1]), access=access))
    return binds


def resolve_exe(command: str) -> str:
    """An absolute exe path: a bare name is looked up on the caller's PATH now."""
    if "/" in command:
        return os.path.abspath(command)
    found = shutil.which(command)
    if found is None:
        raise CommandNotFound(f"{command}: command not found on PATH")
    return os.path.abspath(found)


def _existing_paths(flag: str, paths: list) -> list:
    """Absolute paths of roots that exist now: a typo is bad input, not a refused run."""
    resolved = []
    for path in paths:
        absolute = os.path.abspath(path)
        if not os.path.exists(absolute):
            raise FlagError(f"{flag}: {path} does not exist")
        resolved.append(absolute)
    return resolved


# With no --ro or --rw the run sees the read-only system roots, its own /proc and a private
# /tmp: nothing of the caller's files.
DEFAULT_VIEW = Capability.Filesystem(access=FsAccess.Read, roots=["/proc"], system_roots=True)


def _filesystem(ro: list, rw: list, system_roots: bool) -> list:
    if not ro and not rw and system_roots:
        return [DEFAULT_VIEW]
    caps = []
    if ro:
        caps.append(Capability.Filesystem(access=FsAccess.Read, roots=_existing_paths("--ro", ro), system_roots=system_roots))
    if rw:
        caps.append(Capability.Filesystem(access=FsAccess.ReadWrite, roots=_existing_paths("--rw", rw), system_roots=system_roots))
    if system_roots is False and not caps:
        raise FlagError("--no-system-roots: only meaningful with --ro or --rw")
    return caps


def _budgets(caps: dict, watched: dict) -> BudgetRequirements:
    """Enforced caps where a flag asked; elsewhere watched, at the limit in ``watched`` or up
    to the contract's ceiling."""

    def request(dimension: BudgetDimension) -> BudgetRequest:
        if dimension in caps:
            return BudgetRequest(limit=caps[dimension], guarantee=MinGuarantee.Enforced)
        return BudgetRequest(limit=watched.get(dimension, LIMIT_CEILING[dimension][0]), guarantee=MinGuarantee.Mediated)

    return BudgetRequirements(**{d.value: request(d) for d in BudgetDimension})


def spec_from_flags(args, command: list) -> BoundarySpec:
    """Build the spec a flag-built run asks for. ``args`` is the parsed argparse namespace."""
    if not command:
        raise FlagError("run: give a spec file, or -- EXE [ARGS...]")
    if args.no_spawn and args.threads_only:
        raise FlagError("--no-spawn and --threads-only cannot be combined")
    env_entries = parse_env("--env", args.env, secret=False) + parse_env("--env-secret", args.env_secret, secret=True)
    seen = set()
    for entry in env_entries:
        if entry.name in seen:
            raise FlagError(f"--env: {entry.name} is given twice")
        seen.add(entry.name)
    caps = [
        Capability.Environment(policy=EnvPolicy.Exact(env_entries)),
        Capability.InheritedFds(policy=FdPolicy.Nothing()),
    ]
    network = parse_net(args.net)
    if network is not None:
        caps.append(network)
    caps += _filesystem(args.ro, args.rw, not args.no_system_roots)
    if args.no_spawn:
        caps.append(Capability.ChildSpawn(policy=SpawnPolicy.DenyNewTasks()))
    if args.threads_only:
        caps.append(Capability.ChildSpawn(policy=SpawnPolicy.AllowThreadsWithinBoundary()))
    controls = [HostControl.LaunchWorkload(), HostControl.CaptureStreams(streams=StdStreams.capture_out_err())]
    controls += parse_bind(args.bind)
    budget_caps, watched = {}, {}
    if args.tmp or not (args.ro or args.rw):
        controls.append(HostControl.TempRoot())
        # The temp root's default size; only --storage asks for an Enforced cap (admitted
        # where the temp root is the only writable place).
        watched[BudgetDimension.Storage] = DEFAULT_TMP_STORAGE
    parsers = {
        BudgetDimension.Wall: (args.timeout, parse_seconds),
        BudgetDimension.Cpu: (args.cpu, parse_seconds),
        BudgetDimension.ResidentMemory: (args.memory, parse_bytes),
        BudgetDimension.ProcessCount: (args.pids, parse_count),
        BudgetDimension.HandleCount: (args.fds, parse_count),
        BudgetDimension.Storage: (args.storage, parse_bytes),
    }
    for dimension, (text, parse) in parsers.items():
        flag = BUDGET_FLAGS[dimension]
        if text is not None:
            limit = parse(flag, text)
            ceiling, unit = LIMIT_CEILING[dimension]
            if limit > ceiling:
                raise FlagError(f"{flag}: {text} is beyond the largest accepted limit ({ceiling} {unit})")
            budget_caps[dimension] = limit
    return BoundarySpec(
        workload=Workload.Process(exe=resolve_exe(command[0]), args=list(command[1:])),
        capabilities=caps,
        controls=controls,
        budgets=_budgets(budget_caps, watched),
        evidence=EvidenceRequirements(require_captured_streams=True, require_exit_status=True),
    )
