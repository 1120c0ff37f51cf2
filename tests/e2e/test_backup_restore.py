"""A tree backed up and restored byte for byte, embedded and distributed alike."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from helpers.trees import assert_same_tree, make_tree
from tardis_cli import backup, regenerate, sonic


def tardis(*args: str) -> int:
    return backup.main(list(args))


def files_sent(capsys: pytest.CaptureFixture[str]) -> int:
    match = re.search(r"(\d+) files sent", capsys.readouterr().out)
    assert match, "tardis did not report what it sent"
    return int(match.group(1))


def sets(repository: str, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    capsys.readouterr()
    assert sonic.main(["list", "--repository", repository, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_tree_restores_identically(repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_tree(tmp_path / "src", files=2500)
    assert tardis("--repository", repository, "--create", str(source)) == 0
    out = tmp_path / "out"
    assert regenerate.main(["--repository", repository, "-o", str(out)]) == 0
    assert_same_tree(source, out / str(source).lstrip("/"))
    # A path inside the set restores on its own, under its own name.
    single = tmp_path / "single"
    assert regenerate.main(["--repository", repository, "-o", str(single), str(source)]) == 0
    assert_same_tree(source, single / "src")


def test_incremental_sets_keep_history(repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_tree(tmp_path / "src", files=300)
    assert tardis("--repository", repository, "--create", str(source)) == 0
    first = tmp_path / "first"
    shutil.copytree(source, first, symlinks=True)
    capsys.readouterr()

    # Nothing changed: nothing is sent again.
    assert tardis("--repository", repository, str(source)) == 0
    assert files_sent(capsys) == 0

    changed = next(p for p in source.rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_size > 10)
    changed.write_bytes(b"new content")
    (source / "added.txt").write_text("added\n")
    os.unlink(source / "run.sh")
    assert tardis("--repository", repository, str(source)) == 0
    assert files_sent(capsys) == 2  # the changed file and the added one

    listed = sets(repository, capsys)
    assert [s["completed"] for s in listed] == [True, True, True]
    assert len({s["name"] for s in listed}) == 3

    newest, oldest = tmp_path / "newest", tmp_path / "oldest"
    assert regenerate.main(["--repository", repository, "-o", str(newest), str(source)]) == 0
    assert_same_tree(source, newest / "src")
    assert (
        regenerate.main(["--repository", repository, "-o", str(oldest), "--backup", listed[0]["name"], str(source)])
        == 0
    )
    assert_same_tree(first, oldest / "src")
    assert (
        regenerate.main(
            ["--repository", repository, "-o", str(tmp_path / "byid"), "-b", str(listed[0]["id"]), str(source)]
        )
        == 0
    )
    assert_same_tree(first, tmp_path / "byid" / "src")


def test_sonic_list_shows_sets(repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_tree(tmp_path / "src", files=20)
    assert tardis("--repository", repository, "--create", str(source)) == 0
    capsys.readouterr()
    assert sonic.main(["list", "--repository", repository]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["Id", "Name"]
    assert len(out) == 2 and out[1].split()[0] == "1" and "yes" in out[1]


def test_names_tags_priority_report_and_log(
    repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_tree(tmp_path / "src", files=30)
    log = tmp_path / "tardis.log"
    args = ["--repository", repository, "--create", "--name", "first", "-t", "keep", "--priority", "77"]
    assert tardis(*args, "--report", "-l", str(log), "-v", str(source)) == 0
    out = capsys.readouterr().out
    assert "full" in out and str(source / "run.sh") in out
    assert "starting backup set 1" in log.read_text()
    (source / "run.sh").write_text("changed\n")
    assert tardis("--repository", repository, "-t", "keep", str(source)) == 0  # moves the tag
    listed = sets(repository, capsys)
    assert listed[0]["name"] == "first" and listed[0]["priority"] == 77 and listed[0]["tags"] == []
    assert listed[1]["tags"] == ["keep"]
    restored = tmp_path / "bytag"
    assert regenerate.main(["--repository", repository, "-o", str(restored), "-b", "keep", str(source)]) == 0
    assert (restored / "src" / "run.sh").read_text() == "changed\n"
