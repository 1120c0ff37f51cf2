"""rdiff signatures, deltas and patches through librsync.

The one module that touches librsync. Two backends give byte-identical results: the
python-rsync wheel (``pyrsync``, librsync built in) when it is importable, else a ctypes
binding to the system's librsync2 (tardis_common.rsync_ctypes; armv7 has no wheel).
``TARDIS_RSYNC_BACKEND=pyrsync|ctypes`` forces one (tests, or to compare them).
Signatures use the BLAKE2 format (the original's MD4 sums truncated to 8 bytes allow
crafted collisions, CVE-2014-8242) with librsync's recommended block and strong-sum lengths.
"""

from __future__ import annotations

import functools
import importlib
import io
import os
import threading
from types import ModuleType
from typing import IO, BinaryIO

from .cipher import Hasher
from .errors import ConfigError

# Files smaller than this are always sent whole and get no signature.
SIGNATURE_MIN_SIZE = 64 * 1024
# A delta is used only when it is smaller than this share of the file (the seed's 66 %).
DELTA_THRESHOLD_PERCENT = 66
BACKENDS = ("pyrsync", "ctypes")
BLAKE2_SIG_MAGIC = 0x72730137  # RS_BLAKE2_SIG_MAGIC


def backend_name() -> str:
    """The backend in use: "pyrsync" or "ctypes"."""
    return _backend()[0]


@functools.cache
def _backend() -> tuple[str, ModuleType]:
    wanted = os.environ.get("TARDIS_RSYNC_BACKEND", "").strip().lower()
    if wanted not in ("", *BACKENDS):
        raise ConfigError(f"TARDIS_RSYNC_BACKEND={wanted!r}: use one of {', '.join(BACKENDS)}")
    if wanted in ("", "pyrsync"):
        try:
            return "pyrsync", importlib.import_module("pyrsync")
        except ImportError:
            if wanted == "pyrsync":
                raise ConfigError("TARDIS_RSYNC_BACKEND=pyrsync but python-rsync is not installed") from None
    from . import rsync_ctypes

    reason = rsync_ctypes.unavailable_reason()
    if reason is not None:
        raise ConfigError(reason)
    return "ctypes", rsync_ctypes


def signature_args(size: int) -> tuple[int, int, int]:
    """(magic, block length, strong-sum length) of the signature of a ``size``-byte file."""
    name, impl = _backend()
    if name == "pyrsync":
        magic, block_len, strong_len = impl.get_signature_args(size, BLAKE2_SIG_MAGIC)
    else:
        magic, block_len, strong_len = impl.signature_args(size, BLAKE2_SIG_MAGIC)
    return int(magic), int(block_len), int(strong_len)


def signature(source: BinaryIO, size: int, out: BinaryIO) -> None:
    """Write the BLAKE2 rdiff signature of ``source`` (``size`` bytes long) to ``out``."""
    magic, block_len, strong_len = signature_args(size)
    _backend()[1].signature(source, out, strong_len, magic, block_len)


def delta(source: io.RawIOBase, sig: BinaryIO, out: IO[bytes]) -> None:
    """Write the delta turning the signed basis into ``source`` to ``out``."""
    _backend()[1].delta(source, sig, out)


def patch(basis: BinaryIO, delta_stream: BinaryIO, out: BinaryIO) -> None:
    """Apply ``delta_stream`` to the seekable ``basis``, writing the result to ``out``."""
    _backend()[1].patch(basis, delta_stream, out)


class SignatureTee:
    """Computes the signature of bytes as they are read elsewhere, on a thread of its own.

    The reader of a file writes every block it reads with ``write``; ``finish`` returns the
    signature of exactly those bytes, so the signature always matches the stored content
    even if the file changes afterwards.
    """

    def __init__(self, size: int) -> None:
        read_fd, write_fd = os.pipe()
        self._writer = os.fdopen(write_fd, "wb", buffering=0)
        self._reader = os.fdopen(read_fd, "rb", buffering=1024 * 1024)
        self._out = io.BytesIO()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(size,), name="signature", daemon=True)
        self._thread.start()

    def _run(self, size: int) -> None:
        try:
            signature(self._reader, size, self._out)
        except BaseException as exc:
            self._error = exc
        finally:
            self._reader.close()

    def write(self, data: bytes) -> None:
        if data:
            try:
                self._writer.write(data)
            except BrokenPipeError:
                pass  # the signature thread failed; finish() reports it

    def finish(self) -> bytes:
        self._writer.close()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._out.getvalue()

    def abandon(self) -> None:
        self._writer.close()
        self._thread.join()


class TeeReader(io.RawIOBase):
    """A readable wrapper copying what passes through to a SignatureTee (and a hasher)."""

    def __init__(self, source: BinaryIO, tee: SignatureTee | None, hasher: Hasher | None = None) -> None:
        self.source = source
        self.tee = tee
        self.hasher = hasher
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.source.read(len(buffer))
        buffer[: len(data)] = data
        if self.hasher is not None:
            self.hasher.update(data)
        if self.tee is not None:
            self.tee.write(data)
        self.count += len(data)
        return len(data)
