"""The object file format: a header, independently compressed and sealed chunks, an index.

Byte layout (all integers big-endian; see docs/storage-format.md):

    header  = "TDOB" | version u8 | kind u8 | codec u8 | cipher u8 | chunk_size u32
              | nonce_prefix_len u8 | nonce_prefix | basis_len u8 | basis
    chunk   = sealed_len u32 (< 0xFFFFFFFF) | seal(flag u8 | body)   flag 1 = body compressed
    end     = 0xFFFFFFFF
    ident   = sealed_len u16 | seal(object id)
    index   = per chunk: record_offset u64 | plaintext_len u32
    trailer = chunk_count u32 | plaintext_size u64 | index_offset u64 | "TDIX"

Chunk i is sealed with nonce = nonce_prefix | i (u32) and associated data =
header | i (u32) | last (u8), so chunks cannot be swapped, reordered or truncated unnoticed
once a real cipher is in use. The identity record binds the object to its address (known
only once the whole plaintext is hashed): nonce = nonce_prefix | 0xFFFFFFFF, associated
data = header | "TDID"; so an object file put in another object's place is refused.
Objects stream in bounded memory (``ObjectDecoder``) and allow range reads (``ObjectReader``,
which checks the identity record before handing out any plaintext).
"""

from __future__ import annotations

import bisect
import struct
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import BinaryIO

from .cipher import Cipher
from .codecs import Codec, codec_by_id
from .errors import Corrupt, PermissionDenied

MAGIC = b"TDOB"
INDEX_MAGIC = b"TDIX"
IDENTITY_MAGIC = b"TDID"
FORMAT_VERSION = 2
KIND_FULL = 0
KIND_DELTA = 1
CHUNK_SIZE = 1024 * 1024
END_MARK = 0xFFFFFFFF
MAX_CHUNKS = END_MARK - 1  # chunk number 0xFFFFFFFF is the identity record's nonce
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
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


CIPHER_NAMES = {0: "unencrypted", 1: "encrypted (AES-256-GCM)"}


def _associated(header: bytes, index: int, last: bool) -> bytes:
    return header + _U32.pack(index) + (b"\x01" if last else b"\x00")


def cipher_for_id(cipher_id: int, cipher: Cipher, name: str = "object") -> Cipher:
    """``cipher`` when it can open objects of ``cipher_id``; otherwise a one-line refusal.

    An encrypted object read without keys is a PermissionDenied (a password is needed); an
    unencrypted object read by an encrypted client is Corrupt (a server may not substitute
    plaintext for sealed content), as is an unknown cipher.
    """
    if cipher_id == cipher.cipher_id:
        return cipher
    if cipher_id not in CIPHER_NAMES:
        raise Corrupt(f"{name}: sealed with unknown cipher {cipher_id}")
    if cipher_id != 0 and not cipher.encrypted:
        raise PermissionDenied(f"{name}: the object is encrypted; the client's password is needed to read it")
    raise Corrupt(
        f"{name}: the object is {CIPHER_NAMES[cipher_id]} but this client's objects are "
        f"{CIPHER_NAMES.get(cipher.cipher_id, f'cipher {cipher.cipher_id}')}; refusing it"
    )


def _identity_nonce(header: Header) -> bytes:
    return header.nonce_prefix + _U32.pack(END_MARK)


def _seal_identity(cipher: Cipher, header: Header, header_bytes: bytes, object_id: bytes) -> bytes:
    sealed = cipher.seal(object_id, _identity_nonce(header), header_bytes + IDENTITY_MAGIC)
    return _U16.pack(len(sealed)) + sealed


def _open_identity(cipher: Cipher, header: Header, header_bytes: bytes, sealed: bytes, name: str) -> bytes:
    try:
        return cipher.open(sealed, _identity_nonce(header), header_bytes + IDENTITY_MAGIC)
    except Exception:
        raise Corrupt(f"{name}: identity record failed authentication") from None


def _check_identity(recorded: bytes, expected: bytes | None, name: str) -> None:
    if expected is not None and recorded != expected:
        shown = recorded.decode("ascii", "replace")[:80]
        raise Corrupt(f"{name}: the file holds object {shown}, not this one (swapped or misplaced object)")


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
        identity: bytes | None = None,
    ) -> None:
        """``identity`` is the address the object is stored under when it is not the hash of
        the encoded content (a delta is stored under the hash of the full new content)."""
        self.cipher = cipher
        self.identity = identity
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
            if number > MAX_CHUNKS:
                raise Corrupt(f"an object may have at most {MAX_CHUNKS} chunks")
        while pending:
            yield emit(*pending.popleft())
        self.object_id = hasher.hexdigest().encode("ascii")
        identity = _seal_identity(self.cipher, self.header, header, self.identity or self.object_id)
        tail = _U32.pack(END_MARK) + identity + b"".join(index)
        tail += _TRAILER.pack(number, self.size, offset + 4 + len(identity), INDEX_MAGIC)
        self.stored_size = offset + len(tail)
        yield tail


_MAX_HEADER = _FIXED_HEADER.size + 1 + 255 + 1 + 255


def _parse_header(
    buffer: bytes | bytearray, cipher: Cipher, kind: int | None, name: str
) -> tuple[Header, bytes, Codec] | None:
    """The header at the start of ``buffer``, its bytes and its codec; None if incomplete."""
    fixed = _FIXED_HEADER.size
    if len(buffer) < fixed + 1:
        return None
    magic, version, found_kind, codec_id, cipher_id, chunk_size = _FIXED_HEADER.unpack_from(buffer)
    if magic != MAGIC:
        raise Corrupt(f"{name}: not a Tardis object (bad magic)")
    if version != FORMAT_VERSION:
        raise Corrupt(f"{name}: unsupported object format version {version}")
    cipher_for_id(cipher_id, cipher, name)
    if found_kind not in (KIND_FULL, KIND_DELTA) or (kind is not None and found_kind != kind):
        raise Corrupt(f"{name}: unexpected object kind {found_kind}")
    if chunk_size == 0:
        raise Corrupt(f"{name}: chunk size is zero")
    nonce_len = buffer[fixed]
    basis_at = fixed + 1 + nonce_len
    if len(buffer) < basis_at + 1:
        return None
    end = basis_at + 1 + buffer[basis_at]
    if len(buffer) < end:
        return None
    try:
        codec = codec_by_id(codec_id)
    except Exception:
        raise Corrupt(f"{name}: unknown codec {codec_id}") from None
    nonce = bytes(buffer[fixed + 1 : basis_at])
    basis = bytes(buffer[basis_at + 1 : end])
    return Header(found_kind, codec_id, cipher_id, chunk_size, nonce, basis), bytes(buffer[:end]), codec


def _open_chunk(
    cipher: Cipher, header: Header, header_bytes: bytes, codec: Codec, index: int, sealed: bytes, last: bool, name: str
) -> bytes:
    """The plaintext of chunk ``index``, authenticated (by a real cipher) and decompressed."""
    nonce = header.nonce_prefix + _U32.pack(index)
    try:
        plain = cipher.open(sealed, nonce, _associated(header_bytes, index, last))
    except Exception:
        raise Corrupt(f"{name}: chunk {index} failed authentication") from None
    if not plain:
        raise Corrupt(f"{name}: chunk {index} is empty")
    body = plain[1:]
    if plain[0] == 1:
        try:
            body = codec.decompress(body)
        except Exception:
            raise Corrupt(f"{name}: chunk {index} does not decompress") from None
    elif plain[0] != 0:
        raise Corrupt(f"{name}: chunk {index} has an unknown flag")
    if len(body) > header.chunk_size:
        raise Corrupt(f"{name}: chunk {index} is larger than the object's chunk size")
    return body


def _show(object_id: bytes | None) -> str:
    return object_id.decode("ascii", "replace") if object_id else "object"


class ObjectDecoder:
    """Decodes an object fed to it in arbitrary pieces, in bounded memory.

    ``feed`` returns the plaintext available so far; ``finish`` checks that the object was
    complete and, when ``expected_id`` is given, that its content hashes to that address.
    The identity record must name ``identity`` (default ``expected_id``; give it alone for a
    delta, whose address is not the hash of its payload); being at the end of the stream, it
    is checked as soon as it arrives and at the latest by ``finish``. ``recorded_id`` is the
    address the identity record names, once read.
    """

    def __init__(
        self,
        cipher: Cipher,
        expected_id: bytes | None = None,
        kind: int | None = None,
        *,
        identity: bytes | None = None,
    ) -> None:
        self.cipher = cipher
        self.expected_id = expected_id
        self.identity = identity if identity is not None else expected_id
        self.expected_kind = kind
        self.recorded_id: bytes | None = None
        self._offset = 0  # file offset of the next chunk record
        self._records: list[bytes] = []  # the index entries the chunks seen so far call for
        self._buffer = bytearray()
        self._header: Header | None = None
        self._header_bytes = b""
        self._codec: Codec | None = None
        self._chunks = 0
        self._pending: bytes | None = None  # last sealed chunk, opened when we know if it is last
        self._ended = False
        self._identity_size = 0
        self._hasher = cipher.content_hasher()
        self.size = 0

    def _name(self) -> str:
        return _show(self.identity or self.expected_id)

    def _parse_header(self) -> bool:
        parsed = _parse_header(self._buffer, self.cipher, self.expected_kind, self._name())
        if parsed is None:
            return False
        self._header, self._header_bytes, self._codec = parsed
        self._offset = len(self._header_bytes)
        del self._buffer[: self._offset]
        return True

    @property
    def header(self) -> Header | None:
        return self._header

    def _open(self, sealed: bytes, last: bool) -> bytes:
        assert self._header is not None and self._codec is not None
        body = _open_chunk(
            self.cipher, self._header, self._header_bytes, self._codec, self._chunks, sealed, last, self._name()
        )
        self._chunks += 1
        self._hasher.update(body)
        self.size += len(body)
        self._records[-1] += _U32.pack(len(body))
        return body

    def _read_identity(self) -> None:
        assert self._header is not None
        if len(self._buffer) < _U16.size:
            return
        (length,) = _U16.unpack_from(self._buffer)
        if len(self._buffer) < _U16.size + length:
            return
        sealed = bytes(self._buffer[_U16.size : _U16.size + length])
        recorded = _open_identity(self.cipher, self._header, self._header_bytes, sealed, self._name())
        _check_identity(recorded, self.identity, self._name())
        self.recorded_id = recorded
        self._identity_size = _U16.size + length
        del self._buffer[: self._identity_size]

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        if self._header is None and not self._parse_header():
            return out
        while not self._ended and len(self._buffer) >= 4:
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
        if self._ended and self.recorded_id is None:
            self._read_identity()
        return out

    def finish(self) -> None:
        if not self._ended:
            raise Corrupt(f"{self._name()}: object is truncated")
        if self.recorded_id is None:
            raise Corrupt(f"{self._name()}: object identity record is truncated")
        if len(self._buffer) < _TRAILER.size:
            raise Corrupt(f"{self._name()}: object index is truncated")
        count, total, index_offset, magic = _TRAILER.unpack_from(self._buffer, len(self._buffer) - _TRAILER.size)
        if magic != INDEX_MAGIC or count != self._chunks or total != self.size:
            raise Corrupt(f"{self._name()}: object index does not match its chunks")
        if len(self._buffer) != _TRAILER.size + count * _INDEX_ENTRY.size:
            raise Corrupt(f"{self._name()}: object index has the wrong length")
        if (
            bytes(self._buffer[: count * _INDEX_ENTRY.size]) != b"".join(self._records)
            or index_offset != self._offset + 4 + self._identity_size
        ):
            raise Corrupt(f"{self._name()}: object index does not match its chunks")
        if self.expected_id is not None and self._hasher.hexdigest().encode("ascii") != self.expected_id:
            raise Corrupt(f"{self._name()}: content does not match its address")


class ObjectReader:
    """Random access to one object in a seekable file, for range reads.

    Opening checks the header, trailer, index and identity record (against ``identity``), so
    a swapped or misplaced object fails before any plaintext is handed out. ``read`` opens
    only the chunks a range needs. The whole-content hash is not checked (that needs every
    byte; use ``ObjectDecoder``): with a real cipher every chunk is still authenticated.
    """

    def __init__(
        self, cipher: Cipher, source: BinaryIO, identity: bytes | None = None, kind: int | None = None
    ) -> None:
        self.cipher = cipher
        self.source = source
        self.identity = identity
        name = self._name = _show(identity)
        stored = source.seek(0, 2)
        parsed = _parse_header(self._read_at(0, min(stored, _MAX_HEADER)), cipher, kind, name)
        if parsed is None or stored < len(parsed[1]) + 4 + _U16.size + _TRAILER.size:
            raise Corrupt(f"{name}: object is truncated")
        self.header, self._header_bytes, self._codec = parsed
        count, self.size, index_offset, magic = _TRAILER.unpack(self._read_at(stored - _TRAILER.size, _TRAILER.size))
        if magic != INDEX_MAGIC or index_offset + count * _INDEX_ENTRY.size + _TRAILER.size != stored:
            raise Corrupt(f"{name}: object index is damaged or the object is truncated")
        raw = self._read_at(index_offset, count * _INDEX_ENTRY.size)
        self._entries = [_INDEX_ENTRY.unpack_from(raw, i * _INDEX_ENTRY.size) for i in range(count)]
        self._starts: list[int] = []  # plaintext offset of each chunk
        position, expected_offset = 0, len(self._header_bytes)
        for offset, length in self._entries:
            if offset != expected_offset or length > self.header.chunk_size or offset >= index_offset:
                raise Corrupt(f"{name}: object index does not match its chunks")
            self._starts.append(position)
            position += length
            (sealed_len,) = _U32.unpack(self._read_at(offset, 4))
            expected_offset = offset + 4 + sealed_len
        if position != self.size:
            raise Corrupt(f"{name}: object index does not match its chunks")
        end = expected_offset
        if self._read_at(end, 4) != _U32.pack(END_MARK):
            raise Corrupt(f"{name}: object end mark is missing")
        (length,) = _U16.unpack(self._read_at(end + 4, _U16.size))
        if end + 4 + _U16.size + length != index_offset:
            raise Corrupt(f"{name}: object identity record has the wrong length")
        sealed = self._read_at(end + 4 + _U16.size, length)
        self.recorded_id = _open_identity(cipher, self.header, self._header_bytes, sealed, name)
        _check_identity(self.recorded_id, identity, name)

    def _read_at(self, offset: int, length: int) -> bytes:
        self.source.seek(offset)
        data = self.source.read(length)
        if len(data) != length:
            raise Corrupt(f"{self._name}: object is truncated")
        return data

    def _chunk(self, index: int) -> bytes:
        offset, length = self._entries[index]
        (sealed_len,) = _U32.unpack(self._read_at(offset, 4))
        sealed = self._read_at(offset + 4, sealed_len)
        last = index == len(self._entries) - 1
        body = _open_chunk(self.cipher, self.header, self._header_bytes, self._codec, index, sealed, last, self._name)
        if len(body) != length:
            raise Corrupt(f"{self._name}: chunk {index} does not match the object index")
        return body

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of plaintext from ``offset`` (fewer at the end of the object)."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must not be negative")
        stop = min(offset + length, self.size)
        if offset >= stop:
            return b""
        first = bisect.bisect_right(self._starts, offset) - 1
        pieces = []
        index = first
        while index < len(self._entries) and self._starts[index] < stop:
            body = self._chunk(index)
            start = self._starts[index]
            pieces.append(body[max(0, offset - start) : stop - start])
            index += 1
        return b"".join(pieces)
