"""tardiff as a user runs it: a subprocess against a repository with a history of sets."""

from __future__ import annotations

import difflib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from helpers.services import Cluster
from tardis_cli import backup
from tardis_cli.chain import ChainReader
from tardis_cli.connect import open_repository
from tardis_cli.restore import components_of
from tardis_common.cipher import NullCipher
from tardis_common.urls import parse_repository

BIG_LINES = 30_000


@dataclass
class History:
    repo: str
    src: Path


def tardiff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tardis_cli.tardiff", *args], capture_output=True, text=True, timeout=120
    )


def big_text(changed: int | None = None) -> str:
    return "".join(f"changed {i}\n" if i == changed else f"line {i}\n" for i in range(BIG_LINES))


def first_tree(src: Path) -> None:
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "gone").mkdir()
    (src / "t.txt").write_text("alpha\nbeta\ngamma\n")
    (src / "same.txt").write_text("never changes\n")
    (src / "big.txt").write_text(big_text())
    (src / "data.bin").write_bytes(bytes(range(256)) * 40)
    (src / "latin1.txt").write_bytes("caf\xe9 one\n".encode("latin-1"))
    (src / "sub" / "s.txt").write_text("old sub file\n")
    (src / "sub" / "deeper" / "d.txt").write_text("deep one\n")
    (src / "gone" / "g.txt").write_text("goes away\n")


def second_tree(src: Path) -> None:
    (src / "t.txt").write_text("alpha\nBETA\ngamma\ndelta\n")
    (src / "big.txt").write_text(big_text(changed=15_000))
    (src / "data.bin").write_bytes(bytes(range(256)) * 39 + b"\x00changed" + bytes(248))
    (src / "latin1.txt").write_bytes("caf\xe9 two\n".encode("latin-1"))
    (src / "sub" / "s.txt").unlink()
    (src / "sub" / "n.txt").write_text("new sub file\n")
    (src / "sub" / "deeper" / "d.txt").write_text("deep two\n")
    (src / "gone" / "g.txt").unlink()
    (src / "gone").rmdir()


def make_history(repo: str, src: Path) -> History:
    """Set 1 (first_tree), set 2 (second_tree), then t.txt changed again on disk only."""
    first_tree(src)
    assert backup.main(["--repository", repo, "--create", "--name", "first", str(src)]) == 0
    second_tree(src)
    assert backup.main(["--repository", repo, "--name", "second", str(src)]) == 0
    (src / "t.txt").write_text("alpha\nBETA\ngamma\ndelta\nlive only\n")
    return History(repo, src)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    base = tmp_path_factory.mktemp("tardiff")
    return make_history(str(base / "repo" / "client"), base / "src")


def test_big_file_is_a_delta(history: History) -> None:
    """The ≥ 200 KiB file modified between the sets is stored as a delta: tardiff rebuilds it."""
    with open_repository(parse_repository(history.repo)) as repo:
        found = repo.ingest.lookup_path(
            cat.LookupPathRequest(
                client=repo.client,
                set_id=2,
                path=common.DirPath(components=components_of(str(history.src / "big.txt"))),
            )
        )
        info = ChainReader(repo.ingest, repo.client, NullCipher()).infos([found.entry.object_id])
        assert info[found.entry.object_id].basis_id
    r = tardiff("-R", history.repo, "-b", "first", "-b", "second", str(history.src / "big.txt"))
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"--- {history.src / 'big.txt'} (first)\t")
    assert lines[1].startswith(f"+++ {history.src / 'big.txt'} (second)\t")
    assert lines[2] == "@@ -14998,7 +14998,7 @@"
    assert "-line 15000" in lines and "+changed 15000" in lines
    assert len(lines) == 3 + 7 + 1


def test_live_against_current(history: History) -> None:
    r = tardiff("-R", history.repo, str(history.src / "t.txt"))
    assert r.returncode == 1, r.stderr
    assert r.stdout.splitlines()[2:] == ["@@ -2,3 +2,4 @@", " BETA", " gamma", " delta", "+live only"]
    assert "(second)" in r.stdout.splitlines()[0] and "(live)" in r.stdout.splitlines()[1]
    same = tardiff("-R", history.repo, str(history.src / "same.txt"), str(history.src / "big.txt"))
    assert (same.returncode, same.stdout, same.stderr) == (0, "", "")


def test_one_set_against_live(history: History) -> None:
    r = tardiff("-R", history.repo, "-b", "1", "-U", "0", str(history.src / "t.txt"))
    assert r.returncode == 1, r.stderr
    body = r.stdout.splitlines()[2:]
    assert body == ["@@ -2 +2 @@", "-beta", "+BETA", "@@ -3,0 +4,2 @@", "+delta", "+live only"]


def test_context_and_ndiff(history: History) -> None:
    path = str(history.src / "t.txt")
    ctx = tardiff("-R", history.repo, "-b", "first", "-b", "second", "-c", path)
    assert ctx.returncode == 1, ctx.stderr
    lines = ctx.stdout.splitlines()
    assert lines[0].startswith(f"*** {path} (first)") and lines[1].startswith(f"--- {path} (second)")
    assert lines[2:] == [
        "***************",
        "*** 1,3 ****",
        "  alpha",
        "! beta",
        "  gamma",
        "--- 1,4 ----",
        "  alpha",
        "! BETA",
        "  gamma",
        "+ delta",
    ]
    nd = tardiff("-R", history.repo, "-b", "first", "-b", "second", "--ndiff", path)
    assert nd.returncode == 1, nd.stderr
    lines = nd.stdout.splitlines()
    assert lines[:2] == [f"--- {path} (first)", f"+++ {path} (second)"]
    assert "  alpha" in lines and "- beta" in lines and "+ BETA" in lines and "+ delta" in lines
    deep = str(history.src / "sub" / "deeper" / "d.txt")
    hinted = tardiff("-R", history.repo, "-b", "first", "-b", "second", "-n", deep)
    want = [line.rstrip("\n") for line in difflib.ndiff(["deep one\n"], ["deep two\n"])]
    assert any(line.startswith("? ") for line in want)
    assert hinted.stdout.splitlines()[2:] == want


def test_binary_files(history: History) -> None:
    for name in ("data.bin", "latin1.txt"):
        path = str(history.src / name)
        r = tardiff("-R", history.repo, "-b", "first", path)
        assert r.returncode == 1, r.stderr
        assert r.stdout == f"Binary files {path} (first) and {path} (live) differ\n"
        same = tardiff("-R", history.repo, path)
        assert (same.returncode, same.stdout) == (0, "")


def test_recursion(history: History) -> None:
    src = history.src
    r = tardiff("-R", history.repo, "-b", "first", "-b", "second", "-r", str(src))
    assert r.returncode == 1, r.stderr
    out = r.stdout
    assert f"Only in {src} (first): gone\n" in out
    assert f"Only in {src / 'sub'} (second): n.txt\n" in out
    assert f"Only in {src / 'sub'} (first): s.txt\n" in out
    assert "/g.txt" not in out  # inside a directory only one side has
    assert f"--- {src / 'sub' / 'deeper' / 'd.txt'} (first)" in out and "+deep two\n" in out
    assert f"Binary files {src / 'data.bin'} (first) and {src / 'data.bin'} (second) differ\n" in out
    assert "+changed 15000\n" in out and "same.txt" not in out
    # output follows path order
    assert out.index("big.txt") < out.index("data.bin") < out.index(": gone") < out.index("sub/deeper/d.txt")
    assert out.index("sub/deeper/d.txt") < out.index("n.txt") < out.index("s.txt") < out.index("t.txt")

    flat = tardiff("-R", history.repo, "-b", "first", "-b", "second", str(src))
    assert flat.returncode == 1, flat.stderr
    assert f"Common subdirectories: {src / 'sub'} (first) and {src / 'sub'} (second)\n" in flat.stdout
    assert "d.txt" not in flat.stdout and "n.txt" not in flat.stdout


def test_list(history: History) -> None:
    src = history.src
    r = tardiff("-R", history.repo, "-b", "first", "-r", "--list", str(src))
    assert r.returncode == 1, r.stderr
    assert r.stdout.splitlines() == [
        str(src / "big.txt"),
        str(src / "data.bin"),
        str(src / "gone"),
        str(src / "latin1.txt"),
        str(src / "sub" / "deeper" / "d.txt"),
        str(src / "sub" / "n.txt"),
        str(src / "sub" / "s.txt"),
        str(src / "t.txt"),
    ]
    current = tardiff("-R", history.repo, "-r", "-l", str(src))
    assert (current.returncode, current.stdout) == (1, f"{src / 't.txt'}\n")


def test_colour(history: History) -> None:
    path = str(history.src / "t.txt")
    plain = tardiff("-R", history.repo, "-b", "1", path)
    assert "\033[" not in plain.stdout
    coloured = tardiff("-R", history.repo, "-b", "1", "--color", "always", path)
    assert "\033[31m-beta\033[0m\n" in coloured.stdout
    assert "\033[32m+BETA\033[0m\n" in coloured.stdout
    assert "\033[36m@@ -1,3 +1,5 @@\033[0m\n" in coloured.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["-b", "Nonesuch"], "backup set Nonesuch does not exist"),
        (["-b", "1", "-b", "2", "-b", "1"], "at most twice"),
    ],
)
def test_bad_sets(history: History, args: list[str], needle: str) -> None:
    r = tardiff("-R", history.repo, *args, str(history.src / "t.txt"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith("tardiff: error: ")
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_bad_paths(history: History, tmp_path: Path) -> None:
    new_file = history.src / "sub" / "n.txt"
    r = tardiff("-R", history.repo, "-b", "first", str(new_file))
    assert r.returncode == 2
    assert r.stderr == f"tardiff: error: {new_file} is not in backup set first\n"
    missing = tmp_path / "missing.txt"
    r = tardiff("-R", history.repo, "-b", "first", "-b", "second", str(missing))
    assert r.returncode == 2 and "is not in backup set first" in r.stderr
    (history.src / "data.bin").rename(history.src / "data.moved")
    try:
        r = tardiff("-R", history.repo, str(history.src / "data.bin"))
    finally:
        (history.src / "data.moved").rename(history.src / "data.bin")
    assert r.returncode == 2
    assert r.stderr == f"tardiff: error: {history.src / 'data.bin'} does not exist\n"
    r = tardiff("-R", str(tmp_path / "norepo" / "client"), str(history.src / "t.txt"))
    assert r.returncode == 2 and r.stderr.startswith("tardiff: error: ") and len(r.stderr.splitlines()) == 1


def test_distributed(cluster: Cluster, tmp_path: Path) -> None:
    h = make_history(f"tardis://{cluster.ingest.address}/tardiff-client", tmp_path / "src")
    r = tardiff("-R", h.repo, "-b", "first", "-b", "second", str(h.src / "big.txt"))
    assert r.returncode == 1, r.stderr
    assert "-line 15000\n+changed 15000\n" in r.stdout
    listed = tardiff("-R", h.repo, "-r", "-l", str(h.src))
    assert (listed.returncode, listed.stdout) == (1, f"{h.src / 't.txt'}\n")
