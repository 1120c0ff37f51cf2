"""The server key file and the subkeys derived from it."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from tardis_common import errors
from tardis_common.auth import derive_subkey, load_or_create_server_key


def test_created_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "server.key"
    key = load_or_create_server_key(str(path))
    assert len(key) == 32
    assert path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["server.key"]  # no temporary file left


def test_reused(tmp_path: Path) -> None:
    path = str(tmp_path / "server.key")
    first = load_or_create_server_key(path)
    assert load_or_create_server_key(path) == first
    assert load_or_create_server_key(str(tmp_path / "other.key")) != first


def test_existing_key_kept(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    path.write_bytes(b"k" * 32)
    path.chmod(0o600)
    assert load_or_create_server_key(str(path)) == b"k" * 32


@pytest.mark.parametrize("content", [b"", b"short", b"k" * 31, b"k" * 33, b"k" * 4096])
def test_wrong_length_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "server.key"
    path.write_bytes(content)
    with pytest.raises(errors.ConfigError, match=r"^server key .*server\.key has .*expected exactly 32$"):
        load_or_create_server_key(str(path))
    assert path.read_bytes() == content  # never overwritten


def test_unreadable_refused(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    path.mkdir()
    with pytest.raises(errors.ConfigError, match=r"is unreadable") as info:
        load_or_create_server_key(str(path))
    assert "\n" not in str(info.value)


def test_path_through_a_file_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    expected = r"^server key .*file/server\.key is unreadable: Not a directory$"
    with pytest.raises(errors.ConfigError, match=expected):
        load_or_create_server_key(str(blocker / "server.key"))


def test_uncreatable_refused() -> None:
    # procfs refuses new files even to root (a read-only directory would not stop root).
    with pytest.raises(errors.ConfigError, match=r"^cannot create server key /proc/1/server\.key: "):
        load_or_create_server_key("/proc/1/server.key")


def test_loose_permissions_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "server.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        load_or_create_server_key(str(path))
    assert "readable by other users" in caplog.text


def test_subkeys() -> None:
    key = os.urandom(32)
    a = derive_subkey(key, b"a")
    assert len(a) == 32
    assert derive_subkey(key, b"a") == a
    assert derive_subkey(key, b"b") != a
    assert derive_subkey(os.urandom(32), b"a") != a
    with pytest.raises(errors.ConfigError):
        derive_subkey(b"short", b"a")
