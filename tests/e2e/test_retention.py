"""Retention on a simulated clock: hourly backups for three days, KeepPeriods applied."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from helpers.trees import assert_same_tree, make_tree
from tardis_blobstore.core import BlobStoreCore
from tardis_catalog.core import CatalogCore
from tardis_cli.backup_run import BackupOptions, BackupRun
from tardis_cli.restore import Restorer, components_of
from tardis_cli.upload import UploadOptions
from tardis_common.cipher import NullCipher
from tardis_common.clock import FixedClock
from tardis_common.codecs import codec_named
from tardis_ingest.core import IngestCore


def check_remaining(
    ingest: IngestCore,
    client: str,
    remaining: list[common.BackupSet],
    source: Path,
    copies: dict[str, Path],
    repo: Path,
    tmp_path: Path,
) -> None:
    """Each remaining set restores as it was backed up, and the store holds exactly the objects
    they use (no deltas in these trees: every object left is one a remaining set uses)."""
    for one in remaining:
        out = tmp_path / "restore" / one.name
        Restorer(ingest, client, NullCipher(), one.id).restore_path(components_of(str(source)), str(out))
        assert_same_tree(copies[one.name], out)
    held = {p.name for p in repo.joinpath(client).glob("*/*/*") if not p.suffix}
    needed = {
        e.object_id.decode()
        for s in remaining
        for b in ingest.read_tree(cat.ReadTreeRequest(client=client, set_id=s.id))
        for e in b.entries
        if e.object_id
    }
    assert held == needed


def test_hourly_backups_keep_what_the_rules_keep(tmp_path: Path) -> None:
    """Defaults: Monthly forever, Weekly 180 days, Daily 30 days, Hourly 1 day."""
    source = make_tree(tmp_path / "src", files=40)
    start = int(time.mktime((2026, 3, 2, 0, 30, 0, 0, 0, -1))) * 1_000_000_000  # a Monday
    clock = FixedClock(start)
    repo = tmp_path / "repo"
    ingest = IngestCore(CatalogCore(repo, clock=clock), BlobStoreCore(repo), clock=clock)
    copies: dict[str, Path] = {}
    purged: list[str] = []
    for hour in range(72):
        (source / "changing.txt").write_text(f"hour {hour}\n" * (hour + 1))
        options = BackupOptions(create=hour == 0, upload=UploadOptions(codec_named("zstd")), clock=clock)
        result = BackupRun(ingest, "pi", NullCipher(), options).run([str(source)])
        purged += result.purged
        copies[result.set.name] = tmp_path / "copies" / result.set.name
        shutil.copytree(source, copies[result.set.name], symlinks=True)
        clock.advance(3600)

    remaining = list(ingest.list_sets(cat.ClientRequest(client="pi")).sets)
    names = [s.name for s in remaining]
    hourly = [n for n in names if n.startswith("Hourly-")]
    daily = [n for n in names if n.startswith("Daily-")]
    assert names[:2] == ["Monthly-2026-03", "Weekly-2026-09"]
    assert daily == ["Daily-2026-03-02", "Daily-2026-03-03", "Daily-2026-03-04"]
    # Hourly sets live one day: those completed in the last 24 hours remain, older ones went.
    assert 23 <= len(hourly) <= 24, names
    assert sorted(purged) == sorted(set(copies) - set(names))
    assert all(p.startswith("Hourly-") for p in purged)
    # Every remaining set restores; objects only the purged sets needed are gone from the store.
    check_remaining(ingest, "pi", remaining, source, copies, repo, tmp_path)


def test_forty_days_of_twice_daily_backups(tmp_path: Path) -> None:
    """A month and more on the simulated clock: Monthly and Weekly sets stay, Daily sets live
    30 days and Hourly ones a day; every remaining set restores exactly; nothing else is held."""
    source = make_tree(tmp_path / "src", files=20)
    start = int(time.mktime((2026, 3, 2, 0, 30, 0, 0, 0, -1))) * 1_000_000_000  # a Monday
    clock = FixedClock(start)
    repo = tmp_path / "repo"
    ingest = IngestCore(CatalogCore(repo, clock=clock), BlobStoreCore(repo), clock=clock)
    copies: dict[str, Path] = {}
    purged: list[str] = []
    for run in range(80):  # every 12 hours for 40 days
        (source / "changing.txt").write_text(f"run {run}\n")
        options = BackupOptions(create=run == 0, upload=UploadOptions(codec_named("zstd")), clock=clock)
        result = BackupRun(ingest, "nas", NullCipher(), options).run([str(source)])
        purged += result.purged
        copies[result.set.name] = tmp_path / "copies" / result.set.name
        shutil.copytree(source, copies[result.set.name], symlinks=True)
        clock.advance(12 * 3600)
    last_ns = clock.now_ns() - 12 * 3600 * 1_000_000_000

    remaining = list(ingest.list_sets(cat.ClientRequest(client="nas")).sets)
    names = [s.name for s in remaining]
    made = set(copies)
    # Monthly sets are kept forever, Weekly ones 180 days: every one ever made is still here.
    assert [n for n in made if n.startswith(("Monthly-", "Weekly-"))] and all(
        n in names for n in made if n.startswith(("Monthly-", "Weekly-"))
    )
    assert {"Monthly-2026-03", "Monthly-2026-04"} <= set(names)
    # Daily sets live 30 days: the older ones went, the younger ones stay.
    for name in (n for n in made if n.startswith("Daily-")):
        day_ns = int(time.mktime(time.strptime(name, "Daily-%Y-%m-%d"))) * 1_000_000_000
        age_days = (last_ns - day_ns) / 86_400e9
        assert (name in names) == (age_days < 30), (name, age_days)
    # Hourly sets live one day.
    assert all(n in made for n in names)
    assert len([n for n in names if n.startswith("Hourly-")]) <= 2
    assert sorted(purged) == sorted(made - set(names))
    check_remaining(ingest, "nas", remaining, source, copies, repo, tmp_path)
