"""A catalog opened read-only (as on NFS or SMB) serves every read and refuses every write
with one clear error; nothing is written beside the database (no -wal, no -shm)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tardis.v1 import catalog_pb2 as cat

from helpers.trees import make_tree
from tardis_catalog.core import CatalogCore
from tardis_cli import backup
from tardis_common.errors import PermissionDenied


def test_read_only_catalog_reads_and_refuses_writes(tmp_path: Path) -> None:
    repository = tmp_path / "repo" / "host"
    source = make_tree(tmp_path / "src", files=10)
    assert backup.main(["--repository", str(repository), "--create", str(source)]) == 0
    assert backup.main(["--repository", str(repository), str(source)]) == 0
    for leftover in ("tardis.db-wal", "tardis.db-shm"):
        (repository / leftover).unlink(missing_ok=True)
    before = sorted(p.name for p in repository.iterdir())

    core = CatalogCore(repository.parent, read_only=True)
    try:
        sets = core.list_sets(cat.ClientRequest(client="host")).sets
        assert [s.completed for s in sets] == [True, True]
        entries = [e for m in core.read_tree(cat.ReadTreeRequest(client="host", set_id=sets[-1].id)) for e in m.entries]
        assert entries
        assert sum(1 for r in core.list_objects(cat.ClientRequest(client="host")) for _ in r.objects) > 0
        with pytest.raises(PermissionDenied, match="read-only"):
            core.begin_set(cat.BeginSetRequest(client="host", session="s", holder="h"))
        with pytest.raises(PermissionDenied, match="read-only"):
            core.create_client(cat.ClientRequest(client="other"))
    finally:
        core.close()
    assert sorted(p.name for p in repository.iterdir()) == before


def test_a_local_repository_is_not_read_only(tmp_path: Path) -> None:
    core = CatalogCore(tmp_path)
    try:
        assert core.read_only is False
    finally:
        core.close()
