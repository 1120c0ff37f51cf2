"""The server's secret key, the subkeys derived from it, and sealing small blobs with them.

Every worker and replica that shares the key file can open what any of them sealed: login
handshakes and session tokens carry their state inside, so no server keeps per-login state.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tardis_common import errors

KEY_BYTES = 32
NONCE_BYTES = 12

log = logging.getLogger(__name__)


def load_or_create_server_key(path: str) -> bytes:
    """Read the 32-byte key at ``path``, creating it (mode 0600, atomically) on first use.

    Creation writes a temporary file and hard-links it into place, so two processes starting
    together agree on one key instead of overwriting each other.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".server-key-", dir=directory)  # mkstemp uses mode 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(os.urandom(KEY_BYTES))
                out.flush()
                os.fsync(out.fileno())
            _link_into_place(tmp, path)
        finally:
            os.unlink(tmp)
    except OSError as exc:
        raise errors.ConfigError(f"cannot create server key {path}: {exc.strerror or exc}") from None
    try:
        return _read_key(path)
    except FileNotFoundError:
        raise errors.ConfigError(f"server key {path} vanished while it was being created") from None


def _link_into_place(tmp: str, path: str) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process won the race: use its key
    except OSError:
        # No hard links here: exclusive create still never overwrites a key another process made.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        with open(tmp, "rb") as src, os.fdopen(fd, "wb") as out:
            out.write(src.read())
            out.flush()
            os.fsync(out.fileno())


def _read_key(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read(KEY_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise errors.ConfigError(f"server key {path} is unreadable: {exc.strerror or exc}") from None
    if len(data) != KEY_BYTES:
        size = f"{len(data)} bytes" if len(data) <= KEY_BYTES else "more than 32 bytes"
        raise errors.ConfigError(f"server key {path} has {size}; expected exactly {KEY_BYTES}")
    if mode & 0o077:
        log.warning("server key %s is readable by other users (mode %o); chmod 600 it", path, mode & 0o777)
    return data


def derive_subkey(server_key: bytes, label: bytes) -> bytes:
    """A 32-byte key for one purpose, named by ``label`` (HKDF-SHA256)."""
    if len(server_key) != KEY_BYTES:
        raise errors.ConfigError(f"server key has {len(server_key)} bytes; expected {KEY_BYTES}")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=label).derive(server_key)


def seal(key: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """AES-256-GCM: random nonce followed by ciphertext and tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, aad: bytes, blob: bytes) -> bytes | None:
    """The plaintext of a :func:`seal` blob, or None if it was made with another key or altered."""
    if len(blob) < NONCE_BYTES + 16:
        return None
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        return None


def pack_fields(*fields: bytes) -> bytes:
    """Length-prefixed concatenation, undone by :func:`unpack_fields`."""
    return b"".join(struct.pack(">I", len(f)) + f for f in fields)


def unpack_fields(data: bytes, count: int | None) -> list[bytes] | None:
    """The fields of :func:`pack_fields` output (exactly ``count`` unless None), or None if malformed."""
    fields: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            return None
        (size,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if pos + size > len(data):
            return None
        fields.append(data[pos : pos + size])
        pos += size
    return fields if count is None or len(fields) == count else None
