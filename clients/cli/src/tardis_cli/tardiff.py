"""tardiff: compare a backed-up version with the live file, or two backup sets with each other.

Exit status like diff(1): 0 no differences, 1 differences, 2 trouble (one ``tardiff: error:`` line).
A directory is read with one ReadTree stream per set; contents are compared by address first
(a live file is hashed, never fetched, when its size matches), and only files that differ
and must be shown are fetched, in batches, into temporary files.
"""

from __future__ import annotations

import argparse
import codecs
import difflib
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_common.argparsing import add_common_options, make_parser
from tardis_common.cipher import Cipher
from tardis_common.errors import Corrupt, NotFound, TardisError
from tardis_common.interfaces import Ingest

from .connect import open_repository
from .contents import ContentFetcher
from .restore import components_of
from .sets import resolve_set
from .tool import run, settings_and_url, setup_logging

PROG = "tardiff"
PROBE = 8192  # bytes looked at for a NUL
IN_MEMORY = 64 * 1024 * 1024  # larger files are checked for text by streaming
BLOCK = 1024 * 1024
BATCH_FILES = 256
BATCH_BYTES = 64 * 1024 * 1024
LIVE = "live"

RED, GREEN, CYAN, BOLD, RESET = "\033[31m", "\033[32m", "\033[36m", "\033[1m", "\033[0m"


class DiffError(TardisError):
    """Any failure of tardiff: exit status 2, as 1 means "the files differ"."""

    exit_code = 2


@dataclass
class Node:
    """One name on one side: a stored entry, or what is on disk."""

    kind: str  # file, dir, symlink, other
    size: int = 0
    mtime_ns: int = 0
    object_id: bytes = b""  # stored files
    link: bytes = b""  # symlinks
    path: str = ""  # live entries: where they are
    dir_id: int = 0  # stored directories: the dir_id their entries carry


@dataclass
class Side:
    label: str
    backup: common.BackupSet | None  # None: the live filesystem


@dataclass
class Options:
    style: str  # unified, context, ndiff
    lines: int
    recurse: bool
    names_only: bool
    color: bool


# -- reading both sides ----------------------------------------------------------------------


_KINDS: dict[int, str] = {
    common.ENTRY_TYPE_FILE: "file",
    common.ENTRY_TYPE_DIR: "dir",
    common.ENTRY_TYPE_SYMLINK: "symlink",
}


def _kind(entry_type: int) -> str:
    return _KINDS.get(entry_type, "other")


def stored_node(entry: common.Entry, cipher: Cipher) -> Node:
    link = cipher.decrypt_name(entry.link_target) if entry.type == common.ENTRY_TYPE_SYMLINK else b""
    return Node(_kind(entry.type), entry.size, entry.mtime_ns, entry.object_id, link)


def live_node(path: str) -> Node | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(st.st_mode):
        return Node("file", st.st_size, st.st_mtime_ns, path=path)
    if stat.S_ISDIR(st.st_mode):
        return Node("dir", 0, st.st_mtime_ns, path=path)
    if stat.S_ISLNK(st.st_mode):
        return Node("symlink", 0, st.st_mtime_ns, link=os.readlink(os.fsencode(path)), path=path)
    return Node("other", 0, st.st_mtime_ns, path=path)


def stored_tree(ingest: Ingest, client: str, cipher: Cipher, set_id: int, dir_id: int) -> dict[str, Node]:
    """Every entry under ``dir_id`` in the set, by path relative to it: one ReadTree stream."""
    paths: dict[int, str] = {dir_id: ""}
    found: dict[str, Node] = {}
    for batch in ingest.read_tree(cat.ReadTreeRequest(client=client, set_id=set_id, dir_id=dir_id)):
        for entry in batch.entries:
            parent = paths.get(entry.dir_id)
            name = os.fsdecode(cipher.decrypt_name(entry.name))
            if parent is None or not name or "/" in name or name in (".", ".."):
                continue
            rel = f"{parent}/{name}" if parent else name
            found[rel] = stored_node(entry, cipher)
            if entry.type == common.ENTRY_TYPE_DIR:
                paths[entry.child_dir_id] = rel
    return found


def live_tree(root: str) -> dict[str, Node]:
    found: dict[str, Node] = {}

    def walk(directory: str, prefix: str) -> None:
        with os.scandir(directory) as it:
            entries = list(it)
        for item in entries:
            rel = f"{prefix}/{item.name}" if prefix else item.name
            node = live_node(item.path)
            if node is None:
                continue
            found[rel] = node
            if node.kind == "dir":
                walk(item.path, rel)

    walk(root, "")
    return found


# -- text or binary ------------------------------------------------------------------------


def text_lines(path: str, size: int) -> list[str] | None:
    """The lines of a text file (UTF-8, no NUL in its first 8 KiB), or None for a binary one."""
    with open(path, "rb") as f:
        if size <= IN_MEMORY:
            data = f.read()
            if b"\0" in data[:PROBE]:
                return None
            try:
                return data.decode("utf-8").splitlines(keepends=True)
            except UnicodeDecodeError:
                return None
        if b"\0" in f.read(PROBE):
            return None
        f.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while block := f.read(BLOCK):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return None
    with open(path, encoding="utf-8", newline="") as text:
        return text.readlines()


def file_hash(path: str, cipher: Cipher) -> bytes:
    hasher = cipher.content_hasher()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            hasher.update(block)
    return hasher.hexdigest().encode("ascii")


# -- output --------------------------------------------------------------------------------


def colorize(lines: Iterator[str], style: str) -> Iterator[str]:
    """Red for old lines, green for new, cyan for hunk marks (and ndiff hints)."""
    second = False  # in a context diff: the new half of a hunk
    for line in lines:
        colour = ""
        if line.startswith(("---", "+++", "***")):
            if style == "context" and line.startswith("*** ") and line.rstrip().endswith("****"):
                second, colour = False, CYAN
            elif style == "context" and line.startswith("--- ") and line.rstrip().endswith("----"):
                second, colour = True, CYAN
            elif line.startswith("***************"):
                colour = CYAN
            else:
                colour = BOLD
        elif line.startswith("@@"):
            colour = CYAN
        elif line.startswith("-"):
            colour = RED
        elif line.startswith("+"):
            colour = GREEN
        elif line.startswith("!"):
            colour = GREEN if second else RED
        elif line.startswith("?"):
            colour = CYAN
        if colour:
            body = line.rstrip("\n")
            yield f"{colour}{body}{RESET}" + line[len(body) :]
        else:
            yield line


class Differ:
    """Walks the two sides in path order and writes the differences."""

    def __init__(
        self,
        ingest: Ingest,
        client: str,
        cipher: Cipher,
        old: Side,
        new: Side,
        options: Options,
        out: TextIO,
        workdir: str,
    ) -> None:
        self.ingest = ingest
        self.client = client
        self.cipher = cipher
        self.old, self.new = old, new
        self.options = options
        self.out = out
        self.fetcher = ContentFetcher(ingest, client, cipher, workdir)
        self.differences = 0
        # Output waits here, in order, until the stored contents it needs are fetched.
        self._events: list[str | tuple[str, Node, Node]] = []
        self._pending_bytes = 0

    # -- entry points

    def node(self, side: Side, path: str) -> Node:
        if side.backup is None:
            found = live_node(path)
            if found is None:
                raise DiffError(f"{path} does not exist")
            return found
        reply = self.ingest.lookup_path(
            cat.LookupPathRequest(
                client=self.client,
                set_id=side.backup.id,
                path=common.DirPath(components=[self.cipher.encrypt_name(c) for c in components_of(path)]),
            )
        )
        if not reply.found:
            raise DiffError(f"{path} is not in backup set {side.backup.name}")
        node = stored_node(reply.entry, self.cipher)
        node.dir_id = reply.entry.child_dir_id
        return node

    def compare_path(self, path: str) -> None:
        path = os.path.abspath(path)
        a, b = self.node(self.old, path), self.node(self.new, path)
        if a.kind == "dir" and b.kind == "dir":
            self.compare_dirs(path, self.tree(self.old, path, a), self.tree(self.new, path, b))
        else:
            self.compare(path, a, b)
        self.flush()

    def tree(self, side: Side, path: str, node: Node) -> dict[str, Node]:
        if side.backup is None:
            return live_tree(path)
        return stored_tree(self.ingest, self.client, self.cipher, side.backup.id, node.dir_id)

    # -- walking

    def compare_dirs(self, root: str, old: dict[str, Node], new: dict[str, Node]) -> None:
        if not self.options.recurse:
            old = {k: v for k, v in old.items() if "/" not in k}
            new = {k: v for k, v in new.items() if "/" not in k}
        skip: set[str] = set()
        for rel in sorted(old.keys() | new.keys(), key=lambda r: r.split("/")):
            parent = rel.rpartition("/")[0]
            if parent and parent in skip:
                skip.add(rel)
                continue
            path = os.path.join(root, rel)
            a, b = old.get(rel), new.get(rel)
            if a is None or b is None:
                side = self.new if a is None else self.old
                self.difference(f"Only in {os.path.dirname(path)} ({side.label}): {os.path.basename(path)}", path)
                skip.add(rel)
            elif a.kind == "dir" and b.kind == "dir":
                if not self.options.recurse:
                    self.emit(f"Common subdirectories: {self.name(path, self.old)} and {self.name(path, self.new)}")
            else:
                if "dir" in (a.kind, b.kind):
                    skip.add(rel)
                self.compare(path, a, b)

    def compare(self, path: str, a: Node, b: Node) -> None:
        if a.kind != b.kind:
            self.difference(
                f"File {self.name(path, self.old)} is {_what(a)} while file {self.name(path, self.new)} is {_what(b)}",
                path,
            )
        elif a.kind == "symlink":
            if a.link != b.link:
                self.difference(
                    f"Symbolic links {self.name(path, self.old)} -> {os.fsdecode(a.link)} and "
                    f"{self.name(path, self.new)} -> {os.fsdecode(b.link)} differ",
                    path,
                )
        elif a.kind == "file" and not self.same(a, b):
            self.differences += 1
            if self.options.names_only:
                self.emit(path)
                return
            self._events.append((path, a, b))
            self._pending_bytes += a.size + b.size
            if len(self._events) >= BATCH_FILES or self._pending_bytes >= BATCH_BYTES:
                self.flush()

    def same(self, a: Node, b: Node) -> bool:
        if a.size != b.size:
            return False
        if a.size == 0:
            return True
        ids = [n.object_id if not n.path else file_hash(n.path, self.cipher) for n in (a, b)]
        return ids[0] == ids[1]

    def name(self, path: str, side: Side) -> str:
        return f"{path} ({side.label})"

    def emit(self, line: str) -> None:
        self._events.append(line)

    def difference(self, message: str, path: str) -> None:
        self.differences += 1
        self.emit(path if self.options.names_only else message)

    # -- contents

    def flush(self) -> None:
        events, self._events, self._pending_bytes = self._events, [], 0
        wanted = [n.object_id for e in events if isinstance(e, tuple) for n in e[1:] if isinstance(n, Node)]
        for e in events:
            if isinstance(e, tuple):
                for n in (e[1], e[2]):
                    if not n.path and n.size and not n.object_id:
                        raise Corrupt(f"{e[0]}: the stored version has no content object")
        fetched = self.fetcher.fetch(wanted)
        try:
            for event in events:
                if isinstance(event, str):
                    self.out.write(event + "\n")
                else:
                    path, a, b = event
                    self.show(path, a, fetched.get(a.object_id, os.devnull), b, fetched.get(b.object_id, os.devnull))
        finally:
            for temp in fetched.values():
                os.unlink(temp)

    def show(self, path: str, a: Node, a_file: str, b: Node, b_file: str) -> None:
        a_file = a.path or a_file
        b_file = b.path or b_file
        old_name, new_name = self.name(path, self.old), self.name(path, self.new)
        old_lines, new_lines = text_lines(a_file, a.size), text_lines(b_file, b.size)
        if old_lines is None or new_lines is None:
            self.out.write(f"Binary files {old_name} and {new_name} differ\n")
            return
        o = self.options
        lines: Iterator[str]
        if o.style == "ndiff":
            lines = difflib.ndiff(old_lines, new_lines)
        else:
            make = difflib.context_diff if o.style == "context" else difflib.unified_diff
            lines = make(old_lines, new_lines, old_name, new_name, _when(a.mtime_ns), _when(b.mtime_ns), n=o.lines)
        if o.style == "ndiff":
            self.out.write(f"--- {old_name}\n+++ {new_name}\n")
        lines = _terminated(lines, marks=o.style != "ndiff")
        for line in colorize(lines, o.style) if o.color else lines:
            self.out.write(line)


def _what(node: Node) -> str:
    return {"file": "a regular file", "dir": "a directory", "symlink": "a symbolic link"}.get(
        node.kind, "a special file"
    )


def _when(mtime_ns: int) -> str:
    seconds, nanos = divmod(mtime_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) + f".{nanos:09d}"


def _terminated(lines: Iterator[str], marks: bool) -> Iterator[str]:
    """Every line ending in a newline; a last line without one is marked as diff(1) does."""
    for line in lines:
        if line.endswith("\n"):
            yield line
        else:
            yield line + "\n"
            if marks:
                yield "\\ No newline at end of file\n"


# -- the command ---------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Compare backed-up files with the live ones, or two backup sets with each other.")
    add_common_options(p)
    S = argparse.SUPPRESS
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories to compare")
    p.add_argument(
        "--backup",
        "-b",
        action="append",
        default=S,
        metavar="SET",
        help="set name, id, tag or Current; once: that set against the live files; twice: the first set "
        "against the second (default: Current against the live files)",
    )
    style = p.add_mutually_exclusive_group()
    style.add_argument(
        "--unified", "-u", dest="style", action="store_const", const="unified", help="unified diff (default)"
    )
    style.add_argument("--context", "-c", dest="style", action="store_const", const="context", help="context diff")
    style.add_argument("--ndiff", "-n", dest="style", action="store_const", const="ndiff", help="ndiff output")
    p.add_argument("--lines", "-U", type=int, default=3, metavar="N", help="lines of context (default 3)")
    p.add_argument("--recurse", "-r", action="store_true", help="compare directories recursively")
    p.add_argument("--list", "-l", dest="names_only", action="store_true", help="only the names of what differs")
    p.add_argument(
        "--color",
        "--colour",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the output (default: when stdout is a terminal)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(getattr(args, "verbosity", 0))
    return run(PROG, lambda: _guarded(args), exceptions=getattr(args, "exceptions", False))


def _guarded(args: argparse.Namespace) -> int:
    """Every failure becomes exit status 2, since 1 means "different"."""
    try:
        return _tardiff(args)
    except DiffError:
        raise
    except TardisError as exc:
        raise DiffError(str(exc)) from exc
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise DiffError(f"{where}{exc.strerror or exc}") from exc


def _tardiff(args: argparse.Namespace) -> int:
    settings, url = settings_and_url(args, drop=("paths", "backup", "style", "lines", "recurse", "names_only", "color"))
    backups: list[str] = getattr(args, "backup", [])
    if len(backups) > 2:
        raise DiffError("--backup/-b may be given at most twice")
    if args.lines < 0:
        raise DiffError("--lines must not be negative")
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    options = Options(args.style or "unified", args.lines, args.recurse, args.names_only, color)
    with open_repository(url, settings, timeout=settings.timeout) as repo:

        def side(wanted: str | None) -> Side:
            found = resolve_set(repo.ingest, repo.client, wanted, settings.recent_set)
            return Side(found.name, found)

        try:
            old = side(backups[0] if backups else None)
            new = side(backups[1]) if len(backups) == 2 else Side(LIVE, None)
        except NotFound as exc:
            raise DiffError(str(exc)) from exc
        with tempfile.TemporaryDirectory(prefix="tardiff-") as workdir:
            differ = Differ(repo.ingest, repo.client, repo.cipher, old, new, options, sys.stdout, workdir)
            for path in args.paths:
                differ.compare_path(path)
    sys.stdout.flush()
    return 1 if differ.differences else 0


if __name__ == "__main__":
    sys.exit(main())
