"""lstardis: list the versions of files and directories across backup sets.

Every version of an entry is stored once, with the span of set ids it exists in
(first_set..last_set); a version is shown in each *completed* set of that span. The path
itself comes from one ``LookupPath`` (set 0: every version) and what is below it from one
``ReadTree`` stream (set 0), never a call per file.

Output (stable; docs/usage.md): one line per entry, its absolute path (directories end in
``/``, symlinks show ``-> target`` with ``--long``), then one line per version indented by
four spaces: the optional fields (inode, mode, user, group, size, mtime, object id, chain
length) then the set names (or start dates). Deletions read ``    deleted  SET``.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import os
import stat
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_common.argparsing import add_common_options, make_parser
from tardis_common.cipher import Cipher, NullCipher
from tardis_common.errors import InvalidArgument, NotFound
from tardis_common.interfaces import Ingest

from .connect import open_repository
from .restore import components_of
from .sets import list_sets
from .tool import run, settings_and_url, setup_logging

FILE, DIR, SYMLINK = common.ENTRY_TYPE_FILE, common.ENTRY_TYPE_DIR, common.ENTRY_TYPE_SYMLINK
TYPE_NAMES = {FILE: "file", DIR: "dir", SYMLINK: "link"}
INDENT = "    "
DEFAULT_COLORS = {"dir": "34", "file": "0", "link": "36", "set": "32", "deleted": "31"}
OWN_OPTIONS = (
    "paths",
    "long",
    "hidden",
    "size",
    "human",
    "checksums",
    "chainlen",
    "inode",
    "versions",
    "deletions",
    "dates",
    "range",
    "columns",
    "headers",
    "recurse",
    "maxdepth",
    "json",
    "color",
    "glob",
)


def parser() -> argparse.ArgumentParser:
    p = make_parser("lstardis", "List the versions of backed-up files and directories across backup sets.")
    add_common_options(p)
    p.add_argument("paths", nargs="*", help="paths to list (default: / , the top of the backup)")
    p.add_argument("--long", "-l", action="store_true", help="mode, owner, group, size and mtime of each version")
    p.add_argument("--hidden", "-a", action="store_true", help="show names starting with a dot")
    p.add_argument("--size", "-s", action="store_true", help="show sizes")
    p.add_argument("--human", "-H", action="store_true", help="sizes in K, M, G ...")
    p.add_argument("--checksums", "-c", action="store_true", help="show the object id of each version")
    p.add_argument("--chainlen", "-L", action="store_true", help="show the delta chain length of each version")
    p.add_argument("--inode", "-i", action="store_true", help="show inode numbers")
    p.add_argument(
        "--versions",
        choices=["none", "change", "all", "last"],
        default="change",
        help="sets shown: where each version first appears (change, default), every set holding it "
        "(all), the newest version only (last), none",
    )
    p.add_argument("--deletions", "-d", action="store_true", help="show the sets in which a path disappeared")
    p.add_argument("--dates", action="store_true", help="show set start dates instead of set names")
    p.add_argument("--range", metavar="A:B", help="only sets with ids or names from A to B (either may be omitted)")
    p.add_argument("--columns", type=int, metavar="N", help="at most N sets per line")
    p.add_argument("--headers", action="store_true", help="a header line naming the version fields")
    p.add_argument("--recurse", "-r", action="store_true", help="list everything below each directory")
    p.add_argument("--maxdepth", type=int, metavar="N", help="recurse at most N levels (implies --recurse)")
    p.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="colours from TARDIS_LS_COLORS (e.g. dir=34:file=0:link=36:set=32); auto: on a terminal",
    )
    p.add_argument("--glob", "-g", action="store_true", help="PATHS are patterns (*, ?, [...]) matched in the backup")
    p.add_argument("--json", action="store_true", help="print JSON: one object per entry listed")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(getattr(args, "verbosity", 0))
    return run("lstardis", lambda: _lstardis(args), exceptions=getattr(args, "exceptions", False))


# -- sets ------------------------------------------------------------------------------------


def _set_bound(sets: list[common.BackupSet], text: str) -> int:
    for s in sets:
        if s.name == text:
            return s.id
    if text.isdigit():
        return int(text)
    raise InvalidArgument(f"backup set {text} in --range does not exist")


def sets_in_range(sets: list[common.BackupSet], wanted: str | None) -> list[common.BackupSet]:
    """The completed sets, limited to ``A:B`` (ids or names, inclusive) when given."""
    complete = [s for s in sets if s.completed]
    if not wanted:
        return complete
    if ":" not in wanted:
        raise InvalidArgument(f"malformed --range {wanted}: expected START:END")
    start, end = wanted.split(":", 1)
    low = _set_bound(sets, start) if start else 0
    high = _set_bound(sets, end) if end else 2**32
    if low > high:
        raise InvalidArgument(f"malformed --range {wanted}: {start} comes after {end}")
    return [s for s in complete if low <= s.id <= high]


# -- the model -------------------------------------------------------------------------------


@dataclass
class Version:
    entry: common.Entry
    sets: list[common.BackupSet]  # the shown sets holding it, oldest first


@dataclass
class Node:
    path: str
    name: str
    versions: list[Version]  # only those with a shown set, oldest first
    deletions: list[common.BackupSet] = field(default_factory=list)
    child_dir: int | None = None

    @property
    def newest(self) -> common.Entry:
        return self.versions[-1].entry

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.newest.type, "other")


def make_node(path: str, name: str, entries: list[common.Entry], shown: list[common.BackupSet]) -> Node | None:
    """A node from every stored version of one path, or None when no shown set holds it."""
    versions = []
    for entry in entries:
        held = [s for s in shown if entry.first_set <= s.id <= entry.last_set]
        if held:
            versions.append(Version(entry, held))
    if not versions:
        return None
    node = Node(path, name, versions)
    dirs = [v.entry for v in versions if v.entry.type == DIR]
    if dirs:
        node.child_dir = dirs[-1].child_dir_id
    position = {s.id: i for i, s in enumerate(shown)}
    held_ids = {s.id for v in versions for s in v.sets}
    for v in versions:
        after = position[v.sets[-1].id] + 1
        if after < len(shown) and shown[after].id not in held_ids:
            node.deletions.append(shown[after])
    return node


@dataclass
class Row:
    """One version line: its fields and set labels, or a deletion."""

    fields: list[str]
    labels: list[str]
    deleted: bool = False


NUMERIC = {"Inode", "Size", "Chain"}


class Tree:
    """Every version of every entry below a directory, from one ReadTree stream."""

    def __init__(self, batches: Iterable[common.StoredEntries], cipher: Cipher) -> None:
        self.children: dict[int, dict[bytes, list[common.Entry]]] = {}
        for batch in batches:
            for entry in batch.entries:
                name = cipher.decrypt_name(entry.name)
                self.children.setdefault(entry.dir_id, {}).setdefault(name, []).append(entry)
        for names in self.children.values():
            for versions in names.values():
                versions.sort(key=lambda e: (e.first_set, e.entry_id))


# -- formatting ------------------------------------------------------------------------------


def human(size: int) -> str:
    value = float(size)
    for unit in ("", "K", "M", "G", "T", "P"):
        if value < 1024 or unit == "P":
            return f"{size}" if not unit else f"{value:.1f}{unit}"
        value /= 1024
    return str(size)  # unreachable


def _mode_text(entry: common.Entry) -> str:
    mode = entry.mode
    if not stat.S_IFMT(mode):
        mode |= {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK}.get(entry.type, 0)
    return stat.filemode(mode)


def _time_text(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9)) if ns else "-"


def parse_colors(text: str | None) -> dict[str, str]:
    colors = dict(DEFAULT_COLORS)
    for item in (text or "").split(":"):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            colors[key.strip()] = value.strip()
    return colors


class Lister:
    def __init__(
        self,
        args: argparse.Namespace,
        ingest: Ingest,
        client: str,
        shown: list[common.BackupSet],
        cipher: Cipher | None = None,
    ) -> None:
        self.args = args
        self.ingest = ingest
        self.client = client
        self.shown = shown
        self.cipher: Cipher = cipher or NullCipher()
        self.colors: dict[str, str] | None = None
        if args.color == "always" or (args.color == "auto" and sys.stdout.isatty()):
            self.colors = parse_colors(os.environ.get("TARDIS_LS_COLORS"))
        self._names: dict[bytes, str] = {}

    # -- collecting ---------------------------------------------------------------------------

    def collect(self, path: str) -> list[tuple[Node, int]]:
        """The nodes to show for one path argument, each with its depth, in listing order."""
        components = components_of(path)
        patterns: list[bytes] = []
        if self.args.glob:
            magic = next((i for i, c in enumerate(components) if glob.has_magic(c)), len(components))
            components, patterns = components[:magic], components[magic:]
        top = self._lookup(components)
        limit = self._depth_limit()
        if top.child_dir is None or (limit == 0 and not patterns):
            return [(top, 0)]
        tree = Tree(
            self.ingest.read_tree(cat.ReadTreeRequest(client=self.client, set_id=0, dir_id=top.child_dir)),
            self.cipher,
        )
        out: list[tuple[Node, int]] = []
        starts = self._expand(tree, [top], patterns) if patterns else [top]
        if not starts:
            raise NotFound(f"nothing in any backup set matches {path}")
        for start in starts:
            out.append((start, 0))
            if start.child_dir is not None and limit != 0:
                self._walk(tree, start, 1, limit, out)
        return out

    def _lookup(self, components: list[bytes]) -> Node:
        shown_path = "/" + "/".join(os.fsdecode(c) for c in components)
        found = self.ingest.lookup_path(
            cat.LookupPathRequest(
                client=self.client,
                set_id=0,
                path=common.DirPath(components=[self.cipher.encrypt_name(c) for c in components]),
            )
        )
        if not found.found:
            raise NotFound(f"{shown_path} is not in any backup set")
        if not components:
            return Node("/", "/", [Version(found.entry, [])], child_dir=0)
        top = make_node(shown_path, os.fsdecode(components[-1]), list(found.versions), self.shown)
        if top is None:
            raise NotFound(f"{shown_path} is not in any of the backup sets shown")
        return top

    def _expand(self, tree: Tree, parents: list[Node], patterns: list[bytes]) -> list[Node]:
        """The nodes matching ``patterns`` one component at a time (a leading dot matches only a dot)."""
        for depth, pattern in enumerate(patterns):
            matched = []
            for parent in parents:
                if parent.child_dir is None:
                    continue
                names = tree.children.get(parent.child_dir, {})
                base = parent.path.rstrip("/")
                for raw in sorted(names):
                    if raw.startswith(b".") and not pattern.startswith(b"."):
                        continue
                    if not fnmatch.fnmatchcase(raw, pattern):
                        continue
                    node = make_node(f"{base}/{os.fsdecode(raw)}", os.fsdecode(raw), names[raw], self.shown)
                    if node is not None and (depth == len(patterns) - 1 or node.child_dir is not None):
                        matched.append(node)
            parents = matched
        return parents

    def _depth_limit(self) -> int | None:
        if self.args.maxdepth is not None:
            return max(self.args.maxdepth, 0)
        return None if self.args.recurse else 1

    def _walk(self, tree: Tree, parent: Node, depth: int, limit: int | None, out: list[tuple[Node, int]]) -> None:
        assert parent.child_dir is not None
        names = tree.children.get(parent.child_dir, {})
        base = parent.path.rstrip("/")
        for raw in sorted(names):
            name = os.fsdecode(raw)
            if name.startswith(".") and not self.args.hidden:
                continue
            node = make_node(f"{base}/{name}", name, names[raw], self.shown)
            if node is None:
                continue
            out.append((node, depth))
            if node.child_dir is not None and (limit is None or depth < limit):
                self._walk(tree, node, depth + 1, limit, out)

    def chain_lengths(self, nodes: list[tuple[Node, int]]) -> dict[bytes, int]:
        """Delta chain lengths of every object listed, in one GetObjectInfo call."""
        if not self.args.chainlen:
            return {}
        ids = list(dict.fromkeys(v.entry.object_id for n, _ in nodes for v in n.versions if v.entry.object_id))
        if not ids:
            return {}
        reply = self.ingest.get_object_info(cat.ObjectIdsRequest(client=self.client, object_ids=ids))
        return {o.object_id: o.chain_length for o in reply.objects}

    # -- text ---------------------------------------------------------------------------------

    def _paint(self, kind: str, text: str) -> str:
        if not self.colors or not self.colors.get(kind):
            return text
        return f"\x1b[{self.colors[kind]}m{text}\x1b[0m"

    def _owner(self, blob: bytes, number: int) -> str:
        if not blob:
            return str(number)
        name = self._names.get(blob)
        if name is None:
            name = self._names[blob] = os.fsdecode(self.cipher.decrypt_name(blob))
        return name

    def _set_label(self, s: common.BackupSet) -> str:
        return _time_text(s.start_time_ns) if self.args.dates else s.name

    def _fields(self, entry: common.Entry, chains: dict[bytes, int]) -> list[str]:
        a = self.args
        fields = []
        if a.inode:
            fields.append(str(entry.inode))
        if a.long:
            fields += [_mode_text(entry), self._owner(entry.user, entry.uid), self._owner(entry.group, entry.gid)]
        if a.long or a.size:
            fields.append(human(entry.size) if a.human else str(entry.size))
        if a.long:
            fields.append(_time_text(entry.mtime_ns))
        if a.checksums:
            fields.append(entry.object_id.decode("ascii", "replace") if entry.object_id else "-")
        if a.chainlen:
            chain = chains.get(entry.object_id) if entry.object_id else None
            fields.append("-" if chain is None else str(chain))
        return fields

    def _header(self) -> list[str]:
        a = self.args
        names = []
        if a.inode:
            names.append("Inode")
        if a.long:
            names += ["Mode", "User", "Group"]
        if a.long or a.size:
            names.append("Size")
        if a.long:
            names.append("Modified")
        if a.checksums:
            names.append("Object")
        if a.chainlen:
            names.append("Chain")
        return names

    def render(self, nodes: list[tuple[Node, int]]) -> list[str]:
        chains = self.chain_lengths(nodes)
        mode = self.args.versions
        # Entry lines, and version rows whose fields are aligned over the whole listing.
        rows: list[str | Row] = []
        for node, _depth in nodes:
            rows.append(self._entry_line(node))
            if mode == "none" or not node.versions[0].sets:
                continue
            versions = node.versions[-1:] if mode == "last" else node.versions
            events: list[tuple[int, Row]] = []
            for v in versions:
                labels = [self._set_label(s) for s in (v.sets if mode == "all" else v.sets[:1])]
                events.append((v.sets[0].id, Row(self._fields(v.entry, chains), labels)))
            if self.args.deletions and mode != "last":
                for s in node.deletions:
                    events.append((s.id, Row([], [self._set_label(s)], deleted=True)))
            rows += [row for _id, row in sorted(events, key=lambda e: e[0])]
        header = self._header()
        widths = [len(h) if self.args.headers else 0 for h in header]
        for row in rows:
            if isinstance(row, Row):
                for i, f in enumerate(row.fields):
                    widths[i] = max(widths[i], len(f))
        right = [h in NUMERIC for h in header]
        lines = []
        if self.args.headers:
            cells = [h.rjust(w) if r else h.ljust(w) for h, w, r in zip(header, widths, right, strict=True)]
            lines.append(INDENT + "  ".join([*cells, "Sets"]))
        for row in rows:
            if not isinstance(row, Row):
                lines.append(row)
            elif row.deleted:
                lines.append(INDENT + self._paint("deleted", "deleted") + "  " + self._paint("set", row.labels[0]))
            else:
                cells = [f.rjust(w) if r else f.ljust(w) for f, w, r in zip(row.fields, widths, right, strict=True)]
                lines += self._set_lines(INDENT + "".join(c + "  " for c in cells), row.labels)
        return lines

    def _set_lines(self, lead: str, labels: list[str]) -> list[str]:
        per_line = self.args.columns if self.args.columns and self.args.columns > 0 else len(labels) or 1
        width = max((len(self._set_label(s)) for s in self.shown), default=0)  # columns align everywhere
        lines = []
        for start in range(0, len(labels), per_line):
            chunk = labels[start : start + per_line]
            cells = [self._paint("set", label) + " " * (width - len(label)) for label in chunk]
            prefix = lead if start == 0 else " " * (len(lead) + len(INDENT))  # a hanging indent
            lines.append((prefix + "  ".join(cells)).rstrip())
        return lines

    def _entry_line(self, node: Node) -> str:
        entry = node.newest
        kind = node.type_name
        shown = node.path if node.path == "/" or kind != "dir" else node.path + "/"
        text = self._paint(kind if kind in ("dir", "link") else "file", shown)
        if entry.type == SYMLINK and self.args.long:
            text += " -> " + os.fsdecode(self.cipher.decrypt_name(entry.link_target))
        return text

    # -- json ---------------------------------------------------------------------------------

    def as_json(self, nodes: list[tuple[Node, int]]) -> list[dict[str, Any]]:
        chains = self.chain_lengths(nodes)
        rows = []
        for node, _depth in nodes:
            versions = node.versions[-1:] if self.args.versions == "last" else node.versions
            rows.append(
                {
                    "path": node.path,
                    "name": node.name,
                    "type": node.type_name,
                    "versions": [self._json_version(v, chains) for v in versions if v.sets],
                    "deleted_in": [s.name for s in node.deletions],
                }
            )
        return rows

    def _json_version(self, v: Version, chains: dict[bytes, int]) -> dict[str, Any]:
        e = v.entry
        out: dict[str, Any] = {
            "first_set": e.first_set,
            "last_set": e.last_set,
            "sets": [s.name for s in v.sets],
            "type": TYPE_NAMES.get(e.type, "other"),
            "size": e.size,
            "mtime_ns": e.mtime_ns,
            "mode": e.mode,
            "user": self._owner(e.user, e.uid),
            "group": self._owner(e.group, e.gid),
            "inode": e.inode,
            "object_id": e.object_id.decode("ascii", "replace") if e.object_id else None,
        }
        if e.type == SYMLINK:
            out["link_target"] = os.fsdecode(self.cipher.decrypt_name(e.link_target))
        if self.args.chainlen:
            out["chain_length"] = chains.get(e.object_id) if e.object_id else None
        return out


def _lstardis(args: argparse.Namespace) -> int:
    given = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in OWN_OPTIONS})
    settings, url = settings_and_url(given)
    if args.columns is not None and args.columns < 1:
        raise InvalidArgument("--columns must be at least 1")
    paths = [os.path.abspath(p) for p in args.paths] or ["/"]
    with open_repository(url, settings, timeout=settings.timeout) as repo:
        shown = sets_in_range(list_sets(repo.ingest, repo.client), args.range)
        lister = Lister(args, repo.ingest, repo.client, shown, repo.cipher)
        listings = [lister.collect(path) for path in paths]
        if args.json:
            print(json.dumps([row for nodes in listings for row in lister.as_json(nodes)], indent=2))
            return 0
        for nodes in listings:
            for line in lister.render(nodes):
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
