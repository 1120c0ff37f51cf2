"""Nothing is missed: changes in the same second, under server clock skew, and racy reads."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

import tardis_cli.hashing
import tardis_cli.upload
from helpers.trees import assert_same_tree, make_tree
from tardis_blobstore.core import BlobStoreCore
from tardis_catalog.core import CatalogCore
from tardis_cli.backup_run import BackupOptions, BackupResult, BackupRun
from tardis_cli.restore import Restorer, components_of
from tardis_cli.upload import UploadOptions
from tardis_common.cipher import NullCipher
from tardis_common.clock import FixedClock
from tardis_common.codecs import codec_named
from tardis_ingest.core import IngestCore

HOUR = 3600 * 1_000_000_000
CLIENT = "skewed"


def skewed_server(base: Path, offset_ns: int) -> IngestCore:
    """All cores in-process, with a server clock ``offset_ns`` away from the real one."""
    clock = FixedClock(time.time_ns() + offset_ns)
    return IngestCore(CatalogCore(base, clock=clock), BlobStoreCore(base), clock=clock)


def backup(ingest: IngestCore, source: Path, create: bool = False) -> BackupResult:
    options = BackupOptions(create=create, upload=UploadOptions(codec_named("zstd")))
    return BackupRun(ingest, CLIENT, NullCipher(), options).run([str(source)])


def _entry_in(ingest: IngestCore, set_id: int, path: Path) -> common.Entry:
    found = ingest.lookup_path(
        cat.LookupPathRequest(client=CLIENT, set_id=set_id, path=common.DirPath(components=components_of(str(path))))
    )
    assert found.found, path
    return found.entry


def restore(ingest: IngestCore, set_id: int, source: Path, out: Path) -> None:
    Restorer(ingest, CLIENT, NullCipher(), set_id).restore_path(components_of(str(source)), str(out))


@pytest.mark.parametrize("offset_ns", [-HOUR, 24 * HOUR, 0])
def test_changes_right_after_a_backup_are_caught(tmp_path: Path, offset_ns: int) -> None:
    source = make_tree(tmp_path / "src", files=200)
    ingest = skewed_server(tmp_path / "repo", offset_ns)
    first = backup(ingest, source, create=True)
    files = sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_size > 4)
    # Same second as the backup: same size, and the mtime put back exactly as it was.
    same_size = files[0]
    st = same_size.stat()
    same_size.write_bytes(bytes(b ^ 0xFF for b in same_size.read_bytes()))
    os.utime(same_size, ns=(st.st_atime_ns, st.st_mtime_ns))
    # An in-place edit of a few bytes, and an append.
    with open(files[1], "r+b") as f:
        f.write(b"XY")
    with open(files[2], "ab") as f:
        f.write(b"appended")
    second = backup(ingest, source)
    assert second.set.id == first.set.id + 1
    restore(ingest, second.set.id, source, tmp_path / "out")
    assert_same_tree(source, tmp_path / "out")


def test_racily_clean_files_are_rehashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "src"
    source.mkdir()
    racy = source / "racy.txt"
    racy.write_bytes(b"x" * 100_000)
    ingest = skewed_server(tmp_path / "repo", 0)
    backup(ingest, source, create=True)  # read in the same tick it was written: racy

    later = time.time_ns() + 60_000_000_000
    monkeypatch.setattr(tardis_cli.upload.time, "time_ns", lambda: later)
    monkeypatch.setattr(tardis_cli.hashing.time, "time_ns", lambda: later)
    second = backup(ingest, source)
    assert second.checked == 1 and second.files_sent == 0  # re-hashed, found equal, not sent
    # One version, carried on: the re-check adds no second version of unchanged content.
    sets = ingest.list_sets(cat.ClientRequest(client=CLIENT)).sets
    found = [_entry_in(ingest, s.id, racy) for s in sets]
    assert found[0].entry_id == found[1].entry_id and found[1].last_set == sets[1].id
    assert found[1].flags == 0
    third = backup(ingest, source)
    assert third.checked == 0 and third.files_sent == 0  # no longer racy: trusted from its stat
