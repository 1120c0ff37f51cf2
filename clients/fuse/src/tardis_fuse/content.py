"""File contents for tardisfs: full objects read by byte ranges, delta chains rebuilt once.

A full object is opened with ``ObjectReader`` over a ``RangeFile``: each read of the stored
file becomes one ``ReadObjects`` call for a byte range (with read-ahead), so a large file
is never copied whole before its first byte is served. Plaintext is decoded a chunk at a
time and the last chunks decoded are kept, because the kernel reads 128 KiB at a time.

An object stored as a delta is rebuilt once through its chain (``ChainReader``) into a
temporary file, kept in a cache bounded by bytes (least recently used first out); open
files keep their descriptor, so an evicted file stays readable until closed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from typing import Protocol

from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_cli.chain import ChainReader
from tardis_common.cipher import Cipher
from tardis_common.errors import Corrupt
from tardis_common.interfaces import Ingest
from tardis_common.objectformat import KIND_FULL, ObjectReader

log = logging.getLogger(__name__)

READ_AHEAD = 2 * 1024 * 1024  # bytes of the stored file fetched per call while reading contents
OPEN_READ_AHEAD = 4096  # while the reader checks the index (small scattered reads)
DECODED_KEPT = 2  # decoded chunks kept per object
READERS_KEPT = 16  # open full objects kept for re-use across opens


def _show(object_id: bytes) -> str:
    return object_id.decode("ascii", "replace")


class RangeFile:
    """A read-only, seekable view of one stored object file, fetched by byte ranges."""

    def __init__(self, ingest: Ingest, client: str, object_id: bytes, stored_size: int) -> None:
        self.ingest = ingest
        self.client = client
        self.object_id = object_id
        self.size = stored_size
        self.read_ahead = OPEN_READ_AHEAD
        self.calls = 0
        self._pos = 0
        self._buf_start = 0
        self._buf = b""

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        start = self._pos
        stop = self.size if n < 0 else min(self.size, start + n)
        if stop <= start:
            return b""
        buf_stop = self._buf_start + len(self._buf)
        if not (self._buf_start <= start and stop <= buf_stop):
            length = min(self.size - start, max(stop - start, self.read_ahead))
            self._buf, self._buf_start = self._fetch(start, length), start
        data = self._buf[start - self._buf_start : stop - self._buf_start]
        self._pos = start + len(data)
        return data

    def _fetch(self, offset: int, length: int) -> bytes:
        self.calls += 1
        request = bs.GetObjectsRequest(client=self.client, object_ids=[self.object_id], offset=offset, length=length)
        pieces: list[bytes] = []
        for reply in self.ingest.read_objects(request):
            for piece in reply.pieces:
                if piece.missing:
                    raise Corrupt(f"object {_show(self.object_id)} is missing from the store")
                pieces.append(piece.data)
        return b"".join(pieces)


class Content(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


class FullObject:
    """Random access to the plaintext of one full object; safe to share between threads."""

    def __init__(self, ingest: Ingest, client: str, cipher: Cipher, info: common.ObjectInfo, stored_size: int) -> None:
        self.source = RangeFile(ingest, client, info.object_id, stored_size)
        self.reader = ObjectReader(cipher, self.source, identity=info.object_id, kind=KIND_FULL)  # type: ignore[arg-type]
        self.source.read_ahead = READ_AHEAD
        self.size = self.reader.size
        self.chunk = max(1, self.reader.header.chunk_size)
        self._lock = threading.Lock()
        self._decoded: OrderedDict[int, bytes] = OrderedDict()  # chunk-aligned plaintext offset -> bytes

    def _block(self, start: int) -> bytes:
        block = self._decoded.get(start)
        if block is None:
            block = self.reader.read(start, self.chunk)
            self._decoded[start] = block
            while len(self._decoded) > DECODED_KEPT:
                self._decoded.popitem(last=False)
        else:
            self._decoded.move_to_end(start)
        return block

    def read(self, offset: int, length: int) -> bytes:
        stop = min(self.size, offset + length)
        pieces: list[bytes] = []
        with self._lock:
            position = offset
            while position < stop:
                start = position - position % self.chunk
                block = self._block(start)
                if not block:
                    break
                pieces.append(block[position - start : stop - start])
                position = start + len(block)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def close(self) -> None:
        pass


class CachedFile:
    """Content rebuilt into a local file; reads are ``pread`` on its own descriptor."""

    def __init__(self, path: str, size: int) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def close(self) -> None:
        os.close(self.fd)


class ChainCache:
    """Delta chains rebuilt once into temporary files, at most ``limit`` bytes kept."""

    def __init__(self, chains: ChainReader, directory: str, limit: int) -> None:
        self.chains = chains
        self.directory = directory
        self.limit = limit
        self._files: OrderedDict[bytes, tuple[str, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._building: dict[bytes, threading.Lock] = {}

    def open(self, object_id: bytes) -> CachedFile:
        with self._lock:
            builder = self._building.setdefault(object_id, threading.Lock())
        with builder:  # one rebuild per object, however many threads open it at once
            with self._lock:
                found = self._files.get(object_id)
                if found is not None:
                    self._files.move_to_end(object_id)
                    return CachedFile(*found)
            fd, path = tempfile.mkstemp(dir=self.directory, prefix="chain-")
            try:
                with os.fdopen(fd, "wb") as out:
                    self.chains.materialize(object_id, out)
                    size = out.tell()
            except BaseException:
                os.unlink(path)
                raise
            opened = CachedFile(path, size)  # opened before eviction may remove the file
            with self._lock:
                self._files[object_id] = (path, size)
                self._bytes += size
                self._evict()
                self._building.pop(object_id, None)
            return opened

    def _evict(self) -> None:
        while self._bytes > self.limit and len(self._files) > 1:
            _object_id, (path, size) = self._files.popitem(last=False)
            self._bytes -= size
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            self._bytes = 0
        shutil.rmtree(self.directory, ignore_errors=True)


class ContentStore:
    """Opens the content of a stored object: a shared ``FullObject`` or a cached chain file."""

    def __init__(self, ingest: Ingest, client: str, cipher: Cipher, cache_dir: str | None, cache_limit: int) -> None:
        self.ingest = ingest
        self.client = client
        self.cipher = cipher
        directory = tempfile.mkdtemp(prefix="tardisfs-", dir=cache_dir)
        self.chains = ChainCache(ChainReader(ingest, client, cipher), directory, cache_limit)
        self._infos: dict[bytes, common.ObjectInfo] = {}
        self._readers: OrderedDict[bytes, FullObject] = OrderedDict()
        self._lock = threading.Lock()

    def info(self, object_id: bytes) -> common.ObjectInfo:
        with self._lock:
            found = self._infos.get(object_id)
        if found is not None:
            return found
        reply = self.ingest.get_object_info(cat.ObjectIdsRequest(client=self.client, object_ids=[object_id]))
        for info in reply.objects:
            if info.object_id == object_id:
                with self._lock:
                    if len(self._infos) > 100_000:
                        self._infos.clear()
                    self._infos[object_id] = info
                return info
        raise Corrupt(f"object {_show(object_id)} is not in the catalog")

    def open(self, object_id: bytes) -> Content:
        info = self.info(object_id)
        if info.basis_id:
            return self.chains.open(object_id)
        with self._lock:
            reader = self._readers.get(object_id)
            if reader is not None:
                self._readers.move_to_end(object_id)
                return reader
        sizes = self.ingest.stat_objects(bs.StatObjectsRequest(client=self.client, object_ids=[object_id]))
        stored = sizes.stored_sizes[0] if sizes.stored_sizes else -1
        if stored < 0:
            raise Corrupt(f"object {_show(object_id)} is missing from the store")
        reader = FullObject(self.ingest, self.client, self.cipher, info, stored)
        with self._lock:
            self._readers[object_id] = reader
            while len(self._readers) > READERS_KEPT:
                self._readers.popitem(last=False)
        return reader

    def close(self) -> None:
        self.chains.clear()
