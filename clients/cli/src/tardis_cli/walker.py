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
    def __init__(self, cipher: Cipher, *, exclude_dirs: list[str] | None = None, cross_devices: bool = False) -> None:
        self.cipher = cipher
        self.devices = VirtualDevices()
        self.owners = Owners()
        self.cross_devices = cross_devices
        self._excluded: set[tuple[int, int]] = set()
        for path in exclude_dirs or []:
            try:
                st = os.stat(path)
            except OSError:
                continue
            self._excluded.add((st.st_dev, st.st_ino))
        self.skipped = 0

    def entry(self, path: str, name: bytes, st: os.stat_result) -> common.Entry | None:
        kind = TYPES.get(stat.S_IFMT(st.st_mode))
        if kind is None:
            log.info("skipping special file %s", path)
            self.skipped += 1
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
        """Every directory under ``root`` (which must be a directory), depth first."""
        root_dev = os.lstat(root).st_dev
        stack: list[tuple[str, list[bytes]]] = [(root, [os.fsencode(p) for p in root.split("/") if p])]
        while stack:
            path, components = stack.pop()
            group = Group(components)
            subdirs: list[tuple[str, list[bytes]]] = []
            try:
                with os.scandir(path) as listing:
                    found = sorted(listing, key=lambda d: d.name)
            except OSError as exc:
                log.warning("cannot read directory %s: %s", path, exc.strerror)
                self.skipped += 1
                continue
            for dirent in found:
                try:
                    st = dirent.stat(follow_symlinks=False)
                except OSError as exc:
                    log.warning("cannot stat %s: %s", dirent.path, exc.strerror)
                    self.skipped += 1
                    continue
                if stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) in self._excluded:
                    log.info("not backing up %s: it is the repository", dirent.path)
                    continue
                entry = self.entry(dirent.path, os.fsencode(dirent.name), st)
                if entry is None:
                    continue
                group.items.append(Item(dirent.path, entry))
                if entry.type == common.ENTRY_TYPE_DIR and (self.cross_devices or st.st_dev == root_dev):
                    subdirs.append((dirent.path, [*components, os.fsencode(dirent.name)]))
            yield group
            stack.extend(reversed(subdirs))
