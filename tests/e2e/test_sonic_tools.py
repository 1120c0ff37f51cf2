"""The seed's maintenance tools as sonic subcommands: decryptname/encryptname, cdfile, mkKeyBackup.

Real repositories made by the real `tardis` CLI; the catalog is read by hand with sqlite3,
as an operator would."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.cli import one_line_error
from helpers.services import Cluster
from helpers.trees import make_tree
from tardis_cli import backup, regenerate, sonic
from tardis_cli.backup import recorded_command_line
from tardis_common.cipher import NullCipher
from tardis_common.objectformat import KIND_DELTA, KIND_FULL, ObjectDecoder

PASSWORD = "sonic tools password"


def tardis(*args: str) -> int:
    return backup.main(list(args))


def run_sonic(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = sonic.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def catalog(repository: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{Path(repository) / 'tardis.db'}?mode=ro", uri=True)


def stored_names(repository: str) -> list[str]:
    """The names table as an operator sees it: ``SELECT hex(name) FROM names``."""
    with catalog(repository) as db:
        return [row[0] for row in db.execute("SELECT hex(name) FROM names ORDER BY name_id")]


def decode_object(path: Path, kind: int = KIND_FULL) -> bytes:
    """The plaintext of an unencrypted object file (checked against its address when full)."""
    expected = path.name.encode() if kind == KIND_FULL else None
    decoder = ObjectDecoder(NullCipher(), expected, kind=kind, identity=path.name.encode())
    out = b"".join(decoder.feed(path.read_bytes()))
    decoder.finish()
    return out


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARDIS_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def encrypted(tmp_path: Path) -> tuple[str, Path]:
    repository = str(tmp_path / "repo" / "secretive")
    source = make_tree(tmp_path / "src", files=30)
    assert tardis("--repository", repository, "--create", "-P", PASSWORD, "--tag", "before-trip", str(source)) == 0
    return repository, source


# -- decryptname / encryptname ------------------------------------------------------------------


def test_decryptname_round_trip_on_stored_names(
    encrypted: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    repository, source = encrypted
    hexes = stored_names(repository)
    assert len(hexes) > 20
    pw = ("-R", repository, "-P", PASSWORD)
    code, out, err = run_sonic(capsys, "decryptname", *pw, *hexes)
    assert code == 0, err
    plain = out.splitlines()
    assert len(plain) == len(hexes)
    wanted = {"private", "secret", "run.sh", "empty-file", *(p for p in str(source).split("/") if p)}
    assert wanted <= set(plain), wanted - set(plain)
    assert not wanted & {bytes.fromhex(h).decode("utf-8", "replace") for h in hexes}  # stored sealed

    # encryptname gives back exactly what the catalog stores; the seed's name works too.
    code, out, _ = run_sonic(capsys, "encryptName", *pw, *plain)
    assert code == 0 and out.split() == hexes
    # An SQL blob literal, and a lower-case hex, are accepted as well.
    code, out, _ = run_sonic(capsys, "decryptName", *pw, f"X'{hexes[0]}'", hexes[1].lower())
    assert code == 0 and out.splitlines() == plain[:2]


def test_decryptname_opens_stored_texts(encrypted: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    repository, _ = encrypted
    with catalog(repository) as db:
        (tag,) = db.execute("SELECT tag FROM tags").fetchone()
        (command_line,) = db.execute("SELECT command_line FROM sets").fetchone()
    assert tag.startswith("~") and "before-trip" not in tag
    pw = ("-R", repository, "-P", PASSWORD)
    code, out, err = run_sonic(capsys, "decryptname", *pw, tag, *([command_line] if command_line else []))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "before-trip"
    if command_line:  # what tardis recorded of its own argv (here, pytest's), sealed the same way
        assert command_line.startswith("~") and lines[1] == recorded_command_line(sys.argv)
    code, out, _ = run_sonic(capsys, "encryptname", "--text", *pw, "before-trip")
    assert code == 0 and out.strip() == tag  # deterministic sealing: the catalog can look tags up


def test_names_of_an_unencrypted_client_pass_through(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository = str(tmp_path / "repo" / "open")
    source = make_tree(tmp_path / "src", files=5)
    assert tardis("--repository", repository, "--create", str(source)) == 0
    for command in ("decryptname", "encryptname"):
        code, out, err = run_sonic(capsys, command, "-R", repository, "run.sh", "private")
        assert code == 0 and out.splitlines() == ["run.sh", "private"]
        assert "not encrypted" in err and err.count("\n") == 1


def test_decryptname_bad_input_is_one_line(
    encrypted: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repository, source = encrypted
    pw = ("-R", repository, "-P", PASSWORD)
    name = stored_names(repository)[3]
    capsys.readouterr()
    assert sonic.main(["decryptname", "-R", repository, "-P", "wrong", name]) == 1
    one_line_error(capsys, "wrong password")
    assert sonic.main(["decryptname", *pw, "not-hex!"]) == 1
    one_line_error(capsys, "neither the hex of a stored name")
    assert sonic.main(["decryptname", *pw, "00112233445566778899aabbccddeeff0011"]) != 0
    one_line_error(capsys, "does not decrypt with this client's keys")
    assert sonic.main(["decryptname", *pw, "~AAAA"]) != 0
    one_line_error(capsys, "does not decrypt")
    # Another client's name: same plaintext, other keys.
    other = str(tmp_path / "repo" / "other")
    assert tardis("--repository", other, "--create", "-P", PASSWORD, str(source)) == 0
    theirs = stored_names(other)[3]
    assert theirs != name
    capsys.readouterr()
    assert sonic.main(["decryptname", *pw, theirs]) != 0
    one_line_error(capsys, "does not decrypt")


# -- cdfile ------------------------------------------------------------------------------------


@pytest.fixture
def history(tmp_path: Path) -> tuple[str, Path, bytes, bytes]:
    """An unencrypted client with two sets: big.bin full in the first, a delta in the second."""
    repository = str(tmp_path / "repo" / "host")
    source = make_tree(tmp_path / "src", files=20)
    big = source / "big.bin"
    first = os.urandom(300_000)
    big.write_bytes(first)
    assert tardis("--repository", repository, "--create", "--name", "one", str(source)) == 0
    with open(big, "r+b") as f:
        f.write(b"edit")
    second = big.read_bytes()
    assert tardis("--repository", repository, "--name", "two", str(source)) == 0
    return repository, big, first, second


def test_cdfile_gives_the_object_file(
    history: tuple[str, Path, bytes, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    repository, big, first, second = history
    script = big.parent / "run.sh"
    code, out, err = run_sonic(capsys, "cdfile", "-R", repository, str(script))
    assert code == 0, err
    (line,) = out.splitlines()
    path = Path(line)
    digest = hashlib.sha256(script.read_bytes()).hexdigest()
    assert path == Path(repository) / digest[:2] / digest[2:4] / digest
    assert path.is_file() and decode_object(path) == script.read_bytes()

    # The set chooses the version: the first set holds big.bin's full first content.
    code, out, _ = run_sonic(capsys, "cdfile", "-R", repository, str(big), "--backup", "one")
    assert code == 0 and decode_object(Path(out.strip())) == first
    code, out, _ = run_sonic(capsys, "cdfile", "-R", repository, str(big), "--date", "now")
    assert code == 0 and Path(out.strip()).name == hashlib.sha256(second).hexdigest()
    code, out_last, _ = run_sonic(capsys, "cdfile", "-R", repository, str(big), "--last")
    assert code == 0 and out_last == out


def test_cdfile_all_lists_the_delta_chain(
    history: tuple[str, Path, bytes, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    repository, big, first, second = history
    code, out, err = run_sonic(capsys, "cdfile", "-R", repository, str(big), "--all")
    assert code == 0, err
    paths = [Path(p) for p in out.splitlines()]
    assert all(p.is_file() for p in paths)
    objects = [p for p in paths if p.suffix not in (".sig", ".meta")]
    assert [p.name for p in objects] == [hashlib.sha256(second).hexdigest(), hashlib.sha256(first).hexdigest()]
    assert Path(f"{objects[0]}.meta") in paths and Path(f"{objects[1]}.meta") in paths
    assert any(p.suffix == ".sig" for p in paths)  # the basis keeps its rdiff signature
    decode_object(objects[0], KIND_DELTA)  # the newest is stored as a delta ...
    assert decode_object(objects[1]) == first  # ... on the full first version


def test_cdfile_bad_input_is_one_line(
    history: tuple[str, Path, bytes, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    repository, big, _, _ = history
    capsys.readouterr()
    assert sonic.main(["cdfile", "-R", repository, str(big.parent / "no-such-file")]) == 1
    one_line_error(capsys, "no-such-file", "not in backup set two")
    assert sonic.main(["cdfile", "-R", repository, str(big), "--backup", "nonesuch"]) == 1
    one_line_error(capsys, "backup set nonesuch does not exist")
    assert sonic.main(["cdfile", "-R", repository, str(big.parent / "private")]) == 1
    one_line_error(capsys, "is a dir", "only files have objects")
    assert sonic.main(["cdfile", "-R", repository, str(big.parent / "empty-file")]) == 1
    one_line_error(capsys, "is empty")
    # An object gone from the store: the path is still printed, and the error says so.
    code, out, _ = run_sonic(capsys, "cdfile", "-R", repository, str(big.parent / "run.sh"))
    Path(out.strip()).unlink()
    code, out, err = run_sonic(capsys, "cdfile", "-R", repository, str(big.parent / "run.sh"))
    assert code == 1 and out.strip() and "missing from the store" in err and err.count("\n") == 1


def test_cdfile_of_an_encrypted_client(
    encrypted: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repository, source = encrypted
    secret = source / "private" / "secret"
    code, out, err = run_sonic(capsys, "cdfile", "-R", repository, "-P", PASSWORD, str(secret))
    assert code == 0, err
    path = Path(out.strip())
    assert path.is_file() and path.is_relative_to(repository)
    assert path.name != hashlib.sha256(secret.read_bytes()).hexdigest()  # a keyed address, not the plain hash
    assert secret.read_bytes() not in path.read_bytes()
    # The id it names is the file's object: restoring by that id gives the content back.
    target = tmp_path / "restored"
    code = regenerate.main(["-R", repository, "-P", PASSWORD, "--checksum", path.name, "-o", str(target)])
    assert code == 0 and target.read_bytes() == secret.read_bytes()
    capsys.readouterr()
    assert sonic.main(["cdfile", "-R", repository, "-P", "wrong", str(secret)]) == 1
    one_line_error(capsys, "wrong password")


def test_cdfile_of_a_remote_repository(cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"tardis://{cluster.ingest.address}/toolsremote"
    source = make_tree(tmp_path / "src", files=5)
    assert tardis("--repository", url, "--create", str(source)) == 0
    code, out, err = run_sonic(capsys, "cdfile", "-R", url, str(source / "run.sh"))
    assert code == 0, err
    assert out.strip() == hashlib.sha256((source / "run.sh").read_bytes()).hexdigest()
    assert "on the server" in err and "toolsremote/ab/cd" in err


# -- mkKeyBackup ---------------------------------------------------------------------------


def test_mkkeybackup_aliases(encrypted: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository, _ = encrypted
    pw = ("-R", repository, "-P", PASSWORD)
    code, page, _ = run_sonic(capsys, "mkkeybackup", *pw)
    assert code == 0 and "TARDIS KEY BACKUP" in page
    code, aliased, _ = run_sonic(capsys, "mkKeyBackup", *pw)
    assert code == 0 and aliased == page
    # The page the alias writes brings the keys back.
    out = tmp_path / "keys.txt"
    assert sonic.main(["mkKeyBackup", *pw, "-o", str(out)]) == 0
    assert sonic.main(["keys", *pw, "--insert", "--printable", str(out)]) == 0
    # The aliases work but stay out of the listing.
    listing = sonic.parser().format_help()
    assert "mkkeybackup" in listing and "decryptname" in listing and "cdfile" in listing
    assert "mkKeyBackup" not in listing and "decryptName" not in listing
    # The seed's script name as a program of its own.
    program = shutil.which("mkKeyBackup", path=os.path.dirname(sys.executable))
    assert program, "pip install -e clients/cli installs the mkKeyBackup script"
    done = subprocess.run(
        [program, *pw], capture_output=True, text=True, timeout=60, env={**os.environ, "TARDIS_TEST_KDF": "1"}
    )
    assert done.returncode == 0 and done.stdout == page, done.stderr
    done = subprocess.run([program, "-R", repository, "-P", "wrong"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0 and "wrong password" in done.stderr
