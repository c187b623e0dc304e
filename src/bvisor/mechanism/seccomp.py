"""seccomp: the named policies, and a compiler from them to seccomp-BPF programs.

Pure: the host compiles a plan's program to digest it, the launcher compiles the same one to
install it (``bvisor.launcher.seccomp`` installs).

A policy is data: an ordered tuple of rules, frozen by name (the names are wire constants,
so new behaviour gets a new name). A rule's action applies when all its conditions hold;
otherwise the next rule for the same syscall is tried; a syscall no rule matches is allowed.

Conditions read only the low 32 bits of an argument. Every argument the policies inspect is
a 32-bit quantity to the kernel (clone truncates its flags to 32 bits, unshare rejects high
bits, personality's persona and ioctl's cmd are unsigned int, socket's domain and open's
flags are an int), so a 32-bit compare sees exactly the value the kernel acts on. File modes
are narrower still: the chmod, mknod and open families declare theirs ``umode_t`` (16 bits)
and truncate to it, so the setuid/setgid bits a rule tests (0o6000) are the same bits in the
low word as in the mode the kernel applies.
"""

import struct

import blake3

from bvisor.mechanism import syscalls

_BPF_MAXINSNS = 4096

# Classic BPF opcodes (linux/bpf_common.h): the only ones the compiler emits.
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_JA = 0x05  # BPF_JMP | BPF_JA: an unconditional jump by k, which fits any distance
_RET_K = 0x06  # BPF_RET | BPF_K

# Offsets in struct seccomp_data {int nr; u32 arch; u64 instruction_pointer; u64 args[6]}.
_NR_OFFSET = 0
_ARCH_OFFSET = 4
_ARGS_OFFSET = 16

_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_RET_USER_NOTIF = 0x7FC00000

# x32 syscalls arrive with the x86_64 audit arch and this bit set in nr; they are a second
# syscall table, which the filter does not describe, so they are refused outright.
_X32_SYSCALL_BIT = 0x40000000

# Both targets are little-endian, so this is each one's native sock_filter layout, and the
# bytes do not depend on the host that compiled them.
_INSN = struct.Struct("<HBBI")
INSN_SIZE = _INSN.size

# action -> errno (same numbers on x86_64 and aarch64). EOPNOTSUPP is what a filesystem
# without extended attributes answers, so tools that copy metadata (cp -a, tar, shutil.copy2)
# take it as "no xattrs here" and carry on; under EPERM, cp -a fails ("preserving permissions":
# it writes the ACL, system.posix_acl_access, with fsetxattr).
_ERRNOS = {"errno:EPERM": 1, "errno:ENOSYS": 38, "errno:EOPNOTSUPP": 95}

# op -> (jump opcode, whether the condition holds on the jump's true branch)
_TESTS = {"any_set": (_JSET_K, True), "none_set": (_JSET_K, False), "eq": (_JEQ_K, True), "ne": (_JEQ_K, False)}


class Cond(tuple):
    """One check on the low 32 bits of syscall argument ``arg`` (0..5).

    op: "any_set" (arg & value != 0), "none_set" (arg & value == 0), "eq" or "ne".
    """

    __slots__ = ()

    def __new__(cls, arg: int, op: str, value: int):
        if not 0 <= arg <= 5 or op not in _TESTS or not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"bad seccomp condition: arg={arg!r} op={op!r} value={value!r}")
        return super().__new__(cls, (arg, op, value))

    arg = property(lambda self: self[0])
    op = property(lambda self: self[1])
    value = property(lambda self: self[2])

    def __repr__(self) -> str:
        return f"Cond({self.arg}, {self.op!r}, {self.value:#x})"


class Rule(tuple):
    """``action`` for ``syscall`` when all ``conds`` hold; no conds: for every call."""

    __slots__ = ()

    def __new__(cls, syscall: str, action: str, conds: tuple = ()):
        conds = tuple(conds)
        if action not in _ERRNOS or not all(isinstance(cond, Cond) for cond in conds):
            raise ValueError(f"bad seccomp rule: {syscall!r} {action!r} {conds!r}")
        return super().__new__(cls, (syscall, action, conds))

    syscall = property(lambda self: self[0])
    action = property(lambda self: self[1])
    conds = property(lambda self: self[2])

    def __repr__(self) -> str:
        return f"Rule({self.syscall!r}, {self.action!r}, {self.conds!r})"


_CLONE_THREAD = 0x00010000
_CLONE_NEWTIME = 0x00000080
# Every namespace a clone may create, except CLONE_NEWTIME: clone(2) reads the low byte of its
# flags as the exit signal (CSIGNAL), so 0x80 there is not a namespace request.
_CLONE_NAMESPACES = 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00020000
_UNSHARE_NAMESPACES = _CLONE_NAMESPACES | _CLONE_NEWTIME
_PERSONALITY_QUERY = 0xFFFFFFFF
_PER_LINUX = 0
_AF_INET, _AF_INET6, _AF_PACKET = 2, 10, 17
_TIOCSTI = 0x5412  # pushes bytes into a terminal's input: commands typed into the parent's shell
_TIOCLINUX = 0x541C  # its console subcommands can do the same, and read the screen

_EPERM = "errno:EPERM"
# clone3 takes its flags in memory the filter cannot read; ENOSYS makes the C library fall
# back to clone, whose flags it can.
_CLONE3_ENOSYS = Rule("clone3", "errno:ENOSYS")

# The setuid and setgid bits (S_ISUID | S_ISGID). The setgid bit is refused whatever else the
# mode holds: without group-exec it once meant mandatory locking, and on a directory it only
# makes new entries inherit the group — harmless, but the filter cannot tell a directory from
# a file (it sees a path or an fd, not the inode), so `chmod g+s dir` is refused too.
_SETID_BITS = 0o6000
# O_CREAT | __O_TMPFILE: the opens whose mode argument the kernel applies (otherwise it is
# ignored, and the C library leaves garbage there). Both bits are the same on x86_64 and aarch64
# (O_TMPFILE adds O_DIRECTORY, which differs; __O_TMPFILE alone marks a temp-file open).
_OPEN_CREATES = 0o100 | 0o20000000
# The mode argument of each call that sets a mode outright (creat is open with O_CREAT implied).
_MODE_ARG = {"chmod": 1, "fchmod": 1, "fchmodat": 2, "fchmodat2": 2, "mknod": 1, "mknodat": 2, "creat": 1}
# (flags arg, mode arg) of the opens whose mode applies only when they create.
_CREATING_OPEN_ARGS = {"open": (1, 2), "openat": (2, 3)}
# Every call that writes or removes an extended attribute: security.capability would plant a
# file capability, and any xattr is metadata the workload could leave on a host file.
_XATTR_WRITES = ("setxattr", "lsetxattr", "fsetxattr", "setxattrat", "removexattr", "lremovexattr", "fremovexattr", "removexattrat")

_BASELINE_DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kexec_load", "kexec_file_load", "bpf",
    "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd", "mount", "umount2",
    "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick",
    "mount_setattr", "setns", "io_uring_setup", "io_uring_enter", "io_uring_register", "acct",
    "swapon", "swapoff", "reboot", "init_module", "finit_module", "delete_module", "settimeofday",
    "clock_settime", "clock_adjtime", "adjtimex", "open_by_handle_at", "iopl", "ioperm",
)

POLICIES = {
    "spawn.deny_new_tasks.v1": tuple(Rule(name, _EPERM) for name in ("clone", "clone3", "fork", "vfork")),
    "spawn.threads_only.v1": (
        Rule("clone", _EPERM, (Cond(0, "none_set", _CLONE_THREAD),)),
        _CLONE3_ENOSYS,
        Rule("fork", _EPERM),
        Rule("vfork", _EPERM),
    ),
    "net.deny_inet_sockets.v1": tuple(Rule("socket", _EPERM, (Cond(0, "eq", af),)) for af in (_AF_INET, _AF_INET6, _AF_PACKET)),
    # No file the workload creates or changes gets a setuid/setgid bit or a file capability:
    # EPERM when a mode carries S_ISUID|S_ISGID, EOPNOTSUPP for every xattr write; openat2 (its
    # mode is in memory the filter cannot read) answers ENOSYS, as on a kernel before 5.6, so a
    # caller falls back to openat, whose mode it can (glibc's open never uses openat2).
    "fs.no_setid.v1": tuple(Rule(name, _EPERM, (Cond(arg, "any_set", _SETID_BITS),)) for name, arg in _MODE_ARG.items()) + tuple(
        Rule(name, _EPERM, (Cond(flags, "any_set", _OPEN_CREATES), Cond(mode, "any_set", _SETID_BITS)))
        for name, (flags, mode) in _CREATING_OPEN_ARGS.items()
    ) + (Rule("openat2", "errno:ENOSYS"),) + tuple(Rule(name, "errno:EOPNOTSUPP") for name in _XATTR_WRITES),
    "baseline.v1": tuple(Rule(name, _EPERM) for name in _BASELINE_DENIED) + (
        Rule("unshare", _EPERM, (Cond(0, "any_set", _UNSHARE_NAMESPACES),)),
        Rule("clone", _EPERM, (Cond(0, "any_set", _CLONE_NAMESPACES),)),
        _CLONE3_ENOSYS,
        Rule("personality", _EPERM, (Cond(0, "ne", _PERSONALITY_QUERY), Cond(0, "ne", _PER_LINUX))),
        Rule("ioctl", _EPERM, (Cond(1, "eq", _TIOCSTI),)),
        Rule("ioctl", _EPERM, (Cond(1, "eq", _TIOCLINUX),)),
    ),
}


BASELINE_POLICY = "baseline.v1"
NO_SETID_POLICY = "fs.no_setid.v1"
# The policies every run gets, whatever its spec.
EVERY_RUN_POLICIES = (BASELINE_POLICY, NO_SETID_POLICY)
INET_POLICY = "net.deny_inet_sockets.v1"
SPAWN_POLICIES = ("spawn.deny_new_tasks.v1", "spawn.threads_only.v1")


def policy_list(spawn: str | None, deny_inet: bool) -> tuple:
    """A filter's policies, strictest first: the spawn policy (if any), inet sockets under
    deny-all, then the hardening baseline and the no-setid rules every run gets."""
    return ((spawn,) if spawn else ()) + ((INET_POLICY,) if deny_inet else ()) + EVERY_RUN_POLICIES


def policy_lists() -> list:
    """Every list ``policy_list`` makes."""
    return [policy_list(spawn, inet) for spawn in (None, *SPAWN_POLICIES) for inet in (False, True)]


# (policies, arch) -> (program, digest): one entry per list ``policy_list`` makes, per arch. A
# dict, not functools.lru_cache: importing functools would cost the launcher ~0.7 ms a run.
PLANNED = {}


def planned_program(policies: tuple, arch: str) -> tuple:
    """``(program, digest)`` of a policy list for ``arch``: pure, so compiled once per process
    image (the warm launcher compiles every ``policy_lists`` entry before it forks)."""
    planned = PLANNED.get((policies, arch))
    if planned is None:
        program = compile_program(merged(policies), arch)
        planned = PLANNED[(policies, arch)] = (program, program_digest(program))
    return planned


def merged(policy_names) -> tuple:
    """The named policies' rules concatenated in the given order, minus rules that can never
    decide anything: those after an unconditional rule for the same syscall, and repeats."""
    decided, seen, rules = set(), set(), []
    for name in policy_names:
        for rule in POLICIES[name]:
            if rule.syscall in decided or rule in seen:
                continue
            seen.add(rule)
            rules.append(rule)
            if not rule.conds:
                decided.add(rule.syscall)
    return tuple(rules)


def _insn(code: int, jt: int, jf: int, k: int) -> tuple:
    # Classic BPF jumps are one byte, forward only: a longer one cannot be encoded.
    if not (0 <= jt < 256 and 0 <= jf < 256):
        raise ValueError(f"seccomp jump out of range: code={code:#x} jt={jt} jf={jf}")
    return (code, jt, jf, k)


def _ret(action: str) -> tuple:
    return _insn(_RET_K, 0, 0, _RET_ERRNO | _ERRNOS[action])


def _load_arg(arg: int) -> tuple:
    # Low 32 bits of args[arg]: the first word on a little-endian target.
    return _insn(_LD_W_ABS, 0, 0, _ARGS_OFFSET + 8 * arg)


def _rule_insns(rule: Rule, held) -> list:
    """The rule's tests and its return; a failed test jumps past the return, to the next rule.

    held: the argument the accumulator holds on entry (None if it holds no argument), so an
    unchanged one is not reloaded.
    """
    steps = []
    for cond in rule.conds:
        if cond.arg != held:
            steps.append(_load_arg(cond.arg))
            held = cond.arg
        steps.append(cond)
    steps.append(_ret(rule.action))
    insns = []
    for index, step in enumerate(steps):
        if isinstance(step, Cond):
            code, holds_if_true = _TESTS[step.op]
            past_ret = len(steps) - index - 1
            step = _insn(code, 0, past_ret, step.value) if holds_if_true else _insn(code, past_ret, 0, step.value)
        insns.append(step)
    return insns


def _held_after_failure(rule: Rule):
    """What the accumulator holds when the rule falls through: any failed test had just
    compared its own argument, so it is known only if all tests compare the same one."""
    args = {cond.arg for cond in rule.conds}
    return args.pop() if len(args) == 1 else None


def _body(rules: list) -> list:
    """One syscall's rules in order, then allow — unless the last rule decides every call."""
    insns, held = [], None  # entering a body, the accumulator holds nr
    for rule in rules:
        insns += _rule_insns(rule, held)
        held = _held_after_failure(rule)
    if rules[-1].conds:
        insns.append(_insn(_RET_K, 0, 0, _RET_ALLOW))
    return insns


def _by_number(rules, arch: str) -> dict:
    """Rules grouped per syscall number, each group in rule order."""
    numbers, absent = syscalls.NUMBERS[arch], syscalls.ABSENT[arch]
    groups = {}
    for rule in rules:
        if rule.syscall in absent:
            continue
        if rule.syscall not in numbers:
            raise ValueError(f"unknown syscall on {arch}: {rule.syscall!r}")
        group = groups.setdefault(numbers[rule.syscall], [])
        if group and not group[-1].conds:
            raise ValueError(f"rule shadowed by an unconditional one (use merged()): {rule!r}")
        group.append(rule)
    return groups


def _prologue(arch: str) -> list:
    """Kill a caller of another architecture or ABI: its syscall numbers mean other calls."""
    insns = [
        _insn(_LD_W_ABS, 0, 0, _ARCH_OFFSET),
        _insn(_JEQ_K, 1, 0, syscalls.AUDIT_ARCH[arch]),
        _insn(_RET_K, 0, 0, _RET_KILL_PROCESS),
        _insn(_LD_W_ABS, 0, 0, _NR_OFFSET),
    ]
    if arch == "x86_64":
        insns += [_insn(_JGE_K, 0, 1, _X32_SYSCALL_BIT), _insn(_RET_K, 0, 0, _RET_KILL_PROCESS)]
    return insns


# A dispatch subtree of at most this many syscalls is a chain of `jeq nr`; a larger one splits
# in two at its middle number.
_CHAIN = 4


def _dispatch(groups: list) -> list:
    """``(number, body)`` pairs, in ascending number order, as a balanced tree of compares on
    nr. Every path through it reads nr alone until it reaches a syscall's body, and a syscall
    without rules meets only compares and the allow: so the kernel's seccomp action cache,
    which emulates a filter on arch and nr alone, decides every such syscall without running
    the filter; a syscall with rules reaches its body in about log2(n) compares, not n."""
    if len(groups) <= _CHAIN:
        insns = []
        for number, body in groups:
            insns.append(_insn(_JEQ_K, 0, len(body), number))
            insns += body
        return insns + [_insn(_RET_K, 0, 0, _RET_ALLOW)]
    middle = len(groups) // 2
    below, above = _dispatch(groups[:middle]), _dispatch(groups[middle:])
    # nr >= the middle number: on to the jump over the lower half; else past it, into it.
    return [_insn(_JGE_K, 0, 1, groups[middle][0]), _insn(_JA, 0, 0, len(below))] + below + above


def compile_program(rules, arch: str) -> bytes:
    """A sock_filter array for ``arch`` ("x86_64" or "aarch64"): the prologue, then the
    syscalls with rules dispatched by ``_dispatch``. Same rules and arch, same bytes."""
    if arch not in syscalls.NUMBERS:
        raise ValueError(f"no seccomp syscall table for {arch}")
    groups = _by_number(rules, arch)
    insns = _prologue(arch) + _dispatch([(number, _body(groups[number])) for number in sorted(groups)])
    if len(insns) > _BPF_MAXINSNS:
        raise ValueError(f"seccomp program too long: {len(insns)} instructions")
    return b"".join(_INSN.pack(*insn) for insn in insns)


# What enforces the unix socket gate, as the launcher's note and the host's verdict name it.
UNIX_GATE_MECHANISM = "seccomp_user_notif"


def gate_program(arch: str) -> bytes:
    """The unix socket gate's filter (``bvisor.launcher.unixgate`` supervises it): connect(2),
    sendto(2) with a destination address, and every sendmsg(2) (its address lies in memory
    the filter cannot read) stop for the supervisor; sendmmsg(2) is refused. A NULL
    destination is tested on both halves of the pointer: a low-32-bit test alone would pass
    an address at a 4 GiB boundary."""
    numbers = syscalls.NUMBERS[arch]
    notify, allow = _insn(_RET_K, 0, 0, _RET_USER_NOTIF), _insn(_RET_K, 0, 0, _RET_ALLOW)
    dest_low, dest_high = _load_arg(4), _insn(_LD_W_ABS, 0, 0, _ARGS_OFFSET + 8 * 4 + 4)
    insns = _prologue(arch) + [
        _insn(_JEQ_K, 0, 1, numbers["connect"]), notify,
        _insn(_JEQ_K, 0, 1, numbers["sendmsg"]), notify,
        _insn(_JEQ_K, 0, 6, numbers["sendto"]),
        dest_low, _insn(_JEQ_K, 0, 2, 0),
        dest_high, _insn(_JEQ_K, 1, 0, 0),
        notify, allow,
        _insn(_JEQ_K, 0, 1, numbers["sendmmsg"]), _ret(_EPERM),
        allow,
    ]
    return b"".join(_INSN.pack(*insn) for insn in insns)


def allow_all_program() -> bytes:
    """One instruction, allow: installing it proves filter mode works and changes nothing."""
    return _INSN.pack(*_insn(_RET_K, 0, 0, _RET_ALLOW))


def disassemble(program: bytes) -> list:
    """(code, jt, jf, k) per instruction."""
    return list(_INSN.iter_unpack(program))


def program_digest(program: bytes) -> str:
    return blake3.blake3(program).hexdigest()


def _canonical(rule: Rule) -> str:
    conds = ",".join(f"{cond.arg}:{cond.op}:{cond.value:08x}" for cond in rule.conds)
    return f"{rule.syscall} {rule.action} {conds}"


def policy_digest(policy_names) -> str:
    """blake3 of the merged rules by syscall name: the same on every architecture."""
    lines = ["bvisor.seccomp.rules.v1"] + [_canonical(rule) for rule in merged(policy_names)]
    return blake3.blake3("\n".join(lines).encode()).hexdigest()


_PHRASES = {"any_set": "arg{} & {:#x} != 0", "none_set": "arg{} & {:#x} == 0", "eq": "arg{} == {:#x}", "ne": "arg{} != {:#x}"}


def describe(rules) -> list:
    """One line per rule, e.g. ``clone: errno:EPERM if arg0 & 0x10000 == 0``."""
    lines = []
    for rule in rules:
        when = " and ".join(_PHRASES[cond.op].format(cond.arg, cond.value) for cond in rule.conds)
        lines.append(f"{rule.syscall}: {rule.action} {'if ' + when if when else 'always'}")
    return lines
