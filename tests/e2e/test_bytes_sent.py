"""What crosses the wire: nothing for an unchanged tree, a delta for an edit, nothing for a copy."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from helpers.trees import assert_same_tree, make_tree
from tardis_cli import backup, regenerate

MiB = 1024 * 1024


def run_stats(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, int]:
    capsys.readouterr()
    assert backup.main([*args, "--stats"]) == 0
    err = capsys.readouterr().err
    numbers = {key: int(value) for key, value in re.findall(r"([a-z][a-z ]*?) (\d+)", err)}
    assert "bytes on the wire" in numbers, err
    return numbers


def test_unchanged_tree_sends_no_content(repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_tree(tmp_path / "src", files=400)
    run_stats(capsys, "--repository", repository, "--create", str(source))
    again = run_stats(capsys, "--repository", repository, str(source))
    assert again["files sent"] == 0 and again["bytes on the wire"] == 0


def test_small_edit_of_a_large_file_sends_a_delta(
    repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    large = source / "disk.img"
    with open(large, "wb") as out:
        for _ in range(200):
            out.write(os.urandom(MiB))
    run_stats(capsys, "--repository", repository, "--create", str(source))
    original = tmp_path / "original"
    shutil.copytree(source, original)
    with open(large, "r+b") as f:
        f.seek(123 * MiB + 5)
        f.write(os.urandom(4096))
    edited = run_stats(capsys, "--repository", repository, str(source))
    assert edited["files sent"] == 1 and edited["deltas"] == 1
    assert edited["bytes on the wire"] < 1 * MiB, edited
    out = tmp_path / "out"
    assert regenerate.main(["--repository", repository, "-o", str(out), str(source)]) == 0
    assert_same_tree(source, out / "src")
    old = tmp_path / "old"
    assert regenerate.main(["--repository", repository, "-o", str(old), "-b", "1", str(source)]) == 0
    assert_same_tree(original, old / "src")


def test_copied_and_renamed_files_send_no_content(
    repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    with open(source / "a" / "movie.bin", "wb") as out:
        for _ in range(50):
            out.write(os.urandom(MiB))
    run_stats(capsys, "--repository", repository, "--create", str(source))
    shutil.copyfile(source / "a" / "movie.bin", source / "copy.bin")
    (source / "b").mkdir()
    os.rename(source / "a" / "movie.bin", source / "b" / "moved.bin")
    moved = run_stats(capsys, "--repository", repository, str(source))
    assert moved["files sent"] == 0 and moved["bytes on the wire"] == 0, moved
    assert moved["hashed"] == 2
    out = tmp_path / "out"
    assert regenerate.main(["--repository", repository, "-o", str(out), str(source)]) == 0
    assert_same_tree(source, out / "src")


def test_full_sends_whole_copies_of_delta_stored_files(
    repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    doc = source / "doc.bin"
    doc.write_bytes(os.urandom(300_000))
    run_stats(capsys, "--repository", repository, "--create", str(source))
    with open(doc, "r+b") as f:
        f.seek(1000)
        f.write(b"edit")
    edited = run_stats(capsys, "--repository", repository, str(source))
    assert edited["deltas"] == 1
    full = run_stats(capsys, "--repository", repository, "--full", str(source))
    assert full["files sent"] == 1 and full["deltas"] == 0  # unchanged, but its object was a delta
    again = run_stats(capsys, "--repository", repository, str(source))
    assert again["files sent"] == 0
    out = tmp_path / "out"
    assert regenerate.main(["--repository", repository, "-o", str(out), str(source)]) == 0
    assert (out / "src" / "doc.bin").read_bytes() == doc.read_bytes()
