"""rdiff signatures, deltas and patches through librsync (the python-rsync wheel).

The one module that touches librsync. Signatures use the BLAKE2 format (the original's
MD4 sums truncated to 8 bytes allow crafted collisions, CVE-2014-8242).
"""

from __future__ import annotations

import hashlib
import io
from typing import IO, BinaryIO

import pyrsync

from .cipher import Hasher

# Files smaller than this are always sent whole and get no signature.
SIGNATURE_MIN_SIZE = 64 * 1024
# A delta is used only when it is smaller than this share of the file (the seed's 66 %).
DELTA_THRESHOLD_PERCENT = 66


class HashingReader(io.RawIOBase):
    """A readable wrapper that hashes and counts what passes through it."""

    def __init__(self, source: BinaryIO, hasher: Hasher | None = None) -> None:
        self.source = source
        self.hasher: Hasher = hasher if hasher is not None else hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.source.read(len(buffer))
        buffer[: len(data)] = data
        self.hasher.update(data)
        self.count += len(data)
        return len(data)


def signature(source: BinaryIO, size: int, out: BinaryIO) -> None:
    """Write the BLAKE2 rdiff signature of ``source`` (``size`` bytes long) to ``out``."""
    magic, block_len, strong_len = pyrsync.get_signature_args(size, pyrsync.RS_BLAKE2_SIG_MAGIC)
    reader = source if isinstance(source, io.RawIOBase) else HashingReader(source)
    pyrsync.signature(reader, out, strong_len, magic, block_len)


def delta(source: io.RawIOBase, sig: BinaryIO, out: IO[bytes]) -> None:
    """Write the delta turning the signed basis into ``source`` to ``out``."""
    pyrsync.delta(source, sig, out)


def patch(basis: BinaryIO, delta_stream: BinaryIO, out: BinaryIO) -> None:
    """Apply ``delta_stream`` to the seekable ``basis``, writing the result to ``out``."""
    pyrsync.patch(basis, delta_stream, out)
