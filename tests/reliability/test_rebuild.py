"""sonic rebuild (issue 8): ``tardis.db`` is lost; the objects table comes back from the
``.meta`` files, the tool says what could not (sets, entries, ...), ``sonic verify`` passes
and backing up goes on."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from crashkit import SONIC, backup_in_process, check_catalog_file, restore_equals, run_tool, sets_of, verify

from helpers.trees import make_tree

pytestmark = pytest.mark.reliability_suite("rebuild", "tardis.db deleted; sonic rebuild from the .meta files")

OBJECTS = (
    "SELECT o.address, o.size, o.stored_size, o.compression, o.encrypted, o.chain_length, b.address"
    " FROM objects o LEFT JOIN objects b ON b.object_id = o.basis_id WHERE o.bad = 0 ORDER BY o.address"
)


def _objects(db_path: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute(OBJECTS).fetchall()
    finally:
        conn.close()


def test_rebuild_from_meta_files(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", files=300)
    repository = tmp_path / "repo" / "client"
    backup_in_process(str(repository), source, "--create")
    big = max((p for p in source.rglob("*") if p.is_file() and not p.is_symlink()), key=lambda p: p.stat().st_size)
    with open(big, "r+b") as f:  # a small change to a large file: stored as a delta
        f.write(b"changed at the start")
    backup_in_process(str(repository), source)
    before = _objects(repository / "tardis.db")
    assert any(row[6] is not None for row in before), "expected a delta object"

    for path in repository.glob("tardis.db*"):  # the catalog, its -wal, and every copy: all lost
        path.unlink()
    bases = {row[6] for row in before}
    victim = next(row[0] for row in before if row[6] is None and row[0] not in bases)
    torn = repository / victim[:2].decode() / victim[2:4].decode() / (victim.decode() + ".meta")
    torn.write_text('{"object_id": "')  # and one .meta torn by a crash: that object cannot come back

    done = run_tool([SONIC, "rebuild", "--repository", str(repository)])
    assert done.returncode == 0, done.stderr
    out = done.stdout
    expected = [row for row in before if row[0] != victim]
    deltas = sum(1 for row in expected if row[6] is not None)
    assert f"rebuilt the catalog of client client: {len(expected)} objects ({deltas} deltas)" in out, out
    assert "not recoverable: backup sets and their entries" in out, out
    assert f"not recoverable: 1 objects without a valid .meta (left on disk, unused): {victim.decode()}" in out, out

    assert _objects(repository / "tardis.db") == expected
    check_catalog_file(repository / "tardis.db")
    verify(str(repository))
    assert sets_of(str(repository)) == []

    # Backing up goes on: a new set, restored exactly.
    backup_in_process(str(repository), source)
    sets = sets_of(str(repository))
    assert [s["completed"] for s in sets] == [True]
    verify(str(repository))
    restore_equals(str(repository), sets[0]["id"], source, source, tmp_path / "out")


def test_rebuild_refuses_an_existing_catalog_and_names_copies(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", files=20)
    repository = tmp_path / "repo" / "client"
    backup_in_process(str(repository), source, "--create")
    done = run_tool([SONIC, "rebuild", "--repository", str(repository)])
    assert done.returncode == 1 and "rebuild only replaces a lost one" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1

    shutil.move(repository / "tardis.db", tmp_path / "lost.db")
    done = run_tool([SONIC, "rebuild", "--repository", str(repository)])
    assert done.returncode == 0, done.stderr
    assert "note: tardis.db.1 is a copy of the lost catalog" in done.stdout, done.stdout
