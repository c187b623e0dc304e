"""The warm launcher: ``python -m bvisor.launcher --serve``, one per host backend.

A one-shot launcher pays an interpreter start and its imports on every run. The server pays
them once: it pre-imports the coordinator and every mechanism module, then forks one
coordinator per request, which becomes exactly what ``posix_spawn`` makes of a one-shot
launcher (the same fds at the same numbers, a fresh launcher's signal dispositions, tied to
its parent) and runs the same code from the first control line on (``coordinator.carry_out``).

Single-threaded (the coordinator forks, and checks): one ``poll`` over the host's socket and
one pidfd per running coordinator. The next run's coordinator is forked ahead of its request
(a spare, waiting on a socket of its own, tied to this server), so that fork (~0.5 ms of
page-table copying here) is off the run's critical path; a request finds it ready.

The messages it speaks are ``bvisor.wire.warm``'s.

The plan rides as the same sealed memfd the one-shot launcher reads, not inline: the
long-lived server never reads a frame (only the disposable child parses it), and a frame's
size is not bounded by the socket's message size. The STARTED pidfd is what lets the host
watch and signal a process it is not the parent of without racing this server's reaping.

At import only the stdlib and three small launcher modules; the coordinator (msgpack, every
mechanism) is imported by ``main``.
"""

import _signal as signal  # the C module; "signal" wraps it in enums that cost ~7 ms of start-up
import gc
import os
import select
import socket
import sys

from bvisor.launcher import execve, fds, lifetime
from bvisor.mechanism import fdio
from bvisor.wire.frame import ENV_HOST_PID, EXIT_FAULTED, staged_placement
from bvisor.wire.warm import (
    ENV_SERVER_FD,
    EXITED,
    MAX_FDS,
    MAX_REQUEST,
    REFUSED,
    REPLY,
    STARTED,
    HostGone,
    Request,
    RequestRefused,
    decode_request,
    receive,
    send,
)


def main() -> None:
    """``--serve``: tie this server to the host, pre-import, serve until the host hangs up."""
    try:
        server_fd, host_pid = int(os.environ[ENV_SERVER_FD]), int(os.environ[ENV_HOST_PID])
    except (KeyError, ValueError):
        sys.stderr.write("bvisor-linux-launcher: boot fault: --serve needs BVISOR_SERVER_FD and BVISOR_HOST_PID\n")
        os._exit(EXIT_FAULTED)
    try:
        lifetime.die_with_parent(host_pid, "server_lifetime")
    except OSError:  # the host is already gone
        os._exit(EXIT_FAULTED)
    # posix_spawn passes on every fd the host left inheritable; a long-lived server must not
    # hold them (a pipe it held open would never reach EOF for whoever reads it).
    fds.close_all_but({0, 1, 2, server_fd})
    # A terminal Ctrl-C reaches the whole process group; the server is the host's to stop
    # (its coordinators get a fresh launcher's SIGINT disposition back, see _become_coordinator).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from bvisor.launcher import coordinator  # the warm part: every mechanism module, once

    coordinator.prepare()
    # Keep the collector off the pre-imported heap, so forked children do not copy its pages.
    gc.freeze()
    try:
        serve(socket.socket(fileno=server_fd), host_pid, coordinator.carry_out)
    except HostGone:
        pass
    os._exit(0)


def serve(sock: socket.socket, host_pid: int, carry_out) -> None:
    """Start a coordinator per request and report its start and its exit, until EOF."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    children = {}  # pidfd -> (request id, pid)
    spare = None
    try:
        while True:
            if spare is None or spare.spent:
                spare = _Spare.fork(host_pid, carry_out)
            for fd, _ in poller.poll():
                if fd in children:
                    poller.unregister(fd)
                    _report_exit(sock, fd, *children.pop(fd))
                elif (started := _take_request(sock, host_pid, carry_out, spare)) is None:
                    return
                elif started:
                    request_id, pid, pidfd = started
                    children[pidfd] = (request_id, pid)
                    poller.register(pidfd, select.POLLIN)
    finally:
        if spare is not None and not spare.spent:
            spare.discard()


def _take_request(sock: socket.socket, host_pid: int, carry_out, spare):
    """Serve one message: ``(request id, pid, pidfd)`` of the coordinator started, False when
    it was refused, None at EOF."""
    try:
        data, passed, msg_flags = receive(sock, MAX_REQUEST + 1, MAX_FDS)
    except OSError as exc:  # ECONNRESET: the host closed with replies it never read
        raise HostGone(str(exc)) from None
    if not data:  # the host never sends an empty message: this is its end closing
        fdio.close_all(passed)
        return None
    try:
        request = decode_request(data, passed, msg_flags, host_pid)
        if spare is not None and spare.take(data, passed):
            pid, pidfd = spare.pid, spare.pidfd
        else:
            pid = _fork_coordinator(request, carry_out)
            pidfd = os.pidfd_open(pid)  # before any reaping: it names this child, never a reused pid
    except RequestRefused as exc:
        _reply(sock, REFUSED, exc.request_id, 0, exc.errno)
        return False
    finally:
        fdio.close_all(passed)  # the child has its copies; EOF on the run's pipes must mean it is done
    _reply(sock, STARTED, request.request_id, pid, 0, [pidfd])
    return request.request_id, pid, pidfd


class _Spare:
    """A coordinator forked before its request: it holds nothing of the server's but its own
    socket, waits there for one request (the same message and fds the host sent) and carries
    it out exactly as a coordinator forked on demand does."""

    __slots__ = ("pid", "pidfd", "spent", "_sock")

    def __init__(self, pid: int, pidfd: int, sock: socket.socket):
        self.pid, self.pidfd, self._sock, self.spent = pid, pidfd, sock, False

    @classmethod
    def fork(cls, host_pid: int, carry_out):
        """A new spare, or None when none can be forked now (requests then fork on demand)."""
        server = os.getpid()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return None
        if pid == 0:
            _await_request(theirs, server, host_pid, carry_out)
        theirs.close()
        return cls(pid, os.pidfd_open(pid), ours)

    def take(self, data: bytes, passed: list) -> bool:
        """Hand this spare one request; False (and the spare ended) if it cannot take it.
        Either way it is spent: a spare is offered one request at most."""
        self.spent = True
        try:
            send(self._sock, data, passed)
        except OSError:
            self.discard()
            return False
        self._sock.close()  # the request is queued; nothing else will ever go to this spare
        return True

    def discard(self) -> None:
        """End an unused spare and reap it."""
        self._sock.close()
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it has exited already
        os.waitpid(self.pid, 0)
        os.close(self.pidfd)


def _await_request(sock: socket.socket, server: int, host_pid: int, carry_out) -> None:
    """The spare's life: nothing of the server's kept, tied to it, one request, then exactly
    what a coordinator forked on demand does. Never returns."""
    try:
        fds.close_all_but({sock.fileno()})  # not the host's socket, not another run's pidfd
        lifetime.die_with_parent(server, "spare_lifetime")
        data, passed, msg_flags = receive(sock, MAX_REQUEST + 1, MAX_FDS)
        sock.close()
        if data:  # EOF instead: the server discarded this spare, or is gone
            _become_coordinator(decode_request(data, passed, msg_flags, host_pid), server, carry_out)
    finally:
        os._exit(EXIT_FAULTED)


def _fork_coordinator(request: Request, carry_out) -> int:
    server = os.getpid()
    try:
        pid = os.fork()
    except OSError as exc:
        raise RequestRefused(request.request_id, exc.errno, f"fork: {exc.strerror}") from None
    if pid == 0:
        _become_coordinator(request, server, carry_out)
    return pid


def _become_coordinator(request: Request, server: int, carry_out) -> None:
    """The forked child: what posix_spawn makes of a one-shot launcher, then its code. Never
    returns. A fault before the first control line exits like a one-shot boot fault."""
    code = EXIT_FAULTED
    try:
        _place(request.placement)
        _fresh_launcher_signals(request.sigint_ignored)
        # Tied to this server, which is tied to the host: the host's death ends the run.
        code = carry_out(request.control_at, request.plan_at, server)
    finally:
        os._exit(code)


def _place(placement: dict) -> None:
    """Each received fd at its number, nothing else open (not the server's socket, not
    another run's pidfd), by the same staged moves as the one-shot file actions."""
    stage, final = staged_placement(placement)
    for source, target in stage + final:
        os.dup2(source, target)
    fds.close_all_but(placement)


def _fresh_launcher_signals(sigint_ignored: bool) -> None:
    """The dispositions a freshly started launcher interpreter has: SIGPIPE and SIGXFSZ
    ignored (the coordinator restores them for the workload), SIGINT as the host left it."""
    for ignored in execve.PYTHON_IGNORED:
        signal.signal(ignored, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN if sigint_ignored else signal.default_int_handler)


def _report_exit(sock: socket.socket, pidfd: int, request_id: int, pid: int) -> None:
    _, status = os.waitpid(pid, 0)  # the pidfd fired: it has exited, this does not block
    os.close(pidfd)
    _reply(sock, EXITED, request_id, pid, status)


def _reply(sock: socket.socket, kind: int, request_id: int, pid: int, value: int, passed=()) -> None:
    try:
        send(sock, REPLY.pack(kind, request_id, pid, value), passed)
    except OSError as exc:
        raise HostGone(str(exc)) from None
