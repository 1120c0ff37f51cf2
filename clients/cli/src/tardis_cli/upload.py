"""Turns the files ingest asked for into UploadContent messages.

Each file is read once for its object: hashed, compressed and sealed in one pass (chunks
of large files compressed on a worker pool, small files encoded whole on it, ahead of
the sender). Files large enough for deltas also get an rdiff signature (a second, cached
read). A modified file with a basis signature is sent as a delta when that pays. Pieces
of many small files share one message of about 1 MiB, so a batch costs a handful of
messages, never one per file. A file that changes while it is read is discarded (its
token aborted) and read again, up to three times; it is never stored torn.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field

from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing

from tardis_common import rdiff
from tardis_common.cipher import Cipher
from tardis_common.codecs import Codec, codec_named
from tardis_common.faults import fault_point
from tardis_common.objectformat import KIND_DELTA, ObjectEncoder

from .nocompress import NoCompress
from .walker import Item

log = logging.getLogger(__name__)

MESSAGE_BYTES = 1024 * 1024
SMALL_FILE = 1024 * 1024  # encoded whole on a worker, ahead of the sender
LOOKAHEAD = 32
ATTEMPTS = 3
COALESCE_BYTES = 256 * 1024  # small objects travel as one piece (see _coalesced)
# A file whose mtime or ctime is this close to the moment we read it may still change in
# the same timestamp tick: it is flagged racy and re-hashed by the next run.
RACY_MARGIN_NS = 2_000_000_000


@dataclass
class Upload:
    directory: common.DirPath
    item: Item
    basis: bytes = b""  # send a delta against this object
    basis_signature: bytes = b""  # the basis's rdiff signature, plaintext


@dataclass
class UploadOptions:
    codec: Codec
    compress_min: int = 4096
    no_compress: NoCompress = field(default_factory=NoCompress)


@dataclass
class UploadStats:
    files: int = 0
    bytes: int = 0  # plaintext bytes of files sent
    sent: int = 0  # bytes put on the wire
    deltas: int = 0
    linked: int = 0
    retried: int = 0
    skipped: list[str] = field(default_factory=list)


class _Changed(Exception):
    """The file changed while it was read."""


class _DeltaTooLarge(Exception):
    """The delta is not enough smaller than the file to be worth storing."""


def _coalesced(stream: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """``stream``'s pieces joined while together they stay within ``limit`` bytes, so a small
    object (header, chunk, trailer) travels as one piece, which the blobstore places without
    a temporary file of its own on the stream's thread. Large pieces pass unjoined."""
    parts: list[bytes] = []
    size = 0
    for data in stream:
        if parts and size + len(data) > limit:
            yield parts[0] if len(parts) == 1 else b"".join(parts)
            parts, size = [], 0
        parts.append(data)
        size += len(data)
    if parts:
        yield parts[0] if len(parts) == 1 else b"".join(parts)


def _restat(item: Item) -> os.stat_result:
    return os.lstat(item.path)


def _same_file(entry: common.Entry, st: os.stat_result) -> bool:
    return (
        entry.size == st.st_size
        and entry.mtime_ns == st.st_mtime_ns
        and entry.ctime_ns == st.st_ctime_ns
        and entry.inode == st.st_ino
    )


def _refresh(entry: common.Entry, st: os.stat_result) -> None:
    entry.size, entry.mtime_ns, entry.ctime_ns, entry.inode = st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino
    entry.mode, entry.nlink, entry.atime_ns = st.st_mode, st.st_nlink, st.st_atime_ns


def mark_racy(entry: common.Entry, read_start_ns: int) -> None:
    if max(entry.mtime_ns, entry.ctime_ns) >= read_start_ns - RACY_MARGIN_NS:
        entry.flags |= common.ENTRY_FLAG_RACY
    else:
        entry.flags &= ~common.ENTRY_FLAG_RACY


def signature_identity(object_id: bytes) -> bytes:
    """The address a signature object is bound to: its object's, marked as a signature."""
    return object_id + b".sig"


class Uploader:
    """Builds UploadContent requests for one session; remembers hard links across batches."""

    def __init__(
        self, session: str, cipher: Cipher, options: UploadOptions, executor: Executor | None, stats: UploadStats
    ) -> None:
        self.session = session
        self.cipher = cipher
        self.options = options
        self.executor = executor
        self.stats = stats
        self.links: dict[tuple[int, int], common.ObjectInfo] = {}
        self.report: list[tuple[str, str, int]] | None = None
        self._tokens = itertools.count(1)
        self._lock = threading.Lock()

    def _next_token(self) -> int:
        return next(self._tokens)

    def _codec_for(self, size: int, path: str = "") -> Codec:
        if size < self.options.compress_min or (path and self.options.no_compress.skip(path)):
            return codec_named("none")
        return self.options.codec

    # -- one file ---------------------------------------------------------------------------

    def _object_pieces(
        self, upload: Upload, source: io.BufferedReader, executor: Executor | None
    ) -> Iterator[ing.ContentPiece]:
        """The pieces of one attempt at the file's object, then those of its signature."""
        entry = upload.item.entry
        token = self._next_token()
        tee = rdiff.SignatureTee(entry.size) if entry.size >= rdiff.SIGNATURE_MIN_SIZE else None
        try:
            encoder, stream = self._encoder(upload, rdiff.TeeReader(source, tee), executor)
            first = True
            held: ing.ContentPiece | None = None
            for data in _coalesced(stream, COALESCE_BYTES):
                if held is not None:
                    yield held
                held = ing.ContentPiece(token=token, data=data)
                if first:
                    held.dir.CopyFrom(upload.directory)
                    held.entry.CopyFrom(entry)
                    first = False
            assert held is not None  # an object always has a header and a trailer
            held.last = True
            after = os.fstat(source.fileno())
            if not _same_file(entry, after) or encoder.content_size != entry.size:
                held.abort = True
                yield held
                raise _Changed
            signature = tee.finish() if tee is not None else b""
            tee = None
        finally:
            if tee is not None:
                tee.abandon()
        held.info.CopyFrom(encoder.info(self.cipher, upload.basis, bool(signature)))
        yield held
        if signature:
            yield from self._signature_pieces(signature, held.info)

    def _encoder(
        self, upload: Upload, source: rdiff.TeeReader, executor: Executor | None
    ) -> tuple[_Encoding, Iterator[bytes]]:
        entry = upload.item.entry
        if upload.basis and upload.basis_signature:
            source.hasher = self.cipher.content_hasher()
            spool = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 - closed by _Encoding
            rdiff.delta(source, io.BytesIO(upload.basis_signature), spool)
            if spool.tell() * 100 < entry.size * rdiff.DELTA_THRESHOLD_PERCENT:
                spool.seek(0)
                content_id = source.hasher.hexdigest().encode("ascii")
                encoder = ObjectEncoder(
                    self.cipher,
                    self._codec_for(spool.tell() or 1),
                    kind=KIND_DELTA,
                    basis=upload.basis,
                    identity=content_id,
                )
                encoding = _Encoding(encoder, content_id=content_id, content_size=source.count, spool=spool)
                return encoding, encoding.wrap(encoder.encode(spool, executor))  # type: ignore[arg-type]
            spool.close()
            raise _DeltaTooLarge
        encoder = ObjectEncoder(self.cipher, self._codec_for(entry.size, upload.item.path))
        encoding = _Encoding(encoder)
        return encoding, encoding.wrap(encoder.encode(source, executor))  # type: ignore[arg-type]

    def _signature_pieces(self, signature: bytes, info: common.ObjectInfo) -> Iterator[ing.ContentPiece]:
        token = self._next_token()
        encoder = ObjectEncoder(self.cipher, codec_named("none"), identity=signature_identity(info.object_id))
        pieces = [
            ing.ContentPiece(token=token, data=data, signature=True) for data in encoder.encode(io.BytesIO(signature))
        ]
        pieces[-1].last = True
        pieces[-1].info.object_id = info.object_id
        yield from pieces

    def file_pieces(self, upload: Upload, executor: Executor | None) -> Iterator[ing.ContentPiece]:
        """Every piece for one file: its object (retried if torn) and its signature."""
        entry = upload.item.entry
        path = upload.item.path
        key = (entry.device, entry.inode)
        if entry.nlink > 1 and key in self.links:
            piece = ing.ContentPiece(existing=True, last=True, token=self._next_token())
            piece.dir.CopyFrom(upload.directory)
            piece.entry.CopyFrom(entry)
            piece.info.CopyFrom(self.links[key])
            self.stats.linked += 1
            if self.report is not None:
                self.report.append((path, "link", entry.size))
            yield piece
            return
        for attempt in range(ATTEMPTS):
            try:
                st = _restat(upload.item)
                if not _same_file(entry, st):
                    _refresh(entry, st)
                source = open(path, "rb")  # noqa: SIM115 - closed below
            except OSError as exc:
                self._skip(path, exc.strerror or str(exc))
                return
            with source:
                mark_racy(entry, time.time_ns())
                self.stats.retried += 1 if attempt else 0
                try:
                    info: common.ObjectInfo | None = None
                    for piece in self._object_pieces(upload, source, executor):
                        if piece.last and not piece.abort and not piece.signature:
                            info = piece.info
                        yield piece
                except _Changed:
                    log.info("%s changed while being read (attempt %d)", path, attempt + 1)
                    continue
                except _DeltaTooLarge:
                    upload.basis = b""  # the delta would not pay: send the whole file instead
                    continue
            assert info is not None
            with self._lock:
                self.stats.files += 1
                self.stats.bytes += info.size
                self.stats.deltas += 1 if info.basis_id else 0
                if self.report is not None:
                    self.report.append((path, "delta" if info.basis_id else "full", info.size))
            if entry.nlink > 1:
                self.links[key] = info
            return
        self._skip(path, f"it kept changing while being read ({ATTEMPTS} attempts)")

    def _skip(self, path: str, why: str) -> None:
        log.warning("not backed up: %s: %s", path, why)
        with self._lock:
            self.stats.skipped.append(path)

    # -- many files -------------------------------------------------------------------------

    def _prepared(self, uploads: list[Upload]) -> Iterator[list[ing.ContentPiece] | Iterator[ing.ContentPiece]]:
        """Per file, its pieces: small files encoded whole on the pool ahead of time."""
        window: deque[Future[list[ing.ContentPiece]] | Upload] = deque()
        linked_later = {(u.item.entry.device, u.item.entry.inode) for u in uploads if u.item.entry.nlink > 1}

        def submit(upload: Upload) -> Future[list[ing.ContentPiece]] | Upload:
            small = upload.item.entry.size < SMALL_FILE and not upload.basis
            shared = (upload.item.entry.device, upload.item.entry.inode) in linked_later
            if self.executor is None or not small or shared:
                return upload  # large, delta or hard-linked: encoded in order, in this thread
            return self.executor.submit(lambda: list(self.file_pieces(upload, None)))

        for upload in uploads:
            window.append(submit(upload))
            if len(window) > LOOKAHEAD:
                yield _resolve(window.popleft(), self)
        while window:
            yield _resolve(window.popleft(), self)

    def requests(self, uploads: list[Upload]) -> Iterator[ing.UploadContentRequest]:
        message = ing.UploadContentRequest(session=self.session)
        size = 0
        for pieces in self._prepared(uploads):
            for piece in pieces:
                message.pieces.append(piece)
                size += len(piece.data)
                self.stats.sent += len(piece.data)
                if size >= MESSAGE_BYTES:
                    yield message
                    fault_point("client.mid-upload")
                    message = ing.UploadContentRequest(session=self.session)
                    size = 0
        if message.pieces:
            yield message


def _resolve(
    slot: Future[list[ing.ContentPiece]] | Upload, uploader: Uploader
) -> list[ing.ContentPiece] | Iterator[ing.ContentPiece]:
    if isinstance(slot, Future):
        return slot.result()
    return uploader.file_pieces(slot, uploader.executor)


class _Encoding:
    """An encoder plus what the ObjectInfo of its result needs."""

    def __init__(
        self, encoder: ObjectEncoder, content_id: bytes = b"", content_size: int = -1, spool: object | None = None
    ) -> None:
        self.encoder = encoder
        self._content_id = content_id
        self._content_size = content_size
        self._spool = spool

    def wrap(self, stream: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from stream
        finally:
            if self._spool is not None:
                self._spool.close()  # type: ignore[attr-defined]

    @property
    def content_size(self) -> int:
        return self._content_size if self._content_size >= 0 else self.encoder.size

    def info(self, cipher: Cipher, basis: bytes, signed: bool) -> common.ObjectInfo:
        delta = bool(self._content_id)
        return common.ObjectInfo(
            object_id=self._content_id or self.encoder.object_id,
            size=self.content_size,
            stored_size=self.encoder.stored_size,
            compression=self.encoder.codec.name,
            encrypted=cipher.encrypted,
            basis_id=basis if delta else b"",
            has_signature=signed,
        )
