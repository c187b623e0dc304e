"""What the caller's stdin is, as ``stdin_source`` names it: only a read-only pipe, a
read-only regular file and /dev/null are handed to the workload as they are."""

import os
import socket

import pytest

from bvisor.capture import HANDED_AS_IS, stdin_source


def _pipe_end(index: int):
    ends = os.pipe2(os.O_CLOEXEC)
    os.close(ends[1 - index])
    return ends[index]


def _socket():
    a, b = socket.socketpair()
    b.close()
    return a.detach()


def _pty():
    main, secondary = os.openpty()
    return secondary, main  # a pty whose main end is closed is hung up: no longer a terminal


def _path_only(tmp):
    (tmp / "f").touch()
    return os.open(tmp / "f", os.O_PATH)


OPENERS = {
    "pipe": lambda tmp: _pipe_end(0),
    "writable_pipe": lambda tmp: _pipe_end(1),
    "file": lambda tmp: os.open(tmp / "f", os.O_RDONLY | os.O_CREAT, 0o600),
    "writable_file": lambda tmp: os.open(tmp / "f", os.O_RDWR | os.O_CREAT, 0o600),
    "null": lambda tmp: os.open(os.devnull, os.O_RDWR),
    "char_device": lambda tmp: os.open("/dev/zero", os.O_RDONLY),
    "tty": lambda tmp: _pty(),
    "socket": lambda tmp: _socket(),
    "directory": lambda tmp: os.open(tmp, os.O_RDONLY | os.O_DIRECTORY),
    "path_only": _path_only,
    "other": lambda tmp: os.eventfd(0),
}


@pytest.mark.parametrize("kind", OPENERS)
def test_each_kind_of_stdin_is_named(kind, tmp_path):
    opened = OPENERS[kind](tmp_path)
    fds = opened if isinstance(opened, tuple) else (opened,)
    try:
        assert stdin_source(fds[0]) == kind
    finally:
        for fd in fds:
            os.close(fd)


def test_a_closed_fd_is_named_closed():
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    assert stdin_source(fd) == "closed"


def test_only_bytes_without_authority_are_handed_as_they_are():
    assert HANDED_AS_IS == {"pipe", "null"}


def test_an_anonymous_pipe_is_a_pipe_and_a_named_one_a_fifo(tmp_path):
    read_end, write_end = os.pipe()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    named = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert (stdin_source(read_end), stdin_source(named)) == ("pipe", "fifo")
    finally:
        for fd in (read_end, write_end, named):
            os.close(fd)
