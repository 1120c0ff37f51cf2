"""What needs the server's admin credential over TCP: setconfig, delete, unlock and purges beyond
the KeepPeriods; a client's own password (or anonymous access) grants only the rest."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.cli import one_line_error
from helpers.services import Service, start
from helpers.trees import make_tree
from tardis_blobstore.core import BlobStoreCore
from tardis_catalog.core import CatalogCore
from tardis_cli import backup, sonic
from tardis_common.clock import FixedClock
from tardis_common.rpc import make_server
from tardis_ingest import grpc_service
from tardis_ingest.access import AccessPolicy
from tardis_ingest.core import IngestCore

PASSWORD = "the client's own password"
ADMIN_ENV = "TARDIS_ADMIN_SECRET_FILE"
DAY_S = 24 * 3600


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARDIS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv(ADMIN_ENV, raising=False)


def secret_file(path: Path, secret: str | None = None) -> Path:
    path.write_text((secret or secrets.token_urlsafe(24)) + "\n")
    path.chmod(0o600)
    return path


def names(url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> list[str]:
    capsys.readouterr()
    assert sonic.main(["list", "--repository", url, "--json", *extra]) == 0
    return [s["name"] for s in json.loads(capsys.readouterr().out)]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Service, Path]]:
    """tardisd with an admin secret; clients log in with their passwords."""
    base = tmp_path / "server"
    base.mkdir()
    admin = secret_file(tmp_path / "admin.secret")
    service = start(
        "tardis_ingest.tardisd",
        "--basedir",
        str(base),
        "--port",
        "0",
        "--allow-new-hosts",
        "--admin-secret-file",
        str(admin),
    )
    try:
        yield service, admin
    finally:
        assert service.stop() == 0


def test_admin_operations_need_the_admin_secret(
    daemon: tuple[Service, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, admin = daemon
    url = f"tardis://{service.address}/host"
    pw = ("-P", PASSWORD)
    source = make_tree(tmp_path / "src", files=5)
    for n in range(3):
        (source / "changing.txt").write_text(f"version {n}\n")
        args = ["--repository", url, *pw, "--name", f"s{n}"] + (["--create"] if n == 0 else [])
        assert backup.main([*args, str(source)]) == 0
    assert sonic.main(["lock", "--repository", url, *pw, "s1"]) == 0  # locking needs no admin

    # The client's password alone: refused, one line each, nothing changed.
    refusals = [
        (["setconfig", "Priorities=5", "Formats=X-%Y"], "changing a client's settings needs an admin credential"),
        (["delete", "s0", "--confirm"], "deleting backup sets needs an admin credential"),
        (["unlock", "s1"], "unlocking a backup set needs an admin credential"),
    ]
    for command, needle in refusals:
        capsys.readouterr()
        assert sonic.main([command[0], "--repository", url, *pw, *command[1:]]) == 1
        one_line_error(capsys, needle)
    assert names(url, capsys, *pw) == ["s0", "s1", "s2"]
    assert sonic.main(["getconfig", "--repository", url, *pw]) == 0
    assert capsys.readouterr().out == ""

    # A wrong admin secret: every call is refused, even a read.
    monkeypatch.setenv(ADMIN_ENV, str(secret_file(tmp_path / "wrong.secret")))
    for command in (["list"], ["delete", "s0", "--confirm"]):
        capsys.readouterr()
        assert sonic.main([command[0], "--repository", url, *pw, *command[1:]]) == 1
        one_line_error(capsys, "the admin credential is wrong or this server has none")
    # An admin secret file that cannot be read: a configuration error, one line as well.
    monkeypatch.setenv(ADMIN_ENV, str(tmp_path / "absent.secret"))
    capsys.readouterr()
    assert sonic.main(["list", "--repository", url, *pw]) == 2
    one_line_error(capsys, "cannot read the admin secret file")

    # The right admin secret: accepted.
    monkeypatch.setenv(ADMIN_ENV, str(admin))
    capsys.readouterr()
    assert sonic.main(["setconfig", "--repository", url, *pw, "Priorities=5", "Formats=X-%Y"]) == 0
    assert capsys.readouterr().out == "Formats = X-%Y\nPriorities = 5\n"
    assert sonic.main(["getconfig", "--repository", url, *pw, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"Formats": "X-%Y", "Priorities": "5"}
    assert sonic.main(["unlock", "--repository", url, *pw, "s1"]) == 0
    assert sonic.main(["delete", "--repository", url, *pw, "s0", "s1", "--confirm"]) == 0
    assert "2 sets deleted" in capsys.readouterr().out
    assert names(url, capsys, *pw) == ["s2"]
    # An operator needs no client password to manage sets: the admin credential suffices.
    (source / "changing.txt").write_text("version 3\n")
    assert backup.main(["--repository", url, *pw, "--name", "s3", str(source)]) == 0
    assert names(url, capsys) == ["s2", "s3"]
    capsys.readouterr()
    assert sonic.main(["delete", "--repository", url, "s2", "--confirm"]) == 0
    assert "1 sets deleted" in capsys.readouterr().out
    monkeypatch.delenv(ADMIN_ENV)
    assert names(url, capsys, *pw) == ["s3"]


def test_a_purge_without_admin_rights_keeps_sets_within_their_keep_periods(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An in-process server on a FixedClock, reached over TCP by the command-line tools."""
    base = tmp_path / "server"
    base.mkdir()
    admin = secret_file(tmp_path / "admin.secret")
    clock = FixedClock(time.time_ns() - 10 * DAY_S * 1_000_000_000)  # sets end ten days ago
    catalog = CatalogCore(base, clock=clock)
    core = IngestCore(
        catalog,
        BlobStoreCore(base),
        clock=clock,
        access=AccessPolicy(trust_local=False, allow_anonymous=True, allow_new_clients=True),
    )
    guard = grpc_service.ingest_guard(core.logins.tokens.check, admin.read_text().strip())
    server, port = make_server("127.0.0.1:0", [grpc_service.handler(core, guard)])
    try:
        url = f"tardis://127.0.0.1:{port}/host"
        assert sonic.main(["create", "--repository", url]) == 0
        # Set names without dates, so each backup takes the next one: A kept forever, B 180
        # days, C 30 days, D and E one day.
        monkeypatch.setenv(ADMIN_ENV, str(admin))
        naming = ["Formats=A,B,C,D,E", "Priorities=50,40,30,20,10", "KeepPeriods=0,180,30,1,1"]
        assert sonic.main(["setconfig", "--repository", url, *naming]) == 0
        monkeypatch.delenv(ADMIN_ENV)
        source = make_tree(tmp_path / "src", files=5)
        for n in range(5):
            (source / "changing.txt").write_text(f"version {n}\n")
            assert backup.main(["--repository", url, str(source)]) == 0
            clock.advance(60)
        assert names(url, capsys) == ["A", "B", "C", "D", "E"]

        clock.advance(2 * DAY_S)  # D is past its one day; E is the newest and always stays
        purge = ["purge", "--repository", url, "--priority", "100", "--keep-hours", "0", "--confirm"]
        capsys.readouterr()
        assert sonic.main(purge) == 0
        out = capsys.readouterr().out
        assert "purged D (id 4)" in out and "1 sets purged" in out
        assert names(url, capsys) == ["A", "B", "C", "E"]

        clock.advance(29 * DAY_S)  # now C is past its 30 days too
        assert sonic.main(purge) == 0
        assert names(url, capsys) == ["A", "B", "E"]

        # The admin purges beyond the KeepPeriods.
        monkeypatch.setenv(ADMIN_ENV, str(admin))
        assert sonic.main(purge) == 0
        assert "2 sets purged" in capsys.readouterr().out
        assert names(url, capsys) == ["E"]
    finally:
        server.stop(None)
        catalog.close()
