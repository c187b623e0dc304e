"""Shared by the TempRoot, ExposePath and storage oracles: backends with a forceable mount
probe, the seed's budgets with a storage limit (the temp root's size), and report readers."""

import msgspec

from bvisor import BudgetRequirements, LinuxBackend, MinGuarantee
from bvisor.contract import BudgetRequest
from helpers import launcher_as, read_text, workload_uid_problem

MIB = 1 << 20


def budgets(storage: int = MIB, guarantee: MinGuarantee = MinGuarantee.Mediated) -> BudgetRequirements:
    """The seed's uniform(8, Mediated) with ``storage`` as the storage limit, which sizes the
    temp root whatever the guarantee. An Enforced one is admitted only where the temp root is
    the only writable place (tests/oracle/test_storage.py)."""
    return msgspec.structs.replace(
        BudgetRequirements.uniform(8, MinGuarantee.Mediated),
        storage=BudgetRequest(limit=storage, guarantee=guarantee),
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

