"""The unix socket gate's pure part: which addresses name a path the gate must pin."""

import socket
import struct

import pytest

from bvisor.launcher import unixgate


def unix(path: bytes) -> bytes:
    return struct.pack("=H", socket.AF_UNIX) + path


@pytest.mark.parametrize(
    ("address", "path"),
    [
        (unix(b"/run/docker.sock\0"), b"/run/docker.sock"),
        (unix(b"relative.sock"), b"relative.sock"),  # no NUL: the length ends it
        (unix(b"/tmp/a\0/ignored"), b"/tmp/a"),  # like the kernel, the first NUL ends it
        (unix(b"\0abstract"), None),  # abstract: reaches only the run's own netns
        (unix(b""), None),  # unnamed
        (struct.pack("=H", socket.AF_INET) + bytes(14), None),
        (b"\x01", None),  # shorter than a family
    ],
)
def test_only_an_af_unix_pathname_is_a_path(address, path):
    assert unixgate.pathname(address) == path


def test_the_account_note_names_each_counter():
    account = unixgate.Account()
    account.on_behalf, account.refused = 3, 2
    assert account.note() == "unix_gate account on_behalf=3 refused=2 unresolved=0"


@pytest.mark.parametrize(
    ("family", "copied"),
    [(socket.AF_UNIX, True), (socket.AF_UNSPEC, True), (socket.AF_NETLINK, True), (socket.AF_VSOCK, False), (socket.AF_INET, False), (socket.AF_INET6, False)],
)
def test_only_families_confined_to_the_runs_namespace_are_sent_as_copied(family, copied):
    assert unixgate.reaches_only_the_run(struct.pack("=H", family) + bytes(14)) is copied
