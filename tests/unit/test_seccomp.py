"""The seccomp filter compiler, tested like a library.

The syscall tables are checked against the kernel headers (or a pinned copy where they are
not installed); compiled programs run on a small classic-BPF interpreter over synthetic
seccomp_data. The kernel enforcing them, in a forked child, is
tests/launcher/test_seccomp_kernel.py.
"""

import errno
import math
import re
import struct
from pathlib import Path

import pytest

from bvisor.launcher.seccomp import install
from bvisor.mechanism import seccomp, syscalls

ARCHES = ("x86_64", "aarch64")

# Verdicts (linux/seccomp.h), pinned here rather than imported: they are what the kernel reads.
KILL = 0x80000000
ALLOW = 0x7FFF0000
EPERM = 0x00050000 | errno.EPERM
ENOSYS = 0x00050000 | errno.ENOSYS

AUDIT_ARCH_I386 = 0x40000003
X32_BIT = 0x40000000

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWTIME, CLONE_FILES = 0x00020000, 0x10000000, 0x00000080, 0x00000400
SIGCHLD = 17
# What glibc's pthread_create passes to clone (CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|
# SETTLS|PARENT_SETTID|CHILD_CLEARTID).
PTHREAD_CLONE_FLAGS = 0x003D0F00
TIOCSTI, TIOCLINUX, TCGETS = 0x5412, 0x541C, 0x5401
AF_UNIX, AF_INET, AF_INET6, AF_PACKET = 1, 2, 10, 17

BASELINE = ["baseline.v1"]
THREADS_ONLY = ["spawn.threads_only.v1", "baseline.v1"]
DENY_NEW_TASKS = ["spawn.deny_new_tasks.v1", "baseline.v1"]
NET = ["net.deny_inet_sockets.v1"]
NO_SETID = ["fs.no_setid.v1"]
EVERY_RUN = ["baseline.v1", "fs.no_setid.v1"]
EOPNOTSUPP = 0x00050000 | errno.EOPNOTSUPP
S_IFREG = 0o100000
O_CREAT, O_TMPFILE_BIT, O_DIRECTORY_X86, O_DIRECTORY_ARM = 0o100, 0o20000000, 0o200000, 0o40000
AT_FDCWD = (1 << 64) - 100  # -100 in a 64-bit argument register


# --- syscall tables vs the kernel headers -------------------------------------------------

X86_64_HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
GENERIC_HEADER = Path("/usr/include/asm-generic/unistd.h")

# The macros arch/arm64/include/uapi/asm/unistd.h defines before including the asm-generic
# table: the optional syscalls aarch64 opts into (clone3 among them).
AARCH64_WANTS = frozenset({
    "__ARCH_WANT_RENAMEAT", "__ARCH_WANT_NEW_STAT", "__ARCH_WANT_SET_GET_RLIMIT",
    "__ARCH_WANT_TIME32_SYSCALLS", "__ARCH_WANT_SYS_CLONE3", "__ARCH_WANT_MEMFD_SECRET",
})

# Stands in for a header this machine does not have; checked against the header where it does.
PINNED = {
    "x86_64": {
        "acct": 163, "add_key": 248, "adjtimex": 159, "bpf": 321, "clock_adjtime": 305,
        "clock_settime": 227, "clone": 56, "connect": 42, "clone3": 435, "delete_module": 176, "execve": 59,
        "finit_module": 313, "fork": 57, "fsconfig": 431, "fsmount": 432, "fsopen": 430,
        "fspick": 433, "init_module": 175, "io_uring_enter": 426, "io_uring_register": 427,
        "io_uring_setup": 425, "ioctl": 16, "ioperm": 173, "iopl": 172, "kexec_file_load": 320,
        "kexec_load": 246, "keyctl": 250, "landlock_add_rule": 445,
        "landlock_create_ruleset": 444, "landlock_restrict_self": 446, "mount": 165, "mount_setattr": 442, "move_mount": 429,
        "open_by_handle_at": 304, "open_tree": 428, "openat2": 437, "perf_event_open": 298, "pidfd_getfd": 438, "pidfd_open": 434, "personality": 135,
        "pivot_root": 155, "process_vm_readv": 310, "process_vm_writev": 311, "ptrace": 101,
        "read": 0, "reboot": 169, "request_key": 249, "seccomp": 317, "sendmmsg": 307, "sendmsg": 46, "sendto": 44, "setns": 308, "settimeofday": 164,
        "socket": 41, "swapoff": 168, "swapon": 167, "umount2": 166, "unshare": 272,
        "userfaultfd": 323, "vfork": 58, "write": 1,
        "chmod": 90, "creat": 85, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452, "fremovexattr": 199,
        "fsetxattr": 190, "lremovexattr": 198, "lsetxattr": 189, "mknod": 133, "mknodat": 259,
        "open": 2, "openat": 257, "removexattr": 197, "removexattrat": 466,
        "setxattr": 188, "setxattrat": 463,
    },
    "aarch64": {
        "acct": 89, "add_key": 217, "adjtimex": 171, "bpf": 280, "clock_adjtime": 266,
        "clock_settime": 112, "clone": 220, "connect": 203, "clone3": 435, "delete_module": 106, "execve": 221,
        "finit_module": 273, "fsconfig": 431, "fsmount": 432, "fsopen": 430, "fspick": 433,
        "init_module": 105, "io_uring_enter": 426, "io_uring_register": 427,
        "io_uring_setup": 425, "ioctl": 29, "kexec_file_load": 294, "kexec_load": 104,
        "keyctl": 219, "landlock_add_rule": 445, "landlock_create_ruleset": 444,
        "landlock_restrict_self": 446, "mount": 40, "mount_setattr": 442, "move_mount": 429,
        "open_by_handle_at": 265, "open_tree": 428, "openat2": 437, "perf_event_open": 241, "pidfd_getfd": 438, "pidfd_open": 434, "personality": 92,
        "pivot_root": 41, "process_vm_readv": 270, "process_vm_writev": 271, "ptrace": 117,
        "read": 63, "reboot": 142, "request_key": 218, "seccomp": 277, "sendmmsg": 269, "sendmsg": 211, "sendto": 206, "setns": 268, "settimeofday": 170,
        "socket": 198, "swapoff": 225, "swapon": 224, "umount2": 39, "unshare": 97,
        "userfaultfd": 282, "write": 64,
        "fchmod": 52, "fchmodat": 53, "fchmodat2": 452, "fremovexattr": 16, "fsetxattr": 7,
        "lremovexattr": 15, "lsetxattr": 6, "mknodat": 33, "openat": 56,
        "removexattr": 14, "removexattrat": 466, "setxattr": 5, "setxattrat": 463,
    },
}
# Syscalls newer than the headers some build machines ship (Debian 12's are Linux 6.1): the
# pinned copy stands in for the header for these names alone, and only where it lacks them.
NEWER_THAN_OLD_HEADERS = frozenset({"fchmodat2", "setxattrat", "removexattrat"})

_DEFINE = re.compile(r"#define\s+(__NR(?:3264)?_\w+)\s+(\S+)\s*$")


def _c_condition(expr: str, defined: set) -> bool:
    """A preprocessor condition of the asm-generic table, for a 64-bit non-compat build."""
    expr = re.sub(r"defined\s*\(\s*(\w+)\s*\)|defined\s+(\w+)", lambda m: str(int((m[1] or m[2]) in defined)), expr)
    expr = expr.replace("__BITS_PER_LONG", "64").replace("&&", " and ").replace("||", " or ")
    expr = re.sub(r"!(?!=)", " not ", expr)
    # As in C, an identifier that is not a macro evaluates to 0.
    expr = re.sub(r"\b[A-Za-z_]\w*\b", lambda m: m[0] if m[0] in ("and", "or", "not") else "0", expr)
    return bool(eval(expr, {"__builtins__": {}}))


def parse_generic_header(text: str, wants: frozenset) -> dict:
    """{name: number} as the asm-generic table defines it for a 64-bit arch with ``wants``.

    Follows #if/#ifdef/#ifndef/#else/#endif, so names behind an opt-in the arch lacks, or in
    the 32-bit branch, are left out; ``__NR_x __NR3264_y`` aliases resolve to y's number.
    """
    defined, numbers = set(wants), {}
    stack = []  # (enclosing region active, this condition)
    active = True
    for line in text.splitlines():
        directive = line.strip()
        if match := re.match(r"#\s*(ifdef|ifndef)\s+(\w+)", directive):
            stack.append((active, (match[2] in defined) == (match[1] == "ifdef")))
            active = active and stack[-1][1]
        elif match := re.match(r"#\s*if\s+(.*)", directive):
            stack.append((active, _c_condition(match[1], defined)))
            active = active and stack[-1][1]
        elif re.match(r"#\s*else\b", directive):
            outer, taken = stack[-1]
            active = outer and not taken
        elif re.match(r"#\s*endif\b", directive):
            active = stack.pop()[0]
        elif re.match(r"#\s*elif\b", directive):
            raise AssertionError(f"#elif is new in the asm-generic table; teach the parser: {line}")
        elif not active:
            continue
        elif match := re.match(r"#\s*undef\s+(\w+)", directive):
            defined.discard(match[1])
            numbers.pop(match[1], None)
        elif match := _DEFINE.match(directive):
            name, value = match[1], match[2]
            numbers[name] = int(value) if value.isdigit() else numbers[value]
            defined.add(name)
        elif match := re.match(r"#\s*define\s+(\w+)", directive):
            defined.add(match[1])
    assert not stack, "unbalanced conditionals"
    return {name.removeprefix("__NR_"): nr for name, nr in numbers.items() if name.startswith("__NR_")}


def parse_x86_64_header(text: str) -> dict:
    return {m[1]: int(m[2]) for m in re.finditer(r"^#define __NR_(\w+)\s+(\d+)\s*$", text, re.M)}


def header_numbers(arch: str):
    """The arch's whole syscall table from this machine's headers, or None without them."""
    path = X86_64_HEADER if arch == "x86_64" else GENERIC_HEADER
    if not path.exists():
        return None
    text = path.read_text()
    return parse_x86_64_header(text) if arch == "x86_64" else parse_generic_header(text, AARCH64_WANTS)


def expected_numbers(arch: str) -> dict:
    """The header's table, with the pinned numbers of syscalls too new for it; the pinned copy
    alone without a header."""
    header = header_numbers(arch)
    if header is None:
        return PINNED[arch]
    newer = {name: PINNED[arch][name] for name in NEWER_THAN_OLD_HEADERS if name in PINNED[arch] and name not in header}
    return {**header, **newer}


@pytest.mark.parametrize("arch", ARCHES)
def test_tables_match_the_kernel_header_or_the_pinned_copy(arch):
    expected = expected_numbers(arch)
    table = syscalls.NUMBERS[arch]
    assert {name: expected.get(name) for name in table} == table
    assert not syscalls.ABSENT[arch] & expected.keys()


@pytest.mark.parametrize("arch", ARCHES)
def test_pinned_copy_matches_the_kernel_header(arch):
    header = header_numbers(arch)
    if header is None:
        pytest.skip(f"no syscall header for {arch} on this machine")
    known = {name: number for name, number in PINNED[arch].items() if name in header or name not in NEWER_THAN_OLD_HEADERS}
    assert {name: header.get(name) for name in known} == known


def test_generic_parser_resolves_3264_aliases_and_skips_the_32_bit_branch():
    header = header_numbers("aarch64")
    if header is None:
        pytest.skip("no asm-generic header on this machine")
    assert header["fcntl"] == 25 and header["newfstatat"] == 79 and header["mmap"] == 222
    assert "fcntl64" not in header and "fstatat64" not in header and "mmap2" not in header
    assert "fork" not in header and "renameat" in header and header["clone3"] == 435


def test_generic_parser_on_a_synthetic_table():
    text = """
#define __NR3264_fcntl 25
#ifdef __ARCH_WANT_SYS_CLONE3
#define __NR_clone3 435
#endif
#ifdef __ARCH_WANT_SYS_FORK
#define __NR_fork 1079
#endif
#if __BITS_PER_LONG == 64 && !defined(__SYSCALL_COMPAT)
#define __NR_fcntl __NR3264_fcntl
#else
#define __NR_fcntl64 __NR3264_fcntl
#endif
"""
    assert parse_generic_header(text, frozenset({"__ARCH_WANT_SYS_CLONE3"})) == {"clone3": 435, "fcntl": 25}


def _policy_syscalls() -> set:
    return {rule.syscall for rules in seccomp.POLICIES.values() for rule in rules}


AARCH64_LACKS = {"fork", "vfork", "iopl", "ioperm", "chmod", "creat", "mknod", "open"}


def test_every_policy_syscall_exists_on_x86_64_and_aarch64_lacks_exactly_the_legacy_ones():
    names = _policy_syscalls()
    assert names <= syscalls.NUMBERS["x86_64"].keys()
    assert names - syscalls.NUMBERS["aarch64"].keys() == AARCH64_LACKS
    assert syscalls.ABSENT == {"x86_64": frozenset(), "aarch64": frozenset(AARCH64_LACKS)}


def test_audit_arch_constants():
    assert syscalls.AUDIT_ARCH == {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}


# --- a classic-BPF interpreter over synthetic seccomp_data ----------------------------------

LD_W_ABS, JEQ_K, JGE_K, JSET_K, JA, RET_K = 0x20, 0x15, 0x35, 0x45, 0x05, 0x06


def seccomp_data(nr: int, arch: int, args=()) -> bytes:
    args = tuple(args) + (0,) * (6 - len(args))
    return struct.pack("<iIQ6Q", nr, arch, 0, *args)


def run(program: bytes, nr: int, arch: int, args=()):
    """The verdict the kernel would reach; only the opcodes the compiler may emit exist.
    ``args=None``: only arch and nr are known, as the kernel's seccomp action cache emulates
    a filter (kernel/seccomp.c, seccomp_is_const_allow): None once the path reads anything
    else (the kernel then runs the filter on every such call)."""
    data = seccomp_data(nr, arch, args or ())
    insns = seccomp.disassemble(program)
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == RET_K:
            return k
        if code == LD_W_ABS:
            if args is None and k not in (0, 4):
                return None
            assert k % 4 == 0 and k + 4 <= len(data), f"load outside seccomp_data at {pc}"
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
            continue
        if code == JA:
            pc += 1 + k
            continue
        taken = {JEQ_K: acc == k, JGE_K: acc >= k, JSET_K: acc & k != 0}[code]
        pc += 1 + (jt if taken else jf)


def verdict(policy_names, arch: str, syscall: str, *args) -> int:
    program = seccomp.compile_program(seccomp.merged(policy_names), arch)
    return run(program, syscalls.NUMBERS[arch][syscall], syscalls.AUDIT_ARCH[arch], args)


@pytest.mark.parametrize("arch", ARCHES)
def test_every_unconditionally_denied_baseline_syscall_gets_eperm(arch):
    denied = [rule.syscall for rule in seccomp.POLICIES["baseline.v1"] if not rule.conds and rule.action == "errno:EPERM"]
    present = [name for name in denied if name in syscalls.NUMBERS[arch]]
    assert set(denied) - set(present) == ({"iopl", "ioperm"} if arch == "aarch64" else set())
    for name in present:
        assert verdict(BASELINE, arch, name) == EPERM, name


@pytest.mark.parametrize("arch", ARCHES)
def test_a_foreign_architecture_is_killed(arch):
    program = seccomp.compile_program(seccomp.merged(BASELINE), arch)
    others = [AUDIT_ARCH_I386] + [value for name, value in syscalls.AUDIT_ARCH.items() if name != arch]
    for other in others:
        assert run(program, syscalls.NUMBERS[arch]["read"], other) == KILL


def test_x32_syscalls_are_killed_on_x86_64():
    program = seccomp.compile_program(seccomp.merged(BASELINE), "x86_64")
    assert run(program, X32_BIT | syscalls.NUMBERS["x86_64"]["read"], syscalls.AUDIT_ARCH["x86_64"]) == KILL
    assert run(program, X32_BIT | syscalls.NUMBERS["x86_64"]["write"], syscalls.AUDIT_ARCH["x86_64"]) == KILL


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("names", [BASELINE, THREADS_ONLY, DENY_NEW_TASKS, NET, NO_SETID])
def test_ordinary_syscalls_are_allowed(arch, names):
    for name in ("read", "write", "execve"):
        assert verdict(names, arch, name, 1, 2, 3) == ALLOW, name


@pytest.mark.parametrize("arch", ARCHES)
def test_threads_only_allows_threads_and_refuses_processes(arch):
    assert verdict(THREADS_ONLY, arch, "clone", PTHREAD_CLONE_FLAGS) == ALLOW
    assert verdict(THREADS_ONLY, arch, "clone", SIGCHLD) == EPERM
    assert verdict(THREADS_ONLY, arch, "clone3") == ENOSYS
    # The baseline still inspects the threads that threads_only lets through.
    assert verdict(THREADS_ONLY, arch, "clone", PTHREAD_CLONE_FLAGS | CLONE_NEWUSER) == EPERM
    if arch == "x86_64":
        assert verdict(THREADS_ONLY, arch, "fork") == EPERM
        assert verdict(THREADS_ONLY, arch, "vfork") == EPERM


@pytest.mark.parametrize("arch", ARCHES)
def test_baseline_clone_refuses_namespaces_only(arch):
    assert verdict(BASELINE, arch, "clone", SIGCHLD | CLONE_NEWUSER) == EPERM
    assert verdict(BASELINE, arch, "clone", SIGCHLD | CLONE_NEWNS) == EPERM
    assert verdict(BASELINE, arch, "clone", SIGCHLD) == ALLOW
    assert verdict(BASELINE, arch, "clone", PTHREAD_CLONE_FLAGS) == ALLOW
    # 0x80 is part of clone's exit-signal byte, not CLONE_NEWTIME.
    assert verdict(BASELINE, arch, "clone", CLONE_NEWTIME) == ALLOW


@pytest.mark.parametrize("arch", ARCHES)
def test_clone3_gets_enosys_unless_a_spawn_policy_refuses_it_first(arch):
    assert verdict(BASELINE, arch, "clone3") == ENOSYS
    assert verdict(THREADS_ONLY, arch, "clone3") == ENOSYS
    assert verdict(DENY_NEW_TASKS, arch, "clone3") == EPERM
    assert verdict(DENY_NEW_TASKS, arch, "clone", PTHREAD_CLONE_FLAGS) == EPERM


@pytest.mark.parametrize("arch", ARCHES)
def test_personality_query_and_per_linux_stay_allowed(arch):
    assert verdict(BASELINE, arch, "personality", 0xFFFFFFFF) == ALLOW
    assert verdict(BASELINE, arch, "personality", 0) == ALLOW
    assert verdict(BASELINE, arch, "personality", 0x0040000) == EPERM  # ADDR_NO_RANDOMIZE


@pytest.mark.parametrize("arch", ARCHES)
def test_ioctl_refuses_terminal_injection_only(arch):
    assert verdict(BASELINE, arch, "ioctl", 0, TIOCSTI) == EPERM
    assert verdict(BASELINE, arch, "ioctl", 0, TIOCLINUX) == EPERM
    assert verdict(BASELINE, arch, "ioctl", 0, TCGETS) == ALLOW


@pytest.mark.parametrize("arch", ARCHES)
def test_high_argument_bits_do_not_change_a_verdict(arch):
    # The filter compares the low 32 bits; that is sound because the kernel declares ioctl's
    # cmd `unsigned int` and truncates it too: (1 << 32) | TIOCSTI *is* TIOCSTI to the kernel,
    # so the filter must (and does) refuse it, while TCGETS with high bits stays TCGETS.
    assert verdict(BASELINE, arch, "ioctl", 0, (1 << 32) | TIOCSTI) == EPERM
    assert verdict(BASELINE, arch, "ioctl", 0, (0xFFFFFFFF << 32) | TIOCSTI) == EPERM
    assert verdict(BASELINE, arch, "ioctl", 0, (1 << 32) | TCGETS) == ALLOW


@pytest.mark.parametrize("arch", ARCHES)
def test_net_policy_refuses_inet_and_packet_sockets(arch):
    for family in (AF_INET, AF_INET6, AF_PACKET):
        assert verdict(NET, arch, "socket", family, 1, 0) == EPERM
    assert verdict(NET, arch, "socket", AF_UNIX, 1, 0) == ALLOW


@pytest.mark.parametrize("arch", ARCHES)
def test_unshare_refuses_namespaces_only(arch):
    assert verdict(BASELINE, arch, "unshare", CLONE_FILES) == ALLOW
    assert verdict(BASELINE, arch, "unshare", CLONE_NEWNS) == EPERM
    assert verdict(BASELINE, arch, "unshare", CLONE_NEWTIME) == EPERM


# (syscall, mode argument, arg count) of each call that sets a mode outright.
MODE_CALLS = [("chmod", 1, 2), ("fchmod", 1, 2), ("fchmodat", 2, 4), ("fchmodat2", 2, 4), ("mknod", 1, 3), ("mknodat", 2, 4), ("creat", 1, 2)]


def _with(count: int, index: int, value: int) -> list:
    args = [3] * count
    args[index] = value
    return args


@pytest.mark.parametrize("arch", ARCHES)
def test_no_setid_refuses_a_setuid_or_setgid_mode_and_nothing_else(arch):
    for name, index, count in MODE_CALLS:
        if name in syscalls.ABSENT[arch]:
            continue
        for mode in (0o4755, 0o2755, 0o2644, 0o6000, S_IFREG | 0o4755, (1 << 16) | 0o4755):
            assert verdict(NO_SETID, arch, name, *_with(count, index, mode)) == EPERM, (name, oct(mode))
        for mode in (0o755, 0o644, 0o1777, S_IFREG | 0o600, 0):
            assert verdict(NO_SETID, arch, name, *_with(count, index, mode)) == ALLOW, (name, oct(mode))


@pytest.mark.parametrize("arch", ARCHES)
def test_no_setid_refuses_a_setid_mode_only_on_an_open_that_creates(arch):
    directory = O_DIRECTORY_X86 if arch == "x86_64" else O_DIRECTORY_ARM
    opens = [("openat", (AT_FDCWD, 0))] + ([("open", (0,))] if arch == "x86_64" else [])
    for name, lead in opens:
        for flags in (O_CREAT | 1, O_CREAT | 0o200, O_TMPFILE_BIT | directory | 2, (1 << 32) | O_CREAT):
            assert verdict(NO_SETID, arch, name, *lead, flags, 0o4755) == EPERM, (name, oct(flags))
            assert verdict(NO_SETID, arch, name, *lead, flags, 0o2700) == EPERM, (name, oct(flags))
            assert verdict(NO_SETID, arch, name, *lead, flags, 0o644) == ALLOW, (name, oct(flags))
        # Without O_CREAT or O_TMPFILE the kernel ignores the mode, and callers leave garbage there.
        for flags in (0, 1, directory, 0o2000000):
            assert verdict(NO_SETID, arch, name, *lead, flags, 0xFFFFFFFF) == ALLOW, (name, oct(flags))


@pytest.mark.parametrize("arch", ARCHES)
def test_no_setid_refuses_every_xattr_write_and_sends_openat2_back_to_openat(arch):
    for name in ("setxattr", "lsetxattr", "fsetxattr", "setxattrat", "removexattr", "lremovexattr", "fremovexattr", "removexattrat"):
        assert verdict(NO_SETID, arch, name, 0, 0, 0, 0, 0) == EOPNOTSUPP, name
    assert verdict(NO_SETID, arch, "openat2", AT_FDCWD, 0, 0, 24) == ENOSYS
    for name in ("read", "write", "execve"):
        assert verdict(EVERY_RUN, arch, name, 0, 0o4755, 0o4755, 0o4755) == ALLOW, name


# --- program shape ----------------------------------------------------------------------------

ALL_SETS = [BASELINE, THREADS_ONLY, DENY_NEW_TASKS, NET, NO_SETID, EVERY_RUN, ["spawn.deny_new_tasks.v1", "net.deny_inet_sockets.v1", "baseline.v1"]]


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("names", ALL_SETS)
def test_every_instruction_is_reachable_and_every_path_ends_in_a_return(arch, names):
    insns = seccomp.disassemble(seccomp.compile_program(seccomp.merged(names), arch))
    reached, todo = set(), [0]
    while todo:
        pc = todo.pop()
        if pc in reached:
            continue
        assert pc < len(insns), "a path runs off the end"
        reached.add(pc)
        code, jt, jf, k = insns[pc]
        if code == RET_K:
            continue
        todo += [pc + 1] if code == LD_W_ABS else [pc + 1 + k] if code == JA else [pc + 1 + jt, pc + 1 + jf]
    assert reached == set(range(len(insns)))


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("names", ALL_SETS)
def test_every_syscall_without_a_rule_is_allowed_by_arch_and_number_alone(arch, names):
    # The kernel's action cache then decides it without running the filter: what keeps a
    # boundary's cost on ordinary syscalls (read, write, getppid, futex...) near bare.
    program = seccomp.compile_program(seccomp.merged(names), arch)
    audit, numbers = syscalls.AUDIT_ARCH[arch], syscalls.NUMBERS[arch]
    rules = [rule for rule in seccomp.merged(names) if rule.syscall in numbers]
    ruled = {numbers[rule.syscall] for rule in rules}
    conditional = {numbers[rule.syscall] for rule in rules if rule.conds}
    for nr in range(max(numbers.values()) + 2):
        found = run(program, nr, audit, None)
        if nr not in ruled:
            assert found == ALLOW, f"{arch} nr {nr} has no rule, yet is not allowed by number alone: {found}"
        elif nr in conditional:
            assert found is None, f"{arch} nr {nr} has conditional rules, yet is decided by number alone"
        else:
            assert found not in (None, ALLOW), f"{arch} nr {nr} is refused outright, yet reads {found}"
    for name, nr in ORDINARY[arch].items():
        assert nr not in ruled and run(program, nr, audit, None) == ALLOW, name


# Syscalls every workload makes all the time (numbers from the kernel's tables).
ORDINARY = {
    "x86_64": {"read": 0, "write": 1, "close": 3, "mmap": 9, "getppid": 110, "futex": 202, "clock_gettime": 228, "epoll_pwait": 281},
    "aarch64": {"read": 63, "write": 64, "close": 57, "mmap": 222, "getppid": 173, "futex": 98, "clock_gettime": 113, "epoll_pwait": 22},
}


# The rules' own meaning, read from the policy data and not from the compiler: the first rule
# for the call whose every condition holds decides it; no such rule, it is allowed.
_HOLDS = {
    "any_set": lambda arg, value: arg & value != 0,
    "none_set": lambda arg, value: arg & value == 0,
    "eq": lambda arg, value: arg == value,
    "ne": lambda arg, value: arg != value,
}
_ERRNO_OF = {"errno:EPERM": errno.EPERM, "errno:ENOSYS": errno.ENOSYS, "errno:EOPNOTSUPP": errno.EOPNOTSUPP}


def meant(rules, name: str | None, args: tuple) -> int:
    for rule in rules:
        if rule.syscall == name and all(_HOLDS[c.op](args[c.arg] & 0xFFFFFFFF, c.value) for c in rule.conds):
            return 0x00050000 | _ERRNO_OF[rule.action]
    return ALLOW


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("names", ALL_SETS)
def test_the_program_means_what_its_rules_say_for_every_number_and_the_values_they_test(arch, names):
    # Every syscall number of the table and past it, with argument values built from every
    # value a rule tests (each alone, with its neighbours, all bits, none): the compiled
    # program's verdict is the rules' own, whatever shape the dispatch takes.
    rules = seccomp.merged(names)
    program = seccomp.compile_program(rules, arch)
    numbers, audit = syscalls.NUMBERS[arch], syscalls.AUDIT_ARCH[arch]
    name_of = {nr: name for name, nr in numbers.items()}
    tested = {c.value for rule in rules for c in rule.conds}
    values = sorted(tested | {v ^ 1 for v in tested} | {v | 0o100 for v in tested} | {0, 0xFFFFFFFF, 0x1_0000_0000})
    for nr in range(max(numbers.values()) + 2):
        for value in values:
            args = tuple(value if i % 2 == 0 else values[(values.index(value) + i) % len(values)] for i in range(6))
            assert run(program, nr, audit, args) == meant(rules, name_of.get(nr), args), (arch, nr, name_of.get(nr), args)


def _compares_to_body(insns: list, nr: int, start: int) -> int:
    """How many compares on nr a call of ``nr`` meets from ``start`` before its body or a return."""
    pc, compares = start, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code in (RET_K, LD_W_ABS) or (code == JEQ_K and k == nr):
            return compares
        if code == JA:
            pc += 1 + k
            continue
        compares += 1
        taken = nr == k if code == JEQ_K else nr >= k
        pc += 1 + (jt if taken else jf)


@pytest.mark.parametrize("arch", ARCHES)
def test_prologue_then_a_balanced_dispatch_on_the_syscall_number(arch):
    insns = seccomp.disassemble(seccomp.compile_program(seccomp.merged(DENY_NEW_TASKS), arch))
    assert insns[:4] == [(LD_W_ABS, 0, 0, 4), (JEQ_K, 1, 0, syscalls.AUDIT_ARCH[arch]), (RET_K, 0, 0, KILL), (LD_W_ABS, 0, 0, 0)]
    x32_check = (JGE_K, 0, 1, X32_BIT)
    assert (x32_check in insns) == (arch == "x86_64")
    start = 6 if arch == "x86_64" else 4
    numbers = syscalls.NUMBERS[arch]
    ruled = sorted({numbers[rule.syscall] for rule in seccomp.merged(DENY_NEW_TASKS) if rule.syscall in numbers})
    # Every ruled syscall reaches its own `jeq` (its body) after about log2(n) compares, not n.
    bound = math.ceil(math.log2(len(ruled) / 4)) + 4
    for nr in ruled:
        assert _compares_to_body(insns, nr, start) <= bound, (nr, bound)
        pc = next(i for i, insn in enumerate(insns) if insn[0] == JEQ_K and insn[3] == nr and i >= start)
        assert insns[pc][1] == 0, "a syscall's body follows its jeq"
    assert len(ruled) > 16, "the bound means something only for a long list"


def test_an_argument_is_loaded_once_for_consecutive_tests_on_it():
    insns = seccomp.disassemble(seccomp.compile_program(seccomp.merged(NET), "x86_64"))
    assert sum(1 for insn in insns if insn == (LD_W_ABS, 0, 0, 16)) == 1  # three socket rules
    insns = seccomp.disassemble(seccomp.compile_program(seccomp.merged(BASELINE), "x86_64"))
    assert sum(1 for insn in insns if insn == (LD_W_ABS, 0, 0, 24)) == 1  # two ioctl rules


def test_a_rule_testing_two_arguments_reloads_for_the_next_rule():
    rules = (
        seccomp.Rule("ioctl", "errno:EPERM", (seccomp.Cond(1, "eq", TIOCSTI), seccomp.Cond(0, "eq", 7))),
        seccomp.Rule("ioctl", "errno:EPERM", (seccomp.Cond(1, "eq", TIOCLINUX),)),
    )
    program = seccomp.compile_program(rules, "x86_64")
    audit, nr = syscalls.AUDIT_ARCH["x86_64"], syscalls.NUMBERS["x86_64"]["ioctl"]
    assert run(program, nr, audit, (7, TIOCSTI)) == EPERM
    assert run(program, nr, audit, (8, TIOCSTI)) == ALLOW
    assert run(program, nr, audit, (8, TIOCLINUX)) == EPERM
    assert run(program, nr, audit, (7, TCGETS)) == ALLOW
    # The first rule fails on its arg0 test, leaving arg0 (== TIOCLINUX) in the accumulator:
    # the second rule must reload arg1 rather than compare that.
    assert run(program, nr, audit, (TIOCLINUX, TIOCSTI)) == ALLOW
    assert seccomp.disassemble(program).count((LD_W_ABS, 0, 0, 24)) == 2


def test_instruction_counts():
    counts = {tuple(names): len(seccomp.disassemble(seccomp.compile_program(seccomp.merged(names), "x86_64"))) for names in (BASELINE, THREADS_ONLY)}
    # The program's size, not its path: the dispatch tree's splits (a jge and a ja each) and
    # its leaves' allows cost ~45 instructions over a chain, so no call meets them all.
    assert counts == {tuple(BASELINE): 155, tuple(THREADS_ONLY): 161}


# --- merging, determinism, digests, description -------------------------------------------

def test_policy_names_are_exactly_the_frozen_set():
    assert set(seccomp.POLICIES) == {"spawn.deny_new_tasks.v1", "spawn.threads_only.v1", "net.deny_inet_sockets.v1", "baseline.v1", "fs.no_setid.v1"}


def test_every_policy_list_ends_with_the_policies_every_run_gets():
    assert seccomp.EVERY_RUN_POLICIES == tuple(EVERY_RUN)
    assert all(policies[-2:] == tuple(EVERY_RUN) for policies in seccomp.policy_lists())


def test_an_unconditional_rule_shadows_later_rules_for_its_syscall():
    rules = seccomp.merged(DENY_NEW_TASKS)
    assert [rule for rule in rules if rule.syscall in ("clone", "clone3")] == [
        seccomp.Rule("clone", "errno:EPERM"), seccomp.Rule("clone3", "errno:EPERM")]
    assert len(rules) == len(seccomp.POLICIES["spawn.deny_new_tasks.v1"]) + len(seccomp.POLICIES["baseline.v1"]) - 2


def test_merging_keeps_rule_order_per_syscall_and_drops_repeats():
    clone = [rule for rule in seccomp.merged(THREADS_ONLY) if rule.syscall == "clone"]
    assert [rule.conds[0].op for rule in clone] == ["none_set", "any_set"]
    assert seccomp.merged(BASELINE + BASELINE) == seccomp.merged(BASELINE) == seccomp.POLICIES["baseline.v1"]


@pytest.mark.parametrize("arch", ARCHES)
def test_compiling_twice_gives_identical_bytes_and_digests(arch):
    first = seccomp.compile_program(seccomp.merged(THREADS_ONLY), arch)
    second = seccomp.compile_program(seccomp.merged(list(THREADS_ONLY)), arch)
    assert first == second
    assert seccomp.program_digest(first) == seccomp.program_digest(second)
    assert seccomp.policy_digest(THREADS_ONLY) == seccomp.policy_digest(tuple(THREADS_ONLY))


def test_different_policy_sets_have_different_digests():
    programs = {seccomp.program_digest(seccomp.compile_program(seccomp.merged(names), "x86_64")) for names in ALL_SETS}
    policies = {seccomp.policy_digest(names) for names in ALL_SETS}
    assert len(programs) == len(policies) == len(ALL_SETS)
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in programs | policies)


def test_aarch64_program_differs_from_x86_64_but_the_policy_digest_does_not():
    x86 = seccomp.compile_program(seccomp.merged(BASELINE), "x86_64")
    arm = seccomp.compile_program(seccomp.merged(BASELINE), "aarch64")
    assert x86 != arm and seccomp.program_digest(x86) != seccomp.program_digest(arm)
    assert (JGE_K, 0, 1, X32_BIT) not in seccomp.disassemble(arm)
    iopl_dispatch = (JEQ_K, 0, 1, syscalls.NUMBERS["x86_64"]["iopl"])
    assert iopl_dispatch in seccomp.disassemble(x86) and iopl_dispatch not in seccomp.disassemble(arm)


def test_describe_gives_one_line_per_rule():
    rules = seccomp.merged(THREADS_ONLY)
    lines = seccomp.describe(rules)
    assert len(lines) == len(rules)
    assert lines[0] == "clone: errno:EPERM if arg0 & 0x10000 == 0"
    assert "clone3: errno:ENOSYS always" in lines
    assert "personality: errno:EPERM if arg0 != 0xffffffff and arg0 != 0x0" in lines
    assert "ioctl: errno:EPERM if arg1 == 0x5412" in lines


# --- refusals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [(6, "eq", 0), (-1, "eq", 0), (0, "gt", 0), (0, "eq", 1 << 32), (0, "eq", -1)])
def test_a_bad_condition_is_refused(args):
    with pytest.raises(ValueError):
        seccomp.Cond(*args)


def test_a_bad_rule_is_refused():
    with pytest.raises(ValueError):
        seccomp.Rule("ptrace", "kill")
    with pytest.raises(ValueError):
        seccomp.Rule("ptrace", "errno:EPERM", ((0, "eq", 1),))


def test_an_unknown_syscall_or_arch_is_refused_not_allowed():
    with pytest.raises(ValueError, match="unknown syscall"):
        seccomp.compile_program((seccomp.Rule("ptrsce", "errno:EPERM"),), "x86_64")
    with pytest.raises(ValueError, match="no seccomp syscall table"):
        seccomp.compile_program(seccomp.merged(BASELINE), "riscv64")


def test_unmerged_shadowed_rules_are_refused():
    with pytest.raises(ValueError, match="shadowed"):
        seccomp.compile_program(seccomp.POLICIES["spawn.deny_new_tasks.v1"] + seccomp.POLICIES["baseline.v1"], "x86_64")


def test_a_jump_too_long_to_encode_is_refused():
    rules = tuple(seccomp.Rule("ioctl", "errno:EPERM", (seccomp.Cond(1, "eq", cmd),)) for cmd in range(200))
    with pytest.raises(ValueError, match="jump out of range"):
        seccomp.compile_program(rules, "x86_64")


def test_install_refuses_bytes_that_are_not_a_filter():
    with pytest.raises(ValueError):
        install(b"")
    with pytest.raises(ValueError):
        install(b"\x06\x00\x00\x00\x00\x00\xff")


# --- the unix socket gate's filter --------------------------------------------------------

USER_NOTIF, ALLOW, EPERM = 0x7FC00000, 0x7FFF0000, 0x00050001


def gate_verdict(arch: str, syscall: str, *args) -> int:
    return run(seccomp.gate_program(arch), syscalls.NUMBERS[arch][syscall], syscalls.AUDIT_ARCH[arch], args)


@pytest.mark.parametrize("arch", ARCHES)
def test_the_gate_sends_connect_sendmsg_and_addressed_sendto_to_the_supervisor(arch):
    assert gate_verdict(arch, "connect", 3, 0x7FFF0000, 110) == USER_NOTIF
    assert gate_verdict(arch, "sendmsg", 3, 0x1000, 0) == USER_NOTIF
    assert gate_verdict(arch, "sendto", 3, 0x1000, 1, 0, 0x7FFF1234, 110) == USER_NOTIF
    # A destination at a 4 GiB boundary has low 32 bits of zero: the high half decides too.
    assert gate_verdict(arch, "sendto", 3, 0x1000, 1, 0, 0x7F0000000000, 110) == USER_NOTIF


@pytest.mark.parametrize("arch", ARCHES)
def test_the_gate_lets_unaddressed_sendto_through_and_refuses_sendmmsg(arch):
    assert gate_verdict(arch, "sendto", 3, 0x1000, 1, 0, 0, 0) == ALLOW
    assert gate_verdict(arch, "sendmmsg", 3, 0x1000, 1, 0) == EPERM
    for name in ("read", "write", "socket", "execve"):
        assert gate_verdict(arch, name) == ALLOW


@pytest.mark.parametrize("arch", ARCHES)
def test_the_gate_kills_a_foreign_architecture(arch):
    other = next(a for a in ARCHES if a != arch)
    assert run(seccomp.gate_program(arch), syscalls.NUMBERS[arch]["connect"], syscalls.AUDIT_ARCH[other]) == 0x80000000
