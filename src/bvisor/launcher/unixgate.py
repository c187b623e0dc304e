"""The unix socket gate: under deny-all, no socket outside the run is reachable, pathname
sockets inside granted roots included, while sockets the run makes for itself keep working.

An empty network namespace does not cover pathname unix sockets (the filesystem is their
namespace), and landlock on this kernel generation does not mediate connecting to one. So
the workload runs under a second seccomp filter (``mechanism.seccomp.gate_program``) whose
connect(2), sendto(2) with a destination, and sendmsg(2) stop in the kernel until the run's
init answers them. The init (pid 1 of the run's pid namespace) is under no filter; it:

- reads the address from the caller's memory (/proc/<pid>/mem), and for a pathname resolves
  it from the caller's cwd with no magic links (openat2 RESOLVE_NO_MAGICLINKS), pinning what
  it names with an O_PATH fd;
- allows only a socket on the run's own temp root: the tmpfs this init mounted for this run,
  told by its st_dev (no host object can be on it, and no hard link crosses filesystems).
  Anything else is refused with EACCES; a run without a temp root has no pathname socket of
  its own, so every pathname is refused;
- performs the call itself, on the caller's socket (pidfd_getfd: the same open file) and
  the pinned inode (its /proc/self/fd/N), and replies with the result. It never lets the
  kernel continue the caller's own call: another thread could change the address or the fd
  table between the check and the use.

Abstract and unnamed unix addresses, AF_UNSPEC and netlink are sent on behalf as copied:
they live in the run's own network namespace. Any other family (vsock, which no network
namespace confines, for one) is refused. sendmsg(2) carries its destination in memory the
filter cannot read, so every one is carried out on behalf from copies: header, data, and
control messages with each passed fd taken from the caller. sendmmsg(2) is refused (EPERM).

The listener exists only once the workload installed the filter, and from then on the
workload's own sendmsg would wait for the listener's holder: it writes the listener's fd
number on a pipe and waits, and the init takes the listener with pidfd_getfd before it lets
the workload go on (``Handoff``).
"""

import _signal as signal  # the C module; "signal" wraps it in enums that cost ~7 ms of start-up
import ctypes
import errno
import os
import select
import stat
import struct

from bvisor.launcher import libc, pidns, seccomp
from bvisor.mechanism import syscalls
from bvisor.mechanism.seccomp import gate_program

# ioctls on the listener (linux/seccomp.h): _IOWR('!', 0, struct seccomp_notif),
# _IOWR('!', 1, struct seccomp_notif_resp), _IOW('!', 2, __u64).
_NOTIF_RECV = 0xC0502100
_NOTIF_SEND = 0xC0182101
_NOTIF_ID_VALID = 0x40082102
# struct seccomp_notif {u64 id; u32 pid; u32 flags; struct seccomp_data {int nr; u32 arch;
# u64 ip; u64 args[6]}}, and struct seccomp_notif_resp {u64 id; s64 val; s32 error; u32 flags}.
_NOTIF = struct.Struct("=QIIiIQ6Q")
_RESP = struct.Struct("=QqiI")

_AF_UNSPEC, _AF_UNIX, _AF_NETLINK = 0, 1, 16
_SOCKADDR_MAX = 128  # sizeof(struct sockaddr_storage): the kernel refuses a longer address
_DATAGRAM_MAX = 4 << 20  # a larger message is refused (EMSGSIZE) rather than copied
_PIDFD_THREAD = os.O_EXCL  # a pidfd on the very thread that called (Linux 6.9+)
_RESOLVE_NO_MAGICLINKS = 0x02
_OPEN_HOW = struct.Struct("=QQQ")  # struct open_how {u64 flags; u64 mode; u64 resolve}


class Refused(OSError):
    """The gate's own refusal, as distinct from the result of a call made on behalf."""

    def __init__(self, what: str, code: int = errno.EACCES):
        super().__init__(code, what)


def install() -> int:
    """Install the gate's filter on this process (no_new_privs already set); the listener fd."""
    return seccomp.install(gate_program(libc.MACHINE), listener=True)


class Handoff:
    """The listener's way from the workload, which alone can make it, to the init."""

    __slots__ = ("ready_r", "ready_w", "ack_r", "ack_w")

    def __init__(self):
        self.ready_r, self.ready_w = os.pipe2(os.O_CLOEXEC)
        self.ack_r, self.ack_w = os.pipe2(os.O_CLOEXEC)

    def workload_fds(self) -> set:
        return {self.ready_w, self.ack_r}

    def hand_over(self) -> None:
        """In the workload: install the filter, say the listener's number, wait until the init
        holds it, then drop this process's own copy. Raises unless the init took it."""
        listener = install()
        try:
            os.write(self.ready_w, b"%d" % listener)
            answer = os.read(self.ack_r, 16)
        finally:
            for fd in (listener, self.ready_w, self.ack_r):
                os.close(fd)
        if answer != b"held":
            raise OSError(errno.EPERM, "the init did not take the unix socket gate's listener")

    def take(self, workload: int):
        """In the init: the listener, taken from ``workload``; None when the workload ended
        before installing it (it reports its own failure). Raises if it cannot be taken.
        The workload waits until ``release``."""
        os.close(self.ready_w)
        os.close(self.ack_r)
        number = os.read(self.ready_r, 32)
        os.close(self.ready_r)
        if not number:
            return None
        pidfd = libc.syscall("pidfd_open", workload, 0)
        try:
            return libc.syscall("pidfd_getfd", pidfd, int(number), 0)
        finally:
            os.close(pidfd)

    def release(self, held: bool) -> None:
        """In the init: let the workload go on (``held``), or fail at the gate."""
        try:
            os.write(self.ack_w, b"held" if held else b"no")
        except BrokenPipeError:  # the workload is gone already
            pass
        finally:
            os.close(self.ack_w)


class Account:
    """What the gate did: calls made on behalf (whatever their result), calls it refused,
    and calls whose address could not be read or resolved (that errno returned)."""

    __slots__ = ("on_behalf", "refused", "unresolved")

    def __init__(self):
        self.on_behalf = self.refused = self.unresolved = 0

    def note(self) -> str:
        return f"unix_gate account on_behalf={self.on_behalf} refused={self.refused} unresolved={self.unresolved}"


def supervise(listener: int, workload: int, own_dev, account: Account):
    """Answer the listener and reap children until ``workload`` ends; its ``(status, rusage)``.
    ``own_dev``: st_dev of the run's temp root, or None without one. SIGCHLD wakes the loop
    (through a wakeup pipe), so orphans are reaped as they end, as ``pidns.reap_until`` does."""
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        ended = pidns.reap_ready(workload)  # after the handler is set: no SIGCHLD is missed
        if ended is not None:
            return ended
        for fd, events in poller.poll():
            if fd == wake_r:
                _drain(wake_r)
            elif events & select.POLLIN:
                answer(listener, own_dev, account)
            else:  # POLLHUP: no task is left under the filter; only reaping remains
                poller.unregister(listener)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 64):
            pass
    except BlockingIOError:
        pass


def answer(listener: int, own_dev, account: Account) -> None:
    """Receive one notification, decide it, reply."""
    buffer = ctypes.create_string_buffer(_NOTIF.size)  # zeroed, as the kernel requires
    try:
        libc.call("ioctl", listener, ctypes.c_ulong(_NOTIF_RECV), buffer)
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # the caller went away (a signal) before it was read
            return
        raise
    nid, pid, _, nr, _, _, *args = _NOTIF.unpack(buffer.raw)
    # SIGCHLD is held off while acting: a blocking call on behalf never sees EINTR.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        val, error = _decide(listener, nid, pid, nr, args, own_dev, account), 0
    except OSError as exc:
        val, error = 0, -(exc.errno or errno.EACCES)
        if isinstance(exc, Refused):
            account.refused += 1
        elif not isinstance(exc, _CallFailed):
            account.unresolved += 1
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    response = ctypes.create_string_buffer(_RESP.pack(nid, val, error, 0), _RESP.size)
    try:
        libc.call("ioctl", listener, ctypes.c_ulong(_NOTIF_SEND), response)
    except OSError as exc:
        if exc.errno != errno.ENOENT:  # ENOENT: the caller is gone; nobody waits for the answer
            raise


class _Caller:
    """Handles on the calling thread, opened and then proven to still be that notification's
    caller (ID_VALID), so a pid reused by another task is never read from or acted for."""

    def __init__(self, listener: int, nid: int, pid: int):
        self.fds = []
        try:
            self.mem = self._open(f"/proc/{pid}/mem", os.O_RDONLY)
            self.status = self._open(f"/proc/{pid}/status", os.O_RDONLY)
            self.cwd = self._open(f"/proc/{pid}/cwd", os.O_PATH | os.O_DIRECTORY)
            self.pidfd = self._pidfd(pid)
            libc.call("ioctl", listener, ctypes.c_ulong(_NOTIF_ID_VALID), ctypes.byref(ctypes.c_uint64(nid)))
        except BaseException:
            self.close()
            raise

    def _open(self, path: str, flags: int) -> int:
        self.fds.append(os.open(path, flags | os.O_CLOEXEC))
        return self.fds[-1]

    def _pidfd(self, pid: int) -> int:
        try:
            fd = libc.syscall("pidfd_open", pid, _PIDFD_THREAD)
        except OSError as exc:  # before Linux 6.9 only a thread-group leader has a pidfd
            if exc.errno != errno.EINVAL:
                raise
            fd = libc.syscall("pidfd_open", pid, 0)
        self.fds.append(fd)
        return fd

    def read(self, address: int, length: int) -> bytes:
        try:
            data = os.pread(self.mem, length, address) if length else b""
        except (OSError, OverflowError):
            data = None
        if data is None or len(data) != length:
            raise OSError(errno.EFAULT, "the caller's buffer is not readable")
        return data

    def address(self, address: int, length: int) -> bytes:
        length &= 0xFFFFFFFF  # socklen_t
        if length > _SOCKADDR_MAX:
            raise OSError(errno.EINVAL, "address longer than sockaddr_storage")
        return self.read(address, length)

    def credentials(self) -> str:
        """The caller's ``/proc/PID/status`` text (its tgid and ids), read now."""
        return os.pread(self.status, 1 << 16, 0).decode(errors="replace")

    def take(self, number: int) -> int:
        """The caller's open file at ``number``, as this process's own fd."""
        fd = libc.syscall("pidfd_getfd", self.pidfd, number, 0)
        self.fds.append(fd)
        return fd

    def pin(self, path: bytes) -> int:
        """What ``path`` names from the caller's cwd, as an O_PATH fd (symlinks followed as
        connect(2) follows them, magic links refused: they would name this init's own)."""
        how = ctypes.create_string_buffer(_OPEN_HOW.pack(os.O_PATH | os.O_CLOEXEC, 0, _RESOLVE_NO_MAGICLINKS), _OPEN_HOW.size)
        fd = libc.syscall("openat2", self.cwd, ctypes.c_char_p(path), how, ctypes.c_size_t(_OPEN_HOW.size))
        self.fds.append(fd)
        return fd

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


def pathname(address: bytes):
    """The path of an AF_UNIX pathname address, else None (another family, an abstract name,
    an unnamed address). Like the kernel, the path ends at the first NUL."""
    if len(address) <= 2 or struct.unpack_from("=H", address)[0] != _AF_UNIX or address[2] == 0:
        return None
    return address[2:].split(b"\0", 1)[0]


def reaches_only_the_run(address: bytes) -> bool:
    """Whether an address that names no path can reach only the run, and so is sent as
    copied: an abstract or unnamed unix address, AF_UNSPEC (a datagram socket's disconnect)
    and netlink live in the run's own network namespace (or the kernel rejects them). Any
    other family is refused: vsock, for one, is not confined by a network namespace."""
    family = struct.unpack_from("=H", address)[0] if len(address) >= 2 else None
    return family in (None, _AF_UNSPEC, _AF_UNIX, _AF_NETLINK)


def _destination(caller: _Caller, address: bytes, own_dev) -> bytes:
    """The address to act on: a pathname becomes its pinned inode, once proven the run's own."""
    path = pathname(address)
    if path is None:
        if not reaches_only_the_run(address):
            raise Refused(f"address family {struct.unpack_from('=H', address)[0]} is not the run's own")
        return address
    pinned = caller.pin(path)
    st = os.fstat(pinned)
    if own_dev is None or st.st_dev != own_dev or not stat.S_ISSOCK(st.st_mode):
        raise Refused(f"{path!r} is not a socket on the run's own temp root")
    return struct.pack("=H", _AF_UNIX) + f"/proc/self/fd/{pinned}".encode() + b"\0"


class _CallFailed(OSError):
    """The call made on behalf failed: its errno is the caller's answer."""


def _on_behalf(account: Account, name: str, *args) -> int:
    account.on_behalf += 1
    try:
        return libc.call(name, *args)
    except OSError as exc:
        raise _CallFailed(exc.errno, exc.strerror) from None


def _decide(listener: int, nid: int, pid: int, nr: int, args: list, own_dev, account: Account) -> int:
    """Carry out the gated call for the caller, or refuse it; the call's return value."""
    numbers = syscalls.NUMBERS[libc.MACHINE]
    number = ctypes.c_int(args[0] & 0xFFFFFFFF).value  # the caller's socket fd
    caller = _Caller(listener, nid, pid)
    try:
        if nr == numbers["connect"]:
            destination = _destination(caller, caller.address(args[1], args[2]), own_dev)
            return _on_behalf(account, "connect", caller.take(number), destination, len(destination))
        if nr == numbers["sendto"]:
            destination = _destination(caller, caller.address(args[4], args[5]), own_dev)
            payload = caller.read(args[1], _bounded(args[2]))
            sock, flags = caller.take(number), args[3] & 0xFFFFFFFF
            return _on_behalf(account, "sendto", sock, payload, ctypes.c_size_t(len(payload)), flags, destination, len(destination))
        if nr == numbers["sendmsg"]:
            return _sendmsg(caller, number, args[1], args[2] & 0xFFFFFFFF, own_dev, account)
        raise OSError(errno.ENOSYS, f"syscall {nr} is not gated")  # the filter sends nothing else here
    finally:
        caller.close()


def _bounded(length: int) -> int:
    if length > _DATAGRAM_MAX:
        raise OSError(errno.EMSGSIZE, f"a message sent through the gate is at most {_DATAGRAM_MAX} bytes")
    return length


# struct msghdr {void *name; socklen_t namelen; struct iovec *iov; size_t iovlen;
# void *control; size_t controllen; int flags}, struct iovec {void *base; size_t len},
# struct cmsghdr {size_t len; int level; int type}.
_MSGHDR = struct.Struct("=QI4xQQQQi4x")
_IOVEC = struct.Struct("=QQ")
_CMSG = struct.Struct("=Qii")
_IOV_MAX = 1024  # UIO_MAXIOV: the kernel refuses more
_CONTROL_MAX = 64 << 10
_SOL_SOCKET = _SCM_RIGHTS = 1
_SCM_CREDENTIALS = 2
_UCRED = struct.Struct("=iII")  # struct ucred {pid_t pid; uid_t uid; gid_t gid}


def _sendmsg(caller: _Caller, number: int, msg: int, flags: int, own_dev, account: Account) -> int:
    """sendmsg(2) on behalf, from copies: the header, the destination (pinned like any
    other), the data, and the control messages with every passed fd taken from the caller
    (so the receiver gets the caller's own open files)."""
    name, namelen, iov, iovlen, control, controllen, _ = _MSGHDR.unpack(caller.read(msg, _MSGHDR.size))
    destination = _destination(caller, caller.address(name, namelen), own_dev) if name and namelen else b""
    if iovlen > _IOV_MAX:
        raise OSError(errno.EMSGSIZE, "more iovecs than UIO_MAXIOV")
    vectors = list(_IOVEC.iter_unpack(caller.read(iov, iovlen * _IOVEC.size)))
    _bounded(sum(length for _, length in vectors))
    payload = b"".join(caller.read(base, length) for base, length in vectors)
    if controllen > _CONTROL_MAX:
        raise OSError(errno.ENOBUFS, "control data larger than the gate carries")
    ancillary = _control_on_behalf(caller, caller.read(control, controllen)) if control and controllen else b""
    sock = caller.take(number)
    buffers = [ctypes.create_string_buffer(part, len(part)) for part in (destination, payload, ancillary)]
    name_buf, data_buf, control_buf = buffers
    iov_buf = ctypes.create_string_buffer(_IOVEC.pack(ctypes.addressof(data_buf), len(payload)), _IOVEC.size)
    header = _MSGHDR.pack(
        ctypes.addressof(name_buf) if destination else 0, len(destination),
        ctypes.addressof(iov_buf), 1,
        ctypes.addressof(control_buf) if ancillary else 0, len(ancillary), 0,
    )
    return _on_behalf(account, "sendmsg", sock, ctypes.create_string_buffer(header, len(header)), flags)


def _control_on_behalf(caller: _Caller, control: bytes) -> bytes:
    """The control messages as given, each SCM_RIGHTS fd number replaced by this process's
    copy of the caller's open file, each SCM_CREDENTIALS checked as the kernel checks an
    unprivileged sender's (the init's own privilege would let any be sent); malformed headers
    are left for the kernel to refuse."""
    out, offset = bytearray(control), 0
    while offset + _CMSG.size <= len(control):
        length, level, kind = _CMSG.unpack_from(control, offset)
        if length < _CMSG.size or offset + length > len(control):
            break
        if level == _SOL_SOCKET and kind == _SCM_RIGHTS:
            count = (length - _CMSG.size) // 4
            numbers = struct.unpack_from(f"={count}i", control, offset + _CMSG.size)
            struct.pack_into(f"={count}i", out, offset + _CMSG.size, *(caller.take(n) for n in numbers))
        if level == _SOL_SOCKET and kind == _SCM_CREDENTIALS and length >= _CMSG.size + _UCRED.size:
            if not claimable(_UCRED.unpack_from(control, offset + _CMSG.size), caller.credentials()):
                raise Refused("SCM_CREDENTIALS names another process or id than the caller's own", errno.EPERM)
        offset += (length + 7) & ~7
    return bytes(out)


def claimable(ucred: tuple, status: str) -> bool:
    """Whether a process with this ``/proc/PID/status`` may send ``(pid, uid, gid)`` as its
    credentials without privilege: its own tgid, one of its real, effective or saved uids and
    gids (the workload runs with no capabilities) (pure)."""
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    try:
        tgid = int(fields["Tgid"])
        uids, gids = ([int(v) for v in fields[name].split()[:3]] for name in ("Uid", "Gid"))
    except (KeyError, ValueError):
        return False
    pid, uid, gid = ucred
    return pid == tgid and uid in uids and gid in gids


_AF_UNIX = 1
_SOCK_STREAM_CLOEXEC = 1 | os.O_CLOEXEC  # SOCK_STREAM | SOCK_CLOEXEC


def prove() -> None:
    """In a throwaway init (pid 1 of its own namespaces, as a run's): a child installs the
    gate and hands its listener over; its connect to a path that is no socket of the run must
    come back refused by this supervisor. Raises unless it did."""
    handoff = Handoff()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            seccomp.no_new_privs()
            handoff.hand_over()
            # Raw calls, not the socket module: importing it costs ~8 ms of every probe.
            probe = libc.syscall("socket", _AF_UNIX, _SOCK_STREAM_CLOEXEC, 0)
            address = struct.pack("=H", _AF_UNIX) + b"/\0"
            try:
                libc.syscall("connect", probe, ctypes.c_char_p(address), len(address))
            except OSError as exc:
                code = 2 if exc.errno == errno.EACCES else 3
        finally:
            os._exit(code)
    listener = handoff.take(child)
    handoff.release(listener is not None)
    if listener is None:
        os.waitpid(child, 0)
        raise OSError(errno.EPERM, "the probe child could not install the gate's filter")
    account = Account()
    try:
        status, _ = supervise(listener, child, None, account)
    finally:
        os.close(listener)
    if os.waitstatus_to_exitcode(status) != 2 or account.refused != 1:
        raise OSError(errno.EPERM, f"the gate did not refuse a host path (status={status}, {account.note()})")
