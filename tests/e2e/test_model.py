"""Model-based test of incremental backups: a seeded random sequence of mutations (create,
modify in place, append, truncate, rename, move, delete, chmod, older mtimes, file <->
directory, hard links, symlinks, same-size rewrites that keep the mtime) over two dozen
backups, each taken right after the previous mutations (same second). Every set, restored
at a few points along the way and at the end, must be exactly the tree recorded when it
was taken: contents, types, link targets, modes, nanosecond mtimes, hard-link groups."""

from __future__ import annotations

import random
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from helpers.mutations import Mutator, Snapshot, differences, initial_tree, take_snapshot
from tardis_cli import backup, regenerate

SEEDS = (1, 2, 3)
SETS = 30  # backups per run; the mutations between them cycle through every kind
CHECKPOINTS = (8, 16, 24)  # after these sets, every set so far is restored too (and all at the end)


def run_backup(repository: str, source: Path, number: int, capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    args = ["--repository", repository, "--name", f"step-{number}", "--stats", str(source)]
    if number == 0:
        args.insert(0, "--create")
    capsys.readouterr()
    code = backup.main(args)
    captured = capsys.readouterr()
    assert code == 0, f"backup step-{number} exited {code}: {captured.err.strip()}"
    return {key: int(value) for key, value in re.findall(r"([a-z][a-z ]*?) (\d+)", captured.err)}


def wrong_paths(want: Snapshot, got: Snapshot) -> set[str]:
    paths = {rel for rel in want.entries.keys() | got.entries.keys() if want.entries.get(rel) != got.entries.get(rel)}
    if want.links != got.links:
        paths.update(name for group in want.links + got.links for name in group)
    return paths


def mutations_touching(log: list[str], number: int, paths: set[str]) -> list[str]:
    """The mutations made just before set ``number``, and every earlier one naming a path
    that came back wrong."""
    prefix = f"after set {number - 1}:"
    return [line for line in log if line.startswith(prefix) or any(path in line for path in paths)]


def restore_every_set(
    repository: str,
    source: Path,
    work: Path,
    snapshots: dict[int, Snapshot],
    mutator: Mutator,
    seed: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    failures = []
    for number, want in snapshots.items():
        out = work / f"restore-{number}"
        code = regenerate.main(["--repository", repository, "-o", str(out), "-b", f"step-{number}", str(source)])
        assert code == 0, f"seed {seed}: regenerate -b step-{number} exited {code}: {capsys.readouterr().err}"
        got = take_snapshot(out / source.name)
        problems = differences(want, got)
        if problems:
            failures.append(
                f"seed {seed}, set step-{number} (after {len(snapshots)} sets):\n  "
                + "\n  ".join(problems[:12])
                + "\n mutations:\n  "
                + "\n  ".join(mutations_touching(mutator.log, number, wrong_paths(want, got))[-20:])
            )
        shutil.rmtree(out)
    capsys.readouterr()
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_set_restores_the_tree_it_was_taken_from(
    repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: int
) -> None:
    rng = random.Random(seed)
    source = initial_tree(tmp_path / "src", rng)
    mutator = Mutator(source, rng)
    snapshots: dict[int, Snapshot] = {}
    totals: Counter[str] = Counter()
    for number in range(SETS):
        # The snapshot is taken first (the backup changes nothing in the tree) so that the
        # mutations follow the backup as closely as they can: in the same second.
        snapshots[number] = take_snapshot(source)
        totals.update(run_backup(repository, source, number, capsys))
        if number < SETS - 1:
            mutator.step(number, rng.randint(4, 10))
        if number in CHECKPOINTS:
            restore_every_set(repository, source, tmp_path, snapshots, mutator, seed, capsys)
    restore_every_set(repository, source, tmp_path, snapshots, mutator, seed, capsys)

    # The run exercised what it claims to.
    missing = sorted(set(mutator.kinds()) - set(mutator.applied))
    assert not missing, f"seed {seed}: mutations never applied: {missing}"
    assert totals["deltas"] > 0, f"seed {seed}: no delta was ever sent: {dict(totals)}"
    assert totals["hashed"] > 0, f"seed {seed}: no checksum was ever asked for: {dict(totals)}"
