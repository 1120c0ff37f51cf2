"""Turns files that ingest asked for into UploadContent messages.

Each file is read once: hashed, compressed and sealed in one pass by the object encoder.
Pieces of many small files share one message (about 1 MiB each), so a batch of small
files costs a handful of messages, never one per file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing

from tardis_common.cipher import Cipher
from tardis_common.codecs import Codec, codec_named
from tardis_common.objectformat import ObjectEncoder

from .walker import Item

log = logging.getLogger(__name__)

MESSAGE_BYTES = 1024 * 1024


@dataclass
class Upload:
    directory: common.DirPath
    item: Item


@dataclass
class UploadOptions:
    codec: Codec
    compress_min: int = 4096


def _codec_for(size: int, options: UploadOptions) -> Codec:
    return options.codec if size >= options.compress_min else codec_named("none")


def file_pieces(token: int, upload: Upload, cipher: Cipher, options: UploadOptions) -> Iterator[ing.ContentPiece]:
    """The pieces of one file's object; nothing at all if the file cannot be opened."""
    try:
        source = open(upload.item.path, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:
        log.warning("cannot read %s: %s", upload.item.path, exc.strerror)
        return
    with source:
        encoder = ObjectEncoder(cipher, _codec_for(upload.item.entry.size, options))
        held: ing.ContentPiece | None = None
        first = True
        for data in encoder.encode(source):
            if held is not None:
                yield held
            held = ing.ContentPiece(token=token, data=data)
            if first:
                held.dir.CopyFrom(upload.directory)
                held.entry.CopyFrom(upload.item.entry)
                first = False
        assert held is not None  # the encoder always yields a header and a trailer
        held.last = True
        held.info.CopyFrom(
            common.ObjectInfo(
                object_id=encoder.object_id,
                size=encoder.size,
                stored_size=encoder.stored_size,
                compression=encoder.codec.name,
                encrypted=cipher.encrypted,
            )
        )
        yield held


def upload_requests(
    session: str, uploads: list[Upload], cipher: Cipher, options: UploadOptions, stats: dict[str, int]
) -> Iterator[ing.UploadContentRequest]:
    message = ing.UploadContentRequest(session=session)
    size = 0
    for token, upload in enumerate(uploads):
        for piece in file_pieces(token, upload, cipher, options):
            message.pieces.append(piece)
            size += len(piece.data)
            if piece.last:
                stats["files"] = stats.get("files", 0) + 1
                stats["bytes"] = stats.get("bytes", 0) + piece.info.size
            if size >= MESSAGE_BYTES:
                yield message
                message = ing.UploadContentRequest(session=session)
                size = 0
    if message.pieces:
        yield message
