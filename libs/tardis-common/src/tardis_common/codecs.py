"""Compression codecs for object chunks, by name and by the id stored in object headers."""

from __future__ import annotations

import bz2
import lzma
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import lz4.frame
import zstandard

from .errors import ConfigError, Corrupt

_local = threading.local()


def _zstd_compress(data: bytes) -> bytes:
    compressor = getattr(_local, "zc", None)
    if compressor is None:
        compressor = _local.zc = zstandard.ZstdCompressor(level=3)
    return compressor.compress(data)  # type: ignore[no-any-return]


def _zstd_decompress(data: bytes) -> bytes:
    decompressor = getattr(_local, "zd", None)
    if decompressor is None:
        decompressor = _local.zd = zstandard.ZstdDecompressor()
    return decompressor.decompress(data)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Codec:
    name: str
    codec_id: int
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]


def _identity(data: bytes) -> bytes:
    return data


CODECS: tuple[Codec, ...] = (
    Codec("none", 0, _identity, _identity),
    Codec("zlib", 1, lambda d: zlib.compress(d, 6), zlib.decompress),
    Codec("zstd", 2, _zstd_compress, _zstd_decompress),
    Codec("bzip", 3, lambda d: bz2.compress(d, 9), bz2.decompress),
    Codec("lzma", 4, lambda d: lzma.compress(d, preset=6), lzma.decompress),
    Codec("lz4", 5, lz4.frame.compress, lz4.frame.decompress),
)
BY_NAME = {c.name: c for c in CODECS}
BY_ID = {c.codec_id: c for c in CODECS}


def codec_named(name: str) -> Codec:
    try:
        return BY_NAME[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown compression {name!r}; choose one of {', '.join(BY_NAME)}") from None


def codec_by_id(codec_id: int) -> Codec:
    try:
        return BY_ID[codec_id]
    except KeyError:
        raise Corrupt(f"object uses unknown compression id {codec_id}") from None
