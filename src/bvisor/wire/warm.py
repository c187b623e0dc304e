"""The warm launcher's messages: host <-> ``python -m bvisor.launcher --serve``.

The socket is a SOCK_SEQPACKET pair; the host passes its end to the server as fd
``ENV_SERVER_FD``: one message per request or reply, never split or merged, and EOF exactly
when the host's end closes. Messages (little-endian; the host is the only peer, so no
version negotiation beyond the request magic):

  request  REQUEST header + u16 per passed fd (the fd number it gets in the coordinator),
           SCM_RIGHTS: those fds in the same order, the plan memfd first and the control
           channel second (the one-shot launcher's ENV_PLAN_FD / ENV_CONTROL_FD)
  reply    REPLY: kind, request id, coordinator pid, value
           STARTED  once a coordinator has the request; SCM_RIGHTS: a pidfd of it
           EXITED   once reaped; value = its wait status
           REFUSED  nothing was started; value = errno

Stdlib only: the launcher server and the host (``backends/linux/warm.py``) both import it.
"""

import errno
import socket
import struct

TYPE_CHECKING = False  # not typing's: the launcher server imports this module at start
if TYPE_CHECKING:
    from collections.abc import Sequence

ENV_SERVER_FD = "BVISOR_SERVER_FD"

REQUEST_MAGIC = b"BVZWARM1"
# magic, request id, host pid, flags, count of passed fds; then count x u16 target fd numbers.
REQUEST = struct.Struct("<8sQIBB")
FLAG_SIGINT_IGNORED = 1  # the host ignores SIGINT, so a one-shot launcher would inherit that

# kind, request id, coordinator pid, value.
REPLY = struct.Struct("<BQii")
STARTED, EXITED, REFUSED = 1, 2, 3

# The kernel passes at most this many fds in one message (SCM_MAX_FD).
MAX_FDS = 253
MAX_REQUEST = REQUEST.size + 2 * MAX_FDS


class RequestRefused(Exception):
    """A request this server will not carry out; ``errno`` goes back in the REFUSED reply."""

    def __init__(self, request_id: int, code: int, detail: str):
        super().__init__(detail)
        self.request_id, self.errno = request_id, code


class HostGone(Exception):
    """The host's end of the socket is closed: nobody is left to serve."""


class Request:
    __slots__ = ("request_id", "sigint_ignored", "plan_at", "control_at", "placement")

    def __init__(self, request_id: int, sigint_ignored: bool, placement: dict[int, int]):
        self.request_id, self.sigint_ignored, self.placement = request_id, sigint_ignored, placement
        self.plan_at, self.control_at = list(placement)[:2]


def encode_request(
    request_id: int, host_pid: int, sigint_ignored: bool, plan_at: int, control_at: int, placement: dict[int, int]
) -> tuple[bytes, list[int]]:
    """``(message bytes, fds)`` for one run; ``placement`` maps coordinator fd numbers to
    host fds."""
    targets = [plan_at, control_at] + [t for t in placement if t not in (plan_at, control_at)]
    flags = FLAG_SIGINT_IGNORED if sigint_ignored else 0
    header = REQUEST.pack(REQUEST_MAGIC, request_id, host_pid, flags, len(targets))
    return header + struct.pack(f"<{len(targets)}H", *targets), [placement[t] for t in targets]


def decode_request(data: bytes, passed: list[int], msg_flags: int, host_pid: int) -> Request:
    """Check a received request against what this server can honour; RequestRefused if not."""
    if len(data) < REQUEST.size:
        raise RequestRefused(0, errno.EBADMSG, f"request of {len(data)} bytes")
    magic, request_id, sender, flags, count = REQUEST.unpack_from(data)
    if magic != REQUEST_MAGIC or len(data) != REQUEST.size + 2 * count:
        raise RequestRefused(request_id, errno.EBADMSG, "not a request this server speaks")
    if msg_flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(passed) != count or count < 2:
        raise RequestRefused(request_id, errno.EBADMSG, f"{len(passed)} fds for {count} targets")
    if sender != host_pid:
        # A coordinator dies with this server, and this server with host_pid: a forked host
        # reusing its parent's server would get runs that outlive it.
        raise RequestRefused(request_id, errno.EPERM, f"request from pid {sender}, server of {host_pid}")
    targets = struct.unpack_from(f"<{count}H", data, REQUEST.size)
    if len(set(targets)) != count:
        raise RequestRefused(request_id, errno.EINVAL, f"duplicate targets {targets}")
    return Request(request_id, bool(flags & FLAG_SIGINT_IGNORED), dict(zip(targets, passed, strict=True)))


def receive(sock: socket.socket, size: int, max_fds: int) -> tuple[bytes, list[int], int]:
    """One message: ``(data, fds, msg flags)``. Passed fds arrive close-on-exec: a host that
    spawns from other threads must never leak them (``socket.recv_fds`` cannot ask for that)."""
    data, ancillary, msg_flags, _ = sock.recvmsg(size, socket.CMSG_SPACE(max_fds * 4), socket.MSG_CMSG_CLOEXEC)
    passed: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            passed += memoryview(payload[: len(payload) - len(payload) % 4]).cast("i").tolist()
    return data, passed, msg_flags


def send(sock: socket.socket, data: bytes, passed: "Sequence[int]" = ()) -> None:
    """One message; never SIGPIPE (a dead peer is an error here, not a reason to die)."""
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(passed)}i", *passed))] if passed else []
    sock.sendmsg([data], ancillary, socket.MSG_NOSIGNAL)
