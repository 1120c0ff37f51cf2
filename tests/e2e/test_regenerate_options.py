"""regenerate's set choice (--date, --last), --overwrite, --authenticate/--verify-action,
--reduce-path, --checksum and --no-recurse, on a real embedded repository of several sets."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tardis_cli import backup, regenerate, sonic

BACKED_MTIME = 1_600_000_000_000_000_000  # 2020-09-13: a.txt's mtime in every set
SMALL = b"precious small content, stored uncompressed\n" * 3


@dataclass
class Repo:
    url: str
    src: Path
    tmp: Path
    capsys: pytest.CaptureFixture[str]

    def regen(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = regenerate.main(["--repository", self.url, *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def sonic_json(self, *args: str) -> Any:
        self.capsys.readouterr()
        assert sonic.main([args[0], "--repository", self.url, *args[1:], "--json"]) == 0
        return json.loads(self.capsys.readouterr().out)

    def object_id(self, path: Path) -> str:
        rows = self.sonic_json("files")
        return next(r["object_id"] for r in rows if r["path"] == str(path))


def _iso(ns: float) -> str:
    return datetime.fromtimestamp(ns / 1e9).isoformat(timespec="microseconds")


@pytest.fixture
def repo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Repo:
    src = tmp_path / "src"
    (src / "docs" / "deep").mkdir(parents=True)
    (src / "a.txt").write_text("alpha one\n")
    os.utime(src / "a.txt", ns=(BACKED_MTIME, BACKED_MTIME))
    (src / "gone.txt").write_text("deleted before three\n")
    (src / "docs" / "b.txt").write_text("bravo" * 100)
    (src / "docs" / "deep" / "c.txt").write_text("charlie\n")
    (src / "small.txt").write_bytes(SMALL)
    url = str(tmp_path / "repo" / "host")
    assert backup.main(["--repository", url, "--create", "--name", "one", str(src)]) == 0
    (src / "new.txt").write_text("new in two\n")
    assert backup.main(["--repository", url, "--name", "two", str(src)]) == 0
    (src / "a.txt").write_text("alpha three\n")
    os.utime(src / "a.txt", ns=(BACKED_MTIME, BACKED_MTIME))
    (src / "gone.txt").unlink()
    assert backup.main(["--repository", url, "--name", "three", str(src)]) == 0
    return Repo(url, src, tmp_path, capsys)


def test_date_picks_the_newest_set_started_before_it(repo: Repo) -> None:
    starts = [s["start_ns"] for s in repo.sonic_json("list")]
    between_1_2, between_2_3 = _iso((starts[0] + starts[1]) / 2), _iso((starts[1] + starts[2]) / 2)
    for when, expected, set_name in [
        (between_1_2, "alpha one\n", "one"),
        (between_2_3, "alpha one\n", "two"),
        ("now", "alpha three\n", "three"),
    ]:
        out = repo.tmp / f"out-{set_name}"
        code, stdout, err = repo.regen("-o", str(out), "--date", when, str(repo.src))
        assert code == 0, err
        assert f"from {set_name} into" in stdout
        assert (out / "src" / "a.txt").read_text() == expected
        assert (out / "src" / "new.txt").exists() == (set_name != "one")
        assert (out / "src" / "gone.txt").exists() == (set_name != "three")

    code, stdout, err = repo.regen("-o", str(repo.tmp / "early"), "-d", "2000-01-01", str(repo.src))
    assert code == 1
    assert err.startswith("regenerate: error: no complete backup set started at or before") and err.count("\n") == 1
    assert not (repo.tmp / "early").exists()


def test_date_backup_and_last_are_exclusive(repo: Repo) -> None:
    for extra in (["-b", "one", "-d", "now"], ["-b", "one", "-l"], ["-d", "now", "--last"]):
        with pytest.raises(SystemExit) as stopped:
            regenerate.main(["--repository", repo.url, "-o", str(repo.tmp / "x"), *extra, str(repo.src)])
        assert stopped.value.code == 2


def test_last_restores_a_file_deleted_in_the_newest_set(repo: Repo) -> None:
    gone = repo.src / "gone.txt"
    code, _, err = repo.regen("-o", str(repo.tmp / "plain"), str(gone))
    assert code == 1 and "is not in the backup set" in err

    out = repo.tmp / "last"
    code, stdout, err = repo.regen("-o", str(out), "--last", str(gone), str(repo.src / "a.txt"))
    assert code == 0, err
    assert (out / "gone.txt").read_text() == "deleted before three\n"
    assert (out / "a.txt").read_text() == "alpha three\n"
    assert "from two, three into" in stdout

    code, _, err = repo.regen("-o", str(out), "-l", str(repo.src / "never-there"))
    assert code == 1 and err.count("\n") == 1 and "never-there" in err


def _existing(out: Path, mtime_ns: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    target = out / "a.txt"
    target.write_text("mine\n")
    os.utime(target, ns=(mtime_ns, mtime_ns))
    return target


@pytest.mark.parametrize(
    ("mode", "existing_mtime", "replaced"),
    [
        (None, BACKED_MTIME - 10**9, False),  # default: never
        ("never", BACKED_MTIME + 10**9, False),
        ("always", BACKED_MTIME + 10**9, True),
        ("newer", BACKED_MTIME - 10**9, True),  # backed-up file is newer than the existing one
        ("newer", BACKED_MTIME + 10**9, False),
        ("older", BACKED_MTIME + 10**9, True),  # backed-up file is older than the existing one
        ("older", BACKED_MTIME - 10**9, False),
        ("ask", BACKED_MTIME - 10**9, False),  # no terminal: never
    ],
)
def test_overwrite_modes(repo: Repo, mode: str | None, existing_mtime: int, replaced: bool) -> None:
    out = repo.tmp / "out"
    target = _existing(out, existing_mtime)
    option = ["--overwrite", mode] if mode else []
    code, stdout, err = repo.regen("-o", str(out), *option, str(repo.src / "a.txt"))
    assert code == 0, err
    if replaced:
        assert target.read_text() == "alpha three\n"
        assert target.stat().st_mtime_ns == BACKED_MTIME
        assert "not overwritten" not in err
    else:
        assert target.read_text() == "mine\n"
        assert target.stat().st_mtime_ns == existing_mtime
        assert f"not overwritten: {target}" in err
        assert "1 not overwritten" in stdout


def test_overwrite_applies_inside_trees_and_to_symlinks(repo: Repo) -> None:
    out = repo.tmp / "out"
    restored = out / "src"
    (restored / "docs").mkdir(parents=True)
    (restored / "docs" / "b.txt").write_text("mine\n")
    (restored / "small.txt").symlink_to("elsewhere")  # a symlink where a file belongs: replaced
    (restored / "new.txt").mkdir()  # a directory where a file belongs: kept under never
    code, _, err = repo.regen("-o", str(out), str(repo.src))
    assert code == 0, err
    assert (restored / "docs" / "b.txt").read_text() == "mine\n"
    assert (restored / "docs" / "deep" / "c.txt").read_text() == "charlie\n"  # merged into the directory
    assert (restored / "small.txt").read_bytes() == SMALL and not (restored / "small.txt").is_symlink()
    assert (restored / "new.txt").is_dir()

    code, _, err = repo.regen("-o", str(out), "-O", "always", str(repo.src))
    assert code == 0, err
    assert (restored / "docs" / "b.txt").read_text() == "bravo" * 100
    assert (restored / "new.txt").read_text() == "new in two\n"


def _damage(repo: Repo, object_id: str) -> None:
    found = [Path(d) / object_id for d, _, names in os.walk(repo.tmp / "repo") if object_id in names]
    assert len(found) == 1, found
    data = bytearray(found[0].read_bytes())
    at = data.find(SMALL)
    assert at > 0, "the small file's object should hold its content uncompressed"
    data[at + 5] ^= 0x01
    found[0].write_bytes(bytes(data))


def test_corrupt_object_with_each_verify_action(repo: Repo) -> None:
    small = repo.src / "small.txt"
    object_id = repo.object_id(small)
    _damage(repo, object_id)

    renamed = repo.tmp / "rename"
    code, stdout, err = repo.regen("-o", str(renamed), str(repo.src))  # default: rename
    assert code == 1
    corrupt_name = renamed / "src" / f"small.txt-CORRUPT-{object_id[:8]}"
    assert corrupt_name.exists() and not (renamed / "src" / "small.txt").exists()
    assert "corrupt: " in err and "renamed to" in err and "1 corrupt" in stdout
    assert (renamed / "src" / "docs" / "b.txt").read_text() == "bravo" * 100  # the rest is restored

    kept = repo.tmp / "keep"
    code, _, err = repo.regen("-o", str(kept), "--verify-action", "keep", str(small))
    assert code == 1 and "kept" in err
    assert (kept / "small.txt").exists() and (kept / "small.txt").read_bytes() != SMALL

    deleted = repo.tmp / "delete"
    code, _, err = repo.regen("-o", str(deleted), "--verify-action", "delete", str(small))
    assert code == 1 and "deleted" in err
    assert os.listdir(deleted) == []

    unchecked = repo.tmp / "unchecked"
    code, _, err = repo.regen("-o", str(unchecked), "--no-authenticate", str(small))
    assert code == 0, err
    content = (unchecked / "small.txt").read_bytes()
    assert len(content) == len(SMALL) and content != SMALL

    code, _, err = repo.regen("-o", str(repo.tmp / "sum"), "-c", object_id)
    assert code == 1 and "renamed to" in err


def test_reduce_path(repo: Repo) -> None:
    strip = len(repo.src.parts) - 1  # the components of .../src
    out = repo.tmp / "reduced"
    code, _, err = repo.regen("-o", str(out), "--reduce-path", str(strip), str(repo.src / "docs" / "b.txt"))
    assert code == 0, err
    assert (out / "docs" / "b.txt").read_text() == "bravo" * 100

    full = repo.tmp / "full"
    code, _, err = repo.regen("-o", str(full), "--reduce-path", "0", str(repo.src / "docs" / "deep"))
    assert code == 0, err
    assert (full / str(repo.src).lstrip("/") / "docs" / "deep" / "c.txt").read_text() == "charlie\n"

    smart = repo.tmp / "smart"  # no N: strip what the inputs share, keep their layout below it
    code, _, err = repo.regen(
        "-o", str(smart), "--reduce-path", str(repo.src / "docs" / "deep"), str(repo.src / "docs" / "b.txt")
    )
    assert code == 0, err
    assert (smart / "deep" / "c.txt").read_text() == "charlie\n"
    assert (smart / "b.txt").read_text() == "bravo" * 100
    alone = repo.tmp / "alone"
    code, _, err = repo.regen("-o", str(alone), "--reduce-path", str(repo.src / "docs" / "deep" / "c.txt"))
    assert code == 0, err
    assert (alone / "c.txt").read_text() == "charlie\n"


def test_checksum_inputs(repo: Repo) -> None:
    b_id, c_id = (
        repo.object_id(repo.src / "docs" / "b.txt"),
        repo.object_id(repo.src / "docs" / "deep" / "c.txt"),
    )
    out = repo.tmp / "objects"
    code, stdout, err = repo.regen("-o", str(out), "--checksum", b_id, c_id)
    assert code == 0, err
    assert (out / b_id).read_text() == "bravo" * 100
    assert (out / c_id).read_text() == "charlie\n"
    assert "wrote 2 objects" in stdout

    single = repo.tmp / "one-file"
    code, _, err = repo.regen("-o", str(single), "-c", c_id)
    assert code == 0, err
    assert single.read_text() == "charlie\n"

    code, _, err = repo.regen("-o", str(out), "-c", "ab" * 32)
    assert code == 1 and err.count("\n") == 1 and "not in the repository" in err
    code, _, err = repo.regen("-o", str(out), "-c", "not-hex")
    assert code == 1 and "not an object id" in err


def test_no_recurse_restores_a_directory_without_its_contents(repo: Repo) -> None:
    out = repo.tmp / "shallow"
    code, _, err = repo.regen("-o", str(out), "--no-recurse", str(repo.src / "docs"))
    assert code == 0, err
    assert (out / "docs").is_dir() and os.listdir(out / "docs") == []
    assert (out / "docs").stat().st_mtime_ns == (repo.src / "docs").stat().st_mtime_ns

    deep = repo.tmp / "deep"
    code, _, err = repo.regen("-o", str(deep), "-r", str(repo.src / "docs"))
    assert code == 0, err
    assert (deep / "docs" / "deep" / "c.txt").read_text() == "charlie\n"
