"""Syscall numbers and audit-arch constants for the architectures the seccomp compiler targets.

The syscalls the seccomp policies and the unix socket gate name, read/write/execve (probes
that every policy must leave allowed), and those the launcher issues without a libc wrapper
(seccomp, landlock_*, pidfd_*, openat2, and the new mount API, which the policies also
name); ``bvisor.launcher.libc.syscall`` numbers them from here.
x86_64 numbers come from the x86_64 table (asm/unistd_64.h); aarch64 uses the asm-generic
table (asm-generic/unistd.h), which never had fork, vfork, iopl or ioperm, nor the path calls
with an *at successor (chmod, creat, mknod, open). tests/unit/test_seccomp.py checks both
tables against the kernel headers (and fchmodat2, setxattrat and removexattrat, newer than
some headers, against a pinned copy where the header lacks them).
"""

# struct seccomp_data.arch for a native (64-bit, little-endian) caller on each architecture.
AUDIT_ARCH = {
    "x86_64": 0xC000003E,  # EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
    "aarch64": 0xC00000B7,  # EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
}

NUMBERS = {
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
        # fs.no_setid.v1
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
        # fs.no_setid.v1
        "fchmod": 52, "fchmodat": 53, "fchmodat2": 452, "fremovexattr": 16, "fsetxattr": 7,
        "lremovexattr": 15, "lsetxattr": 6, "mknodat": 33, "openat": 56, "removexattr": 14,
        "removexattrat": 466, "setxattr": 5, "setxattrat": 463,
    },
}

# Names a policy may use that the architecture does not have: a rule for one of these cannot
# match anything there, so the compiler leaves it out. Any other unknown name is an error
# (a typo must not silently turn into "allowed").
ABSENT = {
    "x86_64": frozenset(),
    "aarch64": frozenset({"fork", "vfork", "iopl", "ioperm", "chmod", "creat", "mknod", "open"}),
}
