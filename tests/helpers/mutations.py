"""Seeded random mutations of a tree, and snapshots that a restore must reproduce exactly.

The filesystem itself is the model: after every backup the tree is snapshotted (types,
contents, symlink targets, modes, nanosecond mtimes, hard-link groups) and the snapshot is
what that backup set must restore to. The mutations are chosen only from the tree's
sorted listing and the seeded RNG, so a seed always produces the same sequence.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

KiB = 1024
LARGE_SIZES = (100 * KiB, 300 * KiB)  # files this large get rdiff signatures and deltas
MAX_LARGE = 5  # large files created along the way, on top of the initial ones
FILE_MODES = (0o600, 0o644, 0o640, 0o664, 0o755, 0o700, 0o750, 0o604)
DIR_MODES = (0o700, 0o750, 0o755, 0o775, 0o711)
NAME_STYLES = ("f{}.txt", "file {}.dat", "ünï-{}", ".hidden{}", "日本{}")


@dataclass(frozen=True)
class Snapshot:
    """Every entry below the root (relative path -> description), the root's own mode and
    mtime, and the hard-link groups (sorted names sharing an inode)."""

    entries: dict[str, tuple]
    root: tuple[int, int]
    links: list[list[str]]


def take_snapshot(root: Path) -> Snapshot:
    entries: dict[str, tuple] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = ("link", os.readlink(path), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = ("dir", oct(mode), st.st_mtime_ns)
            else:
                with open(path, "rb") as f:
                    digest = hashlib.blake2b(f.read(), digest_size=16).hexdigest()
                entries[rel] = ("file", oct(mode), st.st_mtime_ns, st.st_size, digest)
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
    top = os.lstat(root)
    groups = sorted(sorted(names) for names in inodes.values() if len(names) > 1)
    return Snapshot(entries, (stat.S_IMODE(top.st_mode), top.st_mtime_ns), groups)


def differences(want: Snapshot, got: Snapshot) -> list[str]:
    """What differs between two snapshots, one line per problem (empty when equal)."""
    problems = [f"missing: {rel} {want.entries[rel]}" for rel in sorted(set(want.entries) - set(got.entries))]
    problems += [f"unexpected: {rel} {got.entries[rel]}" for rel in sorted(set(got.entries) - set(want.entries))]
    for rel in sorted(set(want.entries) & set(got.entries)):
        if want.entries[rel] != got.entries[rel]:
            problems.append(f"differs: {rel}: want {want.entries[rel]}, got {got.entries[rel]}")
    if want.root != got.root:
        problems.append(f"root (mode, mtime) differs: want {want.root}, got {got.root}")
    if want.links != got.links:
        problems.append(f"hard-link groups differ: want {want.links}, got {got.links}")
    return problems


@dataclass
class Mutator:
    """Applies seeded random mutations to the tree at ``root``; ``log`` records them all."""

    root: Path
    rng: random.Random
    log: list[str] = field(default_factory=list)
    applied: dict[str, int] = field(default_factory=dict)
    converted: set[str] = field(default_factory=set)  # directories that replaced a file
    counter: int = 0
    large: int = 0

    # -- listing -------------------------------------------------------------------------

    def _walk(self) -> tuple[list[str], list[str], list[str]]:
        files, dirs, links = [], [], []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for name in dirnames + sorted(filenames):
                rel = os.path.relpath(os.path.join(dirpath, name), self.root)
                mode = os.lstat(self.root / rel).st_mode
                if stat.S_ISLNK(mode):
                    links.append(rel)
                elif stat.S_ISDIR(mode):
                    dirs.append(rel)
                else:
                    files.append(rel)
        return sorted(files), sorted(dirs), sorted(links)

    def files(self, min_size: int = 0) -> list[str]:
        return [f for f in self._walk()[0] if os.lstat(self.root / f).st_size >= min_size]

    def dirs(self, with_root: bool = False) -> list[str]:
        return (["."] if with_root else []) + self._walk()[1]

    def pick_file(self, min_size: int = 0) -> str | None:
        """A file, one of the large ones (delta candidates) about a third of the time."""
        files = self.files(min_size)
        large = [f for f in files if os.lstat(self.root / f).st_size >= LARGE_SIZES[0] // 2]
        if large and self.rng.random() < 0.35:
            return self.rng.choice(large)
        return self.rng.choice(files) if files else None

    def symlinks(self) -> list[str]:
        return self._walk()[2]

    def new_name(self, directory: str) -> str:
        self.counter += 1
        name = self.rng.choice(NAME_STYLES).format(self.counter)
        return os.path.normpath(os.path.join(directory, name))

    def data(self, size: int) -> bytes:
        """Half random, half a repeated pattern: compressible, but not trivially."""
        return self.rng.randbytes(size // 2) + bytes([self.rng.randrange(256)]) * (size - size // 2)

    def small_size(self) -> int:
        return self.rng.choice([0, 1, 17, 100, 1000, 4096, 5000, 20_000])

    # -- the mutations: each returns a description, or None when it had nothing to act on --

    def create(self) -> str | None:
        rel = self.new_name(self.rng.choice(self.dirs(with_root=True)))
        if self.large < MAX_LARGE and self.rng.random() < 0.15:
            self.large += 1
            size = self.rng.randint(*LARGE_SIZES)
        else:
            size = self.small_size()
        (self.root / rel).write_bytes(self.data(size))
        return f"create {rel} ({size} bytes)"

    def modify(self) -> str | None:
        rel = self.pick_file(min_size=1)
        if rel is None:
            return None
        size = os.lstat(self.root / rel).st_size
        offset = self.rng.randrange(size)
        length = min(self.rng.randint(1, 4096), size - offset)
        with open(self.root / rel, "r+b") as f:
            f.seek(offset)
            old = f.read(length)
            f.seek(offset)
            f.write(bytes(b ^ 0x5A for b in old))
        return f"modify {rel} in place: {length} bytes at {offset} of {size}"

    def append(self) -> str | None:
        rel = self.pick_file()
        if rel is None:
            return None
        extra = self.data(self.rng.randint(1, 8192))
        with open(self.root / rel, "ab") as f:
            f.write(extra)
        return f"append {len(extra)} bytes to {rel}"

    def truncate(self) -> str | None:
        rel = self.pick_file(min_size=1)
        if rel is None:
            return None
        size = os.lstat(self.root / rel).st_size
        new = self.rng.choice([0, size // 2, size - 1, max(0, size - 4096)])
        os.truncate(self.root / rel, new)
        return f"truncate {rel} from {size} to {new}"

    def rename(self) -> str | None:
        files = self.files() + self.symlinks()
        if not files:
            return None
        rel = self.rng.choice(files)
        new = self.new_name(os.path.dirname(rel) or ".")
        os.rename(self.root / rel, self.root / new)
        return f"rename {rel} -> {new}"

    def move(self) -> str | None:
        files = self.files() + self.symlinks()
        if not files:
            return None
        rel = self.rng.choice(files)
        others = [d for d in self.dirs(with_root=True) if d != (os.path.dirname(rel) or ".")]
        if not others:
            return None
        target = os.path.normpath(os.path.join(self.rng.choice(others), os.path.basename(rel)))
        if os.path.lexists(self.root / target):
            target = self.new_name(os.path.dirname(target) or ".")
        os.rename(self.root / rel, self.root / target)
        return f"move {rel} -> {target}"

    def rename_dir(self) -> str | None:
        dirs = self.dirs()
        if not dirs:
            return None
        rel = self.rng.choice(dirs)
        parents = [d for d in self.dirs(with_root=True) if d != rel and not d.startswith(rel + os.sep)]
        new = self.new_name(self.rng.choice(parents))
        os.rename(self.root / rel, self.root / new)
        self.converted.discard(rel)
        return f"rename directory {rel} -> {new}"

    def delete(self) -> str | None:
        files = self.files() + self.symlinks()
        if not files:
            return None
        rel = self.rng.choice(files)
        os.unlink(self.root / rel)
        return f"delete {rel}"

    def delete_dir(self) -> str | None:
        dirs = self.dirs()
        if len(dirs) < 3:
            return None
        rel = self.rng.choice(dirs)
        shutil.rmtree(self.root / rel)
        self.converted = {d for d in self.converted if d != rel and not d.startswith(rel + os.sep)}
        return f"delete directory {rel}"

    def mkdir(self) -> str | None:
        rel = self.new_name(self.rng.choice(self.dirs(with_root=True)))
        os.mkdir(self.root / rel)
        return f"mkdir {rel}"

    def chmod(self) -> str | None:
        files, dirs = self.files(), self.dirs()
        if dirs and self.rng.random() < 0.3:
            rel, mode = self.rng.choice(dirs), self.rng.choice(DIR_MODES)
        elif files:
            rel, mode = self.rng.choice(files), self.rng.choice(FILE_MODES)
        else:
            return None
        os.chmod(self.root / rel, mode)
        return f"chmod {rel} {oct(mode)}"

    def touch_older(self) -> str | None:
        candidates = self.files() + self.symlinks() + self.dirs()
        if not candidates:
            return None
        rel = self.rng.choice(candidates)
        st = os.lstat(self.root / rel)
        older = st.st_mtime_ns - self.rng.randint(1, 10**6) * 1_000_000_000 - self.rng.randint(1, 999_999_999)
        os.utime(self.root / rel, ns=(st.st_atime_ns, older), follow_symlinks=False)
        return f"touch {rel} to an older mtime ({older})"

    def same_size_same_mtime(self) -> str | None:
        """Rewrite a file with different bytes of the same size and put its mtime back
        exactly (in place, or through a new inode renamed over it)."""
        rel = self.pick_file(min_size=1)
        if rel is None:
            return None
        path = self.root / rel
        st = os.lstat(path)
        content = path.read_bytes()
        flipped = bytes(b ^ 0xA5 for b in content)
        if os.lstat(path).st_nlink == 1 and self.rng.random() < 0.3:
            how = "new inode"
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(flipped)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            os.replace(tmp, path)
        else:
            how = "in place"
            with open(path, "r+b") as f:
                f.write(flipped)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        return f"rewrite {rel} ({st.st_size} bytes, {how}) keeping mtime {st.st_mtime_ns}"

    def swap(self) -> str | None:
        files = self.files()
        if len(files) < 2:
            return None
        a, b = self.rng.sample(files, 2)
        tmp = self.root / (a + ".swap")
        os.rename(self.root / a, tmp)
        os.rename(self.root / b, self.root / a)
        os.rename(tmp, self.root / b)
        return f"swap {a} <-> {b}"

    def copy(self) -> str | None:
        files = self.files()
        if not files:
            return None
        rel = self.rng.choice(files)
        new = self.new_name(self.rng.choice(self.dirs(with_root=True)))
        shutil.copy2(self.root / rel, self.root / new)
        return f"copy {rel} -> {new} (with its mtime)"

    def file_to_dir(self) -> str | None:
        files = self.files()
        if not files:
            return None
        rel = self.rng.choice(files)
        os.unlink(self.root / rel)
        os.mkdir(self.root / rel)
        (self.root / rel / "inside").write_bytes(self.data(self.small_size()))
        self.converted.add(rel)
        return f"replace file {rel} by a directory"

    def dir_to_file(self) -> str | None:
        converted = sorted(d for d in self.converted if os.path.isdir(self.root / d))
        candidates = converted or self.dirs()
        if not candidates or (not converted and len(candidates) < 3):
            return None
        rel = self.rng.choice(candidates)
        shutil.rmtree(self.root / rel)
        self.converted = {d for d in self.converted if d != rel and not d.startswith(rel + os.sep)}
        (self.root / rel).write_bytes(self.data(self.small_size()))
        return f"replace directory {rel} by a file"

    def hardlink(self) -> str | None:
        files = self.files()
        if not files:
            return None
        rel = self.rng.choice(files)
        new = self.new_name(self.rng.choice(self.dirs(with_root=True)))
        os.link(self.root / rel, self.root / new)
        return f"hard link {new} -> {rel}"

    def symlink(self) -> str | None:
        links = self.symlinks()
        targets = self.files() + self.dirs()
        if links and self.rng.random() < 0.4:
            rel = self.rng.choice(links)
            os.unlink(self.root / rel)
            verb = "retarget"
        else:
            rel = self.new_name(self.rng.choice(self.dirs(with_root=True)))
            verb = "symlink"
        if targets and self.rng.random() < 0.8:
            target = os.path.relpath(self.root / self.rng.choice(targets), (self.root / rel).parent)
        else:
            target = f"dangling/{self.counter}"
        os.symlink(target, self.root / rel)
        return f"{verb} {rel} -> {target}"

    # -- driving -------------------------------------------------------------------------

    def kinds(self) -> dict[str, Callable[[], str | None]]:
        return {
            "create": self.create,
            "modify": self.modify,
            "append": self.append,
            "truncate": self.truncate,
            "rename": self.rename,
            "move": self.move,
            "rename_dir": self.rename_dir,
            "delete": self.delete,
            "delete_dir": self.delete_dir,
            "mkdir": self.mkdir,
            "chmod": self.chmod,
            "touch_older": self.touch_older,
            "same_size_same_mtime": self.same_size_same_mtime,
            "swap": self.swap,
            "copy": self.copy,
            "file_to_dir": self.file_to_dir,
            "dir_to_file": self.dir_to_file,
            "hardlink": self.hardlink,
            "symlink": self.symlink,
        }

    def step(self, number: int, count: int) -> list[str]:
        """Apply ``count`` mutations; the first one cycles through every kind in turn so a
        long enough run exercises each at least once."""
        kinds = self.kinds()
        names = list(kinds)
        weights = [3 if n in ("create", "modify", "append", "same_size_same_mtime") else 1 for n in names]
        chosen = [names[number % len(names)]]
        chosen += self.rng.choices(names, weights=weights, k=count - 1)
        done = []
        for name in chosen:
            what = kinds[name]()
            if what is not None:
                self.applied[name] = self.applied.get(name, 0) + 1
                done.append(what)
                self.log.append(f"after set {number}: {what}")
        return done


def initial_tree(root: Path, rng: random.Random) -> Path:
    """A small starting tree: a few directories, small files, three large files, a link."""
    root.mkdir(parents=True)
    dirs = [root]
    for i in range(5):
        d = rng.choice(dirs) / f"dir{i}"
        d.mkdir()
        dirs.append(d)
    for i in range(60):
        size = rng.choice([0, 1, 17, 100, 1000, 4096, 5000, 20_000])
        (rng.choice(dirs) / f"file{i}").write_bytes(rng.randbytes(size))
    for i in range(3):
        (rng.choice(dirs) / f"large{i}.bin").write_bytes(rng.randbytes(rng.randint(*LARGE_SIZES)))
    os.symlink("file0" if (root / "file0").exists() else "dir0", root / "link0")
    return root
