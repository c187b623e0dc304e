"""Shared by the stdio oracles (API and CLI): the workload that attacks through its stdin,
and a connected datagram socket with the host listener it reaches."""

import os
import socket
import sys

PYTHON = os.path.realpath(sys.executable)  # the pyenv shim on PATH fails in an empty environment

# The attack, and the workload's own report of it: its stdio fds, then send and tcsetattr on fd 0.
ATTACK = (
    "import ctypes, os, sys, termios\n"
    "for fd in (0, 1, 2):\n"
    "    print(f'fd{fd}=' + os.readlink(f'/proc/self/fd/{fd}').split(':')[0])\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "marker = sys.argv[1].encode()\n"
    "sent = libc.send(0, marker, len(marker), 0)\n"
    "print('send=ok' if sent == len(marker) else f'send errno={ctypes.get_errno()}')\n"
    "try:\n"
    "    attrs = termios.tcgetattr(0)\n"
    "    attrs[3] &= ~termios.ECHO\n"
    "    termios.tcsetattr(0, termios.TCSANOW, attrs)\n"
    "    print('tcsetattr=ok')\n"
    "except termios.error as e:\n"
    "    print(f'tcsetattr errno={e.args[0]}')\n"
)


def attack_argv(marker: str) -> list:
    return [PYTHON, "-I", "-c", ATTACK, marker]


class DatagramPeer:
    """A connected datagram socket (``stdin``) and the host listener it reaches."""

    def __init__(self, family: str):
        if family == "udp":
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.listener.bind(("127.0.0.1", 0))
            self.stdin = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.stdin.connect(self.listener.getsockname())
        else:
            self.stdin, self.listener = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.listener.setblocking(False)

    def received(self) -> list:
        got = []
        while True:
            try:
                got.append(self.listener.recv(65536))
            except BlockingIOError:
                return got

    def close(self) -> None:
        self.stdin.close()
        self.listener.close()


# The workload's own report of its try at the caller's controlling terminal, by path.
TTY_ATTACK = (
    "import os, termios\n"
    "try:\n"
    "    with open('/dev/tty', 'rb+', buffering=0) as tty:\n"
    "        print(f'devtty_rdev={os.fstat(tty.fileno()).st_rdev}')\n"
    "        attrs = termios.tcgetattr(tty)\n"
    "        attrs[3] &= ~termios.ECHO\n"
    "        termios.tcsetattr(tty, termios.TCSANOW, attrs)\n"
    "    print('devtty=ok')\n"
    "except OSError as e:\n"
    "    print(f'devtty errno={e.errno}')\n"
)


def pty_rdev(main: int) -> int:
    """The device number of the secondary end of the pty whose main end is ``main``."""
    import fcntl
    import os
    import struct

    tiocgptn = 0x80045430  # _IOR('T', 0x30, unsigned int); not in Python's termios
    number = struct.unpack("I", fcntl.ioctl(main, tiocgptn, b"\0" * 4))[0]
    return os.makedev(136 + number // 256, number % 256)


def under_terminal(argv: list, timeout: float = 60.0) -> tuple:
    """Run ``argv`` with a fresh pty as its controlling terminal and stdio: (what it wrote to
    the terminal, its exit code, whether the pty still echoes afterwards, the pty's device
    number)."""
    import os
    import pty
    import select
    import termios
    import time

    pid, main = pty.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    output, deadline = bytearray(), time.monotonic() + timeout
    rdev = pty_rdev(main)
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], deadline - time.monotonic())
            try:
                chunk = os.read(main, 65536) if ready else b""
            except OSError:  # EIO: every process holding the pty's secondary end is gone
                chunk = b""
            if not chunk:
                break
            output += chunk
        echo = bool(termios.tcgetattr(main)[3] & termios.ECHO)
    finally:
        os.close(main)
    _, status = os.waitpid(pid, 0)
    return bytes(output), os.waitstatus_to_exitcode(status), echo, rdev
