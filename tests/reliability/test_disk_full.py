"""Disk-full suite (issue 8): a backup onto a small filesystem that fills up mid-run.

The repository lives on a tmpfs of 8 MiB. One case fills it with objects (the blobstore's
writes fail with ENOSPC), one with catalog rows (SQLite's "database or disk is full"),
each in embedded and distributed mode. Expected: one clear line and exit 1 from ``tardis``;
the repository consistent (SQLite's checks, ``sonic verify``, the earlier set restores);
after space is freed (the filesystem grown), the next run completes and restores exactly.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from crashkit import (
    TARDIS,
    Cluster,
    backup_in_process,
    check_catalog_file,
    one_line_error,
    restore_equals,
    run_tool,
    sets_of,
    verify,
)

from helpers.services import write_secret

pytestmark = pytest.mark.reliability_suite(
    "disk-full", "a repository on an 8 MiB tmpfs filled mid-backup by objects or by catalog rows"
)

CLIENT = "tight"
MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        print(f"cannot mount a tmpfs here ({done.stderr.strip()}); the disk-full suite needs root and mount(8)")
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _grow(mount: Path) -> None:
    """Free space: the filesystem grows to 64 MiB (as if files were deleted elsewhere on it)."""
    subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)


def _free(mount: Path) -> int:
    st = os.statvfs(mount)
    return st.f_bavail * st.f_frsize


def _tree(root: Path, files: int, size: int, seed: int) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"f{i:05d}.bin").write_bytes(rng.randbytes(size))
    return root


@pytest.fixture(params=["embedded", "distributed"])
def place(request: pytest.FixtureRequest, small_disk: Path, tmp_path: Path) -> Iterator[str]:
    """The repository URL of client CLIENT on the small disk, in each deployment mode."""
    base = small_disk / "base"
    base.mkdir()
    if request.param == "embedded":
        yield str(base / CLIENT)
        return
    cluster = Cluster(base, write_secret(tmp_path / "service.secret"))
    cluster.start_all()
    try:
        yield cluster.url(CLIENT)
    finally:
        cluster.stop()


def _check_and_recover(repository: str, mount: Path, source: Path, first: Path, tmp_path: Path) -> None:
    """After the failed run: consistent, set 1 intact; after space is freed the next run completes."""
    db_path = mount / "base" / CLIENT / "tardis.db"
    check_catalog_file(db_path)
    verify(repository)
    sets = sets_of(repository)
    assert sets[0]["completed"] and sets[0]["id"] == 1, sets
    assert all(not s["completed"] for s in sets[1:]), sets
    restore_equals(repository, 1, source, first, tmp_path / "out")
    _grow(mount)
    backup_in_process(repository, source, "--force")  # --force: the failed run's lease has not expired yet
    sets = sets_of(repository)
    assert sets[-1]["completed"], sets
    check_catalog_file(db_path)
    verify(repository)
    restore_equals(repository, sets[-1]["id"], source, source, tmp_path / "out")


def _first_set(repository: str, tmp_path: Path) -> tuple[Path, Path]:
    source = _tree(tmp_path / "src", files=40, size=20_000, seed=1)
    first = tmp_path / "first"
    backup_in_process(repository, source, "--create")
    shutil.copytree(source, first, symlinks=True)
    return source, first


def test_objects_fill_the_disk(place: str, small_disk: Path, tmp_path: Path) -> None:
    repository = place
    source, first = _first_set(repository, tmp_path)
    _tree(source / "big", files=12, size=MiB, seed=2)  # 12 MiB of incompressible data for 8 MiB
    done = run_tool([TARDIS, "--repository", repository, str(source)])
    assert done.returncode == 1, (done.stdout, done.stderr)
    line = one_line_error(done.stderr, "tardis")
    assert "no space left" in line and CLIENT in line, line
    _check_and_recover(repository, small_disk, source, first, tmp_path)


def test_catalog_rows_fill_the_disk(place: str, small_disk: Path, tmp_path: Path) -> None:
    repository = place
    source, first = _first_set(repository, tmp_path)
    empty = source / "empty"
    empty.mkdir()
    for i in range(6000):  # rows only: empty files carry no object
        (empty / f"e{i:05d}-{'x' * 60}").touch()
    # Fill the disk but for a little room, so the run starts and its catalog writes fail.
    filler = small_disk / "filler"
    with open(filler, "wb") as out:
        out.write(b"\0" * max(0, _free(small_disk) - 256 * 1024))
    done = run_tool([TARDIS, "--repository", repository, str(source)])
    assert done.returncode == 1, (done.stdout, done.stderr)
    line = one_line_error(done.stderr, "tardis")
    assert "no space left" in line and "catalog" in line, line
    _check_and_recover(repository, small_disk, source, first, tmp_path)
