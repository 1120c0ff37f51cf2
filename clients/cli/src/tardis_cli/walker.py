"""Walks directory trees and turns what it finds into catalog entries.

Entries are gathered with one ``os.scandir`` per directory and grouped by directory;
names, owners and link targets pass through the client's cipher before they leave.
"""

from __future__ import annotations

import grp
import hashlib
import logging
import os
import pwd
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from tardis.v1 import common_pb2 as common

from tardis_common.cipher import Cipher

from . import platform
from .excludes import Access, Matcher, Selection, is_cache_dir, matcher, read_directory_patterns

log = logging.getLogger(__name__)

TYPES = {
    stat.S_IFREG: common.ENTRY_TYPE_FILE,
    stat.S_IFDIR: common.ENTRY_TYPE_DIR,
    stat.S_IFLNK: common.ENTRY_TYPE_SYMLINK,
}


@dataclass
class Item:
    """An entry as sent, with the local path it came from."""

    path: str
    entry: common.Entry


@dataclass
class Group:
    components: list[bytes]  # plaintext path components of the directory
    items: list[Item] = field(default_factory=list)


class VirtualDevices:
    """Maps st_dev to an id derived from the mount point, stable across reboots."""

    def __init__(self) -> None:
        self._ids: dict[int, int] = {}

    def of(self, path: str, st_dev: int) -> int:
        known = self._ids.get(st_dev)
        if known is None:
            mount = os.path.realpath(path)
            while mount != "/":
                parent = os.path.dirname(mount)
                if os.lstat(parent).st_dev != st_dev:
                    break
                mount = parent
            known = int.from_bytes(hashlib.sha256(os.fsencode(mount)).digest()[:8], "big") >> 1
            self._ids[st_dev] = known
        return known


class Owners:
    def __init__(self) -> None:
        self._users: dict[int, bytes] = {}
        self._groups: dict[int, bytes] = {}

    def user(self, uid: int) -> bytes:
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name.encode()
            except KeyError:
                self._users[uid] = b""
        return self._users[uid]

    def group(self, gid: int) -> bytes:
        if gid not in self._groups:
            try:
                self._groups[gid] = grp.getgrgid(gid).gr_name.encode()
            except KeyError:
                self._groups[gid] = b""
        return self._groups[gid]


class Walker:
    def __init__(
        self,
        cipher: Cipher,
        *,
        exclude_dirs: list[str] | None = None,
        cross_devices: bool = False,
        selection: Selection | None = None,
    ) -> None:
        self.cipher = cipher
        self.devices = VirtualDevices()
        self.owners = Owners()
        self.cross_devices = cross_devices
        self.selection = selection or Selection()
        self.access = Access()
        # (st_dev, st_ino) of directories never backed up, and why.
        self._excluded: dict[tuple[int, int], str] = {}
        for path in self.selection.exclude_dirs:
            self._exclude_dir(path, "it is excluded")
        for path in exclude_dirs or []:
            self._exclude_dir(path, "it is the repository")
        self.skipped = 0

    def _exclude_dir(self, path: str, why: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        self._excluded.setdefault((st.st_dev, st.st_ino), why)

    def entry(self, path: str, name: bytes, st: os.stat_result) -> common.Entry | None:
        kind = TYPES.get(stat.S_IFMT(st.st_mode))
        if kind is None:
            log.warning("skipping special file %s", path)
            return None
        entry = common.Entry(
            name=self.cipher.encrypt_name(name),
            type=kind,
            mode=st.st_mode,
            inode=st.st_ino,
            device=self.devices.of(path if kind == common.ENTRY_TYPE_DIR else os.path.dirname(path) or "/", st.st_dev),
            nlink=st.st_nlink,
            user=self.cipher.encrypt_name(self.owners.user(st.st_uid)),
            group=self.cipher.encrypt_name(self.owners.group(st.st_gid)),
            uid=st.st_uid,
            gid=st.st_gid,
            size=st.st_size if kind == common.ENTRY_TYPE_FILE else 0,
            mtime_ns=st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns,
            atime_ns=st.st_atime_ns,
        )
        if kind == common.ENTRY_TYPE_SYMLINK:
            entry.link_target = self.cipher.encrypt_name(os.readlink(os.fsencode(path)))
        xattrs = platform.read_xattrs(path)
        if xattrs:
            entry.xattrs = self.cipher.encrypt_name(xattrs)
        return entry

    def ancestors(self, root: str) -> Iterator[Group]:
        """One group per ancestor of ``root`` (and root itself), so restores rebuild full paths."""
        parts = [p for p in root.split("/") if p]
        for depth, name in enumerate(parts):
            path = "/" + "/".join(parts[: depth + 1])
            entry = self.entry(path, os.fsencode(name), os.lstat(path))
            if entry is not None:
                yield Group([os.fsencode(p) for p in parts[:depth]], [Item(path, entry)])

    def walk(self, root: str) -> Iterator[Group]:
        """Every directory under ``root`` (which must be a directory) that the selection keeps, depth first."""
        sel = self.selection
        root_dev = os.lstat(root).st_dev
        if sel.skip_file_name and os.path.lexists(os.path.join(root, sel.skip_file_name)):
            log.info("skipping %s: it holds %s", root, sel.skip_file_name)
            return
        stack: list[tuple[str, list[bytes], int, tuple[str, ...]]] = [
            (root, [os.fsencode(p) for p in root.split("/") if p], 1, sel.patterns)
        ]
        while stack:
            path, components, depth, inherited = stack.pop()
            group = Group(components)
            subdirs: list[tuple[str, list[bytes], int, tuple[str, ...]]] = []
            try:
                with os.scandir(path) as listing:
                    found = sorted(listing, key=lambda d: d.name)
            except OSError as exc:
                log.warning("cannot read directory %s: %s", path, exc.strerror)
                self.skipped += 1
                continue
            inherited, match = self._patterns_here(path, {d.name for d in found}, inherited)
            descend = sel.max_depth <= 0 or depth < sel.max_depth
            for dirent in found:
                try:
                    st = dirent.stat(follow_symlinks=False)
                except OSError as exc:
                    log.warning("cannot stat %s: %s", dirent.path, exc.strerror)
                    self.skipped += 1
                    continue
                is_dir = stat.S_ISDIR(st.st_mode)
                if not self._selected(dirent.path, st, is_dir, match):
                    continue
                entry = self.entry(dirent.path, os.fsencode(dirent.name), st)
                if entry is None:
                    continue
                group.items.append(Item(dirent.path, entry))
                if entry.type == common.ENTRY_TYPE_DIR and descend and (self.cross_devices or st.st_dev == root_dev):
                    subdirs.append((dirent.path, [*components, os.fsencode(dirent.name)], depth + 1, inherited))
            yield group
            stack.extend(reversed(subdirs))

    def _patterns_here(self, path: str, names: set[str], inherited: tuple[str, ...]) -> tuple[tuple[str, ...], Matcher]:
        """The patterns passed down from ``path`` and the matcher for its own entries."""
        sel = self.selection
        if sel.exclude_file_name and sel.exclude_file_name in names:
            added = read_directory_patterns(os.path.join(path, sel.exclude_file_name))
            inherited = tuple(dict.fromkeys((*inherited, *added)))
        active = inherited
        if sel.local_exclude_file_name and sel.local_exclude_file_name in names:
            added = read_directory_patterns(os.path.join(path, sel.local_exclude_file_name))
            active = tuple(dict.fromkeys((*inherited, *added)))
        return inherited, matcher(active)

    def _selected(self, path: str, st: os.stat_result, is_dir: bool, match: Matcher) -> bool:
        """Whether an entry is backed up; what is left out is logged (not counted as skipped)."""
        sel = self.selection
        if is_dir:
            why = self._excluded.get((st.st_dev, st.st_ino))
            if why is not None:
                log.info("not backing up %s: %s", path, why)
                return False
        if match.excludes(path, is_dir):
            log.debug("excluded %s", path)
            return False
        if sel.exclude_no_access and not self.access.allows(path, st):
            log.info("not backing up %s: no permission to read it", path)
            return False
        if is_dir:
            if sel.skip_file_name and os.path.lexists(os.path.join(path, sel.skip_file_name)):
                log.info("skipping %s: it holds %s", path, sel.skip_file_name)
                return False
            if sel.skip_caches and is_cache_dir(path):
                log.info("skipping %s: it is a cache directory (CACHEDIR.TAG)", path)
                return False
        return True
