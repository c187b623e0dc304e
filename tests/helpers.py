"""Shared by the oracle and protocol tests: launcher locations, seed-shaped plans, host-side
/proc readers and the loud skip. Nothing here decides a verdict."""

import os
import sys
import time
from pathlib import Path

import pytest

from bvisor.launcher import wire
from bvisor.linux.launch import UNPRIVILEGED_PREFIX, AuthorityFd
from bvisor.linux.protocol import (
    DescriptorKind,
    DescriptorRole,
    DescriptorShape,
    DescriptorSlotV1,
    LinuxLaunchBodyV1,
    LinuxLaunchPlanV1,
    LoweringWireEntryV1,
    LoweringWireV1,
    NetworkNsRequest,
    TargetSpecV1,
    UserNsRequest,
    lowering_hash,
)

REQUIRE_CONFINEMENT = os.environ.get("BVISOR_REQUIRE_CONFINEMENT") == "1"

ID_AMBIENT_SCRUB = wire.ID_AMBIENT_SCRUB
ID_EXEC = wire.ID_EXEC
PHASE_CODE_SCRUB = 3
PHASE_CODE_EXEC = 5
EXE_SLOT = 10


def loud_skip(why: str) -> None:
    """Never a silent pass: print SKIP; under BVISOR_REQUIRE_CONFINEMENT=1 a skip is a failure."""
    print(f"SKIP {why}", file=sys.stderr)
    if REQUIRE_CONFINEMENT:
        pytest.fail(f"skip not allowed with BVISOR_REQUIRE_CONFINEMENT=1: {why}")
    pytest.skip(why)


def launcher_path() -> Path:
    """The installed ``bvisor-linux-launcher`` console script of this environment."""
    return Path(sys.executable).parent / "bvisor-linux-launcher"


def launcher_as(identity: str):
    """The launcher command for an identity: ``caller`` as-is; ``unprivileged`` as uid 65534
    when the tests run as root (already unprivileged otherwise)."""
    if identity == "unprivileged" and os.geteuid() == 0:
        return UNPRIVILEGED_PREFIX + (str(launcher_path()),)
    return launcher_path()


IDENTITIES = ("caller", "unprivileged")


def unique_marker(prefix: str = "BVISOR-MARKER") -> str:
    return f"{prefix}-{os.getpid()}-{time.time_ns()}"


def scan_proc_cmdline(marker: str):
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    return int(name)
        except OSError:
            continue
    return None


def host_find_child(marker: str, deadline: float):
    while time.monotonic() < deadline:
        pid = scan_proc_cmdline(marker)
        if pid is not None:
            return pid
        time.sleep(0.01)
    return None


def host_read_child_interfaces(pid: int):
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return None
    return sorted(line.split(":", 1)[0].strip() for line in lines if ":" in line)


def entry(primitive: str, phase_code: int) -> LoweringWireEntryV1:
    return LoweringWireEntryV1(
        id=primitive, version=1, phase_code=phase_code, param_digest=bytes(32), decl_digest=bytes(32)
    )


def plan(argv, deny_network: bool, envp=None, entries=None) -> LinuxLaunchPlanV1:
    lowering = LoweringWireV1(entries=entries or [entry(ID_AMBIENT_SCRUB, PHASE_CODE_SCRUB), entry(ID_EXEC, PHASE_CODE_EXEC)])
    table = [
        DescriptorSlotV1(
            slot_index=EXE_SLOT,
            role=DescriptorRole.TargetExe,
            expected=DescriptorShape(kind=DescriptorKind.Regular, writable=False),
        )
    ]
    return LinuxLaunchPlanV1(
        body=LinuxLaunchBodyV1(
            attempt_id=bytes([7]) * 32,
            plan_id=bytes([1]) * 32,
            h_a=bytes([2]) * 32,
            h_p=bytes([3]) * 32,
            h_l=lowering_hash(lowering),
            lowering=lowering,
            descriptor_table=table,
            target=TargetSpecV1(
                argv=list(argv),
                envp=list(envp if envp is not None else [("PATH", "/usr/bin:/bin")]),
                exe_slot=EXE_SLOT,
                user_namespace=UserNsRequest() if deny_network else None,
                network_namespace=NetworkNsRequest() if deny_network else None,
            ),
        )
    )


def sh_authority() -> AuthorityFd:
    return AuthorityFd(slot_index=EXE_SLOT, handle=os.open("/bin/sh", os.O_RDONLY | os.O_CLOEXEC))
