"""The unix socket gate's pure parts: which addresses name a path the gate must pin, and
which credentials a caller may claim."""

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


STATUS = "Name:\tpython3\nTgid:\t7\nPid:\t9\nUid:\t0\t0\t5\t0\nGid:\t0\t3\t0\t0\n"


@pytest.mark.parametrize(
    ("ucred", "allowed"),
    [
        ((7, 0, 0), True),
        ((7, 5, 3), True),  # the saved uid and the effective gid are the caller's too
        ((9, 0, 0), False),  # a thread id is not the process's
        ((1, 0, 0), False),  # another process
        ((7, 4242, 0), False),
        ((7, 0, 4242), False),
    ],
)
def test_a_caller_may_claim_only_its_own_tgid_and_ids(ucred, allowed):
    assert unixgate.claimable(ucred, STATUS) is allowed


def test_unreadable_status_claims_nothing():
    assert unixgate.claimable((7, 0, 0), "Name:\tgone\n") is False
