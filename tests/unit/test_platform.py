"""The platform module: xattr serialisation, owners by name, sparse writing."""

from __future__ import annotations

import grp
import os
import pwd
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tardis_cli import platform
from tardis_cli.restore import safe_component

MiB = 1 << 20


def user_xattrs_supported(path: Path) -> bool:
    if not hasattr(os, "setxattr"):
        return False
    probe = path / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.tardis-probe", b"1")
        return True
    except OSError as exc:
        print(f"user xattrs refused by the filesystem of {path}: {exc}")
        return False
    finally:
        probe.unlink()


# -- xattrs --------------------------------------------------------------------------------


def test_xattr_blob_round_trips_and_is_sorted() -> None:
    attrs = {b"user.b": b"\x00\xffbinary", b"user.a": b"", b"system.posix_acl_access": b"\x02\x00\x00\x00"}
    blob = platform.encode_xattrs(attrs)
    assert blob == platform.encode_xattrs(dict(reversed(list(attrs.items()))))
    assert platform.decode_xattrs(blob) == attrs
    assert list(platform.decode_xattrs(blob)) == sorted(attrs)
    assert platform.encode_xattrs({}) == b"" and platform.decode_xattrs(b"") == {}


@pytest.mark.parametrize("cut", [2, 5, 9, -1])
def test_truncated_xattr_blob_is_refused(cut: int) -> None:
    blob = platform.encode_xattrs({b"user.name": b"value"})
    with pytest.raises(ValueError):
        platform.decode_xattrs(blob[:cut])


def test_unknown_xattr_format_is_refused() -> None:
    with pytest.raises(ValueError):
        platform.decode_xattrs(b"\x07junk")


def test_read_xattrs_of_plain_file_and_missing_path(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    assert not any(n.startswith(b"user.") for n in platform.decode_xattrs(platform.read_xattrs(str(plain))))
    assert platform.read_xattrs(str(tmp_path / "missing")) == b""


def test_read_and_apply_user_xattrs(tmp_path: Path) -> None:
    if not user_xattrs_supported(tmp_path):
        pytest.skip("the filesystem refuses user xattrs")
    source, target = tmp_path / "source", tmp_path / "target"
    source.write_bytes(b"x")
    target.write_bytes(b"x")
    os.setxattr(source, "user.zeta", b"last")
    os.setxattr(source, "user.alpha", b"\x00first")
    blob = platform.read_xattrs(str(source))
    assert blob == platform.read_xattrs(str(source))  # deterministic
    got = platform.decode_xattrs(blob)
    assert got[b"user.alpha"] == b"\x00first" and got[b"user.zeta"] == b"last"

    assert platform.apply_xattrs(str(target), blob, acls=True, attrs=False) == 0
    assert os.listxattr(target) == []
    platform.apply_xattrs(str(target), blob, acls=False, attrs=True)
    assert os.getxattr(target, "user.alpha") == b"\x00first"
    assert os.getxattr(target, "user.zeta") == b"last"


def test_apply_xattrs_does_not_follow_symlinks(tmp_path: Path) -> None:
    if not user_xattrs_supported(tmp_path):
        pytest.skip("the filesystem refuses user xattrs")
    pointee = tmp_path / "pointee"
    pointee.write_bytes(b"")
    link = tmp_path / "link"
    link.symlink_to(pointee)
    # user.* is not allowed on symlinks: the failure is reported, not raised, and the
    # file the link points to is untouched.
    assert platform.apply_xattrs(str(link), platform.encode_xattrs({b"user.x": b"1"})) == 0
    assert os.listxattr(pointee) == []


def test_acl_is_an_xattr_and_obeys_acls_flag(tmp_path: Path) -> None:
    setfacl = shutil.which("setfacl")
    if setfacl is None:
        pytest.skip("setfacl is not installed (scripts/system-deps.sh installs acl)")
    source, target, other = tmp_path / "source", tmp_path / "target", tmp_path / "other"
    for p in (source, target, other):
        p.write_bytes(b"")
    done = subprocess.run([setfacl, "-m", "u:1234:r", str(source)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"the filesystem refuses POSIX ACLs: {done.stderr.strip()}")
    blob = platform.read_xattrs(str(source))
    assert b"system.posix_acl_access" in platform.decode_xattrs(blob)
    platform.apply_xattrs(str(other), blob, acls=False, attrs=True)
    assert "system.posix_acl_access" not in os.listxattr(other)
    platform.apply_xattrs(str(target), blob, acls=True, attrs=False)
    assert os.getxattr(target, "system.posix_acl_access") == os.getxattr(source, "system.posix_acl_access")


# -- owners --------------------------------------------------------------------------------


def test_owner_ids_by_name_with_numeric_fallback() -> None:
    root_user, root_group = pwd.getpwuid(0).pw_name.encode(), grp.getgrgid(0).gr_name.encode()
    assert platform.owner_ids(root_user, root_group, 777, 888) == (0, 0)
    assert platform.owner_ids(b"", b"", 777, 888) == (777, 888)
    assert platform.owner_ids(b"no-such-user-tardis", b"no-such-group-tardis", 777, 888) == (777, 888)
    assert platform.owner_ids(root_user, b"no-such-group-tardis", 5, 6) == (0, 6)


# -- sparse files ----------------------------------------------------------------------------


def write_with(path: Path, chunks: list[bytes]) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        return platform.write_sparse(fd, chunks)
    finally:
        os.close(fd)


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_sparse_writer_makes_holes_and_keeps_content(tmp_path: Path) -> None:
    data = b"head" + bytes(10 * MiB) + b"tail" + bytes(3 * MiB)  # ends in a hole
    out = tmp_path / "sparse"
    assert write_with(out, [data[i : i + MiB] for i in range(0, len(data), MiB)]) == len(data)
    assert out.read_bytes() == data
    assert allocated(out) < MiB


def test_sparse_writer_unaligned_chunks_and_partial_zero_blocks(tmp_path: Path) -> None:
    rng = random.Random(3)
    pieces = []
    for _ in range(200):
        kind = rng.random()
        size = rng.choice([1, 100, 4095, 4096, 4097, 9000, 20000])
        pieces.append(bytes(size) if kind < 0.5 else rng.randbytes(size))
    data = b"".join(pieces)
    # Feed it cut at odd places, so block boundaries fall inside chunks.
    chunks, pos = [], 0
    while pos < len(data):
        step = rng.choice([1, 7, 4096, 5000, 65536])
        chunks.append(data[pos : pos + step])
        pos += step
    out = tmp_path / "mixed"
    assert write_with(out, chunks) == len(data)
    assert out.read_bytes() == data


@pytest.mark.parametrize("data", [b"", b"x", bytes(100), bytes(4096), bytes(8192) + b"x", b"x" * 5000])
def test_sparse_writer_edge_sizes(tmp_path: Path, data: bytes) -> None:
    out = tmp_path / "edge"
    assert write_with(out, [data]) == len(data)
    assert out.read_bytes() == data


def test_dense_file_is_written_whole(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(3 * MiB)
    out = tmp_path / "dense"
    write_with(out, [data[i : i + MiB] for i in range(0, len(data), MiB)])
    assert out.read_bytes() == data
    assert allocated(out) >= len(data)


# -- restore safety ------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b".", b"..", b"a/b", b"/etc", b"../x", b"a\x00b"])
def test_unsafe_components_are_refused(raw: bytes) -> None:
    assert safe_component(raw) is None


@pytest.mark.parametrize("raw", [b"a", b"...", b".hidden", b"..x", "日本語".encode(), b"\xff\xfe"])
def test_safe_components_are_kept(raw: bytes) -> None:
    assert safe_component(raw) == os.fsdecode(raw)
