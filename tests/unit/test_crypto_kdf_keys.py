"""Key derivation, key wrapping, key files and the printable backup: known answers and failures."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from pathlib import Path

import pytest

from tardis_common.crypto import kdf
from tardis_common.crypto.kdf import KdfParams, check_params, derive, new_params
from tardis_common.crypto.keyfile import parse_printable_backup, printable_backup, read_key_file, write_key_file
from tardis_common.crypto.keys import KeySet, _wrap_with_nonce, unwrap_keys, wrap_keys
from tardis_common.errors import Corrupt, InvalidArgument, NotFound, PermissionDenied, Unauthenticated

KAT_PARAMS = KdfParams("scrypt", 2**10, 8, 1, bytes(range(16)))
KAT_KEYS = KeySet(bytes(range(32)), bytes(range(64, 128)))
KAT_KEK = bytes(range(100, 132))


@pytest.fixture
def test_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARDIS_TEST_KDF", "1")


@pytest.fixture
def real_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TARDIS_TEST_KDF", raising=False)


def test_derive_known_answer(test_kdf: None) -> None:
    secrets = derive(b"correct horse battery staple", KAT_PARAMS)
    assert secrets.kek.hex() == "e7b3ea3511872b099af7e6dbc7a022208802ffa45b9ee96867ca802483f8b779"
    assert secrets.auth_secret.hex() == "d373abd4cbeee6ff5f50c4a2ecdb713c9f207b906195164cdd40599664053301"
    assert "kek" not in repr(secrets) or secrets.kek.hex() not in repr(secrets)


def test_derive_depends_on_password_and_salt(test_kdf: None) -> None:
    base = derive(b"pw", KAT_PARAMS)
    assert derive(b"pw", KAT_PARAMS) == base
    assert derive(b"pW", KAT_PARAMS).kek != base.kek
    other_salt = KdfParams("scrypt", 2**10, 8, 1, bytes(16))
    assert derive(b"pw", other_salt).kek != base.kek
    assert base.kek != base.auth_secret


def test_params_json_round_trip() -> None:
    params = new_params()
    assert KdfParams.from_json(params.to_json()) == params
    assert len(params.salt) == 16 and new_params().salt != params.salt
    assert json.loads(KAT_PARAMS.to_json()) == {
        "algorithm": "scrypt",
        "n": 1024,
        "p": 1,
        "r": 8,
        "salt": "AAECAwQFBgcICQoLDA0ODw==",
    }


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[]",
        b'{"algorithm":"scrypt","n":"x","r":8,"p":1,"salt":"AA=="}',
        b'{"algorithm":"scrypt","n":1024,"r":8,"p":1,"salt":"***"}',
        b'{"n":1024,"r":8,"p":1,"salt":"AA=="}',
        b'{"algorithm":"scrypt","n":true,"r":8,"p":1,"salt":"AA=="}',
        b"\xff\xfe",
    ],
)
def test_malformed_params_are_corrupt(data: bytes) -> None:
    with pytest.raises(Corrupt) as caught:
        KdfParams.from_json(data)
    assert "\n" not in str(caught.value)


def test_production_defaults(real_kdf: None) -> None:
    params = new_params()
    assert (params.algorithm, params.n, params.r, params.p) == ("scrypt", 2**17, 8, 1)
    check_params(params)
    check_params(KdfParams("scrypt", kdf.MIN_N, 8, 1, bytes(16)))


@pytest.mark.parametrize(
    "params",
    [
        KdfParams("scrypt", 2**14, 8, 1, bytes(16)),
        KdfParams("scrypt", 2**17, 4, 1, bytes(16)),
        KdfParams("scrypt", 2**17, 8, 0, bytes(16)),
        KdfParams("scrypt", 2**17, 8, 1, bytes(8)),
        KdfParams("pbkdf2", 2**17, 8, 1, bytes(16)),
        KAT_PARAMS,
    ],
)
def test_weak_params_are_refused(real_kdf: None, params: KdfParams) -> None:
    with pytest.raises(PermissionDenied, match="below the minimum"):
        check_params(params)
    with pytest.raises(PermissionDenied):
        derive(b"pw", params)


@pytest.mark.parametrize(
    "params",
    [
        KdfParams("scrypt", 2**30, 8, 1, bytes(16)),
        KdfParams("scrypt", 2**17 + 1, 8, 1, bytes(16)),
        KdfParams("scrypt", 2**20, 32, 1, bytes(16)),
    ],
)
def test_absurd_params_are_refused(real_kdf: None, params: KdfParams) -> None:
    with pytest.raises(PermissionDenied, match="above the maximum"):
        check_params(params)


def test_test_setting_lowers_cost_and_minimum(test_kdf: None) -> None:
    params = new_params()
    assert params.n == 2**10
    check_params(params)
    with pytest.raises(PermissionDenied):
        check_params(KdfParams("scrypt", 2**9, 8, 1, bytes(16)))


def test_keyset_known_answers() -> None:
    assert KAT_KEYS.address_key.hex() == "e583f269d365f2f71a36a4f3ecc520f379001a0eb4b1af3c936f01f4cef2a7e5"
    assert KAT_KEYS.manifest_key.hex() == "b7dbd64e0411c8e67427be2e700164a4fb83e49e97c1ae0818cd0bf8f097fdd3"
    assert KAT_KEYS.address_key != KAT_KEYS.manifest_key
    assert KAT_KEYS.content_key.hex() not in repr(KAT_KEYS)


def test_keyset_generate_and_sizes() -> None:
    keys = KeySet.generate()
    assert len(keys.content_key) == 32 and len(keys.name_key) == 64
    assert KeySet.generate() != keys
    with pytest.raises(InvalidArgument):
        KeySet(bytes(16), bytes(64))


def test_wrap_known_answer() -> None:
    blob = _wrap_with_nonce(KAT_KEYS, KAT_KEK, "alice", bytes(range(12)))
    expected = (
        "54444b5701000102030405060708090a0b9faa3a4fb948c7ee951a94c39a9786bdf9062f833916c6"
        "32df0bf3104ff15ffff0778e97696f448dca98aaa65aa2080784118de236b63f55cce758f59e3442"
        "afbf63d9bc0de80a20a08febc405cd1cf2a44f75807ef193aca71f7d586977d8afd428f686476fce"
        "b73970848316eaae7d"
    )
    assert blob.hex() == expected
    assert unwrap_keys(blob, KAT_KEK, "alice") == KAT_KEYS


def test_wrap_round_trip_uses_fresh_nonces() -> None:
    keys = KeySet.generate()
    first, second = wrap_keys(keys, KAT_KEK, "alice"), wrap_keys(keys, KAT_KEK, "alice")
    assert first != second and len(first) == 129
    assert unwrap_keys(first, KAT_KEK, "alice") == keys == unwrap_keys(second, KAT_KEK, "alice")


def test_wrong_password_and_other_clients_blob() -> None:
    blob = wrap_keys(KAT_KEYS, KAT_KEK, "alice")
    with pytest.raises(Unauthenticated, match=r"^wrong password for client alice$"):
        unwrap_keys(blob, bytes(32), "alice")
    with pytest.raises(Unauthenticated, match=r"^wrong password for client bob$"):
        unwrap_keys(blob, KAT_KEK, "bob")


@pytest.mark.parametrize("damage", ["truncated", "empty", "magic", "version", "long"])
def test_malformed_blob_is_corrupt(damage: str) -> None:
    blob = wrap_keys(KAT_KEYS, KAT_KEK, "alice")
    bad = {
        "truncated": blob[:-1],
        "empty": b"",
        "magic": b"XDKW" + blob[4:],
        "version": blob[:4] + b"\x02" + blob[5:],
        "long": blob + b"\0",
    }[damage]
    with pytest.raises(Corrupt):
        unwrap_keys(bad, KAT_KEK, "alice")


def test_end_to_end_password_to_keys(test_kdf: None) -> None:
    params = new_params()
    keys = KeySet.generate()
    blob = wrap_keys(keys, derive(b"s3cret", params).kek, "alice")
    assert unwrap_keys(blob, derive(b"s3cret", params).kek, "alice") == keys
    with pytest.raises(Unauthenticated):
        unwrap_keys(blob, derive(b"secret", params).kek, "alice")


# Key files


def _key_file(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "alice.keys"
    wrapped = wrap_keys(KAT_KEYS, KAT_KEK, "alice")
    write_key_file(path, "alice", KAT_PARAMS, wrapped)
    return path, wrapped


def test_key_file_round_trip(tmp_path: Path) -> None:
    path, wrapped = _key_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path, "alice") == (KAT_PARAMS, wrapped)
    assert os.listdir(tmp_path) == ["alice.keys"]
    body = json.loads(path.read_text())
    assert body["format"] == "tardis-keys" and body["version"] == 1 and body["kdf"]["n"] == 1024
    write_key_file(path, "alice", KAT_PARAMS, wrapped)  # overwrite in place
    assert read_key_file(path, "alice") == (KAT_PARAMS, wrapped)


def test_key_file_of_another_client(tmp_path: Path) -> None:
    path, _ = _key_file(tmp_path)
    with pytest.raises(InvalidArgument, match=f"^key file {path} belongs to client alice, not bob$"):
        read_key_file(path, "bob")


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        read_key_file(tmp_path / "nope", "alice")


@pytest.mark.parametrize("damage", ["truncated", "garbled", "empty", "edited", "no check", "not keys", "directory"])
def test_damaged_key_file(tmp_path: Path, damage: str) -> None:
    path, _ = _key_file(tmp_path)
    text = path.read_text()
    body = json.loads(text)
    if damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "garbled":
        path.write_bytes(b"\xff" + text.encode()[1:])
    elif damage == "empty":
        path.write_text("")
    elif damage == "edited":
        body["kdf"]["n"] = 2**20
        path.write_text(json.dumps(body))
    elif damage == "no check":
        del body["check"]
        path.write_text(json.dumps(body))
    elif damage == "not keys":
        path.write_text('{"hello": 1}')
    else:
        path.unlink()
        path.mkdir()
    with pytest.raises(Corrupt, match=f"^key file {path} is damaged: ") as caught:
        read_key_file(path, "alice")
    assert "\n" not in str(caught.value)


# Printable backup


def test_printable_backup_round_trip() -> None:
    wrapped = wrap_keys(KAT_KEYS, KAT_KEK, "alice")
    page = printable_backup("alice", KAT_PARAMS, wrapped)
    assert "alice" in page and "TARDIS KEY BACKUP" in page
    assert all(len(line) <= 60 for line in page.splitlines() if line[:2].isdigit())
    assert all(len(line) <= 80 for line in page.splitlines())
    assert parse_printable_backup(page, "alice") == (KAT_PARAMS, wrapped)
    # retyped: lower case, extra and missing spaces, indentation, blank lines
    retyped = "\n".join(
        "   " + line.lower().replace(" ", "", 2) + "  \n" if line[:2].isdigit() else line for line in page.splitlines()
    )
    assert parse_printable_backup(retyped, "alice") == (KAT_PARAMS, wrapped)
    assert unwrap_keys(parse_printable_backup(retyped, "alice")[1], KAT_KEK, "alice") == KAT_KEYS


def _data_lines(page: str) -> list[int]:
    return [i for i, line in enumerate(page.splitlines()) if line[:2].isdigit()]


def test_damaged_backup_line_is_named() -> None:
    page = printable_backup("alice", KAT_PARAMS, wrap_keys(KAT_KEYS, KAT_KEK, "alice"))
    lines = page.splitlines()
    where = _data_lines(page)[2]
    line = lines[where]
    typo = "B" if line[10] != "B" else "C"
    lines[where] = line[:10] + typo + line[11:]
    with pytest.raises(Corrupt, match="line 3 does not match its checksum"):
        parse_printable_backup("\n".join(lines), "alice")


def test_missing_or_swapped_backup_lines() -> None:
    page = printable_backup("alice", KAT_PARAMS, wrap_keys(KAT_KEYS, KAT_KEK, "alice"))
    lines = page.splitlines()
    data = _data_lines(page)
    without = [line for i, line in enumerate(lines) if i != data[1]]
    with pytest.raises(Corrupt, match="line 2 is missing or out of order"):
        parse_printable_backup("\n".join(without), "alice")
    swapped = list(lines)
    swapped[data[0]], swapped[data[1]] = swapped[data[1]], swapped[data[0]]
    with pytest.raises(Corrupt, match="line 1 is missing or out of order"):
        parse_printable_backup("\n".join(swapped), "alice")
    with pytest.raises(Corrupt, match="BEGIN or END"):
        parse_printable_backup("\n".join(lines[: data[-1] + 1]), "alice")
    with pytest.raises(Corrupt, match="SHA256"):
        parse_printable_backup("\n".join(line for line in lines if not line.startswith("SHA256")), "alice")


def test_backup_of_another_client() -> None:
    page = printable_backup("alice", KAT_PARAMS, wrap_keys(KAT_KEYS, KAT_KEK, "alice"))
    with pytest.raises(InvalidArgument, match="belongs to client alice, not bob"):
        parse_printable_backup(page, "bob")


def _hkdf_sha256(master: bytes, info: bytes) -> bytes:
    """RFC 5869 with an empty salt and one output block, from the standard library."""
    prk = hmac.new(bytes(32), master, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_known_answers_agree_with_the_standard_library(test_kdf: None) -> None:
    """The documented construction, recomputed independently of the cryptography package."""
    master = hashlib.scrypt(b"correct horse battery staple", salt=KAT_PARAMS.salt, n=2**10, r=8, p=1, dklen=32)
    secrets = derive(b"correct horse battery staple", KAT_PARAMS)
    assert secrets.kek == _hkdf_sha256(master, b"tardis kek v1")
    assert secrets.auth_secret == _hkdf_sha256(master, b"tardis auth v1")
    assert KAT_KEYS.address_key == _hkdf_sha256(KAT_KEYS.content_key, b"tardis address v1")
    assert KAT_KEYS.manifest_key == _hkdf_sha256(KAT_KEYS.content_key, b"tardis manifest v1")
