"""Lower an admitted plan to a ``LinuxLaunchPlanV1`` and the authority handles it needs.

Everything the launcher will act on is decided here, in the host: the exact envp (secret
leases resolved now, never written to the plan or report), the namespaces, the schedule of
primitives with real declaration and parameter digests, and the exe opened as an fd.
"""

import errno
import os

import blake3

from bvisor.contract import BoundaryPlan, Capability, NetPolicy, ObservedFact, Workload
from bvisor.contract.identity import canonical_bytes
from bvisor.launcher import wire
from bvisor.linux.launch import AuthorityFd
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
from bvisor.environment import lower_environment
from bvisor.secrets import SecretUnavailable

PRIMITIVE_VERSION = 1


class LoweringFailed(Exception):
    """The plan cannot be carried out as admitted; nothing was started.

    ``fact`` names what failed; ``caller_error`` is true when the caller's own input is the
    cause (a missing or non-executable exe), false when the host cannot honour the plan.
    """

    def __init__(self, fact: str, detail: str, caller_error: bool = False, os_errno: int = 0):
        super().__init__(f"{fact}: {detail}")
        self.fact, self.detail, self.caller_error, self.os_errno = fact, detail, caller_error, os_errno


class LoweredLaunch:
    __slots__ = ("plan", "authorities", "facts", "deny_network")

    def __init__(self, plan, authorities, facts, deny_network):
        self.plan, self.authorities, self.facts, self.deny_network = plan, authorities, facts, deny_network


def _digest(domain: bytes, value) -> bytes:
    return blake3.blake3(domain + b"\x00" + canonical_bytes(value)).digest()


def _entry(primitive: str, params) -> LoweringWireEntryV1:
    phase = wire.IMPLEMENTED_PRIMITIVES[primitive]
    return LoweringWireEntryV1(
        id=primitive,
        version=PRIMITIVE_VERSION,
        phase_code=phase,
        param_digest=_digest(b"bvisor.primitive-params.v1", params),
        decl_digest=_digest(b"bvisor.primitive-decl.v1", [primitive, PRIMITIVE_VERSION, phase]),
    )


def open_exe(path: str) -> int:
    """Open the exe as an O_PATH fd: the authority the launcher execs, never the path again."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        fact = "exe_not_found" if exc.errno in (errno.ENOENT, errno.ENOTDIR) else "exe_not_executable"
        raise LoweringFailed(fact, f"{path}: {exc.strerror}", caller_error=True, os_errno=exc.errno) from None
    if not os.path.stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LoweringFailed("exe_not_executable", f"{path}: not a regular file", caller_error=True, os_errno=errno.EACCES)
    return fd


def lower(plan: BoundaryPlan, attempt_id: str, resolver) -> LoweredLaunch:
    spec = plan.spec
    if not isinstance(spec.workload, Workload.Process):
        raise LoweringFailed("workload_unsupported", f"{type(spec.workload).__name__} workloads do not run on linux")
    try:
        envp = lower_environment(spec.capabilities, resolver)
    except SecretUnavailable as exc:
        raise LoweringFailed("environment_lowering_failed", str(exc)) from None
    deny_network = any(
        isinstance(c, Capability.Network) and isinstance(c.policy, NetPolicy.DenyAll) for c in spec.capabilities
    )
    argv = [spec.workload.exe, *spec.workload.args]
    lowering = LoweringWireV1(
        entries=[
            _entry(wire.ID_AMBIENT_SCRUB, {"keep": ["stdio", "exe"]}),
            _entry(wire.ID_EXEC, {"argv": argv, "env_names": [name for name, _ in envp]}),
        ]
    )
    exe_shape = DescriptorShape(kind=DescriptorKind.Regular, writable=False)
    launch_plan = LinuxLaunchPlanV1(
        body=LinuxLaunchBodyV1(
            attempt_id=bytes.fromhex(attempt_id),
            plan_id=bytes.fromhex(plan.plan_id),
            h_a=bytes.fromhex(plan.admission_hash),
            h_p=bytes.fromhex(plan.profile_hash),
            h_l=lowering_hash(lowering),
            lowering=lowering,
            descriptor_table=[DescriptorSlotV1(slot_index=wire.EXE_SLOT, role=DescriptorRole.TargetExe, expected=exe_shape)],
            target=TargetSpecV1(
                argv=argv,
                envp=envp,
                exe_slot=wire.EXE_SLOT,
                user_namespace=UserNsRequest() if deny_network else None,
                network_namespace=NetworkNsRequest() if deny_network else None,
            ),
        )
    )
    facts = [
        ObservedFact(kind="environment_lowered", detail=f"exact envp entries={len(envp)} names={[n for n, _ in envp]}"),
        ObservedFact(kind="inherited_fds_lowered", detail="every fd but stdio and the exe is closed before exec"),
    ]
    if deny_network:
        facts.append(ObservedFact(kind="network_lowered", detail="new user namespace + empty network namespace"))
    exe_fd = open_exe(spec.workload.exe)
    return LoweredLaunch(launch_plan, [AuthorityFd(wire.EXE_SLOT, exe_fd)], facts, deny_network)
