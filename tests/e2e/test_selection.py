"""What a backup leaves out: each kind of exclusion, checked by restoring the set (embedded)."""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tardis_cli import backup, regenerate

NOBODY = 65534
CACHEDIR_TAG = b"Signature: 8a477f597d28d172789f06886806bc55\n# This is a cache directory.\n"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TARDIS_* from the host, empty system defaults and an empty global exclude file."""
    for name in list(os.environ):
        if name.startswith("TARDIS_"):
            monkeypatch.delenv(name)
    (tmp_path / "system.defaults").write_text("")
    (tmp_path / "no-global-excludes").write_text("")
    monkeypatch.setenv("TARDIS_DEFAULTS", str(tmp_path / "system.defaults"))
    monkeypatch.setenv("TARDIS_GLOBAL_EXCLUDES", str(tmp_path / "no-global-excludes"))


def make(root: Path, paths: list[str]) -> Path:
    """Files (directories when the name ends in /) with their path as content."""
    for rel in paths:
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rel)
    return root


def stored(tmp_path: Path, source: Path, *options: str) -> set[str]:
    """Back ``source`` up with ``options`` into a fresh repository and list what a restore gives back."""
    repo = tmp_path / "repo" / f"client{len(list(tmp_path.glob('repo/*')))}"
    assert backup.main(["--repository", str(repo), "--create", *options, str(source)]) == 0
    out = tmp_path / f"out-{repo.name}"
    assert regenerate.main(["--repository", str(repo), "-o", str(out), str(source)]) == 0
    return listing(out / source.name)


def listing(root: Path) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root) + "/")
        for name in filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


def test_nothing_left_out_by_default(tmp_path: Path) -> None:
    tree = ["a.o", "b.c", ".hidden", "sub/", "sub/c.txt", "sub/deeper/d.txt"]
    source = make(tmp_path / "src", tree)
    assert stored(tmp_path, source) == {"a.o", "b.c", ".hidden", "sub/", "sub/c.txt", "sub/deeper/", "sub/deeper/d.txt"}


def test_patterns_exclude_files_and_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = make(
        tmp_path / "src",
        [
            "main.c",
            "main.o",
            "lib/util.o",
            "lib/util.c",
            "lib/.cache.o",
            "logs/a.log",
            "logs/keep.txt",
            "deep/x/y/trace.log",
            "notes/todo",
            "sub/notes/todo",
            "build/out.bin",
            "build.txt",
            "venv/bin/python",
            "data/#autosave#",
        ],
    )
    (tmp_path / "excludes").write_text("# comment lines and blank lines are ignored\n\n*.log\n[#]*\n")
    monkeypatch.setenv("HOMEISH", str(source))
    got = stored(
        tmp_path,
        source,
        "-x",
        "*.o",  # unanchored: any depth, hidden names too
        "--exclude",
        f"{source}/notes",  # anchored: only the top-level notes
        "-x",
        "build/",  # directories only: build.txt stays
        "-X",
        str(tmp_path / "excludes"),
        "--exclude-dir",
        "$HOMEISH/venv",
    )
    assert got == {
        "main.c",
        "lib/",
        "lib/util.c",
        "logs/",
        "logs/keep.txt",
        "deep/",
        "deep/x/",
        "deep/x/y/",
        "sub/",
        "sub/notes/",
        "sub/notes/todo",
        "build.txt",
        "data/",
    }


def test_per_directory_files(tmp_path: Path) -> None:
    source = make(
        tmp_path / "src",
        [
            "top.tmp",
            "a/.tardis-exclude",
            "a/x.tmp",
            "a/x.txt",
            "a/b/y.tmp",
            "a/b/y.txt",
            "a/.tardis-local-exclude",
            "a/here-only.dat",
            "a/b/here-only.dat",
            "skipped/.tardis-skip",
            "skipped/inner/file",
            "kept/file",
        ],
    )
    (source / "a/.tardis-exclude").write_text("# inherited below a\n*.tmp\n")
    (source / "a/.tardis-local-exclude").write_text("here-only.dat\n")
    assert stored(tmp_path, source) == {
        "top.tmp",  # the exclude file in a/ does not reach up
        "a/",
        "a/.tardis-exclude",
        "a/.tardis-local-exclude",
        "a/x.txt",
        "a/b/",
        "a/b/y.txt",
        "a/b/here-only.dat",  # the local exclude file does not reach down
        "kept/",
        "kept/file",
    }


def test_environment_names_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = make(
        tmp_path / "src",
        [
            "a/.my-excludes",
            "a/x.tmp",
            "a/b/y.tmp",
            "a/.tardis-exclude",
            "a/z.dat",
            "nope/.no-backup",
            "nope/file",
            "other/.tardis-skip",
            "big.iso",
            "small.txt",
        ],
    )
    (source / "a/.my-excludes").write_text("*.tmp\n")
    (source / "a/.tardis-exclude").write_text("*.dat\n")
    (tmp_path / "global").write_text("# site-wide\n*.iso\n")
    monkeypatch.setenv("TARDIS_EXCLUDES", ".my-excludes")
    monkeypatch.setenv("TARDIS_SKIP", ".no-backup")
    monkeypatch.setenv("TARDIS_GLOBAL_EXCLUDES", str(tmp_path / "global"))
    expected = {
        "a/",
        "a/.my-excludes",
        "a/.tardis-exclude",
        "a/b/",
        "a/z.dat",  # .tardis-exclude is no longer the exclude file's name
        "other/",
        "other/.tardis-skip",  # nor is .tardis-skip the skip file's
        "small.txt",
    }
    assert stored(tmp_path, source) == expected
    assert stored(tmp_path, source, "--ignore-global-excludes") == expected | {"big.iso"}
    # The command line names them too, and wins over the environment.
    assert stored(tmp_path, source, "--exclude-file-name", ".tardis-exclude", "--skip-file-name", ".tardis-skip") == {
        "a/",
        "a/.my-excludes",
        "a/.tardis-exclude",
        "a/x.tmp",
        "a/b/",
        "a/b/y.tmp",
        "nope/",
        "nope/.no-backup",
        "nope/file",
        "small.txt",
    }


def test_config_file_lists_and_command_line_add_up(tmp_path: Path) -> None:
    source = make(tmp_path / "src", ["a.o", "b.tmp", "c.txt", "cache/x", "keep/x"])
    config = tmp_path / "tardis.cfg"
    config.write_text(f"[Tardis]\nExcludePatterns = *.o\nExcludeDirs = {source}/cache\nLocalExcludeFileName =\n")
    assert stored(tmp_path, source, "--config", str(config), "-x", "*.tmp") == {"c.txt", "keep/", "keep/x"}


def test_cvs_ignore_and_caches(tmp_path: Path) -> None:
    source = make(
        tmp_path / "src",
        [
            "proj/main.c",
            "proj/main.o",
            "proj/main.c~",
            "proj/.git/HEAD",
            "proj/CVS/Entries",
            "proj/core",
            "worktree/.git",  # a file, as in a git worktree: not a directory, so kept
            "cache/CACHEDIR.TAG",
            "cache/blob",
            "fake-cache/CACHEDIR.TAG",
            "fake-cache/blob",
        ],
    )
    (source / "cache/CACHEDIR.TAG").write_bytes(CACHEDIR_TAG)
    everything = stored(tmp_path, source)
    assert "proj/.git/HEAD" in everything and "cache/blob" in everything
    assert stored(tmp_path, source, "--cvs-ignore", "--skip-caches") == {
        "proj/",
        "proj/main.c",
        "worktree/",
        "worktree/.git",
        "fake-cache/",
        "fake-cache/CACHEDIR.TAG",
        "fake-cache/blob",
    }


def test_max_depth(tmp_path: Path) -> None:
    source = make(tmp_path / "src", ["f1", "d1/f2", "d1/d2/f3", "d1/d2/d3/f4"])
    assert stored(tmp_path, source, "--maxdepth", "1") == {"f1", "d1/"}
    assert stored(tmp_path, source, "-d", "2") == {"f1", "d1/", "d1/f2", "d1/d2/"}
    assert "d1/d2/d3/f4" in stored(tmp_path, source, "-d", "0")


def test_the_repository_is_never_backed_up(tmp_path: Path) -> None:
    source = make(tmp_path / "src", ["file"])
    repo = source / "repo" / "client"
    assert backup.main(["--repository", str(repo), "--create", str(source)]) == 0
    out = tmp_path / "out"
    assert regenerate.main(["--repository", str(repo), "-o", str(out), str(source)]) == 0
    assert listing(out / "src") == {"file", "repo/"}


def as_user(uid: int, gid: int, body: Callable[[], int]) -> int:
    """Run ``body`` in a forked child with the identity of another user; its exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            code = body()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may reach (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="tardis-selection-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def test_entries_the_user_cannot_read_are_left_out(shared_dir: Path) -> None:
    source = make(shared_dir / "src", ["open.txt", "secret.txt", "locked/inner", "listable/inner", "pub/x"])
    os.chmod(source / "secret.txt", 0o600)
    os.chmod(source / "locked", 0o700)
    os.chmod(source / "listable", 0o744)  # others may read the names but not traverse it
    left_out = {"secret.txt", "locked/", "locked/inner", "listable/", "listable/inner"}
    everything = {"open.txt", "pub/", "pub/x"} | left_out
    repo = shared_dir / "user-repo" / "client"
    args = ["--repository", str(repo), "--create", str(source)]
    if os.geteuid() == 0:
        # Root passes every check; as an ordinary user the same tree loses what it cannot read.
        assert stored(shared_dir, source) == everything
        (shared_dir / "user-repo").mkdir()
        os.chown(shared_dir / "user-repo", NOBODY, NOBODY)

        def body() -> int:
            # The settings files of the fixture are private to root; the child needs none.
            os.environ.update(TARDIS_DEFAULTS="/dev/null", TARDIS_GLOBAL_EXCLUDES="/dev/null")
            return backup.main(args)

        assert as_user(NOBODY, NOBODY, body) == 0
    else:
        assert backup.main(args) == 0
    out = shared_dir / "out"
    assert regenerate.main(["--repository", str(repo), "-o", str(out), str(source)]) == 0
    assert listing(out / "src") == everything - left_out
    # Asked not to, the run keeps them; what it then cannot read is its own business.
    if os.geteuid() == 0:
        assert stored(shared_dir, source, "--no-exclude-no-access") == everything
