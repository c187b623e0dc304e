"""Shared by the TempRoot and ExposePath oracles: backends with a forceable mount probe,
the seed's budgets with an Enforced storage cap, and report readers."""

import msgspec

from bvisor import BudgetRequirements, LinuxBackend, MinGuarantee
from bvisor.contract import BudgetRequest
from helpers import launcher_as, read_text, workload_uid_problem

MIB = 1 << 20


def budgets(storage: int = MIB) -> BudgetRequirements:
    """The seed's uniform(8, Mediated), with an Enforced storage cap: the temp root's size."""
    return msgspec.structs.replace(
        BudgetRequirements.uniform(8, MinGuarantee.Mediated),
        storage=BudgetRequest(limit=storage, guarantee=MinGuarantee.Enforced),
    )


def check_identity(failures: list, identity: str, host: dict) -> None:
    problem = workload_uid_problem(identity, host.get("uid"))
    if problem:
        failures.append(f"the {identity} workload {problem}")


def linux_backend(identity: str, userns_mount: str | None = None) -> LinuxBackend:
    overrides = {"launcher.userns_mount": userns_mount} if userns_mount is not None else None
    return LinuxBackend(launcher_as(identity), fact_overrides=overrides)


def reported(stdout: bytes, key: str):
    """The rest of the workload's first ``KEY ...`` line, or None."""
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith(key + " "):
            return line[len(key) + 1 :]
    return None

