"""The cipher interface through which clients pass names, owners and object contents.

Services never see what goes in: they store what comes out. The null cipher passes
everything through; ``tardis_common.crypto.EncryptingCipher`` is the real one.
"""

from __future__ import annotations

import hashlib
from typing import Protocol


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class Cipher(Protocol):
    cipher_id: int
    encrypted: bool

    def encrypt_name(self, name: bytes) -> bytes: ...

    def decrypt_name(self, blob: bytes) -> bytes: ...

    def encrypt_text(self, text: str) -> str:
        """Seal a short text (a tag, a recorded command line) as text; "" stays ""."""
        ...

    def decrypt_text(self, text: str) -> str: ...

    def content_hasher(self) -> Hasher:
        """A hasher whose hex digest is the content address of the plaintext fed to it."""
        ...

    def new_nonce_prefix(self) -> bytes: ...

    def seal(self, plaintext: bytes, nonce: bytes, associated: bytes) -> bytes: ...

    def open(self, sealed: bytes, nonce: bytes, associated: bytes) -> bytes: ...


class NullCipher:
    """No encryption: names pass unchanged, addresses are plain SHA-256 of the plaintext."""

    cipher_id = 0
    encrypted = False

    def encrypt_name(self, name: bytes) -> bytes:
        return name

    def decrypt_name(self, blob: bytes) -> bytes:
        return blob

    def encrypt_text(self, text: str) -> str:
        return text

    def decrypt_text(self, text: str) -> str:
        return text

    def content_hasher(self) -> Hasher:
        return hashlib.sha256()

    def new_nonce_prefix(self) -> bytes:
        return b""

    def seal(self, plaintext: bytes, nonce: bytes, associated: bytes) -> bytes:
        return plaintext

    def open(self, sealed: bytes, nonce: bytes, associated: bytes) -> bytes:
        return sealed
