"""sonic verify: missing and damaged objects are found, with the file versions they affect;
a healthy repository passes."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from helpers.services import start_cluster, start_remote
from helpers.trees import make_tree
from tardis_cli import backup, regenerate, sonic


def object_of(repository: str, content: bytes) -> Path:
    """Where the object of a small file's content is stored (its address is its SHA-256)."""
    address = hashlib.sha256(content).hexdigest()
    return Path(repository) / address[:2] / address[2:4] / address


def set_names(repository: str) -> list[str]:
    with sqlite3.connect(Path(repository) / "tardis.db") as db:
        return [name for (name,) in db.execute("SELECT name FROM sets ORDER BY set_id")]


def affected(out: str) -> list[str]:
    """The file versions sonic verify names, as printed after "affected: "."""
    return [line.removeprefix("affected: ") for line in out.splitlines() if line.startswith("affected: ")]


def test_verify_finds_missing_and_damaged_objects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository = str(tmp_path / "repo" / "host")
    source = make_tree(tmp_path / "src", files=60)
    assert backup.main(["--repository", repository, "--create", str(source)]) == 0
    big = source / "big.bin"
    big.write_bytes(os.urandom(300_000))
    assert backup.main(["--repository", repository, str(source)]) == 0
    with open(big, "r+b") as f:
        f.write(b"edit")
    assert backup.main(["--repository", repository, str(source)]) == 0  # a delta on big.bin
    capsys.readouterr()
    assert sonic.main(["verify", "--repository", repository, "--deep"]) == 0
    assert ", 0 problems" in capsys.readouterr().out

    missing = object_of(repository, (source / "run.sh").read_bytes())
    missing.unlink()
    damaged = object_of(repository, (source / "private" / "secret").read_bytes())
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x55
    damaged.write_bytes(bytes(data))
    assert sonic.main(["verify", "--repository", repository]) == 1
    out = capsys.readouterr().out
    assert f"missing: {missing.name}" in out and ", 1 problems" in out  # same size: only --deep sees it
    assert "run sonic verify --repair" in out
    names = set_names(repository)
    assert affected(out) == [f"{source / 'run.sh'} (sets {names[0]}..{names[2]}) object {missing.name}"], out
    assert "1 file versions affected" in out
    assert sonic.main(["verify", "--repository", repository, "--repair"]) == 1
    assert "marked 1 objects bad" in capsys.readouterr().out
    assert sonic.main(["verify", "--repository", repository, "--deep", "--repair"]) == 1
    out = capsys.readouterr().out
    assert f"bad: {missing.name} (marked earlier" in out and f"damaged: {damaged.name}" in out
    assert ", 2 problems" in out and "marked 1 objects bad" in out
    assert affected(out) == [
        f"{source / 'private' / 'secret'} (sets {names[0]}..{names[2]}) object {damaged.name}",
        f"{source / 'run.sh'} (sets {names[0]}..{names[2]}) object {missing.name}",
    ], out
    assert "2 file versions affected" in out
    assert damaged.exists() is False  # set aside in quarantine, freeing its name
    assert (Path(repository) / "quarantine" / damaged.name).is_file()


def test_marked_bad_content_is_stored_again_and_restores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Damage found by verify --deep is healed by the next backup: the unchanged files whose
    objects were bad are sent again, the delta built on a bad basis too, and every set restores."""
    repository = str(tmp_path / "repo" / "host")
    source = make_tree(tmp_path / "src", files=30)
    big = source / "big.bin"
    big.write_bytes(os.urandom(300_000))
    assert backup.main(["--repository", repository, "--create", str(source)]) == 0
    with open(big, "r+b") as f:
        f.write(b"edit")
    assert backup.main(["--repository", repository, str(source)]) == 0  # big.bin now a delta on the first
    with sqlite3.connect(Path(repository) / "tardis.db") as db:
        (address,) = db.execute(
            "SELECT b.address FROM objects o JOIN objects b ON b.object_id = o.basis_id WHERE o.size = 300000"
        ).fetchone()
    first_big = Path(repository) / address[:2].decode() / address[2:4].decode() / address.decode()
    victim = object_of(repository, (source / "run.sh").read_bytes())
    victim.write_bytes(victim.read_bytes()[:-3])  # truncated
    first_big.write_bytes(b"\0" * first_big.stat().st_size)  # the basis of big.bin's delta, same size
    capsys.readouterr()
    assert sonic.main(["verify", "--repository", repository, "--deep", "--repair"]) == 1
    out = capsys.readouterr().out
    assert "marked 2 objects bad and 1 deltas built on them" in out, out
    one, two = set_names(repository)
    with sqlite3.connect(Path(repository) / "tardis.db") as db:
        (delta,) = db.execute("SELECT address FROM objects WHERE basis_id IS NOT NULL").fetchone()
    assert affected(out) == [
        f"{big} (set {one}) object {first_big.name}",
        f"{big} (set {two}) object {delta.decode()} (a delta on damaged {first_big.name})",
        f"{source / 'run.sh'} (sets {one}..{two}) object {victim.name}",
    ], out
    assert "3 file versions affected" in out

    assert backup.main(["--repository", repository, str(source)]) == 0  # nothing changed on disk
    capsys.readouterr()
    assert sonic.main(["verify", "--repository", repository, "--deep"]) == 1  # the old basis stays lost
    out = capsys.readouterr().out
    assert f"bad: {first_big.name}" in out and ", 1 problems" in out, out
    restored = tmp_path / "restored"
    assert regenerate.main(["--repository", repository, "-o", str(restored), str(source)]) == 0
    for path in (source / "run.sh", big):
        assert (restored / "src" / path.relative_to(source)).read_bytes() == path.read_bytes()
    # The first set's big.bin was the lost basis: regenerate names it and restores the rest.
    first = tmp_path / "first"
    with sqlite3.connect(Path(repository) / "tardis.db") as db:
        (name,) = db.execute("SELECT name FROM sets ORDER BY set_id LIMIT 1").fetchone()
    code = regenerate.main(["--repository", repository, "-o", str(first), "--backup", name, str(source)])
    err = capsys.readouterr().err
    assert code == 1 and f"missing: {first / 'src' / 'big.bin'}" in err, err
    assert (first / "src" / "run.sh").read_bytes() == (source / "run.sh").read_bytes()


def test_encrypted_client_over_tardis_and_http_names_files_in_the_clear(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The affected versions of an encrypted client: found by the server (FindEntries) over
    tardis:// and over remote-http, their encrypted names decrypted by the tool."""
    base = tmp_path / "base"
    cluster = start_cluster(base)
    try:
        remote = start_remote(cluster, tmp_path / "remote", AllowAnonymous=True)
        try:
            source = make_tree(tmp_path / "src", files=20)
            (source / "odd size.bin").write_bytes(os.urandom(12_345))
            grpc = f"tardis://{cluster.ingest.address}/sealed"
            password = ("-P", "verify password")
            assert backup.main(["--repository", grpc, "--create", *password, str(source)]) == 0
            assert backup.main(["--repository", grpc, *password, str(source)]) == 0
            with sqlite3.connect(base / "sealed" / "tardis.db") as db:
                (address,) = db.execute("SELECT address FROM objects WHERE size = 12345").fetchone()
                raw_names = [bytes(n) for (n,) in db.execute("SELECT name FROM names")]
                first, second = (n for (n,) in db.execute("SELECT name FROM sets ORDER BY set_id"))
            text = address.decode()
            (base / "sealed" / text[:2] / text[2:4] / text).unlink()
            want = f"{source / 'odd size.bin'} (sets {first}..{second}) object {text}"
            for url in (grpc, f"http://{remote.address}/sealed"):
                capsys.readouterr()
                assert sonic.main(["verify", "--repository", url, *password]) == 1
                out = capsys.readouterr().out
                assert affected(out) == [want], out
                assert "1 file versions affected" in out and f"missing: {text}" in out
                assert b"odd size.bin" not in raw_names  # the server holds the name encrypted only
        finally:
            assert remote.stop() == 0
    finally:
        cluster.stop()
