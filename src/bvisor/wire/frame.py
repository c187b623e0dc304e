"""The launch-plan frame and how a plan reaches the one-shot launcher.

A frame is ``MAGIC | u16 version | u32 body length | blake3(body) | body`` where the body
is canonical MessagePack (maps with named fields, shortest encodings; its fields are
``vocabulary.MESSAGES``). Stdlib + blake3 only: the launcher imports this on every run.
"""

import struct

import blake3

MAGIC = b"BVZLNCH1"
PROTOCOL_VERSION = 1
_HEADER = struct.Struct("<8sHI32s")
HEADER_LEN = _HEADER.size  # 46

# Environment variables naming the fds the host passes to the launcher.
ENV_PLAN_FD = "BVISOR_LAUNCH_PLAN_FD"
ENV_CONTROL_FD = "BVISOR_CONTROL_FD"
ENV_HOST_PID = "BVISOR_HOST_PID"  # the launcher dies with this process (its parent)

# Launcher process exit codes.
EXIT_EXEC_SUCCEEDED = 0
EXIT_REFUSED = 3
EXIT_FAULTED = 4


def staged_placement(placement: dict[int, int]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """How to put each source fd (value) at its number (key) when sources and targets may
    overlap: ``(stage, final)`` lists of ``(from, to)`` moves. Every source first goes to a
    fresh number above them all, then down to its target, so no move clobbers a source
    another move still needs; the staged numbers are then to be closed."""
    base = max(list(placement) + list(placement.values())) + 1
    stage = [(source, base + i) for i, source in enumerate(placement.values())]
    final = [(base + i, target) for i, target in enumerate(placement)]
    return stage, final


class FrameReject(Exception):
    """The frame is not a well-formed, untampered launch plan; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def build_frame(body: bytes) -> bytes:
    return _HEADER.pack(MAGIC, PROTOCOL_VERSION, len(body), blake3.blake3(body).digest()) + body


def parse_frame(frame: bytes) -> bytes:
    """Return the body of a verified frame. Checks run in a fixed order; the first failure wins."""
    if len(frame) < HEADER_LEN:
        raise FrameReject("Truncated", f"{len(frame)} bytes, header needs {HEADER_LEN}")
    magic, version, length, digest = _HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise FrameReject("BadMagic", repr(magic))
    if version != PROTOCOL_VERSION:
        raise FrameReject("UnsupportedVersion", str(version))
    if len(frame) - HEADER_LEN != length:
        raise FrameReject("LengthMismatch", f"header says {length}, body has {len(frame) - HEADER_LEN}")
    body = frame[HEADER_LEN:]
    if blake3.blake3(body).digest() != digest:
        raise FrameReject("DigestMismatch")
    return body


def lowering_digest(lowering_bytes: bytes) -> bytes:
    """``h_l``: blake3 of the canonical bytes of the lowering, no domain tag (as the seed)."""
    return blake3.blake3(lowering_bytes).digest()


# The control channel: one line per launcher state, one ``# `` line per note. A note may carry
# text the plan or the host's filesystem chose (a path, a hostname, an argv word): every
# control character in it (C0, DEL, C1) and the two Unicode line separators are written as
# escapes, so no text can end a line early and put a line of its own on the channel.
CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {
    c: f"\\u{c:04x}" for c in (0x2028, 0x2029)
}


def control_line(text: str) -> bytes:
    """One control-channel line: ``text`` escaped, then the one line end ("\\n")."""
    return (text.translate(CONTROL_ESCAPES) + "\n").encode("utf-8", "backslashreplace")
