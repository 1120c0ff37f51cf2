"""Client-side cryptography: key derivation, key wrapping, key files and the encrypting cipher.

Pure functions and small classes only; nothing here talks to a service.
"""

from __future__ import annotations

from .encrypting_cipher import EncryptingCipher
from .kdf import DerivedSecrets, KdfParams, check_params, derive, new_params
from .keyfile import parse_printable_backup, printable_backup, read_key_file, write_key_file
from .keys import KeySet, unwrap_keys, wrap_keys

__all__ = [
    "DerivedSecrets",
    "EncryptingCipher",
    "KdfParams",
    "KeySet",
    "check_params",
    "derive",
    "new_params",
    "parse_printable_backup",
    "printable_backup",
    "read_key_file",
    "unwrap_keys",
    "wrap_keys",
    "write_key_file",
]
