"""sonic getconfig / setconfig: a client's own set-naming settings override the server's."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from helpers.trees import make_tree
from tardis_cli import backup, sonic


def test_client_naming_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository = str(tmp_path / "repo" / "host")
    source = make_tree(tmp_path / "src", files=5)
    assert backup.main(["--repository", repository, "--create", str(source)]) == 0
    code = sonic.main(["setconfig", "--repository", repository, "Formats=Nightly-%Y-%m-%d", "Priorities=55"])
    assert code == 0
    capsys.readouterr()
    assert sonic.main(["getconfig", "--repository", repository, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"Formats": "Nightly-%Y-%m-%d", "Priorities": "55"}
    assert backup.main(["--repository", repository, str(source)]) == 0
    capsys.readouterr()
    assert sonic.main(["list", "--repository", repository, "--json"]) == 0
    newest = json.loads(capsys.readouterr().out)[-1]
    assert newest["name"] == time.strftime("Nightly-%Y-%m-%d") and newest["priority"] == 55


@pytest.mark.parametrize(
    "assignment, needle",
    [("Priorities=high", "integers"), ("Colour=red", "KEY one of"), ("Formats", "KEY=VALUE")],
)
def test_bad_settings_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], assignment: str, needle: str
) -> None:
    repository = str(tmp_path / "repo" / "host")
    assert backup.main(["--repository", repository, "--create", str(make_tree(tmp_path / "s", files=2))]) == 0
    capsys.readouterr()
    assert sonic.main(["setconfig", "--repository", repository, assignment]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert sonic.main(["getconfig", "--repository", repository]) == 0
    assert capsys.readouterr().out == ""


def test_setconfig_over_the_network_needs_an_admin(
    cluster: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"tardis://{cluster.ingest.address}/netclient"  # type: ignore[attr-defined]
    assert backup.main(["--repository", url, "--create", str(make_tree(tmp_path / "s", files=2))]) == 0
    capsys.readouterr()
    assert sonic.main(["setconfig", "--repository", url, "Priorities=5", "Formats=X-%Y"]) == 1
    assert "admin credential" in capsys.readouterr().err


def test_sonic_create_then_first_backup(repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sonic.main(["create", "--repository", repository]) == 0
    assert "created client" in capsys.readouterr().out
    assert sonic.main(["create", "--repository", repository]) == 1
    assert "already exists" in capsys.readouterr().err
    source = make_tree(tmp_path / "src", files=5)
    assert backup.main(["--repository", repository, str(source)]) == 0  # no --create needed any more
