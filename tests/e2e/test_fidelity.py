"""Restores reproduce what a file is, not only what it holds: hard links, holes, owners,
special mode bits, nanosecond times, extended attributes and POSIX ACLs. Special files
(FIFOs, sockets, devices) are skipped at backup and absent from the restore. And a
restore never writes through a symlink it finds in its target."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tardis_cli import backup, regenerate

MiB = 1 << 20
SPARSE_SIZE = 20 * MiB
NS = 1_600_000_000_123_456_789  # a modification time with nanoseconds
SPECIAL = ("fifo", "socket", "device")


def tardis(*args: str) -> int:
    return backup.main(list(args))


def restore(repository: str, out: Path, *options: str) -> None:
    assert regenerate.main(["--repository", repository, "-o", str(out), *options]) == 0


def nobody() -> tuple[int, int]:
    user = pwd.getpwnam("nobody")
    try:
        return user.pw_uid, grp.getgrnam("nogroup").gr_gid
    except KeyError:
        return user.pw_uid, user.pw_gid


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("owners, setuid and devices need root")


def make_fidelity_tree(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root.mkdir()
    # Three names for one inode, across directories, and a pair in another directory.
    (root / "links" / "sub").mkdir(parents=True)
    (root / "links" / "a").write_bytes(b"shared content\n" * 100)
    os.link(root / "links" / "a", root / "links" / "b")
    os.link(root / "links" / "a", root / "links" / "sub" / "c")
    (root / "pair").mkdir()
    (root / "pair" / "x").write_bytes(b"the pair\n")
    os.link(root / "pair" / "x", root / "pair" / "y")
    # Same content as the pair, but its own inode: a copy, not a link.
    (root / "pair" / "copy").write_bytes(b"the pair\n")
    # Empty hard links (no object at all).
    (root / "pair" / "empty1").write_bytes(b"")
    os.link(root / "pair" / "empty1", root / "pair" / "empty2")

    # 20 MiB with data only at the start and the end.
    with open(root / "sparse", "wb") as f:
        f.write(os.urandom(64 * 1024))
        f.seek(SPARSE_SIZE - 64 * 1024)
        f.write(os.urandom(64 * 1024))

    # Special mode bits.
    for name, mode in (("setuid", 0o4755), ("setgid", 0o2750), ("both", 0o6711)):
        (root / name).write_bytes(b"#!/bin/sh\n")
        os.chmod(root / name, mode)
    (root / "sticky").mkdir()
    os.chmod(root / "sticky", 0o1777)
    (root / "setgid-dir").mkdir()
    os.chmod(root / "setgid-dir", 0o2775)

    # Owners: a uid with no name (numeric fallback), and a named user.
    (root / "numeric-owner").write_bytes(b"1234\n")
    os.chown(root / "numeric-owner", 1234, 1234)
    (root / "named-owner").write_bytes(b"nobody\n")
    os.chown(root / "named-owner", *nobody())
    os.chown(root / "setuid", 1234, 1234)
    os.chmod(root / "setuid", 0o4755)  # chown cleared it
    (root / "owned-dir").mkdir()
    os.chown(root / "owned-dir", *nobody())
    os.symlink("numeric-owner", root / "owned-link")
    os.chown(root / "owned-link", 1234, 4321, follow_symlinks=False)

    # Special files: skipped at backup.
    os.mkfifo(root / "fifo")
    monkeypatch.chdir(root)  # AF_UNIX paths are short
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("socket")
    try:
        os.mknod(root / "device", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pass

    # Nanosecond times everywhere (directories last, as creating entries moves theirs).
    (root / "empty").write_bytes(b"")
    os.utime(root / "empty", ns=(NS - 5_000_000_007, NS + 1))
    for i, path in enumerate(sorted(root.rglob("*"), key=lambda p: -len(p.parts))):
        if path.name in SPECIAL or path.name == "empty":
            continue
        if path.is_symlink() or not path.is_dir():
            os.utime(path, ns=(NS + i, NS + 1000 * i + 7), follow_symlinks=False)
    for i, path in enumerate(
        sorted((p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()), key=lambda p: -len(p.parts))
    ):
        os.utime(path, ns=(NS, NS + 999 * i + 3))
    os.utime(root, ns=(NS, NS + 42))
    return root


def xattrs_of(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names if not n.startswith("security.")}


def describe(root: Path) -> tuple[dict[str, tuple], list[list[str]]]:
    """Every entry's type, full mode, owner, mtime, size, link target, xattrs and content
    checksum; and the hard-link groups (names sharing an inode)."""
    found: dict[str, tuple] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            detail: object = None
            if stat.S_ISLNK(st.st_mode):
                detail = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    detail = hash(f.read())
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            found[rel] = (
                stat.S_IFMT(st.st_mode),
                oct(st.st_mode),
                st.st_uid,
                st.st_gid,
                st.st_mtime_ns,
                st.st_size if not stat.S_ISDIR(st.st_mode) else None,
                st.st_nlink if not stat.S_ISDIR(st.st_mode) else None,
                detail,
                xattrs_of(path),
            )
    groups = sorted(sorted(names) for names in inodes.values() if len(names) > 1)
    return found, groups


def assert_same(original: Path, restored: Path) -> None:
    want, want_links = describe(original)
    got, got_links = describe(restored)
    for name in SPECIAL:
        want.pop(name, None)
    assert sorted(got) == sorted(want)
    for rel in want:
        assert got[rel] == want[rel], f"{rel}: restored {got[rel][:8]} != original {want[rel][:8]}"
    assert got_links == want_links
    top_want, top_got = os.stat(original), os.stat(restored)
    assert (top_want.st_mode, top_want.st_mtime_ns) == (top_got.st_mode, top_got.st_mtime_ns)


def test_everything_a_file_is_comes_back(
    repository: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    needs_root()
    source = make_fidelity_tree(tmp_path / "src", monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert tardis("--repository", repository, "--create", str(source)) == 0
    out = tmp_path / "out"
    restore(repository, out)
    restored = out / str(source).lstrip("/")
    # atime first: reading contents below may move it (relatime).
    assert os.stat(restored / "empty").st_atime_ns == NS - 5_000_000_007
    assert_same(source, restored)

    assert [sorted(g) for g in describe(restored)[1]] == [
        ["links/a", "links/b", "links/sub/c"],
        ["pair/empty1", "pair/empty2"],
        ["pair/x", "pair/y"],
    ]
    assert os.stat(restored / "pair" / "copy").st_ino != os.stat(restored / "pair" / "x").st_ino

    sparse = os.stat(restored / "sparse")
    assert sparse.st_size == SPARSE_SIZE
    assert sparse.st_blocks * 512 < 2 * MiB, f"{sparse.st_blocks * 512} bytes allocated: not sparse"
    assert (restored / "sparse").read_bytes() == (source / "sparse").read_bytes()

    assert pwd.getpwuid(os.stat(restored / "named-owner").st_uid).pw_name == "nobody"
    for name in SPECIAL:
        assert not os.path.lexists(restored / name)


def test_options_leave_out_owners_modes_times(
    repository: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    needs_root()
    source = make_fidelity_tree(tmp_path / "src", monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert tardis("--repository", repository, "--create", str(source)) == 0
    out = tmp_path / "out"
    restore(repository, out, "--no-set-perms", "--no-set-times", "--no-set-attrs", "--no-set-acl")
    restored = out / str(source).lstrip("/")
    setuid = os.stat(restored / "setuid")
    assert (setuid.st_uid, setuid.st_gid) == (0, 0)
    assert not setuid.st_mode & (stat.S_ISUID | stat.S_ISGID)
    assert not os.stat(restored / "sticky").st_mode & stat.S_ISVTX
    assert os.stat(restored / "numeric-owner").st_mtime_ns != os.stat(source / "numeric-owner").st_mtime_ns
    # Contents and hard links do not depend on the options.
    assert (restored / "links" / "sub" / "c").read_bytes() == (source / "links" / "a").read_bytes()
    assert os.stat(restored / "links" / "a").st_ino == os.stat(restored / "links" / "sub" / "c").st_ino


def user_xattrs_refused(path: Path) -> str | None:
    probe = path / ".probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as exc:
        return str(exc)
    finally:
        probe.unlink()
    return None


def test_xattrs_and_acls_come_back(
    repository: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    refused = user_xattrs_refused(tmp_path)
    if refused:
        print(f"the filesystem of {tmp_path} refuses user xattrs: {refused}")
        pytest.skip(f"user xattrs refused: {refused}")
    (source / "tagged").write_bytes(b"tagged\n")
    os.setxattr(source / "tagged", "user.comment", b"restored too")
    os.setxattr(source / "tagged", "user.binary", bytes(range(256)))
    (source / "tagged-dir").mkdir()
    os.setxattr(source / "tagged-dir", "user.colour", b"blue")
    (source / "acl").write_bytes(b"acl\n")
    (source / "acl-dir").mkdir()
    setfacl = shutil.which("setfacl")
    assert setfacl, "setfacl is missing: scripts/system-deps.sh installs the acl package"
    done = subprocess.run([setfacl, "-m", "u:1234:rw,g:1234:r", str(source / "acl")], capture_output=True, text=True)
    if done.returncode:
        print(f"the filesystem of {tmp_path} refuses POSIX ACLs: {done.stderr.strip()}")
        pytest.skip(f"POSIX ACLs refused: {done.stderr.strip()}")
    subprocess.run([setfacl, "-d", "-m", "u:1234:rwx", str(source / "acl-dir")], check=True)
    os.utime(source / "acl-dir", ns=(NS, NS))
    os.utime(source, ns=(NS, NS))

    assert tardis("--repository", repository, "--create", str(source)) == 0
    out = tmp_path / "out"
    restore(repository, out)
    restored = out / str(source).lstrip("/")
    got = xattrs_of(str(restored / "tagged"))
    assert got, "no xattrs came back (does the catalog store Entry.xattrs?)"
    assert got == xattrs_of(str(source / "tagged"))
    assert xattrs_of(str(restored / "tagged-dir")) == {"user.colour": b"blue"}
    for name in ("acl", "acl-dir"):
        assert xattrs_of(str(restored / name)) == xattrs_of(str(source / name))
        assert os.stat(restored / name).st_mode == os.stat(source / name).st_mode
    assert "system.posix_acl_default" in xattrs_of(str(restored / "acl-dir"))
    assert describe(restored) == describe(source)

    # Each kind can be left out on its own.
    no_acl, no_attrs = tmp_path / "no-acl", tmp_path / "no-attrs"
    restore(repository, no_acl, "--no-set-acl")
    restore(repository, no_attrs, "--no-set-attrs")
    base = str(source).lstrip("/")
    assert xattrs_of(str(no_acl / base / "tagged")) == xattrs_of(str(source / "tagged"))
    assert "system.posix_acl_access" not in xattrs_of(str(no_acl / base / "acl"))
    assert xattrs_of(str(no_attrs / base / "tagged")) == {}
    assert "system.posix_acl_access" in xattrs_of(str(no_attrs / base / "acl"))


def test_restore_replaces_symlinks_instead_of_writing_through_them(
    repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "src"
    (source / "dir").mkdir(parents=True)
    (source / "file").write_bytes(b"restored file\n")
    (source / "dir" / "inner").write_bytes(b"restored inner\n")
    assert tardis("--repository", repository, "--create", str(source)) == 0

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"must not change\n")
    out = tmp_path / "out"
    restored = out / str(source).lstrip("/")
    restored.mkdir(parents=True)
    (restored / "file").symlink_to(outside / "victim")  # a file name that points outside
    (restored / "dir").symlink_to(outside)  # a directory name that points outside

    restore(repository, out)
    assert (outside / "victim").read_bytes() == b"must not change\n"
    assert sorted(os.listdir(outside)) == ["victim"]
    assert not (restored / "file").is_symlink() and (restored / "file").read_bytes() == b"restored file\n"
    assert not (restored / "dir").is_symlink()
    assert (restored / "dir" / "inner").read_bytes() == b"restored inner\n"
