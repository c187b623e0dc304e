"""``bvisor.run``: one boundary run shaped like ``subprocess.run``, on the path ``bvisor run``
takes — the same spec builder (``bvisor.flags.build_spec``), the planner, the runner.

    done = bvisor.run(["sh", "-c", "echo hi"], net="none", timeout=10)
    done.stdout, done.returncode, done.report    # b"hi\\n", 0, the sealed BoundaryReport

``returncode`` is the workload's exit code, or ``-N`` when signal N ended it (subprocess's
convention, where the CLI exits 128+N). What is not an exit status raises instead: a refused
plan raises the planner's ``PlanError`` (nothing ran); the wall ``timeout`` raises
``RunTimeout`` (a ``subprocess.TimeoutExpired``); a run that ended with no exit status at all
(the exe could not be executed, a bvisor fault) raises ``RunFailed``; bad arguments raise
``FlagError`` (a ``ValueError``), a bare name no PATH directory in the run's view holds
``CommandNotFound`` (also a ``FileNotFoundError``). The output is captured whole; stdin is
``input`` or empty. Nothing is written to the evidence store: the report is returned.

``Session`` runs many boundaries through one warm launcher server (``LinuxBackend(warm=True)``),
with the same arguments.
"""

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bvisor.backend import BackendRegistry
from bvisor.backends.linux.backend import LinuxBackend
from bvisor.capture import RunIO
from bvisor.contract import BoundaryReport, BudgetDimension, Outcome
from bvisor.explain import why_no_exit
from bvisor.flags import build_spec
from bvisor.planner import BoundaryPlanner
from bvisor.runner import BoundaryRunner
from bvisor.secrets import EnvSecretResolver


@dataclass(frozen=True, slots=True)
class CompletedRun:
    """What ``subprocess.CompletedProcess`` holds, and the sealed report of the run."""

    args: tuple
    returncode: int
    stdout: bytes
    stderr: bytes
    report: BoundaryReport = field(repr=False)

    def check_returncode(self) -> None:
        """Raise ``CalledRunError`` if the exit code was not zero."""
        if self.returncode:
            raise CalledRunError(self)


class CalledRunError(subprocess.CalledProcessError):
    """``check=True`` and a non-zero exit: ``subprocess.CalledProcessError`` with the run's
    ``result`` and its sealed ``report``."""

    def __init__(self, result: CompletedRun):
        super().__init__(result.returncode, result.args, result.stdout, result.stderr)
        self.result, self.report = result, result.report


class RunTimeout(subprocess.TimeoutExpired):
    """The wall ``timeout`` ended the run (the whole run tree was killed):
    ``subprocess.TimeoutExpired`` with the output up to then and the sealed ``report``."""

    def __init__(self, args: tuple, timeout: float, stdout: bytes, stderr: bytes, report: BoundaryReport):
        super().__init__(args, timeout, stdout, stderr)
        self.report = report


class RunFailed(RuntimeError):
    """The run ended without an exit status (the exe could not be executed, the host changed
    since admission, a bvisor fault); the sealed ``report`` says why."""

    def __init__(self, args: tuple, report: BoundaryReport):
        super().__init__(f"{args[0]}: no exit status: {why_no_exit(report)}")
        self.cmd, self.report = args, report


def _paths(value) -> list:
    """One path (str or PathLike) or several, as a list of strings."""
    if value is None:
        return []
    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    return [os.fspath(item) for item in value]


def _stdin_fd(data) -> int | None:
    """A memfd holding ``data``, which the host relays to the workload as it reads (a file
    is never handed to the run as it is), or None for an empty stdin."""
    if data is None:
        return None
    fd = os.memfd_create("bvisor-input", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Session:
    """Many runs on one backend: ``with bvisor.Session() as s: s.run(...)``. ``warm``: one
    pre-imported launcher server forks each run (stopped by ``close``); None lets
    ``BVISOR_LAUNCHER=warm`` choose, as a ``LinuxBackend`` does. Thread-safe."""

    def __init__(self, *, warm: bool | None = True):
        # Secret leases (env_secret={"NAME": "env:VAR"}) resolve from this process's
        # environment, as `bvisor run --env-secret` does.
        self._backend = LinuxBackend(secret_resolver=EnvSecretResolver(), warm=warm)
        registry = BackendRegistry()
        registry.register(self._backend)
        self._planner, self._runner = BoundaryPlanner(registry), BoundaryRunner(registry)

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def run(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,  # subprocess's name for it, though it shadows the builtin
        check: bool = False,
        net: str | Sequence[str] | None = None,
        ro=None,
        rw=None,
        bind: str | Sequence[str] | None = None,
        tmp: bool = False,
        system_roots: bool = True,
        env: Mapping[str, str | None] | None = None,
        env_secret: Mapping[str, str] | None = None,
        clear_env: bool = False,
        no_spawn: bool = False,
        threads_only: bool = False,
        timeout: float | str | None = None,
        cpu: float | str | None = None,
        memory: int | str | None = None,
        pids: int | str | None = None,
        fds: int | str | None = None,
        storage: int | str | None = None,
        cwd=None,
    ) -> CompletedRun:
        """Run ``args`` (a bare ``args[0]`` is found on the workload's PATH inside its view)
        in a boundary and return its ``CompletedRun``.

        ``input``: bytes for stdin (else it is empty). ``check``: raise ``CalledRunError``
        on a non-zero exit. The rest are ``bvisor run``'s flags: ``net`` ``"none"`` (or
        ``allow=HOST:PORT`` entries); ``ro`` / ``rw`` a path or paths to grant (none: the
        system roots, /proc and a private /tmp); ``bind`` ``"SRC:DST[:ro]"`` entries;
        ``tmp`` the private /tmp beside ``ro``/``rw``; ``system_roots=False``; ``env``
        entries over the baseline (PATH=/usr/local/bin:/usr/bin:/bin, LANG=C.UTF-8,
        HOME=/tmp, or / without the private /tmp; a None value passes yours);
        ``env_secret`` name → ``env:VAR`` leases; ``clear_env`` no baseline; ``no_spawn``,
        ``threads_only``; caps, each enforced or the plan is refused: ``timeout`` and
        ``cpu`` seconds, ``memory`` and ``storage`` bytes (or ``"64M"``), ``pids``, ``fds``;
        ``cwd`` the directory of its view it starts in (unset: yours where the view has it,
        else /).
        """
        spec = build_spec(
            list(args),
            net=[net] if isinstance(net, str) else list(net or ()),
            ro=_paths(ro),
            rw=_paths(rw),
            bind=[bind] if isinstance(bind, str) else list(bind or ()),
            tmp=tmp,
            system_roots=system_roots,
            env=env,
            env_secret=env_secret,
            clear_env=clear_env,
            no_spawn=no_spawn,
            threads_only=threads_only,
            timeout=timeout,
            cpu=cpu,
            memory=memory,
            pids=pids,
            fds=fds,
            storage=storage,
            cwd=None if cwd is None else os.fspath(cwd),
        )
        plan = self._planner.plan(spec, self._backend.id())  # a refusal raises its PlanError
        out, err = bytearray(), bytearray()
        stdin = _stdin_fd(input)
        try:
            report = self._runner.run(plan, RunIO(stdin_fd=stdin, stdout_sink=out.extend, stderr_sink=err.extend))
        finally:
            if stdin is not None:
                os.close(stdin)
        return _completed(tuple(args), bytes(out), bytes(err), report, check)


def _completed(args: tuple, stdout: bytes, stderr: bytes, report: BoundaryReport, check: bool) -> CompletedRun:
    body = report.body
    if body.outcome is Outcome.Timeout:
        wall = next(b.limit for b in body.budget if b.dimension is BudgetDimension.Wall)
        raise RunTimeout(args, wall / 1e6, stdout, stderr, report)
    if body.exit is None:
        raise RunFailed(args, report)
    returncode = body.exit.code if body.exit.code is not None else -body.exit.signal
    result = CompletedRun(args, returncode, stdout, stderr, report)
    if check:
        result.check_returncode()
    return result


def run(args: Sequence[str], **options) -> CompletedRun:
    """One run in a boundary, like ``subprocess.run``; the keywords are ``Session.run``'s.
    Starts a backend for this run alone: use a ``Session`` for many."""
    with Session(warm=None) as session:
        return session.run(args, **options)
