"""Repository URLs: every spelling, the seed's option forms, and the bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from tardis_common.errors import ConfigError, InvalidArgument
from tardis_common.urls import RepoURL, build_repository, default_client, parse_repository


def test_plain_absolute_path() -> None:
    url = parse_repository("/backups/myhost")
    assert url == RepoURL("file", "myhost", path=Path("/backups"))
    assert url.base_dir == Path("/backups")
    assert url.client_dir == Path("/backups/myhost")
    assert url.is_local
    assert str(url) == "file:///backups/myhost"


def test_relative_path_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_repository("store/host") == RepoURL("file", "host", path=tmp_path / "store")
    assert parse_repository("host").base_dir == tmp_path
    assert parse_repository("../x/host").base_dir == tmp_path.parent / "x"


def test_trailing_slash_and_file_url_match_path() -> None:
    plain = parse_repository("/backups/myhost/")
    assert parse_repository("file:///backups/myhost") == plain
    assert parse_repository("file:///backups/myhost/") == plain
    assert parse_repository("file://localhost/backups/myhost") == plain
    assert parse_repository("FILE:///backups/myhost") == plain


def test_file_url_is_percent_decoded_and_round_trips() -> None:
    url = parse_repository("file:///my%20backups/host")
    assert url.base_dir == Path("/my backups")
    assert parse_repository(str(url)) == url


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_repository("~/b/host").base_dir == tmp_path / "b"


@pytest.mark.parametrize(
    "text, host, port",
    [
        ("tardis://server/host", "server", 7420),
        ("tardis://server:7421/host", "server", 7421),
        ("tardis://server:7421/host/", "server", 7421),
        ("tardis://10.0.0.1:9000/host", "10.0.0.1", 9000),
        ("tardis://[::1]:7420/host", "::1", 7420),
        ("tardis://[::1]/host", "::1", 7420),
        ("tardis://[fe80::1]:9/host", "fe80::1", 9),
    ],
)
def test_tardis_urls(text: str, host: str, port: int) -> None:
    url = parse_repository(text)
    assert (url.scheme, url.host, url.port, url.client, url.path) == ("tardis", host, port, "host", None)
    assert not url.is_local


def test_explicit_port_survives_once() -> None:
    # The original built "host:port:port" from an explicit port.
    url = parse_repository("tardis://server:8000/host")
    assert url.address == "server:8000"
    assert str(url) == "tardis://server:8000/host"
    assert parse_repository(str(url)) == url


def test_ipv6_address_is_bracketed() -> None:
    url = parse_repository("tardis://[::1]:7420/host")
    assert url.address == "[::1]:7420"
    assert str(url) == "tardis://[::1]:7420/host"
    assert parse_repository(str(url)) == url


@pytest.mark.parametrize(
    "text, scheme, port",
    [
        ("http://web/host", "http", 7430),
        ("https://web/host", "https", 7430),
        ("http://web:8080/host", "http", 8080),
        ("https://web:443/host", "https", 443),
    ],
)
def test_http_urls(text: str, scheme: str, port: int) -> None:
    url = parse_repository(text)
    assert (url.scheme, url.host, url.port, url.client) == (scheme, "web", port, "host")
    assert url.address == f"web:{port}"


def test_remote_url_has_no_base_dir_and_file_url_no_address() -> None:
    with pytest.raises(InvalidArgument):
        _ = parse_repository("tardis://s/h").base_dir
    with pytest.raises(InvalidArgument):
        _ = parse_repository("/b/h").address


def test_client_name_is_percent_decoded() -> None:
    assert parse_repository("tardis://s/my%20host").client == "my host"
    assert str(parse_repository("tardis://s/my%20host")) == "tardis://s:7420/my%20host"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "ftp://server/host",
        "ssh://server/host",
        "tardis://server",
        "tardis://server/",
        "tardis:///host",
        "tardis://:7420/host",
        "tardis://server:abc/host",
        "tardis://server:99999/host",
        "tardis://server:0/host",
        "tardis://user@server/host",
        "tardis://server/host?x=1",
        "tardis://[::1/host",
        "tardis://[nothex::zz]/host",
        "tardis://bad_host!/host",
        "file://server/b/host",
        "file:relative/host",
        "/",
    ],
)
def test_bad_urls(text: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_repository(text)
    assert "\n" not in str(info.value)
    assert str(info.value)


@pytest.mark.parametrize("client", ["..", ".", "a\x00b", "x" * 256, ".hidden"])
@pytest.mark.parametrize("form", ["/b/{}", "tardis://s/{}", "https://s/{}", "file:///b/{}"])
def test_bad_client_names(form: str, client: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_repository(form.format(client))


def test_client_in_a_url_is_one_component() -> None:
    # In a path the last component is the client, so "/b/a/b" is client "b" under /b/a.
    assert parse_repository("/b/a/b") == RepoURL("file", "b", path=Path("/b/a"))
    for text in ("tardis://s/a/b", "http://s/a/b"):
        with pytest.raises(InvalidArgument, match="separator"):
            parse_repository(text)


def test_percent_encoded_separator_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="separator"):
        parse_repository("tardis://s/a%2Fb")


def test_255_byte_client_name_is_fine() -> None:
    assert parse_repository("tardis://s/" + "x" * 255).client == "x" * 255


# --- the seed's spellings ----------------------------------------------------------------------


def test_repository_wins_over_everything() -> None:
    url = build_repository(repository="tardis://a:1/x", server="b", port=2, client="y", database="/d")
    assert url == RepoURL("tardis", "x", host="a", port=1)


def test_database_and_client_make_a_file_url(tmp_path: Path) -> None:
    url = build_repository(database=str(tmp_path), client="box")
    assert url == RepoURL("file", "box", path=tmp_path)
    assert build_repository(database=str(tmp_path), client="box", server="ignored") == url


def test_server_port_client_make_a_tardis_url() -> None:
    assert build_repository(server="srv", port=7500, client="box") == RepoURL("tardis", "box", host="srv", port=7500)
    assert build_repository(server="srv", client="box").port == 7420
    assert build_repository(server="[::1]", client="box").address == "[::1]:7420"
    assert build_repository(server="::1", client="box").address == "[::1]:7420"


def test_client_defaults_to_the_host_name() -> None:
    assert build_repository(server="srv").client == default_client()
    assert "." not in default_client()


def test_nothing_given_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no repository given: use --repository"):
        build_repository()
    with pytest.raises(ConfigError):
        build_repository(client="box", port=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server": "srv", "port": 0},
        {"server": "srv", "port": 70000},
        {"server": "srv", "port": "x"},
        {"server": "bad host"},
        {"server": "srv", "client": ".."},
        {"database": "/d", "client": "a/b"},
    ],
)
def test_bad_seed_spellings(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        build_repository(**kwargs)  # type: ignore[arg-type]
