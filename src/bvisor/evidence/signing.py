"""Report signatures: the host's Ed25519 key, and the check a reader runs.

The seal (``body_hash``) shows a report is intact; a signature shows which host sealed
it. ``cryptography`` is imported only when a key is loaded or a signature is checked, so
importing this module (or ``bvisor``) never pays for it.
"""

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from bvisor.contract.report import BoundaryReport, ReportSignature, signature_message, verify_report

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

KEY_FILE = "signing-key.pem"
# The evidence store's head: (row count, chain hash of the last row), signed on every append.
HEAD_DOMAIN = b"bvisor.evidence.head.v1\0"
# A pruned store's checkpoint: its own tag, so that no head signature (one was made for every
# row count the store ever had) can stand in for a checkpoint that moves the cut.
CHECKPOINT_DOMAIN = b"bvisor.evidence.checkpoint.v1\0"


class SigningError(Exception):
    """A signing key that cannot be created, read or trusted, or a report that must not
    be signed."""


class SignatureVerdict:
    """What ``verify_signed`` concluded about a report and an expected key."""

    class Valid(msgspec.Struct, frozen=True):
        reason: str

    class Unsigned(msgspec.Struct, frozen=True):
        reason: str

    class WrongKey(msgspec.Struct, frozen=True):
        """Signed, but by another key than the one the reader trusts."""

        reason: str

    class BadSignature(msgspec.Struct, frozen=True):
        """The seal does not hold, or the signature does not verify under the key."""

        reason: str

    Any = Valid | Unsigned | WrongKey | BadSignature


class HostSigningKey:
    """The host's report-signing key: one per bvisor home, created on first use."""

    __slots__ = ("_key",)

    def __init__(self, key: "Ed25519PrivateKey"):
        self._key = key

    @classmethod
    def load(cls, home: Path) -> "HostSigningKey":
        """The key at ``home/signing-key.pem``; ``FileNotFoundError`` when there is none.

        Raises ``SigningError`` for a key file that group or others can access, that this
        user does not own, or that does not hold an unencrypted Ed25519 private key.
        """
        return cls(_read_private_key(Path(home) / KEY_FILE))

    @classmethod
    def load_or_create(cls, home: Path) -> "HostSigningKey":
        """The key at ``home/signing-key.pem``, created (mode 0600, ``home`` 0700) if absent."""
        path = Path(home) / KEY_FILE
        try:
            return cls.load(home)
        except FileNotFoundError:
            pass
        _publish_new_key(path)
        # Read back what was published: when another process won the race, its key is ours.
        return cls(_read_private_key(path))

    def public_key_pem(self) -> bytes:
        serialization = _serialization()
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_key_hex(self) -> str:
        return _raw_hex(self._key.public_key())

    def sign(self, report: BoundaryReport) -> BoundaryReport:
        """``report`` with this key's signature (replacing any it had)."""
        if not verify_report(report):
            raise SigningError("the report's body_hash does not match its body: refusing to vouch for it")
        value = self._key.sign(signature_message(report.body_hash))
        signature = ReportSignature(alg="ed25519", public_key=self.public_key_hex(), value=value.hex())
        return msgspec.structs.replace(report, signature=signature)

    def sign_head(self, seq: int, chain: bytes) -> str:
        """The hex signature over an evidence store's head (``head_message``)."""
        return self._key.sign(head_message(seq, chain)).hex()

    def sign_checkpoint(self, seq: int, chain: bytes, pruned_unix_ns: int) -> str:
        """The hex signature over a pruned store's checkpoint (``checkpoint_message``)."""
        return self._key.sign(checkpoint_message(seq, chain, pruned_unix_ns)).hex()


def head_message(seq: int, chain: bytes) -> bytes:
    """What a store's head signature covers: how many rows, and the last row's chain hash."""
    return HEAD_DOMAIN + seq.to_bytes(8, "big") + chain


def checkpoint_message(seq: int, chain: bytes, pruned_unix_ns: int) -> bytes:
    """What a pruned store's checkpoint signature covers: the last pruned seq (every row up
    to it is gone), that row's chain hash (the next row chains from it), and when."""
    return CHECKPOINT_DOMAIN + seq.to_bytes(8, "big") + chain + pruned_unix_ns.to_bytes(8, "big")


def store_signature_holds(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    """Whether ``signature_hex`` is the key's signature over ``message`` (a ``head_message``
    or a ``checkpoint_message``); a malformed key or signature (tampering) does not hold."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def public_key_hex(public_key_pem: bytes) -> str:
    """The raw hex of an Ed25519 public key in PEM; ``SigningError`` when it is not one."""
    return _raw_hex(_load_public_key(public_key_pem))


def verify_signed(report: BoundaryReport, public_key_pem: bytes) -> SignatureVerdict.Any:
    """Check the seal, then that the signature is by the key in ``public_key_pem``.

    The seal comes first: a signature binds ``body_hash`` only, so it says nothing about a
    body that no longer hashes to it. Raises ``SigningError`` only when ``public_key_pem``
    is not an Ed25519 public key — the caller's mistake, not a property of the report.
    """
    from cryptography.exceptions import InvalidSignature

    expected = _load_public_key(public_key_pem)
    if not verify_report(report):
        return SignatureVerdict.BadSignature("body_hash does not match the report body")
    signature = report.signature
    if signature is None:
        return SignatureVerdict.Unsigned("the report carries no signature")
    expected_hex = _raw_hex(expected)
    if signature.public_key != expected_hex:
        return SignatureVerdict.WrongKey(f"signed by key {signature.public_key}, not {expected_hex}")
    try:
        expected.verify(bytes.fromhex(signature.value), signature_message(report.body_hash))
    except (InvalidSignature, ValueError):
        return SignatureVerdict.BadSignature(f"the signature does not verify under key {expected_hex}")
    return SignatureVerdict.Valid(f"signed by key {expected_hex}")


def _serialization():
    from cryptography.hazmat.primitives import serialization

    return serialization


def _raw_hex(public_key: "Ed25519PublicKey") -> str:
    serialization = _serialization()
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _load_public_key(pem: bytes) -> "Ed25519PublicKey":
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = _serialization().load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise SigningError(f"not a PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"not an Ed25519 public key: {type(key).__name__}")
    return key


def _read_private_key(path: Path) -> "Ed25519PrivateKey":
    """Raises ``FileNotFoundError`` when there is no key yet, ``SigningError`` when the
    file is there but is not a private key that only this user can read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise SigningError(f"cannot open {path}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        _check_private(path, os.fstat(file.fileno()))
        data = file.read()
    return _parse_private_key(path, data)


def _check_private(path: Path, status: os.stat_result) -> None:
    # The same rule ssh applies: a key others could have read may have been copied.
    if not stat.S_ISREG(status.st_mode):
        raise SigningError(f"{path} is not a regular file")
    if status.st_uid != os.geteuid():
        raise SigningError(f"{path} is owned by uid {status.st_uid}, not by this user")
    if status.st_mode & 0o077:
        mode = stat.S_IMODE(status.st_mode)
        raise SigningError(f"{path} is accessible by group or others (mode {mode:04o}); make it 0600")


def _parse_private_key(path: Path, data: bytes) -> "Ed25519PrivateKey":
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = _serialization().load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise SigningError(f"{path} does not hold an unencrypted PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def _publish_new_key(path: Path) -> None:
    """Put a fresh key at ``path`` unless one appears there first.

    The key is written whole to a private temporary file, then hard-linked into place: a
    reader never sees half a key, and unlike a rename, a link never replaces a key that
    another process published meanwhile (reports may already be signed with it).
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    serialization = _serialization()
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(pem)
                file.flush()
                os.fsync(file.fileno())
            os.link(temporary, path)
            _fsync_directory(path.parent)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as error:
        raise SigningError(f"cannot create a signing key at {path}: {error.strerror or error}") from None


def _fsync_directory(directory: Path) -> None:
    # The key must outlive a crash: reports signed with it are only as checkable as it is.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
