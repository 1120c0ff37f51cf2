"""The platform module: xattr serialisation, owners by name, sparse writing."""

from __future__ import annotations

import ast
import errno
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


# -- portability: Linux-only calls stay in platform.py ----------------------------------------

# os functions and constants that exist only on Linux (or mean something else elsewhere).
LINUX_ONLY_OS = frozenset(
    {
        "getxattr",
        "setxattr",
        "listxattr",
        "removexattr",
        "posix_fadvise",
        "posix_fallocate",
        "O_NOATIME",
        "O_DIRECT",
        "O_PATH",
        "O_TMPFILE",
        "O_LARGEFILE",
        "sched_getaffinity",
        "sched_setaffinity",
        "sched_setscheduler",
        "memfd_create",
        "splice",
        "copy_file_range",
        "sendfile",
        "pidfd_open",
        "eventfd",
        "major",
        "minor",
        "makedev",
        "mknod",
        "SEEK_DATA",
        "SEEK_HOLE",
        "POSIX_FADV_SEQUENTIAL",
        "POSIX_FADV_DONTNEED",
    }
)
# Attribute names that are platform-specific whatever object carries them.
LINUX_ONLY_ATTRS = frozenset({"getxattr", "setxattr", "listxattr", "removexattr", "st_rdev", "f_type"})
# Modules that are Linux-only, or the usual way to reach Linux-only calls.
LINUX_ONLY_MODULES = frozenset({"fcntl", "ctypes", "fuse", "llfuse", "pyfuse3", "posix1e", "xattr", "resource"})
LINUX_ONLY_PATHS = ("/proc", "/sys/", "/dev/shm")


def _linux_path(text: str) -> bool:
    return any(text == p.rstrip("/") or text.startswith(p.rstrip("/") + "/") for p in LINUX_ONLY_PATHS)


def linux_only_uses(source: str, filename: str = "<source>") -> list[str]:
    """Every use of a Linux-only name, module or path in ``source``, as ``file:line: what``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        what = None
        if isinstance(node, ast.Import):
            hit = [a.name for a in node.names if a.name.split(".")[0] in LINUX_ONLY_MODULES]
            what = f"import {hit[0]}" if hit else None
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in LINUX_ONLY_MODULES:
                what = f"from {node.module} import"
            elif node.module == "os":
                hit = [a.name for a in node.names if a.name in LINUX_ONLY_OS]
                what = f"from os import {hit[0]}" if hit else None
        elif isinstance(node, ast.Attribute):
            on_os = isinstance(node.value, ast.Name) and node.value.id == "os"
            if node.attr in LINUX_ONLY_ATTRS or (on_os and node.attr in LINUX_ONLY_OS):
                what = f".{node.attr}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr"):
            # getattr(os, "listxattr") is the same call by another spelling.
            args = node.args
            if len(args) >= 2 and isinstance(args[1], ast.Constant) and args[1].value in LINUX_ONLY_OS:
                what = f"{node.func.id}(..., {args[1].value!r})"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _linux_path(node.value):
            what = f"path {node.value!r}"
        if what:
            found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")
    return found


def client_modules() -> list[Path]:
    import tardis_cli

    package = Path(tardis_cli.__file__).parent
    modules = sorted(package.rglob("*.py"))
    assert len(modules) > 20, modules  # the whole client, not an empty directory
    return modules


def test_only_platform_module_uses_linux_only_calls() -> None:
    offenders: list[str] = []
    for module in client_modules():
        if module.name == "platform.py":
            continue
        offenders += linux_only_uses(module.read_text(encoding="utf-8"), str(module))
    assert not offenders, "move these behind tardis_cli/platform.py:\n" + "\n".join(offenders)


def test_platform_module_is_where_the_linux_calls_are() -> None:
    """The scan does see platform.py's own calls (so an empty result elsewhere means something)."""
    source = Path(platform.__file__).read_text(encoding="utf-8")
    uses = linux_only_uses(source, "platform.py")
    assert any("listxattr" in u for u in uses) and any("setxattr" in u for u in uses), uses


@pytest.mark.parametrize(
    "snippet",
    [
        "import os\nos.getxattr('f', 'user.x')",
        "import os\nfd = os.open('f', os.O_RDONLY | os.O_NOATIME)",
        "import os\nos.posix_fadvise(3, 0, 0, os.POSIX_FADV_DONTNEED)",
        "from os import listxattr",
        "import fcntl",
        "from ctypes import CDLL",
        "import os\nhasattr(os, 'setxattr')",
        "import os\nst = os.lstat('x')\nprint(st.st_rdev)",
        "open('/proc/self/mountinfo')",
        "import os\nos.sched_getaffinity(0)",
    ],
)
def test_scan_catches_each_kind_of_linux_only_use(snippet: str) -> None:
    assert linux_only_uses(snippet)


def test_scan_leaves_portable_code_alone() -> None:
    portable = "import os, sys\nos.lstat('x').st_dev\nversion = sys.version_info.major\nos.path.join('/proc2', 'a')"
    assert linux_only_uses(portable) == []


# -- the portable fallback, called directly ------------------------------------------------


def test_native_backend_matches_this_platform() -> None:
    has = hasattr(os, "listxattr") and hasattr(os, "setxattr")
    assert isinstance(platform.XATTRS, platform.NativeXattrs if has else platform.NoXattrs)
    assert isinstance(platform.native_xattrs(), type(platform.XATTRS))


def test_fallback_reads_nothing_even_where_attributes_exist(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"x")
    if user_xattrs_supported(tmp_path):
        os.setxattr(source, "user.kept", b"value")
        assert platform.decode_xattrs(platform.read_xattrs(str(source)))[b"user.kept"] == b"value"
    assert platform.read_xattrs(str(source), platform.NoXattrs()) == b""
    assert platform.read_xattrs(str(tmp_path / "missing"), platform.NoXattrs()) == b""


def test_fallback_applies_nothing_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"x")
    blob = platform.encode_xattrs({b"user.a": b"1", b"system.posix_acl_access": b"\x02\x00\x00\x00"})
    platform._reported.discard("platform")
    with caplog.at_level("DEBUG", logger=platform.__name__):
        assert platform.apply_xattrs(str(target), blob, backend=platform.NoXattrs()) == 0
        assert platform.apply_xattrs(str(target), blob, backend=platform.NoXattrs()) == 0
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "cannot be restored on this platform" in warnings[0].getMessage()
    assert platform.decode_xattrs(platform.read_xattrs(str(target))).get(b"user.a") is None
    # A damaged blob is still refused as such, before the platform is asked anything.
    assert platform.apply_xattrs(str(target), b"\x07junk", backend=platform.NoXattrs()) == 0


def test_fallback_calls_fail_as_unsupported(tmp_path: Path) -> None:
    fallback = platform.NoXattrs()
    assert fallback.names(str(tmp_path)) == []
    for call in (lambda: fallback.value(str(tmp_path), "user.a"), lambda: fallback.put(str(tmp_path), b"user.a", b"")):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.ENOTSUP
