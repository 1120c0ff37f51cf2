"""A client's random keys and their wrapping under the key-encryption key.

Wrapped blob (129 bytes): "TDKW" | version u8 (1) | nonce (12) | AES-256-GCM(kek, nonce,
content_key || name_key, associated data = b"tardis keys v1\\0" + client name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import Corrupt, InvalidArgument, Unauthenticated

CONTENT_KEY_SIZE = 32
NAME_KEY_SIZE = 64
WRAP_MAGIC = b"TDKW"
WRAP_VERSION = 1
WRAP_NONCE_SIZE = 12
WRAP_ASSOCIATED = b"tardis keys v1\0"
WRAPPED_SIZE = len(WRAP_MAGIC) + 1 + WRAP_NONCE_SIZE + CONTENT_KEY_SIZE + NAME_KEY_SIZE + 16
ADDRESS_INFO = b"tardis address v1"
MANIFEST_INFO = b"tardis manifest v1"


@dataclass(frozen=True)
class KeySet:
    """The content key (AES-256-GCM of objects, and the root of the address and manifest keys)
    and the name key (AES-256-SIV of names and texts)."""

    content_key: bytes = field(repr=False)
    name_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.content_key) != CONTENT_KEY_SIZE or len(self.name_key) != NAME_KEY_SIZE:
            raise InvalidArgument(
                f"a key set needs a {CONTENT_KEY_SIZE}-byte content key and a {NAME_KEY_SIZE}-byte name key"
            )

    @classmethod
    def generate(cls) -> KeySet:
        return cls(os.urandom(CONTENT_KEY_SIZE), os.urandom(NAME_KEY_SIZE))

    def _derive(self, info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(self.content_key)

    @cached_property
    def address_key(self) -> bytes:
        """Keys the HMAC-SHA256 that gives an object its content address."""
        return self._derive(ADDRESS_INFO)

    @cached_property
    def manifest_key(self) -> bytes:
        """Keys the MAC tree of a completed set's manifest."""
        return self._derive(MANIFEST_INFO)


def _associated(client: str) -> bytes:
    return WRAP_ASSOCIATED + client.encode("utf-8")


def _check_kek(kek: bytes) -> None:
    if len(kek) != 32:
        raise InvalidArgument("a key-encryption key must be 32 bytes")


def _wrap_with_nonce(keys: KeySet, kek: bytes, client: str, nonce: bytes) -> bytes:
    """``wrap_keys`` with a given nonce: for known-answer tests only (never reuse a nonce)."""
    _check_kek(kek)
    sealed = AESGCM(kek).encrypt(nonce, keys.content_key + keys.name_key, _associated(client))
    return WRAP_MAGIC + bytes([WRAP_VERSION]) + nonce + sealed


def wrap_keys(keys: KeySet, kek: bytes, client: str) -> bytes:
    return _wrap_with_nonce(keys, kek, client, os.urandom(WRAP_NONCE_SIZE))


def unwrap_keys(blob: bytes, kek: bytes, client: str) -> KeySet:
    """The keys in ``blob``; a wrong kek or another client's blob is a wrong password."""
    _check_kek(kek)
    if len(blob) < len(WRAP_MAGIC) + 1 or blob[: len(WRAP_MAGIC)] != WRAP_MAGIC:
        raise Corrupt(f"the wrapped keys of client {client} are damaged (bad magic)")
    if blob[len(WRAP_MAGIC)] != WRAP_VERSION:
        raise Corrupt(f"the wrapped keys of client {client} have unsupported version {blob[len(WRAP_MAGIC)]}")
    if len(blob) != WRAPPED_SIZE:
        raise Corrupt(f"the wrapped keys of client {client} are damaged ({len(blob)} bytes, expected {WRAPPED_SIZE})")
    start = len(WRAP_MAGIC) + 1
    nonce = blob[start : start + WRAP_NONCE_SIZE]
    try:
        plain = AESGCM(kek).decrypt(nonce, blob[start + WRAP_NONCE_SIZE :], _associated(client))
    except InvalidTag:
        raise Unauthenticated(f"wrong password for client {client}") from None
    return KeySet(plain[:CONTENT_KEY_SIZE], plain[CONTENT_KEY_SIZE:])
