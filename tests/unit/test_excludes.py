"""The exclude-pattern matcher, exclude files, cache tags and the access check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tardis_cli.excludes import (
    CVS_PATTERNS,
    Access,
    global_patterns,
    is_cache_dir,
    matcher,
    parse_patterns,
    read_pattern_file,
)
from tardis_common.errors import ConfigError


def excluded(pattern: str, path: str, is_dir: bool = False) -> bool:
    return matcher((pattern,)).excludes(path, is_dir)


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        # Unanchored: that name at any depth, the root included.
        ("*.o", "/src/main.o", True),
        ("*.o", "/main.o", True),
        ("*.o", "/src/deep/er/main.o", True),
        ("*.o", "/src/main.oo", False),
        ("*.o", "/src/main.o/inner", False),
        ("core", "/home/u/core", True),
        ("core", "/home/u/score", False),
        ("core", "/home/u/core.c", False),
        ("build/*.o", "/a/b/build/x.o", True),
        ("build/*.o", "/a/build/sub/x.o", False),
        # Anchored: the absolute path, from the root.
        ("/home/u/tmp", "/home/u/tmp", True),
        ("/home/u/tmp", "/other/home/u/tmp", False),
        ("/home/*/cache", "/home/u/cache", True),
        ("/home/*/cache", "/home/u/v/cache", False),
        ("/home/u/*", "/home/u/file", True),
        ("/home/u/*", "/home/u/dir/file", False),
        # ** spans any number of directories, none included.
        ("/data/**/*.log", "/data/x.log", True),
        ("/data/**/*.log", "/data/a/b/c/x.log", True),
        ("/data/**/*.log", "/other/x.log", False),
        ("a/**/b", "/r/a/b", True),
        ("a/**/b", "/r/a/x/y/b", True),
        ("a/**/b", "/r/a/x/y/c", False),
        ("/data/**", "/data/anything/at/all", True),
        ("/data/**", "/database", False),
        # Wildcards match hidden names too.
        ("*", "/x/.hidden", True),
        ("*.txt", "/x/.hidden.txt", True),
        (".*", "/x/.profile", True),
        (".*", "/x/profile", False),
        ("?x", "/d/.x", True),
        # Character classes, negated ones never crossing a slash.
        ("file[0-9]", "/d/file7", True),
        ("file[0-9]", "/d/filex", False),
        ("file[!0-9]", "/d/filex", True),
        ("file[!0-9]", "/d/file7", False),
        ("[#]*", "/d/#autosave#", True),
        ("[", "/d/[", True),
        # Regex metacharacters are literal.
        ("_$*", "/d/_$tmp", True),
        ("*$", "/d/x$", True),
        ("a+b(c)", "/d/a+b(c)", True),
        ("a+b(c)", "/d/aab(c)", False),
    ],
)
def test_pattern(pattern: str, path: str, hit: bool) -> None:
    assert excluded(pattern, path) is hit


def test_trailing_slash_matches_directories_only() -> None:
    assert excluded(".git/", "/src/.git", is_dir=True)
    assert not excluded(".git/", "/src/.git", is_dir=False)  # a git worktree's .git file stays
    assert excluded("/srv/cache/", "/srv/cache", is_dir=True)
    assert not excluded("/srv/cache/", "/srv/cache", is_dir=False)
    # Without the slash, both kinds.
    assert excluded(".git", "/src/.git", is_dir=False)
    assert excluded(".git", "/src/.git", is_dir=True)


def test_many_patterns_share_one_cached_matcher() -> None:
    patterns = ("*.o", "/tmp/**", ".svn/")
    m = matcher(patterns)
    assert matcher(patterns) is m
    assert m.excludes("/a/b.o", False)
    assert m.excludes("/tmp/x/y", False)
    assert m.excludes("/a/.svn", True)
    assert not m.excludes("/a/b.c", False)
    assert not matcher(()).excludes("/anything", True)


def test_cvs_list() -> None:
    m = matcher(CVS_PATTERNS)
    for path in ["/s/CVS", "/s/x.o", "/s/x~", "/s/#x#", "/s/.#x", "/s/core", "/s/lib.so", "/s/x.orig"]:
        assert m.excludes(path, False), path
    for path in ["/s/.git", "/s/.svn", "/s/.hg", "/s/.bzr"]:
        assert m.excludes(path, True), path
        assert not m.excludes(path, False), path
    for path in ["/s/main.c", "/s/README", "/s/.gitignore", "/s/score"]:
        assert not m.excludes(path, False), path


def test_exclude_file_comments_and_blank_lines(tmp_path: Path) -> None:
    text = "# build output\n*.o\n\n   \n  /tmp/**  \n\t# indented comment\n[#]*\r\nnotes.txt\n"
    assert parse_patterns(text) == ["*.o", "/tmp/**", "[#]*", "notes.txt"]
    (tmp_path / "ex").write_text(text)
    assert read_pattern_file(str(tmp_path / "ex")) == ["*.o", "/tmp/**", "[#]*", "notes.txt"]


def test_missing_exclude_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"exclude file .*absent not found"):
        read_pattern_file(str(tmp_path / "absent"))


def test_global_patterns_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "global").write_text("*.iso\n# comment\n")
    (tmp_path / "more").write_text("*.tmp\n*.iso\n")
    monkeypatch.setenv("MOREDIR", str(tmp_path))
    found = global_patterns(
        patterns=["*.img"], files=["$MOREDIR/more"], global_file=str(tmp_path / "global"), ignore_cvs=True
    )
    assert found[0] == "*.iso"
    assert "core" in found and ".git/" in found
    assert found[-2:] == ("*.img", "*.tmp")  # duplicates dropped, first one kept
    # The default global file may be absent; that is not an error.
    absent = str(tmp_path / "absent")
    assert global_patterns(global_file=absent, global_file_default=absent) == ()


def test_cache_tag(tmp_path: Path) -> None:
    assert not is_cache_dir(str(tmp_path))
    (tmp_path / "CACHEDIR.TAG").write_bytes(b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n")
    assert is_cache_dir(str(tmp_path))
    (tmp_path / "CACHEDIR.TAG").write_bytes(b"Signature: 00000000000000000000000000000000\n")
    assert not is_cache_dir(str(tmp_path))
    (tmp_path / "CACHEDIR.TAG").write_bytes(b"Signature: 8a477f59")
    assert not is_cache_dir(str(tmp_path))


def test_access_by_mode_bits(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    os.chmod(path, 0o640)
    if os.geteuid() == 0:
        os.chown(path, 1000, 2000)
    st = os.lstat(path)
    owner, group = st.st_uid, st.st_gid
    assert Access(uid=0, groups=[]).allows(str(path), st)
    assert Access(uid=owner, groups=[]).allows(str(path), st)
    assert Access(uid=owner + 1, groups=[group]).allows(str(path), st)
    assert not Access(uid=owner + 1, groups=[group + 1]).allows(str(path), st)
    os.chmod(path, 0o604)
    assert Access(uid=owner + 1, groups=[group + 1]).allows(str(path), os.lstat(path))
    assert not Access(uid=owner + 1, groups=[group]).allows(str(path), os.lstat(path))  # group bits rule

    d = tmp_path / "d"
    d.mkdir()
    os.chmod(d, 0o744)  # others may list it but not traverse it
    assert not Access(uid=owner + 1, groups=[]).allows(str(d), os.lstat(d))
    os.chmod(d, 0o755)
    assert Access(uid=owner + 1, groups=[]).allows(str(d), os.lstat(d))
    link = tmp_path / "link"
    link.symlink_to("f")
    assert Access(uid=owner + 1, groups=[]).allows(str(link), os.lstat(link))
