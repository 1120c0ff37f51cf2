"""sonic files: the entries of one backup set, from one ReadTree stream.

Paths are built from directory ids: the root is dir_id 0, a directory entry's
``child_dir_id`` is the dir_id its own entries carry, and parents come before children in
the stream. Output is sorted depth-first, names bytewise within a directory.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
from dataclasses import dataclass
from typing import Any

from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_common.argparsing import add_common_options
from tardis_common.cipher import Cipher

from .dates import format_ns
from .sonic_common import Handler, add_json, add_set_choice, chosen_set, open_repo

FILE, DIR, SYMLINK = common.ENTRY_TYPE_FILE, common.ENTRY_TYPE_DIR, common.ENTRY_TYPE_SYMLINK
TYPE_NAMES = {FILE: "file", DIR: "dir", SYMLINK: "link"}


def register(commands: Any) -> dict[str, Handler]:
    files = commands.add_parser("files", help="the files and directories of a set")
    add_common_options(files)
    add_set_choice(files, optional=True)
    files.add_argument("--long", "-l", action="store_true", help="type, mode, size and mtime of each entry")
    files.add_argument("--new", action="store_true", help="only entries whose version first appears in the set")
    add_json(files)
    return {"files": files_command}


@dataclass
class Item:
    components: tuple[bytes, ...]
    entry: common.Entry

    @property
    def path(self) -> str:
        text = "/" + "/".join(os.fsdecode(c) for c in self.components)
        return text + "/" if self.entry.type == DIR else text


def set_items(batches: Any, cipher: Cipher) -> list[Item]:
    """Every entry of the stream with its path components, in depth-first order."""
    dirs: dict[int, tuple[bytes, ...]] = {0: ()}
    items: list[Item] = []
    for batch in batches:
        for entry in batch.entries:
            parent = dirs.get(entry.dir_id)
            if parent is None:
                continue  # a directory outside the set's tree; the catalog should never send one
            components = (*parent, cipher.decrypt_name(entry.name))
            if entry.type == DIR:
                dirs[entry.child_dir_id] = components
            items.append(Item(components, entry))
    items.sort(key=lambda item: item.components)
    return items


def _mode(entry: common.Entry) -> str:
    mode = entry.mode
    if not stat.S_IFMT(mode):
        mode |= {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK}.get(entry.type, 0)
    return stat.filemode(mode)


def item_json(item: Item, cipher: Cipher) -> dict[str, Any]:
    e = item.entry
    row: dict[str, Any] = {
        "path": item.path,
        "type": TYPE_NAMES.get(e.type, "other"),
        "size": e.size,
        "mtime_ns": e.mtime_ns,
        "mode": e.mode,
        "first_set": e.first_set,
        "last_set": e.last_set,
        "object_id": e.object_id.decode("ascii", "replace") if e.object_id else None,
    }
    if e.type == SYMLINK:
        row["link_target"] = os.fsdecode(cipher.decrypt_name(e.link_target))
    return row


def files_command(args: argparse.Namespace) -> int:
    with open_repo(args) as repo:
        cipher = repo.cipher
        s = chosen_set(repo, args)
        items = set_items(repo.ingest.read_tree(cat.ReadTreeRequest(client=repo.client, set_id=s.id, dir_id=0)), cipher)
    if args.new:
        items = [i for i in items if i.entry.first_set == s.id]
    if args.json:
        print(json.dumps([item_json(i, cipher) for i in items], indent=2))
        return 0
    if not args.long:
        for item in items:
            print(item.path)
        return 0
    width = max((len(str(i.entry.size)) for i in items), default=1)
    for item in items:
        e = item.entry
        kind = TYPE_NAMES.get(e.type, "other")
        line = f"{kind:<5} {_mode(e)}  {e.size:>{width}}  {format_ns(e.mtime_ns)}  {item.path}"
        if e.type == SYMLINK:
            line += f" -> {os.fsdecode(cipher.decrypt_name(e.link_target))}"
        print(line)
    return 0
