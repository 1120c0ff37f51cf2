"""The tree tardisfs shows: the backup sets at the top, each set's entries below, read lazily.

A directory's entries are read from the catalog when it is first looked into (one shallow
``ReadTree``), decrypted, and kept in a cache bounded by the number of entries. Attributes
are computed once per entry. The list of sets is re-read at most every ``SETS_TTL_S``.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_cli.platform import decode_xattrs, owner_ids
from tardis_cli.restore import safe_component
from tardis_common.cipher import Cipher
from tardis_common.interfaces import Ingest

log = logging.getLogger(__name__)

CURRENT = "Current"
SETS_TTL_S = 5.0
MAX_CACHED_ENTRIES = 500_000
FILE, DIR, SYMLINK = common.ENTRY_TYPE_FILE, common.ENTRY_TYPE_DIR, common.ENTRY_TYPE_SYMLINK
TYPE_BITS = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK}
XATTR_CHECKSUM, XATTR_SINCE, XATTR_CHAIN = "user.tardis_checksum", "user.tardis_since", "user.tardis_chain"


def fs_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@dataclass
class Node:
    """One name in the mount: the root, a set, the Current link, or a stored entry."""

    attrs: dict[str, Any]
    set_id: int = 0
    entry: common.Entry | None = None
    child_dir_id: int | None = None  # for directories of a set: the id their entries carry
    link: bytes = b""
    xattrs: dict[str, bytes] | None = None

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.attrs["st_mode"])


@dataclass
class _Sets:
    by_name: dict[str, common.BackupSet] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)  # every set id -> name
    current: str = ""
    read_at: float = -1e9


class TreeView:
    def __init__(self, ingest: Ingest, client: str, cipher: Cipher, *, max_entries: int = MAX_CACHED_ENTRIES) -> None:
        self.ingest = ingest
        self.client = client
        self.cipher = cipher
        self.max_entries = max_entries
        self.mounted_ns = time.time_ns()
        self.uid, self.gid = os.getuid(), os.getgid()
        self._lock = threading.Lock()
        self._sets = _Sets()
        self._set_roots: dict[int, Node] = {}
        self._listings: OrderedDict[tuple[int, int], dict[str, Node]] = OrderedDict()
        self._cached_entries = 0
        self._loading: dict[tuple[int, int], threading.Lock] = {}
        self._owners: dict[tuple[bytes, bytes, int, int], tuple[int, int]] = {}
        self._paths: dict[str, Node] = {}  # paths inside sets, resolved (a set's tree never changes)

    # -- sets ------------------------------------------------------------------------------

    def sets(self, refresh: bool = False) -> _Sets:
        with self._lock:
            known = self._sets
        if not refresh and time.monotonic() - known.read_at < SETS_TTL_S:
            return known
        listed = list(self.ingest.list_sets(cat.ClientRequest(client=self.client)).sets)
        fresh = _Sets(read_at=time.monotonic())
        for s in listed:
            fresh.names[s.id] = s.name
            if s.completed and safe_component(s.name.encode()) and s.name != CURRENT:
                fresh.by_name[s.name] = s
                fresh.current = s.name  # sets come oldest first: the last complete one is the newest
        with self._lock:
            self._sets = fresh
        return fresh

    def set_name(self, set_id: int) -> str:
        name = self.sets().names.get(set_id)
        return name if name is not None else str(set_id)

    def _synthetic_dir(self, mtime_ns: int, links: int) -> dict[str, Any]:
        return {
            "st_mode": stat.S_IFDIR | 0o555,
            "st_nlink": links,
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_size": 0,
            "st_atime": mtime_ns,
            "st_mtime": mtime_ns,
            "st_ctime": mtime_ns,
        }

    def _set_root(self, backup_set: common.BackupSet) -> Node:
        with self._lock:
            found = self._set_roots.get(backup_set.id)
        if found is not None:
            return found
        node = Node(
            self._synthetic_dir(backup_set.end_time_ns or backup_set.start_time_ns, 2),
            set_id=backup_set.id,
            child_dir_id=0,
        )
        node.attrs["st_ino"] = _mix(b"set", backup_set.id)
        with self._lock:
            self._set_roots[backup_set.id] = node
        return node

    # -- entries ---------------------------------------------------------------------------

    def _owner(self, entry: common.Entry) -> tuple[int, int]:
        key = (entry.user, entry.group, entry.uid, entry.gid)
        ids = self._owners.get(key)
        if ids is None:
            user = self.cipher.decrypt_name(entry.user) if entry.user else b""
            group = self.cipher.decrypt_name(entry.group) if entry.group else b""
            ids = self._owners[key] = owner_ids(user, group, entry.uid, entry.gid)
        return ids

    def _node(self, set_id: int, entry: common.Entry) -> Node:
        uid, gid = self._owner(entry)
        link = self.cipher.decrypt_name(entry.link_target) if entry.type == SYMLINK else b""
        size = len(link) if entry.type == SYMLINK else entry.size
        attrs = {
            "st_mode": TYPE_BITS.get(entry.type, stat.S_IFREG) | stat.S_IMODE(entry.mode),
            "st_ino": _mix(set_id.to_bytes(4, "big") + entry.device.to_bytes(8, "big"), entry.inode or entry.entry_id),
            "st_nlink": max(1, entry.nlink),
            "st_uid": uid,
            "st_gid": gid,
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_blksize": 128 * 1024,
            "st_atime": entry.atime_ns,
            "st_mtime": entry.mtime_ns,
            "st_ctime": entry.ctime_ns,
        }
        child = entry.child_dir_id if entry.type == DIR else None
        return Node(attrs, set_id=set_id, entry=entry, child_dir_id=child, link=link)

    def listing(self, set_id: int, dir_id: int) -> dict[str, Node]:
        """The entries directly in one directory of a set, by name (read once, then cached)."""
        key = (set_id, dir_id)
        with self._lock:
            found = self._listings.get(key)
            if found is not None:
                self._listings.move_to_end(key)
                return found
            loader = self._loading.setdefault(key, threading.Lock())
        with loader:  # one read per directory however many threads look into it at once
            with self._lock:
                found = self._listings.get(key)
            if found is not None:
                return found
            entries: dict[str, Node] = {}
            request = cat.ReadTreeRequest(client=self.client, set_id=set_id, dir_id=dir_id, shallow=True)
            for batch in self.ingest.read_tree(request):
                for entry in batch.entries:
                    if entry.dir_id != dir_id:
                        continue
                    name = safe_component(self.cipher.decrypt_name(entry.name))
                    if name is None:
                        log.warning("skipping an entry with an unsafe name in set %d", set_id)
                        continue
                    entries[name] = self._node(set_id, entry)
            with self._lock:
                self._listings[key] = entries
                self._cached_entries += len(entries)
                while self._cached_entries > self.max_entries and len(self._listings) > 1:
                    _key, dropped = self._listings.popitem(last=False)
                    self._cached_entries -= len(dropped)
                self._loading.pop(key, None)
            return entries

    # -- paths -----------------------------------------------------------------------------

    def root(self) -> Node:
        sets = self.sets()
        attrs = self._synthetic_dir(self.mounted_ns, 2 + len(sets.by_name))
        attrs["st_ino"] = 1
        return Node(attrs)

    def current_link(self) -> Node | None:
        sets = self.sets()
        if not sets.current:
            return None
        target = sets.current.encode()
        when = sets.by_name[sets.current].end_time_ns or self.mounted_ns
        attrs = self._synthetic_dir(when, 1)
        attrs.update(st_mode=stat.S_IFLNK | 0o777, st_size=len(target), st_ino=_mix(b"current", 0))
        return Node(attrs, link=target)

    def top_names(self) -> list[str]:
        sets = self.sets(refresh=True)
        names = list(sets.by_name)
        return [*names, CURRENT] if sets.current else names

    def resolve(self, path: str) -> Node:
        """The node at ``path`` (absolute in the mount); ENOENT or ENOTDIR when there is none."""
        parts = path.split("/", 2)  # "", set name, the rest
        if len(parts) == 3 and parts[1]:
            found = self._paths.get(path)
            if found is not None and parts[1] in self.sets().by_name:
                return found
        node = self._resolve([p for p in path.split("/") if p])
        if len(parts) == 3:
            with self._lock:
                if len(self._paths) >= self.max_entries:
                    self._paths.clear()
                self._paths[path] = node
        return node

    def _resolve(self, parts: list[str]) -> Node:
        if not parts:
            return self.root()
        sets = self.sets()
        backup_set = sets.by_name.get(parts[0])
        if backup_set is None:
            backup_set = self.sets(refresh=True).by_name.get(parts[0])
        if backup_set is None:
            if parts[0] == CURRENT and len(parts) == 1:
                link = self.current_link()
                if link is not None:
                    return link
            raise fs_error(errno.ENOENT)
        node = self._set_root(backup_set)
        for name in parts[1:]:
            if node.child_dir_id is None:
                raise fs_error(errno.ENOTDIR)
            child = self.listing(backup_set.id, node.child_dir_id).get(name)
            if child is None:
                raise fs_error(errno.ENOENT)
            node = child
        return node

    def children(self, path: str) -> list[tuple[str, Node]]:
        node = self.resolve(path)
        if node.child_dir_id is None:
            if node.is_dir:  # the mount's root
                return []
            raise fs_error(errno.ENOTDIR)
        return list(self.listing(node.set_id, node.child_dir_id).items())

    # -- extended attributes ---------------------------------------------------------------

    def stored_xattrs(self, node: Node) -> dict[str, bytes]:
        if node.xattrs is None:
            attrs: dict[str, bytes] = {}
            if node.entry is not None and node.entry.xattrs:
                try:
                    decoded = decode_xattrs(self.cipher.decrypt_name(node.entry.xattrs))
                except ValueError as exc:
                    log.warning("unreadable extended attributes: %s", exc)
                    decoded = {}
                attrs = {os.fsdecode(k): v for k, v in decoded.items()}
            node.xattrs = attrs
        return node.xattrs

    def xattr_names(self, node: Node) -> list[str]:
        names = list(self.stored_xattrs(node))
        entry = node.entry
        if entry is not None and entry.type == FILE:
            names.append(XATTR_SINCE)
            if entry.object_id:
                names += [XATTR_CHECKSUM, XATTR_CHAIN]
        return names


def _mix(prefix: bytes, number: int) -> int:
    """A 63-bit inode number for (prefix, number): the same file in two sets differs."""
    digest = hashlib.blake2b(prefix + number.to_bytes(8, "big", signed=False), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 1) or 1
