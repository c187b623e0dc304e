"""Reading a file the caller names (a spec, a report, a public key).

Only a regular file, and only up to a size limit, both decided on the opened descriptor
before a byte is read: a FIFO would otherwise block forever and ``/dev/zero`` behind a
``*.toml`` name would be read until memory runs out.
"""

import os
import stat

# A spec or a report is kilobytes; a mebibyte is a mistake or an attack.
MAX_INPUT_BYTES = 1 << 20

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class InputFileError(ValueError):
    """A caller-named file bvisor will not read; the message is one line naming the file."""


def read_input_file(path: str | os.PathLike[str], limit: int = MAX_INPUT_BYTES) -> bytes:
    """The whole content of the regular file at ``path``, at most ``limit`` bytes."""
    path = os.fspath(path)
    # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer.
    # O_NOCTTY: a terminal named here never becomes our controlling terminal.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        raise InputFileError(f"cannot read {path!r}: {error.strerror or error}") from None
    try:
        return _read_regular(path, fd, limit)
    except OSError as error:
        raise InputFileError(f"cannot read {path!r}: {error.strerror or error}") from None
    finally:
        os.close(fd)


def _read_regular(path: str, fd: int, limit: int) -> bytes:
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        kind = _KINDS.get(stat.S_IFMT(status.st_mode), "a file of an unknown type")
        raise InputFileError(f"{path!r} is {kind}, not a regular file")
    if status.st_size > limit:
        raise InputFileError(f"{path!r} is {status.st_size} bytes, over the {limit}-byte limit")
    # fstat's size is a hint (a file may grow, a /proc file says 0): the read is bounded
    # by itself, one byte past the limit to tell "exactly the limit" from "more".
    chunks, size = [], 0
    while size <= limit:
        chunk = os.read(fd, limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise InputFileError(f"{path!r} is over the {limit}-byte limit")
    return b"".join(chunks)
