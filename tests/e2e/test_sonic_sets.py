"""sonic list filters, info, files, tag, lock, unlock, priority, rename on a real repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tardis_cli import backup, sonic


@dataclass
class Repo:
    url: str
    src: Path
    capsys: pytest.CaptureFixture[str]

    def sonic(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = sonic.main([args[0], "--repository", self.url, *args[1:]])
        out, err = self.capsys.readouterr()
        return code, out, err

    def out(self, *args: str) -> str:
        code, out, err = self.sonic(*args)
        assert code == 0, err
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.out(*args, "--json"))

    def names(self, *args: str) -> list[str]:
        return [s["name"] for s in self.json("list", *args)]


def _iso(ns: float) -> str:
    return datetime.fromtimestamp(ns / 1e9).isoformat(timespec="microseconds")


@pytest.fixture
def repo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Repo:
    src = tmp_path / "src"
    (src / "docs" / "deep").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "docs" / "b.txt").write_text("bravo" * 100)
    (src / "docs" / "deep" / "c.bin").write_bytes(os.urandom(3000))
    os.symlink("a.txt", src / "link")
    url = str(tmp_path / "repo" / "host")
    assert backup.main(["--repository", url, "--create", "--name", "one", "--priority", "1", str(src)]) == 0
    (src / "new.txt").write_text("new in two\n")
    assert backup.main(["--repository", url, "--name", "two", "--priority", "5", str(src)]) == 0
    (src / "a.txt").write_text("alpha changed\n")
    assert backup.main(["--repository", url, "--name", "three", "--priority", "3", str(src)]) == 0
    return Repo(url, src, capsys)


def test_list_filters(repo: Repo) -> None:
    rows = repo.json("list")
    assert [r["name"] for r in rows] == ["one", "two", "three"]
    assert all(r["completed"] and not r["locked"] for r in rows)
    starts = [r["start_ns"] for r in rows]
    assert starts == sorted(starts)
    assert repo.names("--priority", "3") == ["two", "three"]
    assert repo.names("--first", "2") == ["one", "two"]
    assert repo.names("--last", "1") == ["three"]
    assert repo.names("--last", "0") == []
    assert repo.names("--priority", "3", "--first", "1") == ["two"]
    between_1_2, between_2_3 = _iso((starts[0] + starts[1]) / 2), _iso((starts[1] + starts[2]) / 2)
    assert repo.names("--before", between_2_3) == ["one", "two"]
    assert repo.names("--after", between_1_2) == ["two", "three"]
    assert repo.names("--after", between_1_2, "--before", between_2_3) == ["two"]
    assert repo.names("--before", "3 days ago") == []
    assert repo.names("--after", "yesterday 00:00") == ["one", "two", "three"]
    assert repo.names("--complete") == ["one", "two", "three"]
    assert repo.names("--incomplete") == []
    text = repo.out("list", "--last", "1").splitlines()
    assert text[0].split() == ["Id", "Name", "Done", "Prio", "Started", "Finished"]
    assert text[1].split()[:4] == ["3", "three", "yes", "3"] and len(text) == 2


def test_info(repo: Repo) -> None:
    current = repo.json("info")
    assert current["name"] == "three" and current["id"] == 3
    assert current["completed"] is True and current["priority"] == 3
    assert current["client_version"] and current["server_version"]
    first = repo.json("info", "one")
    assert first["files_full"] >= 3 and first["bytes_received"] > 3000
    lines = repo.out("info", "2").splitlines()
    assert lines[0].split() == ["Id:", "2"] and lines[1].split() == ["Name:", "two"]
    assert [line.split(":")[0] for line in lines] == [
        "Id", "Name", "Tags", "Completed", "Locked", "Priority", "Started", "Finished", "Client time",
        "Client version", "Server version", "Files full", "Files delta", "Bytes received",
    ]  # fmt: skip
    starts = [r["start_ns"] for r in repo.json("list")]
    assert repo.json("info", "--date", _iso((starts[1] + starts[2]) / 2))["name"] == "two"
    assert repo.json("info", "--date", "now")["name"] == "three"
    code, _, err = repo.sonic("info", "--date", "3 days ago")
    assert code == 1 and "no complete backup set started at or before" in err


def test_files(repo: Repo) -> None:
    top = str(repo.src)  # paths are absolute, as backed up; the parents of the source come first
    parents = [str(p) + "/" for p in reversed(repo.src.parents) if str(p) != "/"] + [top + "/"]
    inside = ["/a.txt", "/docs/", "/docs/b.txt", "/docs/deep/", "/docs/deep/c.bin", "/link"]
    assert repo.out("files", "one").splitlines() == parents + [top + p for p in inside]
    assert repo.out("files", "two").splitlines() == parents + [top + p for p in [*inside, "/new.txt"]]
    assert repo.out("files", "three", "--new").splitlines() == [top + "/a.txt"]
    long = {line.split()[5]: line.split() for line in repo.out("files", "one", "-l").splitlines()}
    assert long[top + "/a.txt"][:3] == ["file", "-rw-r--r--", "6"] or long[top + "/a.txt"][0] == "file"
    assert long[top + "/a.txt"][2] == "6"
    assert long[top + "/docs/"][0] == "dir" and long[top + "/docs/"][1].startswith("d")
    assert long[top + "/link"][0] == "link" and long[top + "/link"][-2:] == ["->", "a.txt"]
    rows = {r["path"]: r for r in repo.json("files", "three")}
    assert rows[top + "/a.txt"]["size"] == len("alpha changed\n") and rows[top + "/a.txt"]["first_set"] == 3
    assert rows[top + "/docs/deep/c.bin"]["type"] == "file" and rows[top + "/docs/deep/c.bin"]["object_id"]
    assert rows[top + "/link"]["link_target"] == "a.txt" and rows[top + "/docs/"]["type"] == "dir"


def test_tag_move_remove(repo: Repo) -> None:
    assert repo.out("tag", "one", "keep", "old").splitlines() == ["set 1 one: tags keep old"]
    assert repo.out("tag", "three", "keep").splitlines() == ["tag keep moved from set 1 one", "set 3 three: tags keep"]
    assert [r["tags"] for r in repo.json("list")] == [["old"], [], ["keep"]]
    assert repo.json("info", "keep")["name"] == "three"
    assert repo.out("tag", "old", "old", "--remove").splitlines() == ["set 1 one: tags -"]
    code, _, err = repo.sonic("tag", "one", "old", "--remove")
    assert code == 1 and err.strip() == "sonic: error: set 1 one has no tag old"


def test_lock_priority_rename(repo: Repo) -> None:
    assert repo.out("lock", "two").strip() == "set 2 two: locked"
    assert repo.json("info", "two")["locked"] is True
    assert repo.out("unlock", "2").strip() == "set 2 two: unlocked"
    assert repo.json("info", "two")["locked"] is False
    assert repo.out("priority", "one", "9").strip() == "set 1 one: priority 9"
    assert repo.out("priority", "one", "-2").strip() == "set 1 one: priority -2"
    assert repo.names("--priority", "0") == ["two", "three"]
    assert repo.out("rename", "Current", "latest").strip() == "set 3 latest: renamed from three"
    assert repo.names() == ["one", "two", "latest"]
    code, _, err = repo.sonic("rename", "one", "two")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "already used" in err


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["info", "nosuch"], 1, "backup set nosuch does not exist"),
        (["files", "99"], 1, "backup set 99 does not exist"),
        (["lock", "nosuch"], 1, "does not exist"),
        (["list", "--before", "not a date at all"], 2, "cannot understand the date"),
        (["info", "--date", "garbage"], 2, "cannot understand the date"),
        (["priority", "one", "high"], 2, "invalid int value"),
        (["list", "--priority", "x"], 2, "invalid int value"),
        (["priority", "one", str(2**40)], 1, "out of range"),
        (["list", "--first", "1", "--last", "1"], 2, "not allowed with"),
        (["rename", "one", "Current"], 1, "bad set name"),
        (["info", "one", "--date", "now"], 1, "not both"),
        (["tag", "one", ""], 1, "a tag cannot be empty"),
    ],
)
def test_errors(repo: Repo, args: list[str], code: int, needle: str) -> None:
    got, out, err = repo.sonic(*args) if code == 1 else _usage(repo, args)
    assert got == code and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err


def _usage(repo: Repo, args: list[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        repo.sonic(*args)
    out, err = repo.capsys.readouterr()
    return int(stop.value.code or 0), out, err


def test_as_a_user_runs_it(repo: Repo) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tardis_cli.sonic", "files", "--repository", repo.url, "Current"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"{repo.src}/new.txt" in done.stdout.splitlines()
