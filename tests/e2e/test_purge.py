"""sonic purge, delete and orphans, and tardis --purge: what goes, what must stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.trees import assert_same_tree, make_tree
from tardis_cli import backup, regenerate, sonic


def names(repository: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    capsys.readouterr()
    assert sonic.main(["list", "--repository", repository, "--json"]) == 0
    return [s["name"] for s in json.loads(capsys.readouterr().out)]


def history(tmp_path: Path, count: int) -> tuple[str, Path]:
    repository = str(tmp_path / "repo" / "host")
    source = make_tree(tmp_path / "src", files=30)
    for n in range(count):
        (source / "changing.txt").write_text(f"version {n}\n" * 1000)
        args = ["--repository", repository, "--name", f"s{n}"] + (["--create"] if n == 0 else [])
        assert backup.main([*args, str(source)]) == 0
    return repository, source


def test_delete_by_name_id_and_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository, source = history(tmp_path, 5)
    assert sonic.main(["lock", "--repository", repository, "s1"]) == 0
    capsys.readouterr()
    assert sonic.main(["delete", "--repository", repository, "s1", "--confirm"]) == 1
    assert "locked" in capsys.readouterr().err
    assert sonic.main(["delete", "--repository", repository, "s0", "3-4", "--confirm"]) == 0
    out = capsys.readouterr().out
    assert "3 sets deleted" in out
    assert names(repository, capsys) == ["s1", "s4"]
    restored = tmp_path / "out"
    assert regenerate.main(["--repository", repository, "-o", str(restored), str(source)]) == 0
    assert_same_tree(source, restored / "src")
    capsys.readouterr()
    assert sonic.main(["delete", "--repository", repository, "9-3", "--confirm"]) == 1
    assert "malformed range" in capsys.readouterr().err


def test_purge_keeps_the_newest_and_locked_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository, source = history(tmp_path, 4)
    assert sonic.main(["lock", "--repository", repository, "s2"]) == 0
    code = sonic.main(["purge", "--repository", repository, "--priority", "100", "--keep-hours", "0", "--confirm"])
    assert code == 0
    assert names(repository, capsys) == ["s2", "s3"]
    for kept in ("s2", "s3"):
        out = tmp_path / kept
        assert regenerate.main(["--repository", repository, "-o", str(out), "-b", kept, str(source)]) == 0
        assert (out / "src" / "changing.txt").read_text() == f"version {kept[1]}\n" * 1000


def test_tardis_purge_after_backup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository, source = history(tmp_path, 3)
    capsys.readouterr()
    args = ["--repository", repository, "--name", "s3", "--purge", "--purge-priority", "100", "--keep-hours", "0"]
    assert backup.main([*args, str(source)]) == 0
    assert "removed 3 old sets" in capsys.readouterr().out
    assert names(repository, capsys) == ["s3"]


def test_orphans_of_a_deleted_history_are_removed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository, _ = history(tmp_path, 3)
    objects = lambda: {p for p in Path(repository).glob("*/*/*") if not p.suffix}  # noqa: E731
    before = objects()
    assert sonic.main(["delete", "--repository", repository, "s0", "s1", "--confirm"]) == 0
    assert "2 objects removed" in capsys.readouterr().out  # the two old versions of changing.txt
    assert len(objects()) == len(before) - 2
    assert sonic.main(["orphans", "--repository", repository]) == 0
    assert "0 objects removed" in capsys.readouterr().out
