"""What each confinement mechanism is, apart from doing it: seccomp policies and the programs
they compile to, the syscall table, landlock's rights, and reading and closing fds.

The host imports these to plan and to report, the launcher to apply: so they are pure (no
ctypes, nothing done at import), stdlib and blake3 only, and cheap to import, since the
launcher imports them on every run. Putting a mechanism in force is the launcher's
(``bvisor.launcher.seccomp``, ``.landlock``, ``.unixgate``).
"""
