"""The object file format: a header, independently compressed and sealed chunks, an index.

Byte layout (all integers big-endian; see docs/storage-format.md):

    header  = "TDOB" | version u8 | kind u8 | codec u8 | cipher u8 | chunk_size u32
              | nonce_prefix_len u8 | nonce_prefix | basis_len u8 | basis
    chunk   = sealed_len u32 (< 0xFFFFFFFF) | seal(flag u8 | body)   flag 1 = body compressed
    end     = 0xFFFFFFFF
    index   = per chunk: record_offset u64 | plaintext_len u32
    trailer = chunk_count u32 | plaintext_size u64 | index_offset u64 | "TDIX"

Chunk i is sealed with nonce = nonce_prefix | i (u32) and associated data =
header | i (u32) | last (u8), so chunks cannot be swapped, reordered or truncated unnoticed
once a real cipher is in use. Objects stream in bounded memory and allow range reads.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import BinaryIO

from .cipher import Cipher
from .codecs import Codec, codec_by_id
from .errors import Corrupt

MAGIC = b"TDOB"
INDEX_MAGIC = b"TDIX"
FORMAT_VERSION = 1
KIND_FULL = 0
KIND_DELTA = 1
CHUNK_SIZE = 1024 * 1024
END_MARK = 0xFFFFFFFF
_U32 = struct.Struct(">I")
_INDEX_ENTRY = struct.Struct(">QI")
_TRAILER = struct.Struct(">IQQ4s")
_FIXED_HEADER = struct.Struct(">4sBBBBI")


@dataclass(frozen=True)
class Header:
    kind: int
    codec_id: int
    cipher_id: int
    chunk_size: int
    nonce_prefix: bytes
    basis: bytes

    def encode(self) -> bytes:
        return (
            _FIXED_HEADER.pack(MAGIC, FORMAT_VERSION, self.kind, self.codec_id, self.cipher_id, self.chunk_size)
            + bytes([len(self.nonce_prefix)])
            + self.nonce_prefix
            + bytes([len(self.basis)])
            + self.basis
        )


def _associated(header: bytes, index: int, last: bool) -> bytes:
    return header + _U32.pack(index) + (b"\x01" if last else b"\x00")


class ObjectEncoder:
    """Encodes one object from a binary stream, hashing the plaintext on the way.

    After ``encode`` is exhausted, ``object_id``, ``size`` and ``stored_size`` are set.
    """

    def __init__(
        self,
        cipher: Cipher,
        codec: Codec,
        *,
        kind: int = KIND_FULL,
        basis: bytes = b"",
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.cipher = cipher
        self.codec = codec
        self.header = Header(kind, codec.codec_id, cipher.cipher_id, chunk_size, cipher.new_nonce_prefix(), basis)
        self.object_id = b""
        self.size = 0
        self.stored_size = 0

    def _seal_chunk(self, header: bytes, index: int, data: bytes, last: bool) -> bytes:
        body, flag = data, b"\x00"
        if self.codec.codec_id != 0:
            packed = self.codec.compress(data)
            if len(packed) < len(data):
                body, flag = packed, b"\x01"
        nonce = self.header.nonce_prefix + _U32.pack(index)
        sealed = self.cipher.seal(flag + body, nonce, _associated(header, index, last))
        return _U32.pack(len(sealed)) + sealed

    def encode(self, source: BinaryIO, executor: Executor | None = None, depth: int = 4) -> Iterator[bytes]:
        """Yield the object's bytes; ``object_id`` is the hash of what was read from ``source``.

        With an ``executor``, up to ``depth`` chunks are compressed and sealed in parallel
        while this thread reads and hashes the next ones.
        """
        hasher = self.cipher.content_hasher()
        header = self.header.encode()
        yield header
        offset = len(header)
        index: list[bytes] = []
        chunk_size = self.header.chunk_size
        pending: deque[tuple[int, Future[bytes] | bytes]] = deque()

        def emit(length: int, record: Future[bytes] | bytes) -> bytes:
            nonlocal offset
            data = record.result() if isinstance(record, Future) else record
            index.append(_INDEX_ENTRY.pack(offset, length))
            offset += len(data)
            return data

        current = source.read(chunk_size)
        number = 0
        while current:
            following = source.read(chunk_size)
            hasher.update(current)
            self.size += len(current)
            last = not following
            if executor is None:
                pending.append((len(current), self._seal_chunk(header, number, current, last)))
            else:
                pending.append((len(current), executor.submit(self._seal_chunk, header, number, current, last)))
            while len(pending) > (depth if executor is not None else 0):
                yield emit(*pending.popleft())
            current = following
            number += 1
        while pending:
            yield emit(*pending.popleft())
        tail = _U32.pack(END_MARK) + b"".join(index)
        tail += _TRAILER.pack(number, self.size, offset + 4, INDEX_MAGIC)
        self.stored_size = offset + len(tail)
        self.object_id = hasher.hexdigest().encode("ascii")
        yield tail


class ObjectDecoder:
    """Decodes an object fed to it in arbitrary pieces, in bounded memory.

    ``feed`` returns the plaintext available so far; ``finish`` checks that the object was
    complete and, when ``expected_id`` is given, that its content hashes to that address.
    """

    def __init__(self, cipher: Cipher, expected_id: bytes | None = None, kind: int | None = None) -> None:
        self.cipher = cipher
        self.expected_id = expected_id
        self.expected_kind = kind
        self._offset = 0  # file offset of the next chunk record
        self._records: list[bytes] = []  # the index entries the chunks seen so far call for
        self._buffer = bytearray()
        self._header: Header | None = None
        self._header_bytes = b""
        self._codec: Codec | None = None
        self._chunks = 0
        self._pending: bytes | None = None  # last sealed chunk, opened when we know if it is last
        self._ended = False
        self._hasher = cipher.content_hasher()
        self.size = 0

    def _name(self) -> str:
        return self.expected_id.decode("ascii", "replace") if self.expected_id else "object"

    def _parse_header(self) -> bool:
        fixed = _FIXED_HEADER.size
        if len(self._buffer) < fixed + 1:
            return False
        magic, version, kind, codec_id, cipher_id, chunk_size = _FIXED_HEADER.unpack_from(self._buffer)
        if magic != MAGIC:
            raise Corrupt(f"{self._name()}: not a Tardis object (bad magic)")
        if version != FORMAT_VERSION:
            raise Corrupt(f"{self._name()}: unsupported object format version {version}")
        if cipher_id != self.cipher.cipher_id:
            raise Corrupt(f"{self._name()}: sealed with cipher {cipher_id}, expected {self.cipher.cipher_id}")
        if kind not in (KIND_FULL, KIND_DELTA) or (self.expected_kind is not None and kind != self.expected_kind):
            raise Corrupt(f"{self._name()}: unexpected object kind {kind}")
        if chunk_size == 0:
            raise Corrupt(f"{self._name()}: chunk size is zero")
        nonce_len = self._buffer[fixed]
        basis_at = fixed + 1 + nonce_len
        if len(self._buffer) < basis_at + 1:
            return False
        basis_len = self._buffer[basis_at]
        end = basis_at + 1 + basis_len
        if len(self._buffer) < end:
            return False
        nonce = bytes(self._buffer[fixed + 1 : basis_at])
        basis = bytes(self._buffer[basis_at + 1 : end])
        self._header = Header(kind, codec_id, cipher_id, chunk_size, nonce, basis)
        self._header_bytes = bytes(self._buffer[:end])
        self._codec = codec_by_id(codec_id)
        self._offset = end
        del self._buffer[:end]
        return True

    @property
    def header(self) -> Header | None:
        return self._header

    def _open(self, sealed: bytes, last: bool) -> bytes:
        assert self._header is not None and self._codec is not None
        index = self._chunks
        nonce = self._header.nonce_prefix + _U32.pack(index)
        try:
            plain = self.cipher.open(sealed, nonce, _associated(self._header_bytes, index, last))
        except Exception:
            raise Corrupt(f"{self._name()}: chunk {index} failed authentication") from None
        self._chunks += 1
        if not plain:
            raise Corrupt(f"{self._name()}: chunk {index} is empty")
        body = plain[1:]
        if plain[0] == 1:
            try:
                body = self._codec.decompress(body)
            except Exception:
                raise Corrupt(f"{self._name()}: chunk {index} does not decompress") from None
        elif plain[0] != 0:
            raise Corrupt(f"{self._name()}: chunk {index} has an unknown flag")
        if len(body) > self._header.chunk_size:
            raise Corrupt(f"{self._name()}: chunk {index} is larger than the object's chunk size")
        self._hasher.update(body)
        self.size += len(body)
        self._records[-1] += _U32.pack(len(body))
        return body

    def feed(self, data: bytes) -> list[bytes]:
        if self._ended:
            self._buffer += data
            return []
        self._buffer += data
        out: list[bytes] = []
        if self._header is None and not self._parse_header():
            return out
        while len(self._buffer) >= 4:
            (length,) = _U32.unpack_from(self._buffer)
            if length == END_MARK:
                if self._pending is not None:
                    out.append(self._open(self._pending, last=True))
                    self._pending = None
                self._ended = True
                del self._buffer[:4]
                break
            if len(self._buffer) < 4 + length:
                break
            if self._pending is not None:
                out.append(self._open(self._pending, last=False))
            self._pending = bytes(self._buffer[4 : 4 + length])
            self._records.append(struct.pack(">Q", self._offset))
            self._offset += 4 + length
            del self._buffer[: 4 + length]
        return out

    def finish(self) -> None:
        if not self._ended:
            raise Corrupt(f"{self._name()}: object is truncated")
        if len(self._buffer) < _TRAILER.size:
            raise Corrupt(f"{self._name()}: object index is truncated")
        count, total, _index_offset, magic = _TRAILER.unpack_from(self._buffer, len(self._buffer) - _TRAILER.size)
        if magic != INDEX_MAGIC or count != self._chunks or total != self.size:
            raise Corrupt(f"{self._name()}: object index does not match its chunks")
        if len(self._buffer) != _TRAILER.size + count * _INDEX_ENTRY.size:
            raise Corrupt(f"{self._name()}: object index has the wrong length")
        if (
            bytes(self._buffer[: count * _INDEX_ENTRY.size]) != b"".join(self._records)
            or _index_offset != self._offset + 4
        ):
            raise Corrupt(f"{self._name()}: object index does not match its chunks")
        if self.expected_id is not None and self._hasher.hexdigest().encode("ascii") != self.expected_id:
            raise Corrupt(f"{self._name()}: content does not match its address")
