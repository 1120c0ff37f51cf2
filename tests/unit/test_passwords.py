"""Password sources: command-line options, config keys, and tardisfs mount options."""

from __future__ import annotations

from pathlib import Path

import pytest

from tardis_cli.passwords import get_password, mount_password_options
from tardis_common.errors import ConfigError
from tardis_common.settings import load_client_settings


def test_each_source_gives_its_first_line(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from a file\nsecond line\n")
    assert get_password(load_client_settings({"password": "given"})) == b"given"
    assert get_password(load_client_settings({"password_file": str(secret)})) == b"from a file"
    assert get_password(load_client_settings({"password_file": secret.as_uri()})) == b"from a file"
    assert get_password(load_client_settings({"password_prog": "printf 'prog\\nmore'"})) == b"prog"
    assert get_password(load_client_settings({})) is None


def test_two_sources_and_bad_sources_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at most one password source"):
        get_password(load_client_settings({"password": "a", "password_prog": "echo b"}))
    with pytest.raises(ConfigError, match="exited with status 1"):
        get_password(load_client_settings({"password_prog": "false"}))
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty password"):
        get_password(load_client_settings({"password_file": str(empty)}))
    with pytest.raises(ConfigError, match="--keys"):
        get_password(load_client_settings({"keyfile": str(tmp_path / "k")}))


def test_mount_options_name_the_same_sources(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("mounted\n")
    given = mount_password_options(f"ro,pwfile={secret},keys=/k,allow_other")
    assert given == {"password_file": str(secret), "keyfile": "/k"}
    assert mount_password_options({"password": "", "pwprog": "echo x", "repo": "/r"}) == {
        "password": "",
        "password_prog": "echo x",
    }
    settings = load_client_settings(mount_password_options(f"pwfile={secret}"))
    assert get_password(settings) == b"mounted"
