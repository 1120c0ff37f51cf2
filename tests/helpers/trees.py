"""Generated source trees, and the comparison a restore must pass."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path


def make_tree(root: Path, files: int = 2000, seed: int = 7) -> Path:
    """A tree with nested directories, assorted file sizes, odd names, links and modes."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    dirs = [root]
    for i in range(max(1, files // 40)):
        parent = rng.choice(dirs)
        d = parent / rng.choice([f"dir{i}", f"dir {i} with spaces", f"répertoire-{i}", f"日本語{i}"])
        d.mkdir(exist_ok=True)
        dirs.append(d)
    for i in range(files):
        d = rng.choice(dirs)
        size = rng.choice([0, 1, 17, 100, 1000, 4096, 5000, 20_000, 70_000])
        if i % 500 == 0:
            size = rng.choice([1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 7])
        data = rng.randbytes(size // 2) + bytes(size - size // 2)
        name = rng.choice([f"file{i}.txt", f"file {i}.dat", f"ünïcödé-{i}", f"{i}.bin", f".hidden{i}"])
        (d / name).write_bytes(data)
    (root / "empty-dir" / "nested-empty").mkdir(parents=True)
    (root / "empty-file").write_bytes(b"")
    (root / "link-to-file").symlink_to("empty-file")
    (root / "dangling-link").symlink_to("does/not/exist")
    (root / "absolute-link").symlink_to("/etc/hostname")
    private = root / "private"
    private.mkdir()
    (private / "secret").write_bytes(b"top secret\n")
    os.chmod(private / "secret", 0o600)
    os.chmod(private, 0o700)
    script = root / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    os.chmod(script, 0o755)
    os.utime(root / "empty-file", ns=(1_000_000_000, 1_234_567_891_234_567_891))
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything a restore must reproduce: types, contents, link targets, modes, mtimes."""
    result: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                result[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                result[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            else:
                with open(path, "rb") as f:
                    content = f.read()
                result[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, content)
    return result


def assert_same_tree(original: Path, restored: Path) -> None:
    want, got = snapshot(original), snapshot(restored)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing, f"missing from restore: {missing[:10]}"
    assert not extra, f"unexpected in restore: {extra[:10]}"
    for key in want:
        assert want[key] == got[key], f"{key} differs: {want[key][:3]} != {got[key][:3]}"
    top_want, top_got = os.stat(original), os.stat(restored)
    assert stat.S_IMODE(top_want.st_mode) == stat.S_IMODE(top_got.st_mode)
    assert top_want.st_mtime_ns == top_got.st_mtime_ns
