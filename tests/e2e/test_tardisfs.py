"""tardisfs: backup sets mounted with real FUSE, checked against regenerate of the same sets.

Each mount runs ``tardisfs -f`` in a subprocess and is ready when it prints its "mounted"
line on stderr; every mount is unmounted in teardown (fusermount3 -u, then -uz).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import select
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers.services import Cluster, start_remote
from helpers.trees import make_tree
from tardis_cli import backup, regenerate, sonic

PASSWORD = "tardisfs password"
READY_TIMEOUT_S = 60.0
BIG = 20 * 1024 * 1024
WIDE = 2000  # kernels ask for about 700 entries per READDIRPLUS: three batches


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None and shutil.which("fusermount") is None:
        return "fusermount3 is not installed (scripts/system-deps.sh installs fuse3)"
    return None


_MISSING = _fuse_missing()
if _MISSING:
    print(f"tardisfs tests skipped: {_MISSING}")
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=f"real FUSE needed: {_MISSING}")


def tardis(*args: str) -> None:
    assert backup.main(list(args)) == 0


def tardisfs_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tardis_fuse.main", *args]


def unmount(mountpoint: Path) -> None:
    tool = shutil.which("fusermount3") or "fusermount"
    if subprocess.run([tool, "-u", str(mountpoint)], capture_output=True).returncode != 0:
        subprocess.run([tool, "-uz", str(mountpoint)], capture_output=True)


class Mount:
    """``tardisfs -f`` in a subprocess, ready once it says so on stderr."""

    def __init__(self, mountpoint: Path, *args: str) -> None:
        self.path = mountpoint
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            tardisfs_command("-f", *args, str(mountpoint)), stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        self.ready_line = self._wait_ready()

    def _wait_ready(self) -> str:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        said = b""
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.proc.stderr], [], [], deadline - time.monotonic())
            if not readable:
                break
            chunk = os.read(self.proc.stderr.fileno(), 4096)
            if not chunk:
                self.proc.wait(10)
                raise AssertionError(f"tardisfs exited ({self.proc.returncode}) before mounting: {said.decode()}")
            said += chunk
            for line in said.decode(errors="replace").splitlines():
                if line.startswith("tardisfs: mounted "):
                    assert os.path.ismount(self.path)
                    return line
        self.close()
        raise AssertionError(f"tardisfs did not mount within {READY_TIMEOUT_S} s: {said.decode()}")

    def close(self) -> None:
        unmount(self.path)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert not os.path.ismount(self.path)


def set_list(repository: str, capsys: pytest.CaptureFixture[str], *password: str) -> list[dict]:
    capsys.readouterr()
    assert sonic.main(["list", "--repository", repository, "--json", *password]) == 0
    return json.loads(capsys.readouterr().out)


def picture(root: Path) -> tuple[dict[str, tuple], list[list[str]]]:
    """Every entry's type, mode, owner, mtime and content (or link target), and the groups of
    names that are hard links of one file."""
    entries: dict[str, tuple] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            owner = (st.st_uid, st.st_gid)
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = ("link", os.readlink(path), owner)
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns, owner)
            else:
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                entries[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, owner, st.st_size, digest)
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
    return entries, sorted(sorted(group) for group in inodes.values())


def assert_same(restored: Path, copied: Path) -> None:
    want, want_links = picture(restored)
    got, got_links = picture(copied)
    assert sorted(set(want) - set(got)) == [], "missing from the mount"
    assert sorted(set(got) - set(want)) == [], "extra in the mount"
    for key in want:
        assert want[key] == got[key], f"{key} differs"
    assert want_links == got_links
    assert want_links, "the tree should hold hard links"


def history(root: Path, repository: str, *password: str, wide: bool = False) -> Path:
    """Two sets of a tree with hard links, a symlink, xattrs, a large file and a file stored as a
    delta; ``wide``: also a directory of WIDE entries."""
    source = make_tree(root / "src", files=150)
    if wide:  # listed in several READDIRPLUS batches
        (source / "wide").mkdir()
        for i in range(WIDE):
            (source / "wide" / f"entry-{i:04d}.txt").write_text("x" * (i % 97))
    (source / "links").mkdir()
    (source / "links" / "a").write_bytes(b"linked content\n")
    os.link(source / "links" / "a", source / "links" / "b")
    os.setxattr(source / "links" / "a", "user.comment", b"kept by tardisfs")
    rng = random.Random(5)
    (source / "big.bin").write_bytes(rng.randbytes(BIG))
    (source / "grows.log").write_bytes(rng.randbytes(512 * 1024))
    tardis("--repository", repository, "--create", *password, str(source))
    with open(source / "grows.log", "r+b") as f:  # a small change: stored as a delta
        f.seek(1000)
        f.write(b"changed")
    (source / "added.txt").write_text("second set\n")
    tardis("--repository", repository, *password, str(source))
    return source


def copy_and_compare(mount: Path, repository: str, source: Path, names: list[str], work: Path, *password: str) -> None:
    """cp -a of each set out of the mount equals regenerate of the same set."""
    inner = str(source).lstrip("/")
    for name in names:
        copied = work / "cp" / name
        copied.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(mount / name / inner), str(copied)], check=True)
        restored = work / "regen" / name
        assert (
            regenerate.main(["--repository", repository, *password, "-b", name, "-o", str(restored), str(source)]) == 0
        )
        assert_same(restored / source.name, copied)


def test_mount_matches_regenerate(repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = history(tmp_path, repository)
    names = [s["name"] for s in set_list(repository, capsys)]
    assert len(names) == 2
    mount = Mount(tmp_path / "mnt", "-o", f"repo={repository}")
    try:
        assert sorted(os.listdir(mount.path)) == sorted([*names, "Current"])
        assert os.readlink(mount.path / "Current") == names[-1]
        copy_and_compare(mount.path, repository, source, names, tmp_path)
    finally:
        mount.close()


def test_encrypted_client(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository = str(tmp_path / "repo" / "secret-client")
    source = history(tmp_path, repository, "--password", PASSWORD)
    names = [s["name"] for s in set_list(repository, capsys, "-P", PASSWORD)]
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD + "\n")
    mount = Mount(tmp_path / "mnt", "-o", f"repo={repository},pwfile={pwfile}")
    try:
        assert os.readlink(mount.path / "Current") == names[-1]
        copy_and_compare(mount.path, repository, source, names, tmp_path, "-P", PASSWORD)
        here = mount.path / "Current" / str(source).lstrip("/")
        assert os.getxattr(here / "links" / "a", "user.comment") == b"kept by tardisfs"
        assert os.getxattr(here / "grows.log", "user.tardis_chain") == b"1"
    finally:
        mount.close()


def test_encrypted_client_over_http(cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Backed up to tardis://, mounted from tardisremote (http://): the same trees, decrypted
    only here; ranged reads and one-directory listings go over the HTTP API."""
    grpc_url = f"tardis://{cluster.ingest.address}/fs-over-http"
    source = history(tmp_path, grpc_url, "--password", PASSWORD)
    names = [s["name"] for s in set_list(grpc_url, capsys, "-P", PASSWORD)]
    remote = start_remote(cluster, tmp_path / "remote", Workers=1)
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD + "\n")
    http_url = f"http://{remote.address}/fs-over-http"
    try:
        mount = Mount(tmp_path / "mnt", "-o", f"repo={http_url},pwfile={pwfile}")
        try:
            assert os.readlink(mount.path / "Current") == names[-1]
            copy_and_compare(mount.path, grpc_url, source, names, tmp_path, "-P", PASSWORD)
        finally:
            mount.close()
    finally:
        assert remote.stop() == 0


def test_wrong_password_mounts_nothing(tmp_path: Path) -> None:
    repository = str(tmp_path / "repo" / "locked")
    source = make_tree(tmp_path / "src", files=5)
    tardis("--repository", repository, "--create", "--password", PASSWORD, str(source))
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    for extra in (["-f"], []):  # in the foreground, and the forking form
        done = subprocess.run(
            tardisfs_command(*extra, "-o", f"repo={repository},password=wrong", str(mountpoint)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0
        err = done.stderr.strip()
        assert err.count("\n") == 0 and "wrong password" in err and "Traceback" not in err, err
        assert not os.path.ismount(mountpoint)
    # No password at all: refused too, naming what is missing.
    done = subprocess.run(
        tardisfs_command("-f", "-o", f"repo={repository}", str(mountpoint)), capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "password" in done.stderr and done.stderr.count("\n") == 1, done.stderr


@pytest.fixture(scope="module")
def mounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, list[dict]]]:
    """One embedded client with two sets, mounted for the module (with a cache directory)."""
    work = tmp_path_factory.mktemp("tardisfs")
    repository = str(work / "repo" / "shared")
    source = history(work, repository, wide=True)
    listed = json.loads(
        subprocess.run(
            [sys.executable, "-m", "tardis_cli.sonic", "list", "--repository", repository, "--json"],
            capture_output=True,
            check=True,
        ).stdout
    )
    (work / "cache").mkdir()
    mount = Mount(work / "mnt", "--repository", repository, "-o", f"cachedir={work / 'cache'}")
    try:
        yield mount.path, source, listed
    finally:
        mount.close()


def test_a_wide_directory_lists_whole_and_alike_from_many_readers(mounted: tuple[Path, Path, list[dict]]) -> None:
    """A directory far larger than one kernel batch: every name with its size, the same in
    four readers listing it at once (each open directory keeps its own listing)."""
    mount, source, _sets = mounted
    wide = mount / "Current" / str(source).lstrip("/") / "wide"
    wanted = {p.name: p.stat().st_size for p in (source / "wide").iterdir()}
    assert len(wanted) == WIDE

    def listing(_: int) -> dict[str, int]:
        with os.scandir(wide) as found:
            return {e.name: e.stat(follow_symlinks=False).st_size for e in found}

    with ThreadPoolExecutor(4) as pool:
        for seen in pool.map(listing, range(8)):
            assert seen == wanted


def test_large_file_reads_by_range(mounted: tuple[Path, Path, list[dict]]) -> None:
    mount, source, _sets = mounted
    original = (source / "big.bin").read_bytes()
    path = mount / "Current" / str(source).lstrip("/") / "big.bin"
    assert os.stat(path).st_size == BIG
    rng = random.Random(11)
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(200):
            offset = rng.randrange(0, BIG)
            length = rng.choice([1, 100, 4096, 65536, 300_000, 2_000_000])
            assert os.pread(fd, length, offset) == original[offset : offset + length]
        assert os.pread(fd, 10, BIG - 3) == original[-3:]
        assert os.pread(fd, 10, BIG + 5) == b""
    finally:
        os.close(fd)
    # A full object is read by ranges, never rebuilt into the cache of delta chains.
    cache = mount.parent / "cache"
    assert [p for p in cache.rglob("chain-*")] == []
    # The delta, by contrast, is rebuilt there once and read back exactly.
    grown = mount / "Current" / str(source).lstrip("/") / "grows.log"
    assert grown.read_bytes() == (source / "grows.log").read_bytes()
    assert len(list(cache.rglob("chain-*"))) == 1


def test_xattrs(mounted: tuple[Path, Path, list[dict]]) -> None:
    mount, source, sets = mounted
    here = mount / "Current" / str(source).lstrip("/")
    first, newest = sets[0]["name"], sets[-1]["name"]
    a = here / "links" / "a"
    names = set(os.listxattr(a))
    assert {"user.comment", "user.tardis_checksum", "user.tardis_since", "user.tardis_chain"} <= names
    assert os.getxattr(a, "user.comment") == b"kept by tardisfs"
    assert os.getxattr(a, "user.tardis_checksum") == hashlib.sha256(b"linked content\n").hexdigest().encode()
    assert os.getxattr(a, "user.tardis_since") == first.encode()
    assert os.getxattr(here / "added.txt", "user.tardis_since") == newest.encode()
    assert os.getxattr(a, "user.tardis_chain") == b"0"
    assert os.getxattr(here / "grows.log", "user.tardis_chain") == b"1"
    assert os.getxattr(mount / first / str(source).lstrip("/") / "grows.log", "user.tardis_chain") == b"0"
    with pytest.raises(OSError) as caught:
        os.getxattr(a, "user.absent")
    assert caught.value.errno == errno.ENODATA


def test_read_only_and_missing_names(mounted: tuple[Path, Path, list[dict]]) -> None:
    mount, source, _sets = mounted
    here = mount / "Current" / str(source).lstrip("/")
    attempts = [
        lambda: os.open(here / "added.txt", os.O_WRONLY),
        lambda: os.open(here / "new-file", os.O_WRONLY | os.O_CREAT, 0o644),
        lambda: os.mkdir(here / "new-dir"),
        lambda: os.unlink(here / "added.txt"),
        lambda: os.rename(here / "added.txt", here / "moved.txt"),
        lambda: os.chmod(here / "added.txt", 0o777),
        lambda: os.setxattr(here / "added.txt", "user.x", b"1"),
        lambda: os.symlink("x", here / "new-link"),
        lambda: os.mkdir(mount / "NewSet"),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as caught:
            attempt()
        assert caught.value.errno == errno.EROFS
    for missing in (mount / "NoSuchSet", here / "no-such-file", here / "links" / "nothing", mount / "NoSet" / "x"):
        with pytest.raises(FileNotFoundError):
            os.stat(missing)
    with pytest.raises(NotADirectoryError):
        os.stat(here / "added.txt" / "below")


def test_fstab_form_in_the_background(tmp_path: Path) -> None:
    """``tardisfs 0 MOUNTPOINT -o database=DIR,client=NAME`` (what mount.fuse runs for the
    seed's fstab line) forks, returns once mounted, and serves until unmounted."""
    base = tmp_path / "repo"
    source = make_tree(tmp_path / "src", files=10)
    tardis("--repository", str(base / "fstab-client"), "--create", str(source))
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    options = f"user,noauto,ro,database={base},client=fstab-client"
    done = subprocess.run(
        tardisfs_command("0", str(mountpoint), "-o", options), capture_output=True, text=True, timeout=60
    )
    try:
        assert done.returncode == 0, done.stderr
        assert os.path.ismount(mountpoint)
        inner = mountpoint / "Current" / str(source).lstrip("/")
        assert (inner / "run.sh").read_text() == (source / "run.sh").read_text()
    finally:
        unmount(mountpoint)
    assert not os.path.ismount(mountpoint)


def test_permissions_enforced_with_allow_other(tmp_path: Path) -> None:
    """Mounted as root with allow_other,default_permissions: other users get ordinary checks."""
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        print("needs root and runuser to act as another user")
        pytest.skip("needs root and runuser")
    top = Path(tempfile.mkdtemp(prefix="tardisfs-perm-", dir="/tmp"))  # reachable by nobody
    try:
        top.chmod(0o755)
        source = top / "src"
        source.mkdir(mode=0o755)
        (source / "public").write_text("anyone\n")
        (source / "public").chmod(0o644)
        (source / "secret").write_text("root only\n")
        (source / "secret").chmod(0o600)
        repository = str(tmp_path / "repo" / "perms")
        tardis("--repository", repository, "--create", str(source))
        mountpoint = top / "mnt"
        mount = Mount(mountpoint, "-o", f"repo={repository},allow_other,default_permissions")
        try:
            inner = mountpoint / "Current" / str(source).lstrip("/")

            def as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    ["runuser", "-u", "nobody", "--", "cat", str(path)], capture_output=True, text=True
                )

            assert as_nobody(inner / "public").stdout == "anyone\n"
            refused = as_nobody(inner / "secret")
            assert refused.returncode != 0 and "Permission denied" in refused.stderr
            assert (inner / "secret").read_text() == "root only\n"  # root still reads it
        finally:
            mount.close()
    finally:
        shutil.rmtree(top, ignore_errors=True)
