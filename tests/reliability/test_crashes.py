"""Crash suite (issue 8): SIGKILL of the client, ingest, catalog or blobstore at seeded points
of a backup, and of a purge.

Each case takes a repository holding one complete set (set 1, the tree as first backed
up), changes nothing in it but runs the next backup of the changed tree with one
test-only kill point armed (``TARDIS_FAULT=<point>:<n>``, tardis_common.faults): the n-th
pass of that point kills the process with SIGKILL. The points sit at the steps that
matter: the client after a batch is answered, mid-upload, before finishing; ingest between
the objects' flush and their catalog rows, after the rows, around retention and
completion; the catalog inside the write transaction of a batch and of the completion,
before COMMIT; the blobstore mid-object, after the link and before the ``.meta``, after the
``.meta``, before the batch's flush, between deletions. ``n`` is drawn (seeded) from the
passes a traced run of the same backup makes, so every case is a real kill.

After each kill: SQLite's integrity and foreign-key checks pass, no entry names a missing
object, ``sonic verify`` passes, every set complete before restores exactly; then the
killed process is restarted and the next run (``--force``: the dead run's lease has not
expired yet) completes and its set restores exactly. A purge killed while deleting its
orphans leaves its writer lease behind (no backup may store them again meanwhile): the next
purge or backup on the same host takes it over at once, without ``--force`` (its pid is dead).

Embedded cases run the real ``tardis`` with every core in it (a kill at a catalog point
kills the process that holds the database); distributed cases run the three services as
processes with the point armed in one of them. ``TARDIS_CRASH_SEED`` changes the sample.
"""

from __future__ import annotations

import math
import random
import shutil
import signal
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from crashkit import (
    SONIC,
    TARDIS,
    Cluster,
    backup_in_process,
    check_catalog_file,
    one_line_error,
    quiet,
    read_trace,
    restore_equals,
    run_tool,
    sets_of,
    verify,
)

from helpers.services import write_secret
from helpers.trees import make_tree
from tardis_cli import sonic
from tardis_ingest import core as ingest_core

pytestmark = pytest.mark.reliability_suite(
    "crashes", "SIGKILL of the client, ingest, catalog or blobstore at seeded points of a backup or a purge"
)

SEED = int(__import__("os").environ.get("TARDIS_CRASH_SEED", "8"))
CLIENT = "victim"
PURGE = ["purge", "--priority", "100", "--keep-days", "0", "--confirm"]

BACKUP_POINTS = {
    "client": ["client.after-submit", "client.mid-upload", "after-upload", "client.before-finish"],
    "ingest": [
        "ingest.after-put",
        "ingest.after-record",
        "ingest.after-expire",
        "ingest.before-complete",
        "ingest.after-complete",
    ],
    "catalog": ["catalog.record-before-commit", "catalog.complete-before-commit"],
    "blobstore": ["blobstore.mid-object", "blobstore.after-link", "blobstore.after-meta", "blobstore.before-sync"],
}
PURGE_POINTS = ["catalog.remove-before-commit", "ingest.after-remove", "blobstore.mid-delete"]
EMBEDDED_CASES = 34
DISTRIBUTED_PER_PROCESS = 4
PURGE_CASES = 6


def _sample() -> tuple[list[tuple[str, float]], list[tuple[str, str, float]], list[tuple[str, float]]]:
    """(point, u) pairs: the kill comes at pass ceil(u * passes) of the point. Every point
    appears at least once in embedded mode; the rest of the sample is random."""
    rng = random.Random(SEED)
    every = [p for points in BACKUP_POINTS.values() for p in points]
    picks = every + [rng.choice(every) for _ in range(EMBEDDED_CASES - len(every))]
    embedded = [(p, 1.0 - rng.random()) for p in picks]
    distributed = []
    for process, points in BACKUP_POINTS.items():
        chosen = rng.sample(points, len(points)) * DISTRIBUTED_PER_PROCESS
        distributed += [(process, p, 1.0 - rng.random()) for p in chosen[:DISTRIBUTED_PER_PROCESS]]
    purge = [(p, 1.0 - rng.random()) for p in (PURGE_POINTS * PURGE_CASES)[:PURGE_CASES]]
    return embedded, distributed, purge


EMBEDDED, DISTRIBUTED, PURGES = _sample()
NOTE = (
    f"seed {SEED}: {len(EMBEDDED)} kills of the embedded tardis, {len(DISTRIBUTED)} of one of the four processes"
    f" of a distributed backup, {len(PURGES)} during sonic purge"
)


def _mutate(root: Path, seed: int) -> None:
    """Change a quarter of the files, delete a few, add a directory and three large new files."""
    rng = random.Random(seed)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    for path in files[::4]:
        path.write_bytes(path.read_bytes() + b"changed")
    for path in files[1::37]:
        path.unlink()
    fresh = root / "new-dir"
    fresh.mkdir()
    for i in range(60):
        (fresh / f"n{i}").write_bytes(rng.randbytes(rng.choice([10, 3000, 9000])))
    for i in range(3):
        (root / f"big-new-{i}.bin").write_bytes(rng.randbytes(1_300_000 + 77 * i))


@dataclass
class World:
    source: Path  # the changed tree every case backs up
    first: Path  # the tree as set 1 holds it
    base: Path  # BaseDir: client CLIENT with set 1 complete
    purge_base: Path  # BaseDir: sets 1 and 2 complete (set 1 is what a purge removes)
    passes: dict[str, int]  # passes of each point in one backup of ``source`` onto ``base``
    purge_passes: dict[str, int]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("crashes")
    source = make_tree(root / "src", files=700, seed=31)
    first = root / "first"
    shutil.copytree(source, first, symlinks=True)
    base = root / "base"
    backup_in_process(str(base / CLIENT), source, "--create")
    _mutate(source, SEED)

    calibrated = root / "calibrated"
    shutil.copytree(base, calibrated, symlinks=True)
    done = run_tool([TARDIS, "--repository", str(calibrated / CLIENT), str(source)], trace=root / "backup.trace")
    assert done.returncode == 0, done.stderr
    passes = read_trace(root / "backup.trace")

    purged = root / "purged"
    shutil.copytree(calibrated, purged, symlinks=True)
    done = run_tool([SONIC, *PURGE, "--repository", str(purged / CLIENT)], trace=root / "purge.trace")
    assert done.returncode == 0 and "1 sets purged" in done.stdout, done.stdout + done.stderr
    return World(source, first, base, calibrated, passes, read_trace(root / "purge.trace"))


def _pass(passes: dict[str, int], point: str, u: float) -> int:
    assert passes.get(point, 0) > 0, f"{point} was never passed in the traced run: {passes}"
    return max(1, math.ceil(u * passes[point]))


def _copy(base: Path, tmp_path: Path) -> Path:
    into = tmp_path / "base"
    shutil.copytree(base, into, symlinks=True)
    return into


def _after_kill(repository: str, db_path: Path, world: World, out: Path, *, purge: bool = False) -> list[dict]:
    """The repository after a kill: consistent, and every complete set restores exactly."""
    check_catalog_file(db_path)
    verify(repository)
    sets = sets_of(repository)
    complete = [s["id"] for s in sets if s["completed"]]
    if purge:
        assert 2 in complete, sets  # the purge keeps the newest set
    else:
        assert complete[:1] == [1], sets  # set 1 was complete before: it still is
    for set_id in complete:
        restore_equals(repository, set_id, world.source, world.first if set_id == 1 else world.source, out)
    return sets


def _next_run(repository: str, db_path: Path, world: World, out: Path) -> None:
    """The next run completes (taking over the dead run's lease) and its set restores exactly."""
    backup_in_process(repository, world.source, "--force")
    sets = sets_of(repository)
    assert sets[-1]["completed"], sets
    check_catalog_file(db_path)
    verify(repository)
    restore_equals(repository, sets[-1]["id"], world.source, world.source, out)


@pytest.mark.parametrize(("point", "u"), EMBEDDED, ids=[f"{p}@{u:.2f}" for p, u in EMBEDDED])
def test_kill_embedded_backup(world: World, tmp_path: Path, point: str, u: float, reliability: Any) -> None:
    reliability.note(NOTE)
    n = _pass(world.passes, point, u)
    base = _copy(world.base, tmp_path)
    repository = str(base / CLIENT)
    done = run_tool([TARDIS, "--repository", repository, str(world.source)], fault=f"{point}:{n}")
    assert done.returncode == -signal.SIGKILL, (point, n, done.stdout, done.stderr)
    db_path = base / CLIENT / "tardis.db"
    _after_kill(repository, db_path, world, tmp_path / "out")
    _next_run(repository, db_path, world, tmp_path / "out")


@pytest.mark.parametrize(("process", "point", "u"), DISTRIBUTED, ids=[f"{p}-{pt}@{u:.2f}" for p, pt, u in DISTRIBUTED])
def test_kill_distributed_backup(world: World, tmp_path: Path, process: str, point: str, u: float) -> None:
    n = _pass(world.passes, point, u)
    base = _copy(world.base, tmp_path)
    cluster = Cluster(base, write_secret(tmp_path / "service.secret"))
    fault = f"{point}:{n}"
    try:
        cluster.start_all({process: fault} if process != "client" else {})
        repository = cluster.url(CLIENT)
        done = run_tool(
            [TARDIS, "--repository", repository, str(world.source)], fault=fault if process == "client" else ""
        )
        if process == "client":
            assert done.returncode == -signal.SIGKILL, (point, n, done.stderr)
        else:
            assert cluster.killed(process), f"{process} survived {fault}: {done.stderr}"
            assert done.returncode == 1, (point, n, done.stdout, done.stderr)
            one_line_error(done.stderr, "tardis")
            cluster.restart(process)
        db_path = base / CLIENT / "tardis.db"
        _after_kill(repository, db_path, world, tmp_path / "out")
        _next_run(repository, db_path, world, tmp_path / "out")
    finally:
        cluster.stop()


@pytest.mark.parametrize(("point", "u"), PURGES, ids=[f"{p}@{u:.2f}" for p, u in PURGES])
def test_kill_during_purge(world: World, tmp_path: Path, point: str, u: float) -> None:
    n = _pass(world.purge_passes, point, u)
    base = _copy(world.purge_base, tmp_path)
    repository = str(base / CLIENT)
    done = run_tool([SONIC, *PURGE, "--repository", repository], fault=f"{point}:{n}")
    assert done.returncode == -signal.SIGKILL, (point, n, done.stdout, done.stderr)
    db_path = base / CLIENT / "tardis.db"
    if point != "catalog.remove-before-commit":  # killed while deleting: the dead purge holds the lease
        _held_by_a_dead_purge(db_path)
    _after_kill(repository, db_path, world, tmp_path / "out", purge=True)
    code, out = quiet(sonic.main, [*PURGE, "--repository", repository])  # takes over an ended run's lease
    assert code == 0, out
    assert _lease(db_path)[0] is None  # the purge released it
    assert [s["id"] for s in sets_of(repository)] == [2]
    check_catalog_file(db_path)
    verify(repository)
    restore_equals(repository, 2, world.source, world.source, tmp_path / "out")
    _nothing_stranded(base, db_path)


def _stored_ids(base: Path) -> set[str]:
    """The ids of every file in the client's object tree (objects, .meta, .sig alike)."""
    return {p.name.split(".")[0] for p in (base / CLIENT).glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/*")}


def _catalog_ids(db_path: Path, table: str = "objects") -> set[str]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return {bytes(r[0]).decode() for r in conn.execute(f"SELECT address FROM {table}")}
    finally:
        conn.close()


def _lease(db_path: Path) -> tuple[Any, ...]:
    """The writer lease row: (holder, session)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return tuple(conn.execute("SELECT holder, session FROM lease WHERE id = 1").fetchone() or (None, None))
    finally:
        conn.close()


def _held_by_a_dead_purge(db_path: Path) -> None:
    """A purge on this host (the killed sonic) holds the client's writer lease, not expired."""
    holder, session = _lease(db_path)
    assert session == "(purge)" and holder and holder.startswith(f"{socket.gethostname()}:"), (holder, session)


def _nothing_stranded(base: Path, db_path: Path) -> None:
    """The object tree holds exactly the objects the catalog lists, the deletion journal is
    empty and no temporary file is left."""
    stored, listed = _stored_ids(base), _catalog_ids(db_path)
    assert stored == listed, f"{len(stored - listed)} stray files, {len(listed - stored)} objects missing"
    assert _catalog_ids(db_path, "doomed") == set()
    tmp = base / CLIENT / "tmp"
    assert not tmp.is_dir() or list(tmp.iterdir()) == []


def test_kill_after_retention_commit_strands_nothing(world: World, tmp_path: Path) -> None:
    """tardis killed between retention's catalog commit and the deletions (set 1 past its keep
    period): the forgotten objects' files are still there, named by the deletion journal;
    the next run's retention deletes them, and every remaining set restores exactly."""
    base = _copy(world.purge_base, tmp_path)
    repository = str(base / CLIENT)
    db_path = base / CLIENT / "tardis.db"
    conn = sqlite3.connect(db_path)
    with conn:  # set 1 ended two days ago and is kept one day: the next backup's retention removes it
        conn.execute("UPDATE sets SET keep_days = 1, end_ns = end_ns - 2 * 86400000000000 WHERE set_id = 1")
    conn.close()
    done = run_tool([TARDIS, "--repository", repository, str(world.source)], fault="ingest.after-expire:1")
    assert done.returncode == -signal.SIGKILL, (done.stdout, done.stderr)
    check_catalog_file(db_path)
    verify(repository)
    assert [s["id"] for s in sets_of(repository) if s["completed"]] == [2]
    doomed = _catalog_ids(db_path, "doomed")
    assert doomed and doomed <= _stored_ids(base) - _catalog_ids(db_path)  # the stranded files
    restore_equals(repository, 2, world.source, world.source, tmp_path / "out")
    backup_in_process(repository, world.source, "--force")
    sets = sets_of(repository)
    assert [s["id"] for s in sets] == [2, 3] and all(s["completed"] for s in sets), sets
    check_catalog_file(db_path)
    verify(repository)
    _nothing_stranded(base, db_path)
    for set_id in (2, 3):
        restore_equals(repository, set_id, world.source, world.source, tmp_path / "out")


def test_content_stored_again_after_an_interrupted_purge_survives_the_next_purge(world: World, tmp_path: Path) -> None:
    """sonic purge killed after forgetting set 1, before deleting its objects; a backup then
    stores set 1's content again (its files still exist: deduplicated on disk) and records it.
    The next purge must delete only what is still forgotten, never that content."""
    base = _copy(world.purge_base, tmp_path)
    repository = str(base / CLIENT)
    db_path = base / CLIENT / "tardis.db"
    done = run_tool([SONIC, *PURGE, "--repository", repository], fault="ingest.after-remove:1")
    assert done.returncode == -signal.SIGKILL, (done.stdout, done.stderr)
    doomed = _catalog_ids(db_path, "doomed")
    assert doomed and doomed <= _stored_ids(base)
    _held_by_a_dead_purge(db_path)  # while it lived, no backup could store its orphans again
    # The next backup on this host takes over the dead purge's lease at once, without --force.
    backup_in_process(repository, world.first)  # the tree as set 1 held it
    assert _lease(db_path)[0] is None
    revived = doomed & _catalog_ids(db_path)
    assert revived, "the backup of set 1's tree recorded none of set 1's objects again"
    assert _catalog_ids(db_path, "doomed") == doomed - revived
    code, out = quiet(sonic.main, [*PURGE, "--repository", repository])
    assert code == 0, out
    newest = sets_of(repository)
    assert [s["completed"] for s in newest] == [True], newest
    check_catalog_file(db_path)
    verify(repository)
    _nothing_stranded(base, db_path)
    assert revived <= _stored_ids(base)
    restore_equals(repository, newest[0]["id"], world.first, world.first, tmp_path / "out")


def test_a_purge_deletes_in_chunks_under_its_lease(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sonic purge (embedded, in this process) with chunks of 7 objects: every chunk is
    deleted and forgotten under the purge's lease, the last releases it; nothing stranded."""
    monkeypatch.setattr(ingest_core, "DELETE_CHUNK", 7)
    base = _copy(world.purge_base, tmp_path)
    repository = str(base / CLIENT)
    db_path = base / CLIENT / "tardis.db"
    before = _catalog_ids(db_path)
    code, out = quiet(sonic.main, [*PURGE, "--repository", repository])
    assert code == 0, out
    removed = len(before - _catalog_ids(db_path))
    assert removed > 3 * 7 and f"{removed} objects removed" in out, out
    assert _lease(db_path)[0] is None
    _nothing_stranded(base, db_path)
    backup_in_process(repository, world.source)  # the lease is free: no --force, no take-over
    verify(repository)
