"""``bvisor run [FLAGS] -- EXE ARGS…`` and ``bvisor.run``: turn typed run options into a
``BoundarySpec`` (``build_spec``; the CLI's flags reach it through ``spec_from_flags``).

Pure apart from reading the caller's environment for ``--env NAME`` and ``TERM``, and
looking a bare command name up on the workload's PATH inside its view. Every option becomes
a requirement asked at ``Enforced``; an option whose capability this host or version cannot
enforce makes the plan refuse — it is never ignored. Budget dimensions without an option
are watched (``Mediated``) up to the largest limit the contract accepts.
"""

import os
from collections.abc import Mapping, Sequence

import msgspec

from bvisor.backends.linux.filesystem import present_system_roots
from bvisor.contract import (
    BoundarySpec,
    BudgetDimension,
    BudgetRequest,
    BudgetRequirements,
    Capability,
    EnvEntry,
    EnvPolicy,
    EnvSource,
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


class CommandNotFound(FlagError, FileNotFoundError):
    """A bare command name the workload's PATH does not find inside its view (a
    ``FileNotFoundError`` too, as ``subprocess`` raises for a missing program)."""


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
DEFAULT_TMP_STORAGE = 64 * 1024**2

# The environment every flag-built run declares unless --clear-env: what ordinary programs
# look for (a compiler finds `ld` on PATH; Python and most tools want a UTF-8 locale and a
# HOME). HOME is set per run (``_home``) to a directory the run's view has.
BASELINE_PATH = "/usr/local/bin:/usr/bin:/bin"
BASELINE_LANG = "C.UTF-8"


def parse_bytes(flag: str, value: int | str) -> int:
    """A byte count as given (an int) or as text: ``64M`` → 67108864 (K/M/G/T are
    1024-based; an optional trailing B or iB is allowed)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _positive(flag, value)
    raw = value.strip().upper().removesuffix("IB").removesuffix("B") if isinstance(value, str) else ""
    number, unit = (raw[:-1], raw[-1]) if raw[-1:] in _SIZE_UNITS and raw[-1:].isalpha() else (raw, "")
    if not number.isdigit():
        raise FlagError(f"{flag}: expected a byte count like 512, 64K, 64M or 2G, got {value!r}")
    return _positive(flag, int(number) * _SIZE_UNITS[unit])


def parse_seconds(flag: str, value: float | str) -> int:
    """Seconds (a number, or text; decimals allowed) → whole microseconds."""
    try:
        seconds = None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        seconds = None
    if seconds is None:
        raise FlagError(f"{flag}: expected seconds like 10 or 0.5, got {value!r}")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise FlagError(f"{flag}: expected a finite number of seconds, got {value!r}")
    return _positive(flag, round(seconds * 1_000_000))


def parse_count(flag: str, value: int | str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return _positive(flag, value)
    if not isinstance(value, str) or not value.strip().isdigit():
        raise FlagError(f"{flag}: expected a whole number, got {value!r}")
    return _positive(flag, int(value))


def _positive(flag: str, value: int) -> int:
    if value <= 0:
        raise FlagError(f"{flag}: must be greater than zero")
    return value


def parse_net(values: Sequence[str]) -> Capability.Network | None:
    if not values:
        return None
    if list(values) == ["none"]:
        return Capability.Network(policy=NetPolicy.DenyAll())
    if "none" in values:
        raise FlagError("--net: 'none' cannot be combined with allow= destinations")
    return Capability.Network(policy=NetPolicy.AllowList([_net_dest(v) for v in values]))


def _net_dest(value: str) -> NetDest:
    if not isinstance(value, str) or not value.startswith("allow="):
        raise FlagError(f"--net: expected 'none' or 'allow=HOST:PORT', got {value!r}")
    target = value[len("allow=") :]
    if target.startswith("["):  # [IPv6]:port
        host, _, port = target[1:].partition("]:")
    else:
        host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FlagError(f"--net: expected allow=HOST:PORT (IPv6 as [::1]:443), got {value!r}")
    return NetDest(host=host, port=int(port))


def parse_env(flag: str, values: list, secret: bool) -> dict:
    """``NAME=VALUE`` texts → {name: value}; ``NAME`` alone (not for secrets) → {name: None},
    the caller's value, looked up by ``build_spec``."""
    entries: dict = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not name or (secret and not sep):
            raise FlagError(f"{flag}: expected {'NAME=REF' if secret else 'NAME=VALUE or NAME'}, got {value!r}")
        if name in entries:
            raise FlagError(f"{flag}: {name!r} is given twice")
        entries[name] = rest if sep else None
    return entries


def parse_bind(values: Sequence[str]) -> list:
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


def _existing_paths(flag: str, paths: Sequence) -> list:
    """Absolute paths of roots that exist now: a typo is bad input, not a refused run."""
    resolved = []
    for path in paths:
        absolute = os.path.abspath(path)
        if not os.path.exists(absolute):
            raise FlagError(f"{flag}: {os.fspath(path)} does not exist")
        resolved.append(absolute)
    return resolved


# With no --ro or --rw the run sees the read-only system roots, its own /proc and a private
# /tmp: nothing of the caller's files.
DEFAULT_VIEW = Capability.Filesystem(access=FsAccess.Read, roots=["/proc"], system_roots=True)


def _filesystem(ro: Sequence, rw: Sequence, system_roots: bool) -> list:
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


def _environment(declared: Mapping, secrets: Mapping, clear: bool, home: str, terminal: bool) -> list:
    """The workload's whole environment: the baseline (unless ``clear``), each name in
    ``declared`` (value, or None for the caller's own) or ``secrets`` (a lease reference)
    replacing the baseline's entry of that name or added after it."""
    entries = {}
    for name, value in declared.items():
        _check_env_name("--env", name)
        if value is None:  # the caller's value, declared in the spec like any other
            if name not in os.environ:
                raise FlagError(f"--env: {name} is not set in your environment (give NAME=VALUE)")
            value = os.environ[name]
        entries[name] = EnvEntry.literal(name, value)
    for name, ref in secrets.items():
        _check_env_name("--env-secret", name)
        if name in entries:
            raise FlagError(f"--env-secret: {name!r} is also given by --env")
        entries[name] = EnvEntry.lease(name, ref)
    baseline = {}
    if not clear:
        baseline = {"PATH": BASELINE_PATH, "LANG": BASELINE_LANG, "HOME": home}
        if terminal and "TERM" in os.environ:  # the caller's terminal is the run's
            baseline["TERM"] = os.environ["TERM"]
    return [entries.pop(name, EnvEntry.literal(name, value)) for name, value in baseline.items()] + list(entries.values())


def _check_env_name(flag: str, name) -> None:
    problem = env_name_problem(name) if isinstance(name, str) else f"{name!r} is not a string"
    if problem is not None:
        raise FlagError(f"{flag}: {problem}")


def _view_places(capabilities: list, controls: list) -> list:
    """``(path in the run, host path shown there)`` for every place the run's view has: the
    granted roots (a root declared through a symlink is shown at its target too), the
    ``--bind`` destinations, and the private temp root (host path None: empty at start)."""
    places = []
    for cap in capabilities:
        if isinstance(cap, Capability.Filesystem):
            system = present_system_roots() if cap.system_roots else []
            for root in [*cap.roots, *system]:
                places += [(root, root), (os.path.realpath(root), os.path.realpath(root))]
    for control in controls:
        if isinstance(control, HostControl.ExposePath):
            places.append((control.dest, control.source))
        elif isinstance(control, HostControl.TempRoot):
            places.append((control.path, None))
    return places


def _host_path_at(path: str, places: list) -> str | None:
    """The host path the run sees at ``path`` (the innermost place holding it), or None
    where its view has nothing of the host's."""
    holding = [(dest, source) for dest, source in places if os.path.commonpath([dest, path]) == dest]
    if not holding:
        return None
    dest, source = max(holding, key=lambda place: len(place[0]))
    return None if source is None else os.path.normpath(os.path.join(source, os.path.relpath(path, dest)))


def _shown_in_view(host_path: str, places: list) -> bool:
    return any(source is not None and os.path.commonpath([source, host_path]) == source for _, source in places)


def resolve_exe(command: str, search_path: str | None, places: list) -> str:
    """An absolute exe path. A bare name is looked up as the workload's own ``execvp`` would:
    on its PATH (``search_path``), in the directories its view has (``places``), so a
    program or shim outside the view (a pyenv shim on the caller's PATH) is never picked.
    Relative PATH entries are skipped: they name the run's working directory."""
    if "/" in command:
        return os.path.abspath(command)
    for directory in (search_path or "").split(":"):
        if not directory.startswith("/"):
            continue
        host_dir = _host_path_at(os.path.normpath(directory), places)
        candidate = host_dir and os.path.join(host_dir, command)
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK) and _shown_in_view(os.path.realpath(candidate), places):
            return candidate
    if not search_path:
        raise CommandNotFound(f"{command}: the workload has no PATH to find it on; give its path, or --env PATH=...")
    raise CommandNotFound(
        f"{command}: command not found on the workload's PATH ({search_path}) in its view; "
        "give its path, or grant its directory (--ro) and put that on PATH (--env PATH=...)"
    )


def _budgets(caps: dict, watched: dict) -> BudgetRequirements:
    """Enforced caps where a flag asked; elsewhere watched, at the limit in ``watched`` or up
    to the contract's ceiling."""

    def request(dimension: BudgetDimension) -> BudgetRequest:
        if dimension in caps:
            return BudgetRequest(limit=caps[dimension], guarantee=MinGuarantee.Enforced)
        return BudgetRequest(limit=watched.get(dimension, LIMIT_CEILING[dimension][0]), guarantee=MinGuarantee.Mediated)

    return BudgetRequirements(**{d.value: request(d) for d in BudgetDimension})


def build_spec(
    command: Sequence[str],
    *,
    net: Sequence[str] = (),
    ro: Sequence = (),
    rw: Sequence = (),
    bind: Sequence[str] = (),
    tmp: bool = False,
    system_roots: bool = True,
    env: Mapping[str, str | None] | None = None,
    env_secret: Mapping[str, str] | None = None,
    clear_env: bool = False,
    terminal: bool = False,
    no_spawn: bool = False,
    threads_only: bool = False,
    timeout: float | str | None = None,
    cpu: float | str | None = None,
    memory: int | str | None = None,
    pids: int | str | None = None,
    fds: int | str | None = None,
    storage: int | str | None = None,
    cwd: str | None = None,
) -> BoundarySpec:
    """The spec a run asks for; the one builder behind ``bvisor run -- EXE`` and ``bvisor.run``.

    ``net``: ``["none"]`` or ``allow=HOST:PORT`` entries. ``ro`` / ``rw``: roots granted
    read-only / read-write (with the system roots unless ``system_roots`` is false); neither
    gives the default view (system roots, /proc, a private /tmp). ``bind``:
    ``SRC:DST[:ro]``. ``tmp``: the private /tmp beside ``ro``/``rw``.
    ``env``: entries over the baseline (``PATH``, ``LANG``, ``HOME``, and with ``terminal``
    the caller's ``TERM``); a None value passes the caller's own. ``env_secret``: name →
    lease reference. ``clear_env``: no baseline. ``HOME`` is ``/tmp`` when the run has its
    private /tmp, else ``/``.
    Budgets (each an Enforced cap): ``timeout`` and ``cpu`` in seconds, ``memory`` and
    ``storage`` in bytes, ``pids`` and ``fds`` counts; each a number or the CLI's text
    (``"1.5"``, ``"64M"``). Bad input raises ``FlagError`` naming the flag.
    ``cwd``: the directory of the run's view it starts in (relative: to the caller's); None:
    the caller's working directory where the view has it, else /.
    """
    if not command:
        raise FlagError("run: give a spec file, or -- EXE [ARGS...]")
    if no_spawn and threads_only:
        raise FlagError("--no-spawn and --threads-only cannot be combined")
    caps = [Capability.InheritedFds(policy=FdPolicy.Nothing())]
    network = parse_net(net)
    if network is not None:
        caps.append(network)
    caps += _filesystem(ro, rw, system_roots)
    if no_spawn:
        caps.append(Capability.ChildSpawn(policy=SpawnPolicy.DenyNewTasks()))
    if threads_only:
        caps.append(Capability.ChildSpawn(policy=SpawnPolicy.AllowThreadsWithinBoundary()))
    controls = [HostControl.LaunchWorkload(), HostControl.CaptureStreams(streams=StdStreams.capture_out_err())]
    controls += parse_bind(bind)
    budget_caps, watched = {}, {}
    if tmp or not (ro or rw):
        controls.append(HostControl.TempRoot())
        # The temp root's default size; only --storage asks for an Enforced cap (admitted
        # where the temp root is the only writable place).
        watched[BudgetDimension.Storage] = DEFAULT_TMP_STORAGE
    # HOME must exist in the run's view: its own writable /tmp when it has one, else its root.
    home = next((c.path for c in controls if isinstance(c, HostControl.TempRoot)), "/")
    environment = _environment(env or {}, env_secret or {}, clear_env, home, terminal)
    caps.insert(0, Capability.Environment(policy=EnvPolicy.Exact(environment)))
    given = {
        BudgetDimension.Wall: (timeout, parse_seconds),
        BudgetDimension.Cpu: (cpu, parse_seconds),
        BudgetDimension.ResidentMemory: (memory, parse_bytes),
        BudgetDimension.ProcessCount: (pids, parse_count),
        BudgetDimension.HandleCount: (fds, parse_count),
        BudgetDimension.Storage: (storage, parse_bytes),
    }
    for dimension, (value, parse) in given.items():
        flag = BUDGET_FLAGS[dimension]
        if value is not None:
            limit = parse(flag, value)
            ceiling, unit = LIMIT_CEILING[dimension]
            if limit > ceiling:
                raise FlagError(f"{flag}: {value} is beyond the largest accepted limit ({ceiling} {unit})")
            budget_caps[dimension] = limit
    search_path = next((e.source.value for e in environment if e.name == "PATH" and isinstance(e.source, EnvSource.Literal)), None)
    exe = resolve_exe(command[0], search_path, _view_places(caps, controls))
    return BoundarySpec(
        workload=Workload.Process(exe=exe, args=list(command[1:]), cwd=msgspec.UNSET if cwd is None else os.path.abspath(cwd)),
        capabilities=caps,
        controls=controls,
        budgets=_budgets(budget_caps, watched),
        evidence=EvidenceRequirements(require_captured_streams=True, require_exit_status=True),
    )


def spec_from_flags(args, command: list, terminal: bool = False) -> BoundarySpec:
    """The spec ``bvisor run [FLAGS] -- EXE ARGS…`` asks for (``args``: the parsed argparse
    namespace; ``terminal``: a terminal is attached, so the caller's TERM is declared)."""
    return build_spec(
        command,
        net=args.net,
        ro=args.ro,
        rw=args.rw,
        bind=args.bind,
        tmp=args.tmp,
        system_roots=not args.no_system_roots,
        env=parse_env("--env", args.env, secret=False),
        env_secret=parse_env("--env-secret", args.env_secret, secret=True),
        clear_env=args.clear_env,
        terminal=terminal,
        no_spawn=args.no_spawn,
        threads_only=args.threads_only,
        timeout=args.timeout,
        cpu=args.cpu,
        memory=args.memory,
        pids=args.pids,
        fds=args.fds,
        storage=args.storage,
        cwd=args.cwd,
    )
