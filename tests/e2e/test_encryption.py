"""Encrypted clients: the password, the keys, and a server that never learns what it stores."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.cli import one_line_error
from helpers.services import Service, start
from helpers.trees import assert_same_tree, make_tree
from tardis_cli import backup, regenerate, sonic

PASSWORD = "correct horse battery staple"


def tardis(*args: str) -> int:
    return backup.main(list(args))


def set_names(repository: str, capsys: pytest.CaptureFixture[str], *password: str) -> list[str]:
    capsys.readouterr()
    assert sonic.main(["list", "--repository", repository, "--json", *password]) == 0
    return [s["name"] for s in json.loads(capsys.readouterr().out)]


def test_encrypted_client_restores_only_with_its_password(
    repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_tree(tmp_path / "src", files=300)
    assert tardis("--repository", repository, "--create", "--password", PASSWORD, str(source)) == 0
    (source / "added.txt").write_text("a second set\n")
    assert tardis("--repository", repository, "-P", PASSWORD, str(source)) == 0
    out = tmp_path / "out"
    assert regenerate.main(["--repository", repository, "-P", PASSWORD, "-o", str(out)]) == 0
    assert_same_tree(source, out / str(source).lstrip("/"))
    before = set_names(repository, capsys, "-P", PASSWORD)
    assert len(before) == 2

    # No password: refused, naming what is missing.
    capsys.readouterr()
    assert regenerate.main(["--repository", repository, "-o", str(tmp_path / "x")]) == 2
    one_line_error(capsys, "protected by a password")
    # A wrong password fails fast, one line, and changes nothing.
    assert tardis("--repository", repository, "-P", "wrong", str(source)) == 1
    one_line_error(capsys, "wrong password")
    assert set_names(repository, capsys, "-P", PASSWORD) == before
    assert not (tmp_path / "x").exists()


def test_password_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository = str(tmp_path / "repo" / "sources")
    source = make_tree(tmp_path / "src", files=20)
    secret = tmp_path / "pw.txt"
    secret.write_text(PASSWORD + "\nignored second line\n")
    assert tardis("--repository", repository, "--create", "--password-file", str(secret), str(source)) == 0
    assert set_names(repository, capsys, "--password-file", f"file://{secret}")
    assert set_names(repository, capsys, "--password-prog", f"cat {secret}")
    assert set_names(repository, capsys, "-P", PASSWORD)
    # -P with no value asks; off a terminal the answer is read from standard input.
    asked = subprocess.run(
        [str(Path(sys.executable).parent / "lstardis"), "--repository", repository, "-P"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
    )
    assert asked.returncode == 0, asked.stderr
    unanswered = subprocess.run(
        [str(Path(sys.executable).parent / "lstardis"), "--repository", repository, "-P"],
        input="",
        capture_output=True,
        text=True,
    )
    assert unanswered.returncode == 2 and unanswered.stderr.count("\n") == 1
    assert "none was given on standard input" in unanswered.stderr
    capsys.readouterr()
    assert sonic.main(["list", "--repository", repository, "--password-prog", "false"]) == 2
    one_line_error(capsys, "password program")
    assert sonic.main(["list", "--repository", repository, "--password-file", str(tmp_path / "absent")]) == 2
    one_line_error(capsys, "cannot read the password")


def test_keys_move_to_a_key_file_and_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository = str(tmp_path / "repo" / "keyed")
    source = make_tree(tmp_path / "src", files=30)
    keys = tmp_path / "keys.json"
    assert tardis("--repository", repository, "--create", "-P", PASSWORD, str(source)) == 0
    assert (
        sonic.main(["keys", "--repository", repository, "-P", PASSWORD, "--keys", str(keys), "--extract", "--delete"])
        == 0
    )
    # The catalog no longer holds the keys: the key file is needed.
    capsys.readouterr()
    assert sonic.main(["list", "--repository", repository, "-P", PASSWORD]) == 2
    one_line_error(capsys, "--keys")
    out = tmp_path / "out"
    assert regenerate.main(["--repository", repository, "-P", PASSWORD, "--keys", str(keys), "-o", str(out)]) == 0
    assert_same_tree(source, out / str(source).lstrip("/"))

    # A damaged key file, and one of another client, are each one clear line.
    damaged = tmp_path / "damaged.json"
    damaged.write_bytes(keys.read_bytes()[:-20])
    capsys.readouterr()
    assert sonic.main(["list", "--repository", repository, "-P", PASSWORD, "--keys", str(damaged)]) == 1
    one_line_error(capsys, "damaged")
    other = str(tmp_path / "repo" / "other")
    other_keys = tmp_path / "other.json"
    assert tardis("--repository", other, "--create", "-P", PASSWORD, "--keys", str(other_keys), str(source)) == 0
    capsys.readouterr()
    assert sonic.main(["list", "--repository", repository, "-P", PASSWORD, "--keys", str(other_keys)]) == 1
    one_line_error(capsys, "belongs to client other")

    # A printed key backup brings the keys back into the catalog.
    page = tmp_path / "page.txt"
    assert (
        sonic.main(["mkkeybackup", "--repository", repository, "-P", PASSWORD, "--keys", str(keys), "-o", str(page)])
        == 0
    )
    assert sonic.main(["keys", "--repository", repository, "-P", PASSWORD, "--insert", "--printable", str(page)]) == 0
    assert set_names(repository, capsys, "-P", PASSWORD)


def test_chpass_rewraps_without_reencrypting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository = str(tmp_path / "repo" / "changing")
    source = make_tree(tmp_path / "src", files=40)
    assert tardis("--repository", repository, "--create", "-P", PASSWORD, str(source)) == 0
    objects = sorted(p.name for p in (tmp_path / "repo" / "changing").rglob("*") if p.is_file() and len(p.name) == 64)
    assert sonic.main(["chpass", "--repository", repository, "-P", PASSWORD, "--newpassword", "new secret"]) == 0
    after = sorted(p.name for p in (tmp_path / "repo" / "changing").rglob("*") if p.is_file() and len(p.name) == 64)
    assert objects == after
    capsys.readouterr()
    assert sonic.main(["list", "--repository", repository, "-P", PASSWORD]) == 1
    one_line_error(capsys, "wrong password")
    out = tmp_path / "out"
    assert regenerate.main(["--repository", repository, "-P", "new secret", "-o", str(out)]) == 0
    assert_same_tree(source, out / str(source).lstrip("/"))


def test_setpass_encrypts_later_backups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository = str(tmp_path / "repo" / "late")
    source = tmp_path / "src"
    source.mkdir()
    assert sonic.main(["create", "--repository", repository]) == 0
    assert sonic.main(["setpass", "--repository", repository, "-P", PASSWORD]) == 0
    capsys.readouterr()
    assert sonic.main(["setpass", "--repository", repository, "-P", PASSWORD]) == 1
    one_line_error(capsys, "already has a password")
    (source / "secret-name-marker.txt").write_text("secret content marker\n")
    assert tardis("--repository", repository, "-P", PASSWORD, str(source)) == 0
    assert not _found(tmp_path / "repo" / "late", [b"secret-name-marker", b"secret content marker"])


# -- the canary: nothing the client knows reaches the server's disk ---------------------------


MARKERS = ["zqxcanaryname", "zqxcanarydir", "zqxcanarycontent", "zqxcanaryowner", "zqxcanarycmd", "zqxcanarylink"]


def _variants(marker: str) -> list[bytes]:
    raw = marker.encode()
    found = [raw, raw.upper(), marker.encode("utf-16-le")]
    for shift in range(3):  # base64 of the marker at each alignment
        encoded = base64.b64encode(b"\0" * shift + raw)[4 if shift else 0 :]
        found.append(encoded[: len(encoded) - 4])
        found.append(base64.urlsafe_b64encode(b"\0" * shift + raw)[4 if shift else 0 :][:-4])
    return [v for v in found if len(v) >= 8]


def _found(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{needle!r} in {path}" for needle in needles if needle in data]
    return hits


@pytest.fixture
def canary_owner() -> Iterator[str]:
    """A local user whose name is a marker: owner names must not reach the server either."""
    name = "zqxcanaryowner"
    if shutil.which("useradd") is None or os.geteuid() != 0:
        pytest.skip("needs root and useradd to make a user with a marker name")
    subprocess.run(["useradd", "--no-create-home", "--user-group", name], check=False, capture_output=True)
    yield name
    subprocess.run(["userdel", name], check=False, capture_output=True)


def _canary_tree(root: Path, owner: str) -> Path:
    tree = root / "zqxcanarydir"
    tree.mkdir(parents=True)
    (tree / "zqxcanaryname.txt").write_bytes(b"begin zqxcanarycontent end\n" * 100)
    (tree / "big.bin").write_bytes(b"zqxcanarycontent" * 100_000)  # large: a signature and chunks
    os.symlink("zqxcanarylink-target", tree / "link")
    shutil.chown(tree / "zqxcanaryname.txt", user=owner, group=owner)
    return root


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Service, Path, Path]]:
    base = tmp_path / "server"
    base.mkdir()
    log = tmp_path / "server.log"
    service = start(
        "tardis_ingest.tardisd",
        "--basedir",
        str(base),
        "--port",
        "0",
        "--allow-new-hosts",
        "-vv",
        "--logfile",
        str(log),
    )
    yield service, base, log
    service.stop()


def test_canary_nothing_readable_on_the_server(
    daemon: tuple[Service, Path, Path], canary_owner: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service, base, log = daemon
    source = _canary_tree(tmp_path / "src", canary_owner)
    url = f"tardis://{service.address}/canary"
    args = ["--repository", url, "-P", PASSWORD, "--tag", "zqxcanarycmd", "--exclude", "*.zqxcanarycmd"]
    assert tardis(*args, "--create", str(source)) == 0
    (source / "zqxcanarydir" / "zqxcanaryname.txt").write_bytes(b"begin zqxcanarycontent changed end\n" * 100)
    assert tardis(*args, str(source)) == 0
    out = tmp_path / "out"
    assert regenerate.main(["--repository", url, "-P", PASSWORD, "-o", str(out)]) == 0
    assert_same_tree(source, out / str(source).lstrip("/"))
    embedded = str(tmp_path / "local" / "canary")
    assert tardis("--repository", embedded, "-P", PASSWORD, "--create", "--tag", "zqxcanarycmd", str(source)) == 0
    service.stop()  # flush the log and the database
    needles = [v for marker in MARKERS for v in _variants(marker)]
    # The source path itself holds "zqxcanarydir"; the tmp path names nothing secret.
    assert _found(base, needles) == []
    assert _found(tmp_path / "local", needles) == []
    assert [n for n in needles if n in log.read_bytes()] == []


def test_a_rolled_back_catalog_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository = tmp_path / "repo" / "rolled"
    source = make_tree(tmp_path / "src", files=10)
    assert tardis("--repository", str(repository), "--create", "-P", PASSWORD, str(source)) == 0
    saved = tmp_path / "saved"
    saved.mkdir()
    for name in os.listdir(repository):
        if name.startswith("tardis.db"):
            shutil.copy2(repository / name, saved / name)
    (source / "new.txt").write_text("second set\n")
    assert tardis("--repository", str(repository), "-P", PASSWORD, str(source)) == 0
    assert len(set_names(str(repository), capsys, "-P", PASSWORD)) == 2
    for name in os.listdir(repository):  # the server shows its catalog as it was a set ago
        if name.startswith("tardis.db"):
            os.unlink(repository / name)
    for name in os.listdir(saved):
        shutil.copy2(saved / name, repository / name)
    capsys.readouterr()
    assert sonic.main(["list", "--repository", str(repository), "-P", PASSWORD]) == 0
    assert "rolled back" in capsys.readouterr().err


def test_require_password_refuses_clients_in_the_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "server"
    base.mkdir()
    service = start(
        "tardis_ingest.tardisd", "--basedir", str(base), "--port", "0", "--allow-new-hosts", "--require-password"
    )
    try:
        source = make_tree(tmp_path / "src", files=5)
        url = f"tardis://{service.address}"
        capsys.readouterr()
        assert tardis("--repository", f"{url}/plain", "--create", str(source)) == 1
        one_line_error(capsys, "requires every client to be encrypted")
        config = tmp_path / "nocrypt.cfg"
        config.write_text("[Tardis]\nCrypt = False\n")
        assert (
            tardis("--config", str(config), "--repository", f"{url}/clear", "--create", "-P", PASSWORD, str(source))
            == 1
        )
        one_line_error(capsys, "requires every client to be encrypted")
        assert tardis("--repository", f"{url}/sealed", "--create", "-P", PASSWORD, str(source)) == 0
        assert sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) == ["sealed"]
    finally:
        assert service.stop() == 0
