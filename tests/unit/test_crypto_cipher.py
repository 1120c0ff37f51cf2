"""The encrypting cipher and encrypted objects: known answers, round trips, and every
kind of tampering detected."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tardis_common.cipher import Cipher, NullCipher
from tardis_common.codecs import codec_named
from tardis_common.crypto.encrypting_cipher import EncryptingCipher
from tardis_common.crypto.keys import KeySet
from tardis_common.errors import Corrupt, PermissionDenied
from tardis_common.objectformat import KIND_DELTA, KIND_FULL, ObjectDecoder, ObjectEncoder, ObjectReader

BOUNDED = settings(max_examples=40, deadline=None)
KAT_KEYS = KeySet(bytes(range(32)), bytes(range(64, 128)))
CIPHER = EncryptingCipher(KAT_KEYS)


class FixedNonceCipher(EncryptingCipher):
    """For the object known-answer test only: a constant nonce prefix."""

    def new_nonce_prefix(self) -> bytes:
        return bytes(range(8))


def encode(
    data: bytes, cipher: Cipher = CIPHER, codec: str = "zstd", chunk_size: int = 1024, **kw: bytes
) -> tuple[bytes, bytes]:
    encoder = ObjectEncoder(cipher, codec_named(codec), chunk_size=chunk_size, **kw)  # type: ignore[arg-type]
    stored = b"".join(encoder.encode(io.BytesIO(data)))
    assert encoder.stored_size == len(stored) and encoder.size == len(data)
    return stored, encoder.object_id


def decode(stored: bytes, object_id: bytes | None, cipher: Cipher = CIPHER, piece: int = 97, **kw: bytes) -> bytes:
    decoder = ObjectDecoder(cipher, object_id, **kw)  # type: ignore[arg-type]
    out = []
    for start in range(0, len(stored), piece):
        out += decoder.feed(stored[start : start + piece])
    decoder.finish()
    return b"".join(out)


def test_name_known_answer() -> None:
    assert CIPHER.encrypt_name(b"tardis").hex() == "6039b7c67b6c9378f2ac109f2139c482f7c80d3084d4"
    assert CIPHER.decrypt_name(bytes.fromhex("6039b7c67b6c9378f2ac109f2139c482f7c80d3084d4")) == b"tardis"


def test_address_known_answer() -> None:
    hasher = CIPHER.content_hasher()
    hasher.update(b"tar")
    hasher.update(b"dis")
    assert hasher.hexdigest() == "36663d9f23aa665f23cf80475bcc20437831ccc784407b53464903adea9d75f5"
    assert hasher.hexdigest() != hashlib.sha256(b"tardis").hexdigest()


def test_object_known_answer() -> None:
    stored, object_id = encode(b"tardis " * 1000, FixedNonceCipher(KAT_KEYS), codec="none", chunk_size=4096)
    assert object_id == b"3d4d478d5ab7982181f2443cf13b9c0d6e5eaedee2975a12a447f26405d31d4d"
    assert hashlib.sha256(stored).hexdigest() == "66c0d5292eb1f814ce76da6e9eacbb1822382adc151f2ce39101d147d40a7576"


def test_names() -> None:
    assert CIPHER.encrypt_name(b"") == b"" and CIPHER.decrypt_name(b"") == b""
    sealed = CIPHER.encrypt_name(b"a name")
    assert sealed == CIPHER.encrypt_name(b"a name") != CIPHER.encrypt_name(b"a nam3")
    assert b"a name" not in sealed
    other = EncryptingCipher(KeySet.generate())
    for bad in (sealed[:-1] + bytes([sealed[-1] ^ 1]), sealed[:5], b"x"):
        with pytest.raises(Corrupt, match=r"^a stored name could not be decrypted: wrong keys or a damaged catalog$"):
            CIPHER.decrypt_name(bad)
    with pytest.raises(Corrupt):
        other.decrypt_name(sealed)


def test_texts() -> None:
    for text in ("", "daily", "tardis --full /home 'ü'"):
        sealed = CIPHER.encrypt_text(text)
        assert CIPHER.decrypt_text(sealed) == text
        assert NullCipher().encrypt_text(text) == text == NullCipher().decrypt_text(text)
    sealed = CIPHER.encrypt_text("daily")
    assert sealed.startswith("~") and "daily" not in sealed and "=" not in sealed
    for bad in ("daily", "~", sealed[:-2], "~" + "A" * 40):
        with pytest.raises(Corrupt):
            CIPHER.decrypt_text(bad)
    # a name's ciphertext cannot pass as a text
    import base64

    as_text = "~" + base64.urlsafe_b64encode(CIPHER.encrypt_name(b"daily")).decode().rstrip("=")
    with pytest.raises(Corrupt):
        CIPHER.decrypt_text(as_text)


@BOUNDED
@given(data=st.binary(max_size=5000), codec=st.sampled_from(["none", "zstd", "zlib"]), piece=st.integers(1, 700))
def test_round_trip(data: bytes, codec: str, piece: int) -> None:
    stored, object_id = encode(data, codec=codec)
    assert decode(stored, object_id, piece=piece) == data
    reader = ObjectReader(CIPHER, io.BytesIO(stored), object_id, kind=KIND_FULL)
    assert reader.read(0, len(data) + 10) == data
    assert reader.read(len(data) // 3, 1500) == data[len(data) // 3 : len(data) // 3 + 1500]


def test_contents_are_sealed() -> None:
    data = b"secret words " * 500
    stored, object_id = encode(data, codec="none")
    assert b"secret words" not in stored and object_id not in stored
    again, same_id = encode(data, codec="none")
    assert same_id == object_id and again != stored  # fresh nonce prefix per object


@BOUNDED
@given(data=st.binary(max_size=4000), where=st.integers(min_value=0), flip=st.integers(1, 255))
def test_any_flipped_byte_is_detected(data: bytes, where: int, flip: int) -> None:
    stored, object_id = encode(data)
    damaged = bytearray(stored)
    damaged[where % len(stored)] ^= flip
    with pytest.raises(Corrupt):
        decode(bytes(damaged), object_id)


@pytest.mark.parametrize("part", ["header", "chunk", "identity"])
def test_tampering_each_part(part: str) -> None:
    data = os.urandom(5000)
    stored, object_id = encode(data, codec="none", chunk_size=1024)
    header_len = 4 + 4 + 4 + 1 + 8 + 1
    where = {"header": 6, "chunk": header_len + 10, "identity": len(stored) - 24 - 5 * 12 - 3}[part]
    damaged = bytearray(stored)
    damaged[where] ^= 0x40
    with pytest.raises(Corrupt):
        decode(bytes(damaged), object_id)
    with pytest.raises(Corrupt):
        reader = ObjectReader(CIPHER, io.BytesIO(bytes(damaged)), object_id)
        reader.read(0, len(data))


def test_empty_object_header_is_authenticated() -> None:
    stored, object_id = encode(b"")
    assert decode(stored, object_id) == b""
    damaged = bytearray(stored)
    damaged[8] ^= 1  # chunk size: no chunk authenticates it, the identity record does
    with pytest.raises(Corrupt, match="identity record"):
        decode(bytes(damaged), object_id)


def test_swapped_objects_are_refused() -> None:
    _first, first_id = encode(b"first content " * 300)
    second, _second_id = encode(b"second content " * 300)
    with pytest.raises(Corrupt, match="swapped or misplaced"):
        ObjectReader(CIPHER, io.BytesIO(second), first_id)
    decoder = ObjectDecoder(CIPHER, first_id)
    with pytest.raises(Corrupt, match="swapped or misplaced"):
        decoder.feed(second)  # whole file in one piece: refused as the identity record arrives
    with pytest.raises(Corrupt):
        decode(second, first_id)


def test_identity_given_for_a_delta() -> None:
    delta = b"pretend rdiff delta"
    full_id = b"f" * 64
    stored, delta_hash = encode(delta, kind=KIND_DELTA, identity=full_id)  # type: ignore[arg-type]
    assert delta_hash != full_id
    assert decode(stored, None, identity=full_id) == delta
    with pytest.raises(Corrupt, match="swapped or misplaced"):
        decode(stored, None, identity=b"e" * 64)
    assert ObjectReader(CIPHER, io.BytesIO(stored), full_id).recorded_id == full_id


def test_truncated_object() -> None:
    data = os.urandom(4000)
    stored, object_id = encode(data)
    for cut in (1, 24, 30, 60, len(stored) // 2, len(stored) - 10):
        with pytest.raises(Corrupt):
            decode(stored[: len(stored) - cut], object_id)
        with pytest.raises(Corrupt):
            ObjectReader(CIPHER, io.BytesIO(stored[: len(stored) - cut]), object_id)


def test_dropped_last_chunk_is_detected() -> None:
    """Cut out the last chunk and rebuild a consistent index: the last-chunk flag still catches it."""
    data = os.urandom(3000)
    stored, object_id = encode(data, codec="none", chunk_size=1024)
    reader = ObjectReader(CIPHER, io.BytesIO(stored), object_id)
    entries = reader._entries
    last_offset = entries[-1][0]
    end = stored.index(b"\xff\xff\xff\xff", last_offset)
    shortened = stored[:last_offset] + stored[end:]
    with pytest.raises(Corrupt):
        decode(shortened, object_id)


def test_wrong_keys_and_wrong_cipher() -> None:
    stored, object_id = encode(b"data " * 100)
    with pytest.raises(Corrupt):
        decode(stored, object_id, cipher=EncryptingCipher(KeySet.generate()))
    with pytest.raises(PermissionDenied, match="password is needed"):
        decode(stored, object_id, cipher=NullCipher())
    plain, plain_id = encode(b"data " * 100, cipher=NullCipher())
    with pytest.raises(Corrupt, match="unencrypted"):
        decode(plain, plain_id, cipher=CIPHER)
    with pytest.raises(Corrupt, match="unencrypted"):
        ObjectReader(CIPHER, io.BytesIO(plain), plain_id)


def test_range_reads_cross_chunks() -> None:
    data = os.urandom(10_000)
    stored, object_id = encode(data, codec="zstd", chunk_size=1024)
    reader = ObjectReader(CIPHER, io.BytesIO(stored), object_id)
    assert reader.size == len(data)
    for offset, length in [(0, 0), (0, 1), (1023, 2), (1024, 1024), (5000, 3000), (9999, 10), (10_000, 5), (0, 10_000)]:
        assert reader.read(offset, length) == data[offset : offset + length]


def test_parallel_encoding_matches() -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = os.urandom(50_000)
    encoder = ObjectEncoder(CIPHER, codec_named("zstd"), chunk_size=4096)
    with ThreadPoolExecutor(4) as pool:
        stored = b"".join(encoder.encode(io.BytesIO(data), pool))
    assert decode(stored, encoder.object_id, piece=5000) == data


def test_address_is_hmac_sha256_of_the_address_key() -> None:
    import hmac

    expected = hmac.new(KAT_KEYS.address_key, b"tardis", hashlib.sha256).hexdigest()
    hasher = CIPHER.content_hasher()
    hasher.update(b"tardis")
    assert hasher.hexdigest() == expected
