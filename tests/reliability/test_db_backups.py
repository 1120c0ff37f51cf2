"""DBBackups (issue 8): after each completed set the catalog keeps a copy of ``tardis.db``,
rotated through ``tardis.db.1`` (newest) .. ``tardis.db.N``; a copy put back in place of a
lost catalog opens, lists its sets and restores them exactly."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from crashkit import backup_in_process, check_catalog_file, restore_equals, sets_of, verify

from helpers.services import start_cluster
from helpers.trees import make_tree

pytestmark = pytest.mark.reliability_suite(
    "db-backups", "the catalog lost, and put back from a rotated copy (DBBackups)"
)


def _complete_sets(copy: Path) -> list[int]:
    conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT set_id FROM sets WHERE completed = 1 ORDER BY set_id")]
    finally:
        conn.close()


def _runs(repository: str, source: Path, snapshots: Path, count: int) -> None:
    """``count`` backups, the tree changed before each; the tree of set i kept in snapshots/i."""
    for i in range(1, count + 1):
        (source / "changing.txt").write_text(f"version {i}\n")
        backup_in_process(repository, source, *(["--create"] if i == 1 else []))
        shutil.copytree(source, snapshots / str(i), symlinks=True)


def test_copies_rotate_and_restore(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", files=60)
    repository = tmp_path / "repo" / "client"
    _runs(str(repository), source, tmp_path / "snap", 7)

    copies = {p.name for p in repository.glob("tardis.db.[0-9]*")}
    assert copies == {f"tardis.db.{i}" for i in range(1, 6)}  # DBBackups = 5 (the seed's default)
    for i in range(1, 6):  # tardis.db.1 is the newest: taken when set 7 completed
        copy = repository / f"tardis.db.{i}"
        check_catalog_file(copy)
        assert _complete_sets(copy) == list(range(1, 8 - i + 1))

    # The catalog is lost; the copy taken at set 5 is put in its place.
    for name in ("tardis.db", "tardis.db-wal", "tardis.db-shm"):
        (repository / name).unlink(missing_ok=True)
    shutil.copyfile(repository / "tardis.db.3", repository / "tardis.db")
    assert [s["id"] for s in sets_of(str(repository))] == [1, 2, 3, 4, 5]
    verify(str(repository))
    for set_id in (1, 5):
        restore_equals(str(repository), set_id, source, tmp_path / "snap" / str(set_id), tmp_path / "out")
    # ... and backing up goes on from there.
    (source / "changing.txt").write_text("after the restore\n")
    backup_in_process(str(repository), source)
    assert [s["id"] for s in sets_of(str(repository))][-1] == 6
    restore_equals(str(repository), 6, source, source, tmp_path / "out")


def test_catalog_service_keeps_as_many_as_told(tmp_path: Path) -> None:
    base = tmp_path / "base"
    cluster = start_cluster(base, extra={"catalog": ["--db-backups", "2"]})
    try:
        source = make_tree(tmp_path / "src", files=30)
        _runs(f"tardis://{cluster.ingest.address}/remote", source, tmp_path / "snap", 3)
    finally:
        cluster.stop()
    assert {p.name for p in (base / "remote").glob("tardis.db.[0-9]*")} == {"tardis.db.1", "tardis.db.2"}
    assert _complete_sets(base / "remote" / "tardis.db.2") == [1, 2]
