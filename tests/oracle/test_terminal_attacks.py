"""A run on a terminal, attacked from inside: the pty bvisor opens for it is the only terminal
it reaches, it cannot change that pty's node on the host, and what it makes the caller's
terminal answer is not left for the caller's shell.

(a) The pty's node. The host opened the run's pty in its own /dev/pts, so the node is the
host's: whoever owns it may chmod it (then any local user can open the caller's session,
read the keys typed into the run, or read a message the run left in its mode bits) or set
its times. An unprivileged bvisor opens the pty as the very uid in-run root is mapped to.
The run now holds its pty through the view's node, a read-only clone. Channel A: the
host's ``/dev/pts/N`` keeps its mode and times. Channel B: the workload reports each
change failing (EROFS; EPERM where the node is not its own). Control: the same workload on
a pty its user owns changes both, seen from the host.

(b) The caller's terminal by path. The workload is given the caller's pty (``/dev/pts/N``)
and tries to clear its ECHO there, through ``/dev/ptmx``'s devpts, and through every
``/proc/<pid>/fd`` it can see. Channel A: the caller's pty still echoes after the run.
Channel B: the workload reports each path failing and no fd of the caller's terminal in
/proc. Control: the same workload with a pty of its own but no boundary (``pty.spawn``)
clears ECHO on the caller's terminal.

(c) Answers left for the shell. The run puts its pty in raw mode, stops reading and floods
the caller's terminal with cursor-position requests (``ESC [ 6 n``), which a terminal
answers on its input: once the run's input queue is full the answers wait in the caller's
own. Channel A: nothing waits there after bvisor exits (the restore discards it). Channel
B: the caller's terminal mode is the one it had before. Control: the same bvisor with its
restore made TCSANOW leaves the answers for the shell.

Each as the caller and as uid 65534 (the controls as the caller).
"""

import errno
import fcntl
import os
import re
import select
import stat
import struct
import sys
import termios
import time
from pathlib import Path

import pytest

from cli.test_cli_terminal import CallerTerminal
from helpers import IDENTITIES, cli_prefix
from stdio_oracles import PYTHON

BVISOR = str(Path(sys.executable).parent / "bvisor")


def bvisor_run(identity: str) -> list:
    return [*cli_prefix(identity), BVISOR, "run", "--quiet", "--no-store", "--"]


# (a) Say which node of the host's /dev/pts fd 0 is, wait for a line, change the node's mode
# by fd, through /proc and by its path (in the run: the view's node), and its times; say how
# each went, wait for a line.
NODE_ATTACK = (
    "import os, sys\n"
    "pty = os.fstat(0).st_rdev\n"
    "node = f'/dev/pts/{(os.major(pty) - 136) * 256 + os.minor(pty)}'\n"
    "print(f'node={node}', flush=True)\n"
    "sys.stdin.readline()\n"
    "changes = (('fchmod', lambda: os.chmod(0, 0o666)), ('chmod_proc', lambda: os.chmod('/proc/self/fd/0', 0o666)),\n"
    "           ('chmod_path', lambda: os.chmod(node, 0o666)), ('futimens', lambda: os.utime(0, (0, 0))))\n"
    "for name, change in changes:\n"
    "    try:\n"
    "        change()\n"
    "        print(f'{name}=ok', flush=True)\n"
    "    except OSError as e:\n"
    "        print(f'{name} errno={e.errno}', flush=True)\n"
    "print('attacked', flush=True)\n"
    "sys.stdin.readline()\n"
)


def node_seen_from_the_host(path: str) -> tuple:
    """Its mode, owner and whether its access time is the attack's epoch. (Its modification
    time is no witness: the terminal sets it again on the next write, which prints the
    result; the access time waits for the next read, which waits for us.)"""
    st = os.stat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_atime_ns == 0


def attack_the_node(argv: list) -> tuple:
    """Drive ``NODE_ATTACK`` (at the end of ``argv``) on a caller's terminal: (what the
    workload said, the node as the host saw it before the attack, after it, the exit code)."""
    term = CallerTerminal(argv, rows=24, cols=80)
    try:
        node = re.search(rb"node=(\S+)\r\n", term.wait_for(b"\n")).group(1).decode()
        before = node_seen_from_the_host(node)
        term.type(b"\r")
        said = term.wait_for(b"attacked").decode(errors="replace")
        after = node_seen_from_the_host(node)  # the run still holds its pty: the node is there
        term.type(b"\r")
        code = term.finish()
    finally:
        term.close()
    return said, before, after, code


@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_run_cannot_change_its_ptys_node_on_the_host(identity):
    said, before, after, code = attack_the_node([*bvisor_run(identity), PYTHON, "-I", "-c", NODE_ATTACK])
    print(f"pty node [{identity}]: said={said!r} before={before} after={after}", file=sys.stderr)
    assert code == 0, said
    assert after == before, f"CHANNEL A: the host's node of the run's pty changed: {before} -> {after}"
    for change in ("fchmod", "chmod_proc", "chmod_path", "futimens"):
        assert re.search(rf"{change} errno=({errno.EROFS}|{errno.EPERM})\b", said), said


def test_control_the_owner_of_a_pty_changes_its_node_on_the_host():
    said, before, after, code = attack_the_node([PYTHON, "-I", "-c", NODE_ATTACK])
    assert code == 0 and {"fchmod=ok", "futimens=ok"} <= set(said.split()), said
    assert after[0] == 0o666 and after[2] and before[0] != 0o666 and not before[2], (before, after)


# (b) argv[1]: the caller's pty. Set a marker window size on it and clear its ECHO by its
# path, and through every fd of it /proc shows; open /dev/ptmx (a new pty on its devpts).
# (The window size is what bvisor's restore does not put back.)
CALLERS_TERMINAL_ATTACK = (
    "import fcntl, os, struct, sys, termios\n"
    "path = sys.argv[1]\n"
    "number = int(path.rsplit('/', 1)[1])\n"
    "callers = os.makedev(136 + number // 256, number % 256)\n"
    "def quiet(target, name):\n"
    "    try:\n"
    "        fd = os.open(target, os.O_RDWR | os.O_NOCTTY)\n"
    "    except OSError as e:\n"
    "        print(f'{name} errno={e.errno}'); return\n"
    "    try:\n"
    "        if os.fstat(fd).st_rdev != callers:\n"
    "            print(f'{name}=other_device'); return\n"
    "        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', 99, 77, 0, 0))\n"
    "        attrs = termios.tcgetattr(fd)\n"
    "        attrs[3] &= ~termios.ECHO\n"
    "        termios.tcsetattr(fd, termios.TCSANOW, attrs)\n"
    "        print(f'{name}=ok')\n"
    "    finally:\n"
    "        os.close(fd)\n"
    "quiet(path, 'by_path')\n"
    "quiet('/dev/ptmx', 'ptmx')\n"
    "found = []\n"
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n"
    "        links = [f'/proc/{pid}/fd/{n}' for n in os.listdir(f'/proc/{pid}/fd')]\n"
    "    except OSError:\n"
    "        continue\n"
    "    for link in links:\n"
    "        try:\n"
    "            if os.stat(link).st_rdev == callers:\n"
    "                found.append(link)\n"
    "        except OSError:\n"
    "            pass\n"
    "print(f'proc_fds={len(found)}')\n"
    "for link in found[:1]:\n"
    "    quiet(link, 'by_proc')\n"
    "print('attack-done', flush=True)\n"
)


def attack_the_callers_terminal(prefix: list) -> tuple:
    """``CALLERS_TERMINAL_ATTACK`` run through ``prefix`` on a 24x80 caller's terminal, given
    that terminal's path by the shell in front of it: (its words, exit code, the caller's
    window size and whether it echoes, after the run)."""
    argv = ["/bin/sh", "-c", 'exec "$@" "$(tty)"', "sh", *prefix, PYTHON, "-I", "-c", CALLERS_TERMINAL_ATTACK]
    term = CallerTerminal(argv, rows=24, cols=80)
    try:
        said = term.wait_for(b"attack-done").decode(errors="replace").splitlines()
        code = term.finish()
        size = termios.tcgetwinsize(term.secondary)
    finally:
        term.close()
    return said, code, size, bool(term.mode_after[3] & termios.ECHO)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_the_callers_terminal_is_out_of_reach_by_every_path(identity):
    said, code, size, echo = attack_the_callers_terminal(bvisor_run(identity))
    assert code == 0, said
    assert size == (24, 80), f"CHANNEL A: the workload resized the caller's terminal to {size}; it said {said}"
    assert echo, f"the caller's terminal does not echo after the run; it said {said}"
    assert f"by_path errno={errno.ENOENT}" in said and f"ptmx errno={errno.ENOENT}" in said and "proc_fds=0" in said, said


def test_control_a_pty_of_its_own_without_the_boundary_reaches_the_callers_terminal():
    spawn = [PYTHON, "-I", "-c", "import pty, sys; pty.spawn(sys.argv[1:])"]
    said, code, size, _ = attack_the_callers_terminal(spawn)
    assert code == 0 and "by_path=ok" in said and "by_proc=ok" in said, said
    assert size == (99, 77), "CONTROL CHANNEL A: the workload must resize the caller's terminal"


# (c) Raw mode, then ask for the cursor position without end, reading nothing: the answers
# fill the run's input queue (said once) and then wait in the caller's. Ends on a resize.
ANSWER_FLOOD = (
    "import fcntl, os, signal, struct, termios, tty\n"
    "tty.setraw(0)\n"
    "signal.signal(signal.SIGWINCH, lambda *_: os._exit(0))\n"
    "said_full = False\n"
    "while True:\n"
    "    if not said_full and struct.unpack('i', fcntl.ioctl(0, termios.FIONREAD, bytes(4)))[0] >= 4095:\n"
    "        os.write(1, b'queue-full')\n"
    "        said_full = True\n"
    "    os.write(1, b'\\x1b[6n' * 16)\n"
)
REQUEST, ANSWER = b"\x1b[6n", b"\x1b[24;80R"  # what xterm answers on a 24x80 screen
FULL = b"queue-full"


def queued(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, bytes(4)))[0]


def flood_with_answers(argv: list) -> tuple:
    """Play a terminal that answers every cursor-position request ``argv`` prints, until the
    run's queue is full and answers wait in the caller's own; then resize (the run ends on
    it) and read on until bvisor exits: (bytes left for the shell, mode before, mode after)."""
    term = CallerTerminal(argv, rows=24, cols=80)
    try:
        os.set_blocking(term.main, False)
        scanned, owed, full = 0, b"", False
        deadline = time.monotonic() + 60
        while not (full and queued(term.secondary)):
            if time.monotonic() > deadline or term.process.poll() is not None:
                raise AssertionError(f"the queues never filled; the terminal showed {bytes(term.seen[-300:])!r}")
            select.select([term.main], [], [], 1)
            try:
                term.seen += os.read(term.main, 65536)
            except BlockingIOError:
                pass
            full = full or FULL in term.seen[max(0, scanned - len(FULL)) :]
            while (found := term.seen.find(REQUEST, scanned)) != -1:
                owed, scanned = owed + ANSWER, found + len(REQUEST)
            if owed:
                try:
                    owed = owed[os.write(term.main, owed[:4096]) :]
                except BlockingIOError:  # the caller's terminal holds all it can take
                    pass
        term.resize(25, 80)
        while term.process.poll() is None:  # read on: bvisor's writes to its terminal must not block
            select.select([term.main], [], [], 0.1)
            try:
                term.seen += os.read(term.main, 65536)
            except (BlockingIOError, OSError):
                pass
        code = term.finish()
        left = queued(term.secondary)
    finally:
        term.close()
    assert code == 0, bytes(term.seen[-500:])
    return left, term.mode_before, term.mode_after


@pytest.mark.parametrize("identity", IDENTITIES)
def test_answers_the_run_asked_for_are_not_left_for_the_callers_shell(identity):
    left, before, after = flood_with_answers([*bvisor_run(identity), PYTHON, "-I", "-c", ANSWER_FLOOD])
    assert left == 0, f"CHANNEL A: {left} bytes of the terminal's answers wait for the caller's shell"
    assert after == before, "CHANNEL B: the caller's terminal mode was not restored"


def test_control_a_restore_that_keeps_input_leaves_the_answers_for_the_shell():
    keeping = "import sys, termios; termios.TCSAFLUSH = termios.TCSANOW; from bvisor.cli import command; sys.argv[0] = 'bvisor'; sys.exit(command())"
    argv = [sys.executable, "-I", "-c", keeping, "run", "--quiet", "--no-store", "--", PYTHON, "-I", "-c", ANSWER_FLOOD]
    left, before, after = flood_with_answers(argv)
    assert left > 0 and after == before, "CONTROL: the answers must still wait for the shell after a TCSANOW restore"
