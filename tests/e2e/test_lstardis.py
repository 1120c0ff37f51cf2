"""lstardis as a user runs it: a real repository with a history of sets, output asserted line by line."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.services import Cluster
from tardis_cli import backup

MTIME = int(time.mktime((2020, 1, 2, 3, 4, 5, 0, 0, -1))) * 1_000_000_000


@dataclass
class History:
    repo: str
    src: Path

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tardis_cli.lstardis", "--repository", self.repo, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **(env or {})},
        )

    def lines(self, *args: str) -> list[str]:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    def block(self, name: str, *args: str) -> list[str]:
        """Listing ``name`` (relative to src): its entry line and the version lines under it."""
        path = str(self.src / name)
        out = self.lines(*args, path)
        start = next(i for i, line in enumerate(out) if line.split(" -> ")[0].rstrip("/") == path)
        block = [out[start]]
        for line in out[start + 1 :]:
            if not line.startswith("    "):
                break
            block.append(line)
        return block

    def names(self, *args: str) -> list[str]:
        prefix = str(self.src)
        return [line.rstrip("/")[len(prefix) :] for line in self.lines(*args) if line.startswith(prefix)]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)
    os.utime(path, ns=(MTIME, MTIME))


def take(repo: str, src: Path, name: str, create: bool = False) -> None:
    args = ["--repository", repo, "--name", name, str(src)] + (["--create"] if create else [])
    assert backup.main(args) == 0


def make_history(repo: str, src: Path) -> History:
    """s1: everything; s2: a.txt changed, old.txt removed; s3: old.txt back; s4: no change."""
    write(src / "a.txt", "one\n")
    write(src / "old.txt", "old\n")
    write(src / ".hidden", "secret\n")
    write(src / "docs" / "notes.md", "notes\n")
    write(src / "deep" / "x" / "y" / "z.txt", "deep\n")
    (src / "link").symlink_to("a.txt")
    take(repo, src, "s1", create=True)
    write(src / "a.txt", "one\ntwo\n")
    (src / "old.txt").unlink()
    take(repo, src, "s2")
    write(src / "old.txt", "new again\n")
    take(repo, src, "s3")
    take(repo, src, "s4")
    return History(repo, src)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    base = tmp_path_factory.mktemp("lstardis")
    return make_history(str(base / "repo" / "me"), base / "src")


def test_versions_change_is_the_default(history: History) -> None:
    assert history.block("a.txt") == [f"{history.src}/a.txt", "    s1", "    s2"]
    assert history.block("docs/notes.md", "-r") == [f"{history.src}/docs/notes.md", "    s1"]
    assert history.block("a.txt", "--versions", "change") == history.block("a.txt")


def test_versions_all_last_none(history: History) -> None:
    assert history.block("a.txt", "--versions", "all") == [f"{history.src}/a.txt", "    s1", "    s2  s3  s4"]
    assert history.block("a.txt", "--versions", "last") == [f"{history.src}/a.txt", "    s2"]
    assert history.block("a.txt", "--versions", "none") == [f"{history.src}/a.txt"]
    assert history.block("a.txt", "--versions", "all", "--columns", "2") == [
        f"{history.src}/a.txt",
        "    s1",
        "    s2  s3",
        "        s4",
    ]


def test_deletions(history: History) -> None:
    assert history.block("old.txt") == [f"{history.src}/old.txt", "    s1", "    s3"]
    assert history.block("old.txt", "-d") == [f"{history.src}/old.txt", "    s1", "    deleted  s2", "    s3"]
    assert history.block("old.txt", "-d", "--versions", "all") == [
        f"{history.src}/old.txt",
        "    s1",
        "    deleted  s2",
        "    s3  s4",
    ]


def test_range_by_name_and_id(history: History) -> None:
    assert history.block("a.txt", "--range", "s2:s3", "--versions", "all") == [f"{history.src}/a.txt", "    s2  s3"]
    assert history.block("a.txt", "--range", "3:") == [f"{history.src}/a.txt", "    s3"]
    assert history.block("a.txt", "--range", ":1") == [f"{history.src}/a.txt", "    s1"]
    assert history.block("old.txt", "--range", "s2:s4", "-d") == [f"{history.src}/old.txt", "    s3"]
    done = history.run("--range", "s3")
    assert done.returncode != 0 and "malformed --range" in done.stderr


def test_recursion_depth_and_hidden(history: History) -> None:
    top = ["/deep", "/docs", "/a.txt", "/link", "/old.txt"]
    assert sorted(history.names(str(history.src))) == sorted(["", *top])
    assert sorted(history.names("-a", str(history.src))) == sorted(["", "/.hidden", *top])
    assert sorted(history.names("--maxdepth", "2", str(history.src))) == sorted(["", *top, "/deep/x", "/docs/notes.md"])
    everything = history.names("-r", str(history.src))
    assert everything[0] == ""
    assert everything.index("/deep") < everything.index("/deep/x") < everything.index("/deep/x/y/z.txt")
    assert "/.hidden" not in everything
    assert history.lines("--maxdepth", "0", str(history.src))[0] == f"{history.src}/"
    assert history.names("--maxdepth", "0", str(history.src)) == [""]
    # A relative path is made absolute; a file is listed alone.
    done = subprocess.run(
        [sys.executable, "-m", "tardis_cli.lstardis", "--repository", history.repo, "a.txt"],
        capture_output=True,
        text=True,
        cwd=history.src,
    )
    assert done.stdout.splitlines() == [f"{history.src}/a.txt", "    s1", "    s2"]


def test_the_root_by_default(history: History) -> None:
    out = history.lines("--versions", "none")
    assert out[0] == "/"
    first = "/" + str(history.src).strip("/").split("/")[0] + "/"
    assert out[1:] == [first]


def test_long_fields(history: History) -> None:
    user = pwd.getpwuid(os.getuid()).pw_name
    import grp

    group = grp.getgrgid(os.getgid()).gr_name
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(MTIME / 1e9))
    block = history.block("a.txt", "-l")
    assert block[0] == f"{history.src}/a.txt"
    assert block[1].split() == ["-rw-r--r--", user, group, "4", *when.split(), "s1"]
    assert block[2].split() == ["-rw-r--r--", user, group, "8", *when.split(), "s2"]
    link = history.block("link", "-l")
    assert link[0] == f"{history.src}/link -> a.txt"
    assert link[1].split()[0] == "lrwxrwxrwx"
    inode = str(os.stat(history.src / "docs" / "notes.md").st_ino)
    notes = history.block("docs/notes.md", "-r", "-i", "-s", "-c", "--chainlen")
    fields = notes[1].split()
    assert fields[0] == inode and fields[1] == "6" and len(fields[2]) == 64 and fields[3] == "0"
    assert fields[4] == "s1"
    headers = history.lines("--headers", "-l", str(history.src / "a.txt"))
    assert headers[0].split() == ["Mode", "User", "Group", "Size", "Modified", "Sets"]


def test_human_sizes_and_dates(history: History, tmp_path: Path) -> None:
    sets = json.loads(
        subprocess.run(
            [sys.executable, "-m", "tardis_cli.sonic", "list", "--repository", history.repo, "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    starts = {s["name"]: s["start"] for s in sets}
    assert history.block("a.txt", "--dates") == [f"{history.src}/a.txt", f"    {starts['s1']}", f"    {starts['s2']}"]


def test_json_structure(history: History) -> None:
    out = json.loads("\n".join(history.lines("--json", "-d", str(history.src))))
    by_name = {row["name"]: row for row in out}
    assert out[0]["path"] == str(history.src) and out[0]["type"] == "dir"
    a = by_name["a.txt"]
    assert a["path"] == f"{history.src}/a.txt" and a["type"] == "file"
    assert [v["sets"] for v in a["versions"]] == [["s1"], ["s2", "s3", "s4"]]
    assert [(v["first_set"], v["last_set"]) for v in a["versions"]] == [(1, 1), (2, 4)]
    assert [v["size"] for v in a["versions"]] == [4, 8]
    assert a["versions"][0]["mtime_ns"] == MTIME
    assert a["versions"][0]["mode"] & 0o777 == 0o644
    assert len(a["versions"][0]["object_id"]) == 64
    assert by_name["old.txt"]["deleted_in"] == ["s2"]
    assert by_name["link"]["type"] == "link" and by_name["link"]["versions"][0]["link_target"] == "a.txt"
    assert by_name["docs"]["type"] == "dir"
    last = json.loads("\n".join(history.lines("--json", "--versions", "last", str(history.src / "a.txt"))))
    assert [v["sets"] for v in last[0]["versions"]] == [["s2", "s3", "s4"]]


def test_colours_only_when_asked_or_on_a_terminal(history: History) -> None:
    plain = history.run(str(history.src))
    assert "\x1b[" not in plain.stdout
    coloured = history.run("--color", "always", str(history.src), env={"TARDIS_LS_COLORS": "dir=35:set=33"})
    assert f"\x1b[35m{history.src}/\x1b[0m" in coloured.stdout
    assert "    \x1b[33ms1\x1b[0m" in coloured.stdout


def test_unknown_path_is_one_line(history: History) -> None:
    done = history.run(str(history.src / "never"))
    assert done.returncode == 1
    assert done.stderr.strip() == f"lstardis: error: {history.src}/never is not in any backup set"
    assert done.stdout == ""


def test_distributed(cluster: Cluster, tmp_path: Path) -> None:
    repo = f"tardis://{cluster.ingest.address}/lsclient"
    src = tmp_path / "src"
    write(src / "f.txt", "1\n")
    write(src / "sub" / "g.txt", "g\n")
    take(repo, src, "d1", create=True)
    write(src / "f.txt", "22\n")
    take(repo, src, "d2")
    h = History(repo, src)
    assert h.block("f.txt", "--versions", "all") == [f"{src}/f.txt", "    d1", "    d2"]
    assert h.block("sub/g.txt", "-r", "--versions", "all") == [f"{src}/sub/g.txt", "    d1  d2"]


def test_glob(history: History) -> None:
    assert history.names("-g", "--versions", "none", f"{history.src}/*.txt") == ["/a.txt", "/old.txt"]
    assert history.names("-g", "--versions", "none", f"{history.src}/.h*") == ["/.hidden"]
    assert history.names("-g", "--versions", "none", "-r", f"{history.src}/d*/x") == [
        "/deep/x",
        "/deep/x/y",
        "/deep/x/y/z.txt",
    ]
    done = history.run("-g", f"{history.src}/*.zz")
    assert (
        done.returncode == 1
        and done.stderr.strip() == f"lstardis: error: nothing in any backup set matches {history.src}/*.zz"
    )


class CountingIngest:
    """A real embedded ingest core that counts the calls made to it."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> object:
        self.calls[name] = self.calls.get(name, 0) + 1
        return getattr(self.inner, name)


def test_one_tree_stream_and_one_object_info_call_per_listing(history: History) -> None:
    from tardis_cli import lstardis
    from tardis_cli.connect import embedded
    from tardis_common.urls import parse_repository

    with embedded(parse_repository(history.repo)) as repo:
        counting = CountingIngest(repo.ingest)
        args = lstardis.parser().parse_args(["-r", "-L", "-l", str(history.src)])
        shown = lstardis.sets_in_range(lstardis.list_sets(counting, repo.client), None)  # type: ignore[arg-type]
        lister = lstardis.Lister(args, counting, repo.client, shown)  # type: ignore[arg-type]
        lines = lister.render(lister.collect(str(history.src)))
    assert any(line.endswith("/deep/x/y/z.txt") for line in lines)
    assert counting.calls == {"list_sets": 1, "lookup_path": 1, "read_tree": 1, "get_object_info": 1}


def test_human_sizes_and_a_range_that_hides_a_path(history: History) -> None:
    from tardis_cli.lstardis import human

    assert [human(n) for n in (0, 1023, 1536, 5 * 1024**3)] == ["0", "1023", "1.5K", "5.0G"]
    assert history.block("a.txt", "-s", "-H")[1].split() == ["4", "s1"]
    done = history.run("--range", "s2:s2", str(history.src / "old.txt"))
    assert done.returncode == 1
    assert done.stderr.strip() == f"lstardis: error: {history.src}/old.txt is not in any of the backup sets shown"


def test_a_reader_that_goes_away_ends_the_listing_quietly(history: History) -> None:
    """`lstardis | head`: when the pipe's reader is gone, no error line, no traceback (exit 141, as ls)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tardis_cli.lstardis", "--repository", history.repo, "-r", str(history.src)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader leaves before anything is written
    err = process.stderr.read()
    assert process.wait(timeout=60) == 141
    assert err == ""
