"""Key derivation: a password and per-client scrypt parameters give a key-encryption key
and a separate authentication secret.

    master      = scrypt(password, salt, n, r, p) -> 32 bytes
    kek         = HKDF-SHA256(master, info=b"tardis kek v1")   wraps the client's keys
    auth_secret = HKDF-SHA256(master, info=b"tardis auth v1")  what the SRP verifier is made from

The client enforces a minimum cost (``MIN_N``, r >= 8, p >= 1) and a maximum (so a lying
server can neither weaken the KDF nor exhaust the client's memory).

TEST-ONLY setting: with the environment variable ``TARDIS_TEST_KDF=1``, ``new_params()`` uses
n = 2**10 and the enforced minimum drops to n = 2**10, so tests run fast. The stored
parameters always record the n actually used, so a repository created this way stays weak
and is refused by any client run without the setting. Never set it outside tests.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import Corrupt, PermissionDenied

ALGORITHM = "scrypt"
DEFAULT_N = 2**17
DEFAULT_R = 8
DEFAULT_P = 1
MIN_N = 2**15
MIN_R = 8
MIN_P = 1
MAX_N = 2**22
MAX_R = 32
MAX_P = 16
MAX_COST = 2**30  # bytes of scrypt memory (128 * n * r) a client agrees to spend
TEST_N = 2**10
TEST_ENV = "TARDIS_TEST_KDF"
SALT_SIZE = 16
SECRET_SIZE = 32
KEK_INFO = b"tardis kek v1"
AUTH_INFO = b"tardis auth v1"


def test_mode() -> bool:
    """True when the TEST-ONLY cheap KDF setting is on (read at each call)."""
    return os.environ.get(TEST_ENV) == "1"


def minimum_n() -> int:
    return TEST_N if test_mode() else MIN_N


@dataclass(frozen=True)
class KdfParams:
    algorithm: str
    n: int
    r: int
    p: int
    salt: bytes

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode("ascii")

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "n": self.n,
            "r": self.r,
            "p": self.p,
            "salt": base64.b64encode(self.salt).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: bytes) -> KdfParams:
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise Corrupt("key-derivation parameters are malformed: not JSON") from None
        return cls.from_dict(value)

    @classmethod
    def from_dict(cls, value: object) -> KdfParams:
        if not isinstance(value, dict):
            raise Corrupt("key-derivation parameters are malformed: not a JSON object")
        algorithm = value.get("algorithm")
        if not isinstance(algorithm, str):
            raise Corrupt("key-derivation parameters are malformed: no algorithm")
        numbers = {}
        for key in ("n", "r", "p"):
            number = value.get(key)
            if not isinstance(number, int) or isinstance(number, bool) or number < 1:
                raise Corrupt(f"key-derivation parameters are malformed: {key} is not a positive integer")
            numbers[key] = number
        salt_text = value.get("salt")
        try:
            if not isinstance(salt_text, str):
                raise ValueError
            salt = base64.b64decode(salt_text, validate=True)
        except (ValueError, binascii.Error):
            raise Corrupt("key-derivation parameters are malformed: salt is not base64") from None
        if not salt:
            raise Corrupt("key-derivation parameters are malformed: empty salt")
        return cls(algorithm, numbers["n"], numbers["r"], numbers["p"], salt)


def new_params() -> KdfParams:
    """Fresh parameters for a new client: the default cost (or the test cost) and a random salt."""
    n = TEST_N if test_mode() else DEFAULT_N
    return KdfParams(ALGORITHM, n, DEFAULT_R, DEFAULT_P, os.urandom(SALT_SIZE))


def check_params(params: KdfParams) -> None:
    """Refuse parameters below the minimum (or absurdly expensive ones) before using them."""
    if (
        params.algorithm != ALGORITHM
        or params.n < minimum_n()
        or params.r < MIN_R
        or params.p < MIN_P
        or len(params.salt) < SALT_SIZE
    ):
        raise PermissionDenied(
            f"the server offered key-derivation parameters below the minimum "
            f"({params.algorithm} n={params.n}, r={params.r}, p={params.p}); refusing to use them"
        )
    if (
        params.n > MAX_N
        or params.n & (params.n - 1)
        or params.r > MAX_R
        or params.p > MAX_P
        or 128 * params.n * params.r > MAX_COST
    ):
        raise PermissionDenied(
            f"the server offered key-derivation parameters above the maximum "
            f"({params.algorithm} n={params.n}, r={params.r}, p={params.p}); refusing to use them"
        )


@dataclass(frozen=True)
class DerivedSecrets:
    kek: bytes = field(repr=False)
    auth_secret: bytes = field(repr=False)


def _expand(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=SECRET_SIZE, salt=None, info=info).derive(master)


def derive(password: bytes, params: KdfParams) -> DerivedSecrets:
    """The kek and auth secret of ``password`` under ``params`` (checked first)."""
    check_params(params)
    master = Scrypt(salt=params.salt, length=SECRET_SIZE, n=params.n, r=params.r, p=params.p).derive(password)
    return DerivedSecrets(kek=_expand(master, KEK_INFO), auth_secret=_expand(master, AUTH_INFO))
