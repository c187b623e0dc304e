"""NetworkDenyAll covers the host's pathname unix sockets (issue 12, finding 4).

The host listens on pathname unix sockets, stream and datagram, in three places: outside
every root, inside a read-only root, inside a write root; plus two indirect ways in (a
symlink in the run's own /tmp, and the workload's own /proc/self/fd link on an O_PATH fd).
Under NetworkDenyAll the workload tries to connect (stream) or sendto (datagram) each one.

Channel A: the host's listeners accepted and received nothing (kernel state, read by the
host after the run). Channel B: the workload's own report of each attempt, with its errno.
Control: the same program and roots without NetworkDenyAll reaches every host listener, so
the oracle is not vacuous (landlock alone does not stop it). Positive: sockets the run makes
for itself (socketpair; a stream server and a datagram pair in its own /tmp, by absolute and
relative path, through a symlink, from a thread, by sendmsg, and passing an fd) keep working.
TOCTOU: a thread flips the address between the run's own socket and a host socket while
another connects (or sendmsg's a datagram) in a loop; the host never sees a connection or a
datagram.
As the caller (root here) and as uid 65534.
"""

import errno
import os
import shutil
import socket
import subprocess

import pytest

from bvisor import (
    BoundarySpec,
    Capability,
    HostControl,
    LinuxBackend,
    NetPolicy,
    Outcome,
)
from bvisor.capture import RunIO
from bvisor.contract import FsAccess
from helpers import IDENTITIES, facts_of, launcher_as, loud_skip, runner_for, shared_host_dir
from mount_oracles import mount_spec
from oracle_specs import exact_environment

PYTHON = os.path.realpath("/usr/bin/python3")
PAYLOAD = b"BVISOR-UNIX-GATE"

# Each argument "label:kind:path" is one attempt (kind: stream connects, dgram uses sendto,
# msg uses sendmsg on a datagram socket), reported as "label=reached" or "label=errno N". A
# path "fdlink:P" means: open P as O_PATH and use /proc/self/fd/<fd>.
ATTEMPTS = r"""
import os, socket, sys
for item in sys.argv[1:]:
    label, kind, path = item.split(":", 2)
    if path.startswith("fdlink:"):
        path = "/proc/self/fd/%d" % os.open(path[len("fdlink:"):], os.O_PATH)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM if kind == "stream" else socket.SOCK_DGRAM)
    try:
        if kind == "stream":
            s.connect(path)
        elif kind == "msg":
            s.sendmsg([b"BVISOR-UNIX-GATE"], [], 0, path)
        else:
            s.sendto(b"BVISOR-UNIX-GATE", path)
        print(label + "=reached", flush=True)
    except OSError as e:
        print(label + "=errno %d" % e.errno, flush=True)
"""

# The run's own sockets: each check prints "label=ok" or "label=failed <why>".
OWN = r"""
import os, socket
def check(label, fn):
    try:
        print(label + ("=ok" if fn() else "=failed wrong data"), flush=True)
    except OSError as e:
        print(label + "=failed errno %d" % e.errno, flush=True)
def pair():
    a, b = socket.socketpair(); a.send(b"p"); return b.recv(1) == b"p"
def stream(server_path, client_path):
    srv = socket.socket(socket.AF_UNIX); srv.bind(server_path); srv.listen(1)
    c = socket.socket(socket.AF_UNIX); c.connect(client_path); conn, _ = srv.accept(); c.send(b"s")
    return conn.recv(1) == b"s"
def datagram():
    r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); r.bind("/tmp/own-dgram.sock")
    w = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); w.sendto(b"d", "/tmp/own-dgram.sock")
    return r.recv(1) == b"d"
def symlinked():
    r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); r.bind("/tmp/own-target.sock")
    os.symlink("/tmp/own-target.sock", "/tmp/own-link.sock")
    w = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); w.sendto(b"l", "/tmp/own-link.sock")
    return r.recv(1) == b"l"
def from_thread():
    import threading
    done = []
    worker = threading.Thread(target=lambda: done.append(stream("/tmp/own-thread.sock", "/tmp/own-thread.sock")))
    worker.start(); worker.join()
    return done == [True]
check("socketpair", pair)
check("own_stream", lambda: stream("/tmp/own-stream.sock", "/tmp/own-stream.sock"))
os.chdir("/tmp")
check("own_stream_relative", lambda: stream("own-rel.sock", "own-rel.sock"))
check("own_datagram", datagram)
check("own_datagram_symlink", symlinked)
check("own_stream_from_thread", from_thread)
def by_sendmsg():
    r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); r.bind("/tmp/own-msg.sock")
    w = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); w.sendmsg([b"m", b"g"], [], 0, "/tmp/own-msg.sock")
    return r.recv(2) == b"mg"
def passing_an_fd():
    a, b = socket.socketpair()
    rd, wr = os.pipe()
    socket.send_fds(a, [b"f"], [wr])
    _, fds, _, _ = socket.recv_fds(b, 1, 1)
    os.write(fds[0], b"x")
    return os.read(rd, 1) == b"x"
check("own_datagram_sendmsg", by_sendmsg)
check("socketpair_passes_an_fd", passing_an_fd)
"""

# A thread flips one sockaddr buffer between the run's own socket and a host socket while
# the main thread connects (stream) or sendmsg's a datagram (dgram) through it, again and again.
FLIP = r"""
import ctypes, socket, struct, sys, threading, time
kind, own, host, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
libc = ctypes.CDLL(None, use_errno=True)
type_ = socket.SOCK_STREAM if kind == "stream" else socket.SOCK_DGRAM
srv = socket.socket(socket.AF_UNIX, type_); srv.bind(own)
if kind == "stream":
    srv.listen(rounds)
def addr(path): return struct.pack("=H", socket.AF_UNIX) + path.encode() + b"\0" * (108 - len(path))
buf = ctypes.create_string_buffer(addr(own), 110)
data = ctypes.create_string_buffer(b"BVISOR-UNIX-GATE", 16)
iov = struct.pack("=QQ", ctypes.addressof(data), 16)
iov_buf = ctypes.create_string_buffer(iov, 16)
msghdr = ctypes.create_string_buffer(struct.pack("=QI4xQQQQi4x", ctypes.addressof(buf), 110, ctypes.addressof(iov_buf), 1, 0, 0, 0), 56)
variants = [addr(own), addr(host)]
stop = False
def flip():
    i = 0
    while not stop:
        ctypes.memmove(buf, variants[i & 1], 110); i += 1
threading.Thread(target=flip, daemon=True).start()
results = {}
for _ in range(rounds):
    s = socket.socket(socket.AF_UNIX, type_)
    s.setblocking(False)  # a full backlog or queue answers EAGAIN rather than hanging the run
    rc = libc.connect(s.fileno(), buf, 110) if kind == "stream" else libc.sendmsg(s.fileno(), msghdr, 0)
    key = "ok" if rc >= 0 else str(ctypes.get_errno())
    results[key] = results.get(key, 0) + 1
    s.close()
    if kind == "dgram":
        try:
            while True:
                srv.recv(64, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
    time.sleep(0.001)  # hands the GIL to the flipper: the address at each call is a coin toss
stop = True
print("flip_results=" + ",".join("%s:%d" % kv for kv in sorted(results.items())), flush=True)
"""


class HostSockets:
    """Host listeners, stream and datagram, outside every root, in a read root and in a
    write root; every one reachable by uid 65534."""

    PLACES = ("outside", "ro", "rw")

    def __init__(self):
        # Not under /tmp: the run's temp root hides it, and "outside" must stay visible.
        self.base = shared_host_dir("bvisor-unixgate-", 0o755, parent="/var/tmp")
        self.dirs = {place: os.path.join(self.base, place) for place in self.PLACES}
        self.listeners = {}
        for place, directory in self.dirs.items():
            os.mkdir(directory)
            os.chmod(directory, 0o777)
            for kind, type_ in (("stream", socket.SOCK_STREAM), ("dgram", socket.SOCK_DGRAM)):
                path = os.path.join(directory, f"host-{kind}.sock")
                listener = socket.socket(socket.AF_UNIX, type_)
                listener.bind(path)
                os.chmod(path, 0o777)
                if kind == "stream":
                    listener.listen(64)
                listener.setblocking(False)
                self.listeners[(place, kind)] = (path, listener)

    def path(self, place: str, kind: str) -> str:
        return self.listeners[(place, kind)][0]

    def attempts(self) -> list:
        """Every host socket directly (datagram ones by sendmsg too), and the write root's
        through the workload's own /proc/self/fd link."""
        direct = [f"{place}_{kind}:{kind}:{self.path(place, kind)}" for place, kind in self.listeners]
        by_sendmsg = [f"sendmsg_{place}:msg:{self.path(place, 'dgram')}" for place in self.PLACES]
        return direct + by_sendmsg + [f"fdlink_{kind}:{kind}:fdlink:{self.path('rw', kind)}" for kind in ("stream", "dgram")]

    def reached(self) -> dict:
        """Channel A: what each listener got, read by the host: connections or datagrams."""
        got = {}
        for (place, kind), (_, listener) in self.listeners.items():
            count = 0
            while True:
                try:
                    conn = listener.accept()[0] if kind == "stream" else None
                    if conn is not None:
                        conn.close()
                    else:
                        listener.recv(64)
                    count += 1
                except BlockingIOError:
                    break
            got[f"{place}_{kind}"] = count
        return got

    def close(self) -> None:
        for _, listener in self.listeners.values():
            listener.close()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def host():
    made = HostSockets()
    try:
        yield made
    finally:
        made.close()


def spec_for(host: HostSockets, argv, deny_network: bool) -> BoundarySpec:
    network = [Capability.Network(policy=NetPolicy.DenyAll())] if deny_network else []
    capabilities = [
        *network,
        exact_environment(),
        Capability.Filesystem(access=FsAccess.Read, roots=[host.dirs["ro"]]),
        Capability.Filesystem(access=FsAccess.Write, roots=[host.dirs["rw"]]),
    ]
    return mount_spec([PYTHON, *argv], [HostControl.TempRoot()], capabilities)


def run(identity: str, spec: BoundarySpec):
    """The sealed report and the workload's stdout and stderr."""
    out, err = bytearray(), bytearray()
    stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
    os.close(stdin_w)
    try:
        report = runner_for(LinuxBackend(launcher_as(identity)), spec)(RunIO(stdin_fd=stdin_r, stdout_sink=out.extend, stderr_sink=err.extend))
    finally:
        os.close(stdin_r)
    return report, out.decode(errors="replace"), err.decode(errors="replace")


def gate_account(report) -> tuple:
    """The init's ``unix_gate account`` note and its counts, ``{"refused": "0", ...}``."""
    note = next((n for n in facts_of(report, "launcher_note") if n.startswith("unix_gate account")), "")
    return note, dict(p.split("=") for p in note.split()[2:])


def said(stdout: str) -> dict:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def symlink_attempts(host: HostSockets) -> list:
    """A symlink in the run's own /tmp to each host socket in the write root: made by a
    first attempt line so the gate must look through it."""
    return [f"tmplink_{kind}:{kind}:/tmp/link-{kind}.sock" for kind in ("stream", "dgram")]


def attack_argv(host: HostSockets) -> list:
    links = "; ".join(f"os.symlink({host.path('rw', kind)!r}, '/tmp/link-{kind}.sock')" for kind in ("stream", "dgram"))
    return ["-c", f"import os; {links}\n" + ATTEMPTS, *host.attempts(), *symlink_attempts(host)]


def outside_every_root(label: str) -> bool:
    return label.startswith(("outside_", "sendmsg_outside"))


def refusal_errno(label: str) -> int:
    """How each attempt fails: a socket outside every root does not exist in the run's view
    (ENOENT, the first wall); for the others the gate answers: a /proc/self/fd link is a
    magic link, which it does not resolve (ELOOP); any other path that is not a socket on the
    run's own temp root is refused (EACCES)."""
    if outside_every_root(label):
        return errno.ENOENT
    return errno.ELOOP if label.startswith("fdlink_") else errno.EACCES


def check_completed(failures: list, report, stderr: str) -> None:
    if report.body.outcome != Outcome.Completed:
        failures.append(f"the workload must run to Completed; got {report.body.outcome} facts={report.body.observed} stderr={stderr!r}")


def run_to_completion(identity: str, host: HostSockets, argv, deny_network: bool) -> tuple:
    """``run`` of ``spec_for``: the report, the workload's stdout and stderr, and the failures
    so far (it must run to Completed)."""
    report, stdout, stderr = run(identity, spec_for(host, argv, deny_network))
    failures = []
    check_completed(failures, report, stderr)
    return report, stdout, stderr, failures


def attack_host_sockets(identity: str, host: HostSockets, deny_network: bool) -> tuple:
    """Every attempt of ``attack_argv``: the report, how often each host listener was reached,
    what the workload said of each attempt (by label), its labels, and the failures so far
    (the run must complete)."""
    report, stdout, _, failures = run_to_completion(identity, host, attack_argv(host), deny_network)
    labels = [a.split(":", 1)[0] for a in host.attempts() + symlink_attempts(host)]
    return report, host.reached(), said(stdout), labels, failures


@pytest.mark.parametrize("identity", IDENTITIES)
def test_under_deny_all_no_host_unix_socket_is_reachable(identity, host):
    report, reached, reports, labels, failures = attack_host_sockets(identity, host, True)
    for label in labels:
        expected = f"errno {refusal_errno(label)}"
        if reports.get(label) != expected:
            failures.append(f"CHANNEL B: {label} must fail with {expected}; the workload said {reports.get(label)!r}")
    if any(reached.values()):
        failures.append(f"CHANNEL A: the host's listeners were reached: {reached}")
    gate = [n for n in facts_of(report, "launcher_note") if n.startswith("unix_gate")]
    if not any(n.startswith("unix_gate=seccomp_user_notif supervisor=init") for n in gate):
        failures.append(f"the report must attest the unix socket gate; notes={gate}")
    cell = [f for f in report.body.admitted if f.kind.value == "network_deny_all"] if hasattr(report.body, "admitted") else []
    print(f"unix gate [{identity}]: workload={reports} host={reached} gate={gate} {cell}")
    assert not failures, f"unix socket gate failures [{identity}]: {failures}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_control_without_deny_all_every_host_unix_socket_is_reached(identity, host):
    report, reached, reports, labels, failures = attack_host_sockets(identity, host, False)
    # Without deny-all the gate is gone, the view stays: a socket outside every root does not
    # exist in the run (the constructed-world control shows it reachable without bvisor).
    for label in labels:
        want = f"errno {errno.ENOENT}" if outside_every_root(label) else "reached"
        if reports.get(label) != want:
            failures.append(f"CONTROL CHANNEL B: {label} must say {want}; the workload said {reports.get(label)!r}")
    # Each socket in a root once directly, each datagram one once more by sendmsg, and each
    # write-root one twice more: by the fd link and by the symlink.
    expected = {
        f"{place}_{kind}": 0 if place == "outside" else 1 + (kind == "dgram") + 2 * (place == "rw")
        for place in host.PLACES
        for kind in ("stream", "dgram")
    }
    if reached != expected:
        failures.append(f"CONTROL CHANNEL A: the host's listeners must see every attempt: {reached}, expected {expected}")
    if any(n.startswith("unix_gate") for n in facts_of(report, "launcher_note")):
        failures.append("CONTROL: the control run must not be gated")
    assert not failures, f"unix socket gate control failures [{identity}]: {failures}"


OWN_CHECKS = (
    "socketpair", "own_stream", "own_stream_relative", "own_datagram", "own_datagram_symlink",
    "own_stream_from_thread", "own_datagram_sendmsg", "socketpair_passes_an_fd",
)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_under_deny_all_the_runs_own_unix_sockets_keep_working(identity, host):
    report, stdout, stderr, failures = run_to_completion(identity, host, ["-c", OWN], True)
    reports = said(stdout)
    for label in OWN_CHECKS:
        if reports.get(label) != "ok":
            failures.append(f"CHANNEL B: {label} must work inside the run; the workload said {reports.get(label)!r}")
    note, account = gate_account(report)
    # Seven connects or sends on behalf; unresolved ones are glibc asking the (absent) nscd
    # socket, which the gate looks up and finds missing.
    if account.get("refused") != "0" or int(account.get("on_behalf", 0)) < 7:
        failures.append(f"the gate must have acted on behalf seven times and refused nothing: {note!r}")
    assert not failures, f"unix socket gate positive failures [{identity}]: {failures} stderr={stderr!r}"


ROUNDS = 400


def flip_argv(host: HostSockets, kind: str) -> list:
    return ["-c", FLIP, kind, f"/tmp/own-flip-{kind}.sock", host.path("rw", kind), str(ROUNDS)]


@pytest.mark.parametrize("kind", ("stream", "dgram"))
@pytest.mark.parametrize("identity", IDENTITIES)
def test_flipping_the_address_while_sending_never_reaches_the_host(identity, kind, host):
    _report, stdout, stderr, failures = run_to_completion(identity, host, flip_argv(host, kind), True)
    reached, reports = host.reached(), said(stdout)
    results = dict(kv.split(":") for kv in reports.get("flip_results", "").split(",") if kv)
    print(f"unix gate TOCTOU [{identity} {kind}]: calls={results} host={reached}")
    if sum(map(int, results.values())) != ROUNDS:
        failures.append(f"CHANNEL B: the workload must report all {ROUNDS} calls: {reports.get('flip_results')!r}")
    # ENOENT: the gate read the address mid-flip, a torn mix of the two paths naming nothing.
    if set(results) - {"ok", str(errno.EACCES), str(errno.EAGAIN), str(errno.ENOENT)}:
        failures.append(f"CHANNEL B: each call must reach the run's own socket or be refused (EACCES): {results}")
    if reached[f"rw_{kind}"]:
        failures.append(f"CHANNEL A: the host listener got {reached[f'rw_{kind}']} connections or datagrams")
    assert not failures, f"unix socket gate TOCTOU failures [{identity} {kind}]: {failures} stderr={stderr!r}"


@pytest.mark.parametrize("kind", ("stream", "dgram"))
def test_control_without_deny_all_the_flipping_calls_reach_the_host(kind, host):
    _report, stdout, _stderr, failures = run_to_completion("caller", host, flip_argv(host, kind), False)
    if not host.reached()[f"rw_{kind}"]:
        failures.append(f"CONTROL CHANNEL A: some flipped calls must reach the host; the workload said {stdout!r}")
    assert not failures, f"unix socket gate TOCTOU control failures [{kind}]: {failures}"


# vsock is not confined by a network namespace: CID 2 is the hypervisor's host.
VSOCK = r"""
import socket
try:
    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
except OSError as e:
    print("vsock=no socket errno %d" % e.errno)
else:
    s.settimeout(5)
    try:
        s.connect((2, 1234))
        print("vsock=connected")
    except OSError as e:
        print("vsock=errno %d" % (e.errno or 0))
"""


def vsock_said(identity: str, host: HostSockets, deny_network: bool) -> str:
    report, stdout, stderr = run(identity, spec_for(host, ["-c", VSOCK], deny_network))
    assert report.body.outcome == Outcome.Completed, (report.body.observed, stderr)
    return said(stdout).get("vsock", "")


@pytest.mark.parametrize("identity", IDENTITIES)
def test_under_deny_all_a_vsock_connect_is_refused_by_the_gate(identity, host):
    control = vsock_said(identity, host, False)
    if control.startswith("no socket"):
        loud_skip(f"CONTROL: this host has no vsock transport ({control}), so there is nothing to reach")
    confined = vsock_said(identity, host, True)
    assert control != f"errno {errno.EACCES}", f"CONTROL: without deny-all the vsock connect must reach the transport: {control}"
    assert confined == f"errno {errno.EACCES}", f"under deny-all the gate must refuse the vsock connect; control={control} confined={confined}"


# A datagram pair on the run's own temp root with SO_PASSCRED: the sender claims credentials
# with SCM_CREDENTIALS (its own, then another pid, then another uid); the receiver prints
# what arrived: "label=pid,uid,gid" or "label=errno N".
CREDENTIALS = r"""
import os, socket, struct
r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); r.bind("/tmp/own-cred.sock")
r.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
w = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
own = (os.getpid(), os.geteuid(), os.getegid())
for label, claim in (("own", own), ("other_pid", (1,) + own[1:]), ("other_uid", (own[0], own[1] + 4242, own[2]))):
    try:
        w.sendmsg([b"c"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("=iII", *claim))], 0, "/tmp/own-cred.sock")
        _, anc, _, _ = r.recvmsg(1, socket.CMSG_SPACE(12))
        print(label + "=" + ",".join(str(v) for v in struct.unpack("=iII", anc[0][2])), "claimed", claim, flush=True)
    except OSError as e:
        print(label + "=errno %d" % e.errno, flush=True)
"""


def credentials_said(stdout: str) -> dict:
    return {k: v.split(" claimed", 1)[0] for k, v in said(stdout).items()}


@pytest.mark.parametrize("identity", IDENTITIES)
def test_under_deny_all_a_message_through_the_gate_carries_only_the_callers_own_credentials(identity, host):
    report, stdout, stderr, failures = run_to_completion(identity, host, ["-c", CREDENTIALS], True)
    reports = credentials_said(stdout)
    claimed = stdout.split("claimed", 1)[1].split("\n", 1)[0].strip(" ()").replace(" ", "") if "claimed" in stdout else None
    if reports.get("own") != claimed:
        failures.append(f"CHANNEL B: the sender's own credentials must arrive as claimed; said {reports.get('own')!r}, claimed {claimed!r}")
    for label in ("other_pid", "other_uid"):
        if reports.get(label) != f"errno {errno.EPERM}":
            failures.append(f"CHANNEL B: {label} must be refused with EPERM, as the kernel refuses an unprivileged sender; said {reports.get(label)!r}")
    note, account = gate_account(report)
    if account.get("refused") != "2":
        failures.append(f"the init's account must record the two refusals: {note!r}")
    assert not failures, f"gate credential failures [{identity}]: {failures} stdout={stdout!r} stderr={stderr!r}"


def test_control_a_privileged_sender_like_the_init_may_claim_any_credentials():
    """Without the gate's check the init, which holds CAP_SYS_ADMIN and CAP_SETUID in the
    run's namespaces, would pass any claim on: root on the host shows the kernel does."""
    if os.geteuid() != 0:
        loud_skip("the control needs a sender with CAP_SYS_ADMIN and CAP_SETUID")
    directory = shared_host_dir("bvisor-cred-control-", 0o755)
    try:
        script = CREDENTIALS.replace("/tmp/own-cred.sock", os.path.join(directory, "cred.sock"))
        done = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    reports = credentials_said(done.stdout)
    assert reports.get("other_pid", "").startswith("1,") and reports.get("other_uid", "").split(",")[1:2] == ["4242"], (done.stdout, done.stderr)
