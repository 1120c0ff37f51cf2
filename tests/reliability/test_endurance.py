"""Endurance (issue 8): a simulated month on a fake clock, in-process.

Hourly backups of a tree that mutates between them (tests/helpers/mutations.py), retention
(KeepPeriods) applied by every run, a purge of old Hourly sets every week, and now and then a
crash: a run abandoned at a seeded random point (an exception before or after a call, or in the
middle of an upload stream). At the end every retained set restores to exactly the tree it
was taken from, no set is left incomplete, and the object tree and the catalog hold the same
objects: no orphan on either side.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tardis.v1 import catalog_pb2 as cat

from helpers.mutations import Mutator, Snapshot, differences, take_snapshot
from tardis_blobstore.core import BlobStoreCore
from tardis_catalog.core import CatalogCore
from tardis_cli.backup_run import BackupOptions, BackupRun
from tardis_cli.restore import Restorer, components_of
from tardis_cli.upload import UploadOptions
from tardis_common.cipher import NullCipher
from tardis_common.clock import FixedClock
from tardis_common.codecs import codec_named
from tardis_ingest.core import IngestCore

pytestmark = pytest.mark.reliability_suite(
    "endurance",
    "30 simulated days of hourly backups of a mutating tree with retention, weekly purges and "
    "abandoned runs (exceptions at seeded random points), on a fake clock",
)

SEED = 30
DAYS = 30
HOUR_S = 3600
CRASH_EVERY = 23  # about one run in this many is abandoned
CLIENT = "endurance"


class Crash(Exception):
    """The simulated crash of a backup run."""


class Crashing:
    """The real ingest core, failing at the ``at``-th call (or inside the upload stream it
    makes): the run is abandoned there, as if the client died."""

    def __init__(self, core: IngestCore, at: int, mid_stream: bool) -> None:
        self._core = core
        self._left = at
        self._mid_stream = mid_stream
        self.fired = ""

    def _tick(self, name: str) -> bool:
        if self._mid_stream:  # the first upload stream breaks after its first message
            return name == "upload_content" and not self.fired
        self._left -= 1
        return self._left == 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._core, name)
        if not callable(target) or name.startswith("_"):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if not self._tick(name):
                return target(*args, **kwargs)
            if name == "upload_content" and self._mid_stream:
                self.fired = "mid-upload"
                return target(self._broken(args[0]))
            self.fired = f"before {name}"
            raise Crash(self.fired)

        return call

    def _broken(self, requests: Iterable[Any]) -> Iterator[Any]:
        for request in requests:
            yield request
            if request.pieces:  # after the first message that carries content
                raise Crash("mid-upload")
        raise Crash("mid-upload")


def stored_objects(repo: Path) -> set[str]:
    return {p.name for p in (repo / CLIENT).glob("??/??/*") if "." not in p.name}


def test_a_simulated_month(tmp_path: Path, reliability: Any) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    source = tmp_path / "src"
    source.mkdir()
    for i in range(8):
        (source / f"start{i}.txt").write_bytes(rng.randbytes(rng.randint(10, 3000)))
    mutator = Mutator(source, rng)
    start_ns = int(time.mktime((2026, 3, 2, 0, 30, 0, 0, 0, -1))) * 1_000_000_000  # a Monday
    clock = FixedClock(start_ns)
    repo = tmp_path / "repo"
    catalog = CatalogCore(repo, clock=clock)
    ingest = IngestCore(catalog, BlobStoreCore(repo), clock=clock)
    taken: dict[int, Snapshot] = {}  # set id -> the tree it was taken from
    crashes: list[str] = []
    runs = purged = 0
    try:
        for hour in range(DAYS * 24):
            if hour:
                mutator.step(hour, rng.randint(1, 4))
            upload = UploadOptions(codec_named("zstd"))
            options = BackupOptions(create=hour == 0, upload=upload, clock=clock)
            if hour and rng.randrange(CRASH_EVERY) == 0:
                crashing = Crashing(ingest, at=rng.randint(1, 4), mid_stream=rng.random() < 0.5)
                try:
                    BackupRun(crashing, CLIENT, NullCipher(), options).run([str(source)])  # type: ignore[arg-type]
                except Crash:
                    crashes.append(crashing.fired)
                clock.advance(60)  # the lease of the dead run lapses (30 s) before the retry
                if crashing.fired == "mid-upload":  # every file changes before the retry: what
                    for path in sorted(source.rglob("*")):  # the dead run stored is never sent again
                        if path.is_file() and not path.is_symlink():
                            with path.open("ab") as grown:
                                grown.write(b"+")
            snapshot = take_snapshot(source)
            result = BackupRun(ingest, CLIENT, NullCipher(), options).run([str(source)])
            taken[result.set.id] = snapshot
            runs += 1
            if hour % (7 * 24) == 7 * 24 - 1:  # weekly: purge Daily (and Hourly) sets older than 12 days
                removed = ingest.remove_sets(
                    cat.RemoveSetsRequest(
                        client=CLIENT, purge=True, max_priority=20, before_ns=clock.now_ns() - 12 * 86_400 * 10**9
                    )
                )
                purged += len(removed.removed)
            clock.advance(HOUR_S)
        remaining = list(ingest.list_sets(cat.ClientRequest(client=CLIENT)).sets)
        assert all(s.completed for s in remaining), [s.name for s in remaining if not s.completed]
        names = [s.name for s in remaining]
        assert any(n.startswith("Monthly-") for n in names) and any(n.startswith("Weekly-") for n in names)
        assert 10 <= len([n for n in names if n.startswith("Daily-")]) <= 31, names
        # Every retained set restores exactly the tree it was taken from.
        failures = []
        for one in remaining:
            out = tmp_path / "restore" / str(one.id)
            Restorer(ingest, CLIENT, NullCipher(), one.id, report=lambda _line: None).restore_path(
                components_of(str(source)), str(out)
            )
            problems = differences(taken[one.id], take_snapshot(out))
            if problems:
                failures.append(f"set {one.name}: " + "; ".join(problems[:5]))
            shutil.rmtree(out)
        assert not failures, "\n".join(failures)
        # No orphans: the object tree holds exactly what the catalog lists, and nothing in tmp/.
        listed = {
            o.object_id.decode()
            for reply in ingest.list_objects(cat.ClientRequest(client=CLIENT))
            for o in reply.objects
        }
        held = stored_objects(repo)
        assert held == listed, (
            f"in the tree only: {sorted(held - listed)[:5]}; in the catalog only: {sorted(listed - held)[:5]}"
        )
        assert not list((repo / CLIENT / "tmp").glob("*")) if (repo / CLIENT / "tmp").exists() else True
    finally:
        catalog.close()
    assert len(crashes) >= 10, crashes
    assert any(c == "mid-upload" for c in crashes), crashes
    reliability.note(
        f"{runs} hourly runs, {len(crashes)} abandoned ({sum(c == 'mid-upload' for c in crashes)} mid-upload), "
        f"{purged} sets purged, {len(remaining)} retained sets restored exactly, "
        f"{len(held)} objects, no orphans; {time.monotonic() - began:.0f} s"
    )
    reliability.add(runs + len(crashes) + len(remaining))
