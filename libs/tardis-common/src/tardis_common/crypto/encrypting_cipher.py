"""The real cipher: AES-256-GCM for object chunks, AES-256-SIV for names and texts, and
HMAC-SHA256 content addresses, all from one KeySet.

- Names: AES-SIV(name_key) with no nonce and no associated data, so equal names give equal
  ciphertext and the catalog can look names up. b"" stays b"" (empty means absent).
- Texts (tags, recorded command lines): "~" + urlsafe base64 (no padding) of AES-SIV(name_key)
  with associated data b"tardis text v1", so a name's ciphertext cannot pass as a text.
- Addresses: hex HMAC-SHA256(address_key, plaintext).
- Chunks: AES-256-GCM(content_key) with the 12-byte nonce objectformat builds from an
  8-byte random per-object prefix and the chunk number.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV

from ..cipher import Hasher
from ..errors import Corrupt
from .keys import KeySet

CIPHER_ID = 1
NONCE_PREFIX_SIZE = 8
NONCE_SIZE = 12
TEXT_MARK = "~"
TEXT_ASSOCIATED = [b"tardis text v1"]
_NAME_ERROR = "a stored name could not be decrypted: wrong keys or a damaged catalog"
_TEXT_ERROR = "a stored text could not be decrypted: wrong keys or a damaged catalog"


class EncryptingCipher:
    cipher_id = CIPHER_ID
    encrypted = True

    def __init__(self, keys: KeySet) -> None:
        self._gcm = AESGCM(keys.content_key)
        self._siv = AESSIV(keys.name_key)
        self._address_key = keys.address_key

    def __repr__(self) -> str:
        return "EncryptingCipher(<keys>)"

    def encrypt_name(self, name: bytes) -> bytes:
        return self._siv.encrypt(name, None) if name else b""

    def decrypt_name(self, blob: bytes) -> bytes:
        if not blob:
            return b""
        try:
            return self._siv.decrypt(blob, None)
        except (InvalidTag, ValueError):
            raise Corrupt(_NAME_ERROR) from None

    def encrypt_text(self, text: str) -> str:
        if not text:
            return ""
        sealed = self._siv.encrypt(text.encode("utf-8"), TEXT_ASSOCIATED)
        return TEXT_MARK + base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")

    def decrypt_text(self, text: str) -> str:
        if not text:
            return ""
        if not text.startswith(TEXT_MARK):
            raise Corrupt(_TEXT_ERROR)
        body = text[len(TEXT_MARK) :]
        try:
            sealed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return self._siv.decrypt(sealed, TEXT_ASSOCIATED).decode("utf-8")
        except (InvalidTag, ValueError, binascii.Error, UnicodeDecodeError):
            raise Corrupt(_TEXT_ERROR) from None

    def content_hasher(self) -> Hasher:
        return hmac.new(self._address_key, digestmod=hashlib.sha256)

    def new_nonce_prefix(self) -> bytes:
        return os.urandom(NONCE_PREFIX_SIZE)

    def seal(self, plaintext: bytes, nonce: bytes, associated: bytes) -> bytes:
        if len(nonce) != NONCE_SIZE:
            raise Corrupt(f"an object nonce must be {NONCE_SIZE} bytes, not {len(nonce)}")
        return self._gcm.encrypt(nonce, plaintext, associated)

    def open(self, sealed: bytes, nonce: bytes, associated: bytes) -> bytes:
        if len(nonce) != NONCE_SIZE:
            raise Corrupt(f"an object nonce must be {NONCE_SIZE} bytes, not {len(nonce)}")
        try:
            return self._gcm.decrypt(nonce, sealed, associated)
        except InvalidTag:
            raise Corrupt("an object chunk failed authentication: wrong keys or a damaged object") from None
