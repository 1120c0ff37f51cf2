"""The object format: any content round-trips; any damage is detected."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tardis_common.cipher import NullCipher
from tardis_common.codecs import CODECS, codec_named
from tardis_common.errors import Corrupt
from tardis_common.objectformat import KIND_FULL, ObjectDecoder, ObjectEncoder, ObjectReader

BOUNDED = settings(max_examples=40, deadline=None)


def encode(data: bytes, codec: str = "zstd", chunk_size: int = 1024) -> tuple[bytes, bytes]:
    encoder = ObjectEncoder(NullCipher(), codec_named(codec), chunk_size=chunk_size)
    stored = b"".join(encoder.encode(io.BytesIO(data)))
    assert encoder.stored_size == len(stored) and encoder.size == len(data)
    return stored, encoder.object_id


def decode(stored: bytes, object_id: bytes | None, piece: int = 97) -> bytes:
    decoder = ObjectDecoder(NullCipher(), object_id, kind=KIND_FULL)
    out = []
    for start in range(0, len(stored), piece):
        out += decoder.feed(stored[start : start + piece])
    decoder.finish()
    return b"".join(out)


@BOUNDED
@given(data=st.binary(max_size=5000), codec=st.sampled_from([c.name for c in CODECS]), piece=st.integers(1, 700))
def test_round_trip(data: bytes, codec: str, piece: int) -> None:
    stored, object_id = encode(data, codec)
    assert decode(stored, object_id, piece) == data


@BOUNDED
@given(data=st.binary(min_size=1, max_size=4000), cut=st.integers(min_value=1))
def test_truncation_is_detected(data: bytes, cut: int) -> None:
    stored, object_id = encode(data)
    short = stored[: len(stored) - 1 - cut % len(stored)]
    with pytest.raises(Corrupt):
        decode(short, object_id)


@BOUNDED
@given(data=st.binary(min_size=1, max_size=4000), where=st.integers(min_value=0), flip=st.integers(1, 255))
def test_a_flipped_byte_never_yields_wrong_content(data: bytes, where: int, flip: int) -> None:
    """Damage is detected, or (for header bits the null cipher cannot authenticate and that do
    not change the content, such as the codec of plain chunks) the content is still right."""
    stored, object_id = encode(data, codec="zstd")
    position = where % len(stored)
    damaged = bytearray(stored)
    damaged[position] ^= flip
    try:
        restored = decode(bytes(damaged), object_id)
    except Corrupt:
        return
    assert restored == data


def test_incompressible_chunks_are_stored_plain() -> None:
    import os

    data = os.urandom(200_000)
    stored, _ = encode(data, codec="zstd", chunk_size=65536)
    assert len(stored) < len(data) + 200  # no growth beyond the framing


def test_swapped_object_is_refused_by_its_identity_record() -> None:
    stored, _ = encode(b"one content" * 50)
    _, other_id = encode(b"another content" * 50)
    with pytest.raises(Corrupt, match="swapped or misplaced"):
        decode(stored, other_id)
    with pytest.raises(Corrupt, match="swapped or misplaced"):
        ObjectReader(NullCipher(), io.BytesIO(stored), other_id)


def test_range_reads() -> None:
    import os

    data = os.urandom(5000)
    stored, object_id = encode(data, codec="zstd", chunk_size=1000)
    reader = ObjectReader(NullCipher(), io.BytesIO(stored), object_id, kind=KIND_FULL)
    assert reader.recorded_id == object_id and reader.size == len(data)
    for offset, length in [(0, 5000), (999, 2), (4500, 1000), (2000, 0), (6000, 1)]:
        assert reader.read(offset, length) == data[offset : offset + length]
