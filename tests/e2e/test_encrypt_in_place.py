"""sonic encrypt: a history backed up in the clear, encrypted in place after sonic setpass.

The job is killed (kill -9, through the test-only TARDIS_FAULT points) at several points of
every step and resumed; each step run again changes nothing; backups taken before and in
the middle of the job still work; at the end no marker is left anywhere in the repository
and every set restores exactly with the password.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.cli import one_line_error
from helpers.trees import snapshot
from tardis_cli import backup, regenerate, sonic

PASSWORD = "correct horse battery staple"
MARKERS = ["zqxcanaryname", "zqxcanarydir", "zqxcanarycontent", "zqxcanarylink", "zqxcanarytag"]


def _variants(marker: str) -> list[bytes]:
    raw = marker.encode()
    found = [raw, raw.upper(), marker.encode("utf-16-le")]
    for shift in range(3):  # base64 of the marker at each alignment
        found.append(base64.b64encode(b"\0" * shift + raw)[4 if shift else 0 :][:-4])
        found.append(base64.urlsafe_b64encode(b"\0" * shift + raw)[4 if shift else 0 :][:-4])
    return [v for v in found if len(v) >= 8]


NEEDLES = [v for marker in MARKERS for v in _variants(marker)]


def _found(root: Path) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{needle!r} in {path.relative_to(root)}" for needle in NEEDLES if needle in data]
    return hits


def _make_source(root: Path) -> Path:
    source = root / "zqxcanarydir"  # also in the recorded command line
    (source / "sub").mkdir(parents=True)
    (source / "zqxcanaryname.txt").write_bytes(b"begin zqxcanarycontent end\n" * 50)
    os.link(source / "zqxcanaryname.txt", source / "sub" / "hard-link.txt")
    os.symlink("zqxcanarylink-target", source / "link")
    rng = random.Random(5)
    (source / "big.bin").write_bytes(rng.randbytes(200_000) + b"zqxcanarycontent" + rng.randbytes(100_000))
    for i in range(6):
        (source / "sub" / f"file-{i}.txt").write_text(f"small file {i} zqxcanarycontent\n")
    return source


def _edit_big(source: Path, offset: int, data: bytes) -> None:
    with open(source / "big.bin", "r+b") as f:
        f.seek(offset)
        f.write(data)


def tardis(*args: str) -> None:
    assert backup.main(list(args)) == 0


def encrypt(repository: str, *steps: str, fault: str = "", after: int = 1, batch: int = 2) -> str:
    """sonic encrypt in a subprocess; with ``fault`` it must die by SIGKILL at that point."""
    env = {**os.environ}
    env.pop("TARDIS_FAULT", None)
    if fault:
        env.update(TARDIS_FAULT=fault, TARDIS_FAULT_AFTER=str(after))
    argv = ["encrypt", "--repository", repository, "-P", PASSWORD, "--batch", str(batch), *steps]
    done = subprocess.run(
        [sys.executable, "-m", "tardis_cli.sonic", *argv], env=env, capture_output=True, text=True, timeout=120
    )
    if fault:
        assert done.returncode == -signal.SIGKILL, (fault, done.stdout, done.stderr)
    else:
        assert done.returncode == 0, done.stderr
    return done.stdout


def _sets(repository: str, capsys: pytest.CaptureFixture[str], *password: str) -> list[dict]:
    capsys.readouterr()
    assert sonic.main(["list", "--repository", repository, "--json", *password]) == 0
    return json.loads(capsys.readouterr().out)


def _restore(repository: str, name: str, source: Path, out: Path) -> dict:
    assert regenerate.main(["--repository", repository, "-P", PASSWORD, "-b", name, "-o", str(out)]) == 0
    return snapshot(out / str(source).lstrip("/"))


def _db(repository: str, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"{repository}/tardis.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_encrypt_an_unencrypted_history_in_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository = str(tmp_path / "repo" / "legacy")
    source = _make_source(tmp_path / "src")
    wanted: list[dict] = []

    # Three sets in the clear: a tag, hard links, a symlink, and a delta chain of two.
    tardis("--repository", repository, "--create", "--tag", "zqxcanarytag", str(source))
    wanted.append(snapshot(source))
    _edit_big(source, 1000, b"first change")
    (source / "sub" / "added-zqxcanaryname.txt").write_text("added\n")
    tardis("--repository", repository, str(source))
    wanted.append(snapshot(source))
    _edit_big(source, 250_000, b"second change")
    (source / "sub" / "file-0.txt").unlink()
    tardis("--repository", repository, str(source))
    wanted.append(snapshot(source))
    assert _db(repository, "SELECT MAX(chain_length) FROM objects")[0][0] == 2
    assert _found(Path(repository))  # the canary sees the markers while they are in the clear
    with (
        sqlite3.connect(f"{repository}/tardis.db") as live,
        sqlite3.connect(f"{repository}/tardis.db.schema-v3.bak") as copy,
    ):
        live.backup(copy)  # as a schema upgrade leaves one
    legacy = [s["name"] for s in _sets(repository, capsys)]

    # The gap: after setpass, the sets from before are unreadable to the now encrypted client.
    assert sonic.main(["setpass", "--repository", repository, "-P", PASSWORD]) == 0
    capsys.readouterr()
    args = ["--repository", repository, "-P", PASSWORD, "-b", legacy[0], "-o", str(tmp_path / "gap")]
    assert regenerate.main(args) != 0
    capsys.readouterr()

    # A backup after the password and before the job: names and contents it shares with the
    # old sets are held sealed already (the job merges the old rows into them).
    (source / "sub" / "post-setpass.txt").write_text("after the password\n")
    tardis("--repository", repository, "-P", PASSWORD, str(source))
    wanted.append(snapshot(source))

    # Names: killed after a batch of texts, after a batch of names, before the VACUUM; resumed;
    # run again.
    encrypt(repository, "--names", fault="encrypt-names", after=2)
    encrypt(repository, "--names", fault="encrypt-names", after=3)
    assert 0 < _db(repository, "SELECT COUNT(*) FROM convert_names")[0][0] < 19
    encrypt(repository, "--names", fault="encrypt-names-vacuum")
    assert "catalog vacuumed" in encrypt(repository, "--names")
    assert "all sealed already" in encrypt(repository, "--names")
    assert _db(repository, "SELECT COUNT(*) FROM convert_names")[0][0] == 0

    # Mid-way: a backup between steps.
    _edit_big(source, 5000, b"mid-way change")
    tardis("--repository", repository, "-P", PASSWORD, str(source))
    wanted.append(snapshot(source))

    encrypt(repository, "--dirs", fault="encrypt-dirs")
    assert "nothing to rebuild" in encrypt(repository, "--dirs")

    # Objects: killed with new files stored but not committed, after a commit with old files
    # not yet deleted, and between batches; resumed; run again.
    encrypt(repository, "--objects", fault="encrypt-objects-written", after=2)
    encrypt(repository, "--objects", fault="encrypt-objects-committed", after=1)
    assert _db(repository, "SELECT COUNT(*) FROM convert_trash")[0][0] > 0
    encrypt(repository, "--objects", fault="encrypt-objects", after=2)
    encrypt(repository, "--objects")
    assert "none left in the clear" in encrypt(repository, "--objects")
    assert _db(repository, "SELECT COUNT(*) FROM objects WHERE encrypted = 0")[0][0] == 0
    assert _db(repository, "SELECT COUNT(*) FROM convert_trash")[0][0] == 0

    # Meta: killed with a manifest stored but not recorded, and between sets; resumed.
    encrypt(repository, "--meta", fault="encrypt-manifest-written")
    encrypt(repository, "--meta", fault="encrypt-meta", after=2)
    assert "every set is encrypted" in encrypt(repository)
    again = encrypt(repository, "--all")
    assert "all sealed already" in again and "none left in the clear" in again and "manifests of 0 sets" in again

    # Nothing readable is left: catalog, WAL, objects, signatures, meta files, copies.
    assert not (Path(repository) / "tardis.db.schema-v3.bak").exists()
    assert _found(Path(repository)) == []

    # Every set restores exactly with the password, and checks against its sealed manifest.
    sets = _sets(repository, capsys, "-P", PASSWORD)
    assert [s["name"] for s in sets][:3] == legacy
    assert len(sets) == len(wanted) == 5
    assert "zqxcanarytag" in sets[0]["tags"]
    for i, (one, want) in enumerate(zip(sets, wanted, strict=True)):
        assert _restore(repository, one["name"], source, tmp_path / f"out{i}") == want, one["name"]
    capsys.readouterr()
    assert sonic.main(["verify", "--repository", repository, "-P", PASSWORD]) == 0

    # And the client backs up on from there, finding its old contents (nothing re-sent).
    tardis("--repository", repository, "-P", PASSWORD, str(source))
    assert _restore(repository, "Current", source, tmp_path / "last") == snapshot(source)


def test_encrypt_refuses_a_remote_repository_and_a_client_without_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert sonic.main(["encrypt", "--repository", "tardis://localhost:1/c", "-P", PASSWORD]) != 0
    one_line_error(capsys, "run it on the server host")
    repository = str(tmp_path / "repo" / "plain")
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("a\n")
    tardis("--repository", repository, "--create", str(source))
    capsys.readouterr()
    assert sonic.main(["encryptDB", "--repository", repository]) != 0
    one_line_error(capsys, "sonic setpass")


def test_files_an_interrupted_purge_left_do_not_outlive_the_encryption(tmp_path: Path) -> None:
    """A purge killed after its catalog commit leaves files in the clear that no row names,
    listed in the deletion journal; the job deletes them (under the lease, which it takes
    over from the dead purge) before anything of the client is called encrypted."""
    repository = str(tmp_path / "repo" / "legacy")
    source = tmp_path / "src"
    source.mkdir()
    (source / "gone.txt").write_bytes(b"only in the first set zqxcanarycontent\n" * 20)
    tardis("--repository", repository, "--create", str(source))
    (source / "gone.txt").unlink()
    (source / "kept.txt").write_text("in every set\n")
    tardis("--repository", repository, str(source))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIS_FAULT")}
    purge = ["purge", "--repository", repository, "--priority", "100", "--keep-days", "0", "--confirm"]
    killed = subprocess.run(
        [sys.executable, "-m", "tardis_cli.sonic", *purge],
        env={**env, "TARDIS_FAULT": "ingest.after-remove"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _db(repository, "SELECT COUNT(*) FROM doomed")[0][0] > 0
    assert _found(Path(repository)), "the purged content is still on disk"

    assert sonic.main(["setpass", "--repository", repository, "-P", PASSWORD]) == 0
    encrypt(repository)
    assert _db(repository, "SELECT COUNT(*) FROM doomed")[0][0] == 0
    assert _found(Path(repository)) == []
