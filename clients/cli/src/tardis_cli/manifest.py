"""The authenticated manifest of a completed backup set: a MAC tree over its directories.

Pure code, no I/O (``manifest_store`` reads and writes it). Everything is keyed with the
manifest key (``KeySet.manifest_key``, derived from the content key), so a server that
alters the catalog (an entry's name, object, size, mode, times, owner, link target or
extended attributes; an entry added, removed or moved) is caught, and named, at restore or
``sonic verify``. Directories are keyed by their path of encrypted name components, never by
the catalog's ids (the server assigns those and may lie about them).

Storage format, version 1 (all integers big-endian; ``blob(x)`` = u32 length | x):

    entry digest = HMAC-SHA256(key, "ent1" | blob(name) | type u32 | mode u32 | uid u32
                   | gid u32 | blob(user) | blob(group) | size u64 | mtime_ns i64
                   | blob(object_id) | blob(link_target) | blob(xattrs) | blob(dir_mac))
                   name, user, group and link target as stored (encrypted); dir_mac is the
                   MAC of the entry's own listing for a directory, empty for anything else
    dir MAC      = HMAC-SHA256(key, "dir" | the directory's entry digests, sorted by
                   (encrypted name, digest))

    manifest  = header | dir_count x directory | seal
    header    = "TDMF" | version u8 (1) | client_len u16 | client (UTF-8) | set_id u32
                | root MAC (32) | dir_count u32
    directory = parent u32 (index of the parent directory record; 0xFFFFFFFF for the root)
                | name_len u16 | name (encrypted component; empty for the root)
                | dir MAC (32) | entry_count u32 | entries_len u32
                | entry_count x (name_len u16 | name | entry digest truncated to 16 bytes)
    seal      = HMAC-SHA256(key, "TDMF-seal" | every byte before the seal)

Directory records come in path order (component-wise byte order), so the root is record 0
and every parent precedes its children; entries within a record are sorted by name. The
manifest is deterministic: the same tree and key always give the same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tardis.v1 import common_pb2 as common

from tardis_common.errors import Corrupt

MAGIC = b"TDMF"
VERSION = 1
DIGEST_BYTES = 32
SHORT_DIGEST = 16
NO_PARENT = 0xFFFFFFFF
_ENTRY_TAG = b"ent1"
_DIR_TAG = b"dir"
_SEAL_TAG = b"TDMF-seal"
_HEAD = struct.Struct(">4sBH")
_SET = struct.Struct(">I32sI")
_DIR_HEAD = struct.Struct(">IH")
_DIR_BODY = struct.Struct(">32sII")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_INTS = struct.Struct(">IIII")
_SIZE_TIME = struct.Struct(">Qq")

Path = tuple[bytes, ...]

CHANGED = "changed"
MISSING = "missing from the catalog"
ADDED = "not in the manifest"


@dataclass(frozen=True)
class Problem:
    path: Path  # encrypted components of the affected entry (or directory)
    what: str  # CHANGED, MISSING or ADDED


def _blob(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


_EMPTY_BLOB = b"\0\0\0\0"


def _entry_fields(entry: common.Entry) -> bytes:
    """The canonical encoding of an entry's covered fields, all but its directory's MAC."""
    return b"".join(
        (
            _ENTRY_TAG,
            _blob(entry.name),
            _INTS.pack(entry.type, entry.mode, entry.uid, entry.gid),
            _blob(entry.user),
            _blob(entry.group),
            _SIZE_TIME.pack(entry.size, entry.mtime_ns),
            _blob(entry.object_id),
            _blob(entry.link_target),
            _blob(entry.xattrs),
        )
    )


def entry_digest(key: bytes, entry: common.Entry, dir_mac: bytes = b"") -> bytes:
    """The entry's 32-byte digest; ``dir_mac`` is the MAC of a directory's own listing."""
    return hmac.new(key, _entry_fields(entry) + _blob(dir_mac), hashlib.sha256).digest()


def directory_mac(key: bytes, listing: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The MAC of a directory from its (encrypted name, full digest) pairs, in any order."""
    mac = hmac.new(key, _DIR_TAG, hashlib.sha256)
    for _, digest in sorted(listing):
        mac.update(digest)
    return mac.digest()


def _is_dir(entry: common.Entry) -> bool:
    return entry.type == common.ENTRY_TYPE_DIR


def _groups(batches: Iterable[common.StoredEntries]) -> Iterator[tuple[int, list[common.Entry]]]:
    """(dir_id, entries) per run of consecutive entries of one catalog directory."""
    current: int | None = None
    group: list[common.Entry] = []
    for batch in batches:
        for entry in batch.entries:
            if entry.dir_id != current:
                if current is not None:
                    yield current, group
                current, group = entry.dir_id, []
            group.append(entry)
    if current is not None:
        yield current, group


# -- building -------------------------------------------------------------------------------


@dataclass
class _Listing:
    """One catalog directory, compactly: file digests now, directories until their MAC is known."""

    files: bytearray  # per entry: name_len u16 | name | digest (32)
    dirs: list[tuple[bytes, hmac.HMAC, int]]  # (name, HMAC fed all but the dir MAC, child dir id)


def _collect(key: bytes, batches: Iterable[common.StoredEntries]) -> dict[int, _Listing]:
    listings: dict[int, _Listing] = {}
    for dir_id, entries in _groups(batches):
        listing = listings.setdefault(dir_id, _Listing(bytearray(), []))
        for entry in entries:
            fields = _entry_fields(entry)
            if _is_dir(entry):
                listing.dirs.append((entry.name, hmac.new(key, fields, hashlib.sha256), entry.child_dir_id))
            else:
                digest = hmac.digest(key, fields + _EMPTY_BLOB, "sha256")  # one-shot: 3x cheaper
                listing.files += _U16.pack(len(entry.name)) + entry.name + digest
    return listings


def _unpack_files(packed: bytearray) -> Iterator[tuple[bytes, bytes]]:
    view = memoryview(packed)
    at = 0
    while at < len(view):
        (length,) = _U16.unpack_from(view, at)
        at += 2
        name = bytes(view[at : at + length])
        at += length
        yield name, bytes(view[at : at + DIGEST_BYTES])
        at += DIGEST_BYTES


@dataclass
class _Record:
    parent: int
    name: bytes
    mac: bytes = b""
    body: bytes = b""
    count: int = 0


@dataclass
class _Frame:
    record: int
    pending: list[tuple[bytes, hmac.HMAC, int]]  # child directories still to visit, last first
    done: list[tuple[bytes, bytes]]  # (name, full digest) of the finished entries
    child: tuple[bytes, hmac.HMAC] | None = None  # the directory entry being visited


def _show(path: Path) -> str:
    """A path of (usually encrypted) components for a one-line message, escaped."""
    return "/" + "/".join(ascii(c.decode("utf-8", "replace"))[1:-1] for c in path)


def _build_records(key: bytes, listings: dict[int, _Listing]) -> list[_Record]:
    """Directory records in path order, with their MACs, walking the tree from the root."""
    records: list[_Record] = []
    visited: set[int] = set()
    stack: list[_Frame] = []
    paths: list[Path] = []

    def enter(dir_id: int, parent: int, name: bytes) -> None:
        path = (*paths[parent], name) if parent != NO_PARENT else ()
        if dir_id in visited and dir_id != -1:
            raise Corrupt(f"the catalog lists directory {_show(path)} twice or in a loop")
        if dir_id != -1:
            visited.add(dir_id)
        listing = listings.pop(dir_id, None) or _Listing(bytearray(), [])
        done = list(_unpack_files(listing.files))
        names = [n for n, _ in done] + [n for n, _, _ in listing.dirs]
        if len(set(names)) != len(names):
            raise Corrupt(f"the catalog lists a name twice in directory {_show(path)}")
        records.append(_Record(parent, name))
        paths.append(path)
        stack.append(_Frame(len(records) - 1, sorted(listing.dirs, key=lambda d: d[0], reverse=True), done))

    enter(0, NO_PARENT, b"")
    while stack:
        frame = stack[-1]
        if frame.pending:
            name, partial, child_id = frame.pending.pop()
            frame.child = (name, partial)
            # A directory entry without a listing id gets an empty listing (-1 is never an id).
            enter(child_id if child_id else -1, frame.record, name)
            continue
        stack.pop()
        listing = sorted(frame.done)
        mac = directory_mac(key, listing)
        record = records[frame.record]
        record.mac, record.count = mac, len(listing)
        record.body = b"".join(_U16.pack(len(n)) + n + d[:SHORT_DIGEST] for n, d in listing)
        if stack:
            parent = stack[-1]
            assert parent.child is not None
            name, partial = parent.child
            partial.update(_blob(mac))
            parent.done.append((name, partial.digest()))
            parent.child = None
    return records


def build_manifest(key: bytes, client: str, set_id: int, batches: Iterable[common.StoredEntries]) -> bytes:
    """The manifest plaintext of a set from its ReadTree(set_id, dir_id=0) stream."""
    records = _build_records(key, _collect(key, batches))
    encoded_client = client.encode("utf-8")
    parts = [
        _HEAD.pack(MAGIC, VERSION, len(encoded_client)),
        encoded_client,
        _SET.pack(set_id, records[0].mac, len(records)),
    ]
    for record in records:
        parts.append(_DIR_HEAD.pack(record.parent, len(record.name)) + record.name)
        parts.append(_DIR_BODY.pack(record.mac, record.count, len(record.body)))
        parts.append(record.body)
    body = b"".join(parts)
    return body + hmac.new(key, _SEAL_TAG + body, hashlib.sha256).digest()


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestDir:
    mac: bytes
    count: int
    start: int  # offset of the entries in the manifest
    length: int


class Manifest:
    """A parsed manifest: directory records by path; entry lists decoded on demand."""

    def __init__(
        self,
        data: bytes,
        client: str,
        set_id: int,
        root_mac: bytes,
        dirs: dict[Path, ManifestDir],
        label: str,
    ) -> None:
        self.label = label  # how messages name the set: "set 7", "backup set Daily-2024-05-01"
        self.data = data
        self.client = client
        self.set_id = set_id
        self.root_mac = root_mac
        self.dirs = dirs
        self._authentic: bytes | None = None

    @classmethod
    def parse(cls, data: bytes, client: str, set_id: int, *, label: str = "") -> Manifest:
        """Check the header and structure; a manifest of another client or set is refused.

        ``label`` names the set in messages (default "set <set_id>")."""
        label = label or f"set {set_id}"
        try:
            return cls._parse(data, client, set_id, label)
        except (struct.error, UnicodeDecodeError, IndexError):
            raise Corrupt(f"the manifest of {label} is truncated or malformed") from None

    @classmethod
    def _parse(cls, data: bytes, client: str, set_id: int, label: str) -> Manifest:
        magic, version, client_len = _HEAD.unpack_from(data, 0)
        if magic != MAGIC:
            raise Corrupt(f"the manifest of {label} is not a Tardis manifest (bad magic)")
        if version != VERSION:
            raise Corrupt(f"the manifest of {label} has unsupported version {version}")
        at = _HEAD.size
        found_client = data[at : at + client_len].decode("utf-8")
        at += client_len
        found_set, root_mac, count = _SET.unpack_from(data, at)
        at += _SET.size
        if found_client != client or found_set != set_id:
            raise Corrupt(
                f"the manifest of {label} of client {client} belongs to set {found_set} of client "
                f"{found_client} (swapped manifest)"
            )
        end = len(data) - DIGEST_BYTES
        paths: list[Path] = []
        dirs: dict[Path, ManifestDir] = {}
        for index in range(count):
            parent, name_len = _DIR_HEAD.unpack_from(data, at)
            at += _DIR_HEAD.size
            name = data[at : at + name_len]
            at += name_len
            mac, entries, length = _DIR_BODY.unpack_from(data, at)
            at += _DIR_BODY.size
            if index == 0:
                if parent != NO_PARENT or name or mac != root_mac:
                    raise Corrupt(f"the manifest of {label} has a bad root record")
                path: Path = ()
            elif parent >= index:
                raise Corrupt(f"the manifest of {label} has a directory before its parent")
            else:
                path = (*paths[parent], name)
            if path in dirs or at + length > end:
                raise Corrupt(f"the manifest of {label} is truncated or malformed")
            paths.append(path)
            dirs[path] = ManifestDir(mac, entries, at, length)
            at += length
        if at != end or count == 0:
            raise Corrupt(f"the manifest of {label} is truncated or malformed")
        return cls(data, client, set_id, root_mac, dirs, label)

    def authenticate(self, key: bytes) -> None:
        """Check the seal with the manifest key (once per key)."""
        if self._authentic == key:
            return
        body, seal = self.data[:-DIGEST_BYTES], self.data[-DIGEST_BYTES:]
        if not hmac.compare_digest(hmac.new(key, _SEAL_TAG + body, hashlib.sha256).digest(), seal):
            raise Corrupt(f"the manifest of {self.label} does not authenticate (forged, or another key)")
        self._authentic = key

    def entries(self, path: Path) -> dict[bytes, bytes] | None:
        """Name -> truncated digest of the directory at ``path``; None if the manifest has none."""
        record = self.dirs.get(path)
        if record is None:
            return None
        out: dict[bytes, bytes] = {}
        data, at, stop = self.data, record.start, record.start + record.length
        for _ in range(record.count):
            (length,) = _U16.unpack_from(data, at)
            at += 2
            name = data[at : at + length]
            at += length
            out[name] = data[at : at + SHORT_DIGEST]
            at += SHORT_DIGEST
        if at != stop or len(out) != record.count:
            raise Corrupt(f"the manifest of {self.label} has a malformed directory record")
        return out


# -- verifying ------------------------------------------------------------------------------


def verify_directory(key: bytes, manifest: Manifest, path: Path, entries: Iterable[common.Entry]) -> list[Problem]:
    """Problems of one directory listing against the manifest.

    A subdirectory's entry is checked with the MAC the manifest records for its listing, so
    a change inside it is named where it happened (when that listing is verified), not at
    every ancestor.
    """
    manifest.authenticate(key)
    expected = manifest.entries(path)
    if expected is None:
        return [Problem(path, ADDED)]
    problems: list[Problem] = []
    seen: dict[bytes, bytes] = {}
    for entry in entries:
        dir_mac = b""
        if _is_dir(entry):
            child = manifest.dirs.get((*path, entry.name))
            dir_mac = child.mac if child is not None else b""
        digest = entry_digest(key, entry, dir_mac)
        if entry.name in seen:
            problems.append(Problem((*path, entry.name), ADDED))  # listed twice by the catalog
            continue
        seen[entry.name] = digest
        recorded = expected.get(entry.name)
        if recorded is None:
            problems.append(Problem((*path, entry.name), ADDED))
        elif not hmac.compare_digest(recorded, digest[:SHORT_DIGEST]):
            problems.append(Problem((*path, entry.name), CHANGED))
    problems.extend(Problem((*path, name), MISSING) for name in expected if name not in seen)
    if not problems and directory_mac(key, seen.items()) != manifest.dirs[path].mac:
        problems.append(Problem(path, CHANGED))
    return sorted(problems, key=lambda p: p.path)


def verify_tree(key: bytes, manifest: Manifest, batches: Iterable[common.StoredEntries]) -> list[Problem]:
    """Problems of a whole set (its ReadTree(set_id, dir_id=0) stream) against the manifest.

    Every directory reachable from the root is checked; below an entry that is not in the
    manifest (or missing from the catalog) nothing more is named.
    """
    manifest.authenticate(key)
    problems: list[Problem] = []
    paths: dict[int, Path] = {0: ()}
    checked: set[int] = set()
    waiting: dict[int, list[common.Entry]] = {}  # listings that arrived before their parent

    def check(dir_id: int, entries: list[common.Entry]) -> None:
        if dir_id in checked:
            raise Corrupt(f"the catalog lists directory {_show(paths[dir_id])} twice")
        checked.add(dir_id)
        path = paths[dir_id]
        found = verify_directory(key, manifest, path, entries)
        problems.extend(found)
        bad = {p.path for p in found if p.what == ADDED}
        for entry in entries:
            child = (*path, entry.name)
            if not _is_dir(entry) or child in bad:
                continue
            if not entry.child_dir_id:
                problems.extend(verify_directory(key, manifest, child, []))  # no listing: an empty one
                continue
            if entry.child_dir_id in paths:
                raise Corrupt(f"the catalog lists directory {_show(child)} twice or in a loop")
            paths[entry.child_dir_id] = child
            if entry.child_dir_id in waiting:
                check(entry.child_dir_id, waiting.pop(entry.child_dir_id))

    for dir_id, entries in _groups(batches):
        if dir_id in paths:
            check(dir_id, entries)
        else:
            waiting.setdefault(dir_id, []).extend(entries)
    for dir_id in list(paths):
        if dir_id not in checked:  # a directory whose listing the catalog never sent: empty
            check(dir_id, [])
    return sorted(problems, key=lambda p: p.path)
