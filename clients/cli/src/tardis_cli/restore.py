"""Restoring a set, or a path in it, into a target directory.

The tree comes as one stream of stored entries (parents before children); file contents
come as one stream of objects for many files at a time. Nothing is ever written outside
the target: names are checked to be single components, directories are created by us
and checked not to be symlinks, files are opened with O_NOFOLLOW and O_EXCL after anything
already at their name is removed.

Fidelity: names sharing (device, inode) with nlink > 1 become hard links of the first one
restored; contents are written with holes for zero blocks (sparse files stay sparse); then,
per entry and in this order, owner and group by name (numeric fallback), extended
attributes and ACLs, mode bits (after chown, which clears setuid/setgid), and times in
nanoseconds. Directories get theirs last, deepest first.

Overwrite rules (``overwrite``), for anything already at a name to restore: ``always``
replaces it, ``never`` leaves it (and reports it), ``newer`` / ``older`` replace it only when
the backed-up mtime is newer / older than the existing one's, ``ask`` asks (``ask`` callback;
without one: never). An existing directory where a directory is restored is merged into; an
existing symlink where a file or directory is restored is always replaced (never followed).
Authentication (``authenticate``): each object's content is checked against its address; a
mismatch raises Corrupt, or with ``verify_action`` keep|rename|delete is handled per file
and recorded in ``corrupt``. ``suspect`` (from the set's manifest check, manifest_store.check_set)
names the entries the sealed manifest does not vouch for, by their paths of stored (encrypted)
names: a changed or added file or symlink, or anything below an added directory, gets the
same treatment as damaged content, so a catalog row pointed at the wrong object never leaves
its bytes under the file's name unreported.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_common.cipher import Cipher
from tardis_common.errors import Corrupt, NotFound
from tardis_common.interfaces import Ingest
from tardis_common.objectformat import KIND_FULL, ObjectDecoder

from . import platform
from .chain import ChainReader
from .manifest import ADDED

log = logging.getLogger(__name__)

FETCH_FILES = 2000
FETCH_BYTES = 64 * 1024 * 1024
FETCH_STREAMS = max(1, min(4, os.cpu_count() or 1))  # concurrent ReadObjects streams per batch
COPY_BLOCK = 1024 * 1024
OVERWRITE_MODES = ("never", "always", "newer", "older", "ask")
VERIFY_ACTIONS = ("keep", "rename", "delete")
_UNVOUCHED = "does not match the sealed manifest of its backup set"
FILE, DIR, SYMLINK = common.ENTRY_TYPE_FILE, common.ENTRY_TYPE_DIR, common.ENTRY_TYPE_SYMLINK


def safe_component(raw: bytes) -> str | None:
    """A name usable as one path component, or None when it could escape the target."""
    if not raw or raw in (b".", b"..") or b"/" in raw or b"\x00" in raw:
        return None
    return os.fsdecode(raw)


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    skipped: int = 0
    hardlinks: int = 0
    not_overwritten: int = 0
    corrupt: int = 0


@dataclass
class _Pending:
    paths: list[tuple[str, common.Entry]] = field(default_factory=list)


class Restorer:
    """Restores entries of one set. ``set_times``: mtime and atime; ``set_perms``: owner,
    group and mode bits; ``set_attrs``: extended attributes; ``set_acl``: POSIX ACLs."""

    def __init__(
        self,
        ingest: Ingest,
        client: str,
        cipher: Cipher,
        set_id: int,
        *,
        set_times: bool = True,
        set_perms: bool = True,
        set_attrs: bool = True,
        set_acl: bool = True,
        overwrite: str = "always",
        ask: Callable[[str], bool] | None = None,
        authenticate: bool = True,
        verify_action: str | None = None,
        suspect: Mapping[tuple[bytes, ...], str] | None = None,
        recurse: bool = True,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.ingest = ingest
        self.client = client
        self.cipher = cipher
        self.set_id = set_id
        self.set_times = set_times
        self.set_perms = set_perms
        self.set_attrs = set_attrs
        self.set_acl = set_acl
        if overwrite not in OVERWRITE_MODES:
            raise ValueError(f"unknown overwrite mode {overwrite}")
        if verify_action is not None and verify_action not in VERIFY_ACTIONS:
            raise ValueError(f"unknown verify action {verify_action}")
        self.overwrite = overwrite
        self.ask = ask
        self.authenticate = authenticate
        self.verify_action = verify_action
        self.suspect = dict(suspect or {})  # stored path -> what the manifest check found
        self._stored_paths: dict[int, tuple[bytes, ...]] = {}  # dir id -> its stored path (if suspect)
        self._unvouched_dirs: set[int] = set()  # directories below an entry the manifest lacks
        self._unvouched: set[str] = set()  # restore paths of entries the manifest does not vouch for
        if self.suspect.get(()) == ADDED:  # the set could not be checked at all
            self._unvouched_dirs.add(0)
        self.recurse = recurse
        self.report = report or (lambda line: print(line, file=sys.stderr))
        self.corrupt: list[tuple[str, bytes]] = []  # (path as restored, object id)
        self.stats = RestoreStats()
        self._root = os.geteuid() == 0 if hasattr(os, "geteuid") else False
        umask = os.umask(0o022)
        os.umask(umask)
        self._default_mode = 0o666 & ~umask
        self._chown_failed = False
        self._owners: dict[tuple[bytes, bytes, int, int], tuple[int, int]] = {}
        self._links: dict[tuple[int, int], str] = {}  # (device, inode) -> first name restored
        self._link_later: list[tuple[str, str, common.Entry]] = []  # (path, first, entry)
        self._dirs: dict[int, str] = {}
        self._made_dirs: set[str] = set()  # directories this restore made: never replaced by a link or file
        self._skipped_dirs: set[int] = set()
        self._dir_meta: list[tuple[str, common.Entry]] = []
        self._wanted: dict[bytes, _Pending] = {}
        self._wanted_bytes = 0

    # -- entry points ----------------------------------------------------------------------

    def restore_path(self, components: list[bytes], target: str) -> None:
        """Restore the entry at ``components`` (plaintext) to ``target`` (the whole set if empty)."""
        found = self.ingest.lookup_path(
            cat.LookupPathRequest(
                client=self.client,
                set_id=self.set_id,
                path=common.DirPath(components=[self.cipher.encrypt_name(c) for c in components]),
            )
        )
        if not found.found:
            shown = "/" + "/".join(os.fsdecode(c) for c in components)
            raise NotFound(f"{shown} is not in the backup set")
        entry = found.entry
        stored = tuple(self.cipher.encrypt_name(c) for c in components) if self.suspect else ()
        below_added = any(self.suspect.get(stored[:i]) == ADDED for i in range(len(stored)))
        if not components:
            self._make_dir(target)
            self._dirs[0] = target
            if self.recurse:
                self._restore_tree(0)
        elif entry.type == DIR:
            if not self._may_replace(target, entry):
                return
            self._vouch(target, entry, stored, below_added)
            self._make_dir(target)
            self._dir_meta.append((target, entry))
            self._dirs[entry.child_dir_id] = target
            if self.recurse:
                self._restore_tree(entry.child_dir_id)
        else:
            self._make_dir(os.path.dirname(target) or ".")
            self._vouch(target, entry, stored, below_added)
            self._restore_entry(target, entry)
        self._fetch()
        self._make_links()
        self._finish_dirs()

    # -- tree ------------------------------------------------------------------------------

    def _restore_tree(self, dir_id: int) -> None:
        for batch in self.ingest.read_tree(cat.ReadTreeRequest(client=self.client, set_id=self.set_id, dir_id=dir_id)):
            for entry in batch.entries:
                if entry.dir_id in self._skipped_dirs:
                    if entry.type == DIR:
                        self._skipped_dirs.add(entry.child_dir_id)
                    continue
                parent = self._dirs.get(entry.dir_id)
                name = safe_component(self.cipher.decrypt_name(entry.name))
                if parent is None or name is None:
                    log.warning("skipping an entry with an unsafe name or unknown parent")
                    self.stats.skipped += 1
                    continue
                path = os.path.join(parent, name)
                if self.suspect:
                    self._vouch(path, entry, (*self._stored_paths.get(entry.dir_id, ()), entry.name))
                if entry.type == DIR:
                    if not self._may_replace(path, entry):
                        self._skipped_dirs.add(entry.child_dir_id)
                        continue
                    self._make_dir(path)
                    self._dirs[entry.child_dir_id] = path
                    self._dir_meta.append((path, entry))
                    self.stats.dirs += 1
                else:
                    self._restore_entry(path, entry)
            if len(self._wanted) >= FETCH_FILES or self._wanted_bytes >= FETCH_BYTES:
                self._fetch()

    def _vouch(self, path: str, entry: common.Entry, stored: tuple[bytes, ...], below_added: bool = False) -> None:
        """Note whether the manifest vouches for ``entry`` (stored path ``stored``), restored at
        ``path``: a file or symlink it does not gets the verify action once written; the
        contents of a directory it lacks are all unvouched for."""
        if not self.suspect:
            return
        what = self.suspect.get(stored)
        below_added = below_added or entry.dir_id in self._unvouched_dirs
        if entry.type == DIR:
            self._stored_paths[entry.child_dir_id] = stored
            if below_added or what == ADDED:
                self._unvouched_dirs.add(entry.child_dir_id)
        elif below_added or what is not None:
            self._unvouched.add(path)

    def _may_replace(self, path: str, entry: common.Entry) -> bool:
        """Whether ``entry`` may be restored at ``path`` under the overwrite rule (True when
        nothing is there, or a directory is there for a directory)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return True
        if entry.type == DIR and stat.S_ISDIR(st.st_mode):
            return True
        if stat.S_ISLNK(st.st_mode) and entry.type != SYMLINK:
            return True  # a symlink where a file or directory belongs is replaced, never followed
        mode = self.overwrite
        if mode == "always":
            return True
        if mode == "newer":
            allowed = entry.mtime_ns > st.st_mtime_ns
        elif mode == "older":
            allowed = entry.mtime_ns < st.st_mtime_ns
        elif mode == "ask":
            allowed = self.ask(path) if self.ask is not None else False
        else:
            allowed = False
        if not allowed:
            self.stats.not_overwritten += 1
            self.report(f"not overwritten: {path}")
        return allowed

    def _make_dir(self, path: str) -> None:
        self._made_dirs.add(path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.makedirs(path, exist_ok=True)
            return
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            os.unlink(path)
            os.mkdir(path)

    def _clear(self, path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)

    def _restore_entry(self, path: str, entry: common.Entry) -> None:
        if path in self._made_dirs:
            # A second entry of the same name as a directory restored already: only a damaged or
            # forged catalog holds one. Replacing the directory by a symlink would send the
            # directory's entries through it, outside the target.
            log.warning("skipping %s: a directory of the same name was restored already", path)
            self.stats.skipped += 1
            return
        if entry.type in (SYMLINK, FILE) and not self._may_replace(path, entry):
            return
        if entry.type == SYMLINK:
            self._clear(path)
            os.symlink(self.cipher.decrypt_name(entry.link_target), os.fsencode(path))
            if path in self._unvouched:
                self._damaged(path, entry, b"", _UNVOUCHED)
            else:
                self._apply_meta(path, entry, symlink=True)
                self.stats.symlinks += 1
        elif entry.type == FILE:
            if entry.nlink > 1:
                key = (entry.device, entry.inode)
                first = self._links.get(key)
                if first is not None:
                    self._link_later.append((path, first, entry))
                    return
                self._links[key] = path
            if not entry.object_id:
                self._write_empty(path, entry)
            else:
                pending = self._wanted.setdefault(entry.object_id, _Pending())
                if not pending.paths:
                    self._wanted_bytes += entry.size
                pending.paths.append((path, entry))
        else:
            self.stats.skipped += 1

    # -- contents --------------------------------------------------------------------------

    def _open_output(self, path: str) -> int:
        self._clear(path)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)

    def _write_empty(self, path: str, entry: common.Entry) -> None:
        os.close(self._open_output(path))
        self._finish_file(path, entry)

    def _fetch(self) -> None:
        if not self._wanted:
            return
        wanted, self._wanted, self._wanted_bytes = self._wanted, {}, 0
        self._restore_deltas(wanted)
        if not wanted:
            return
        groups = _balanced(wanted, FETCH_STREAMS)
        if len(groups) == 1:
            outcomes = self._stream_objects(groups[0], wanted)
        else:  # decoding and writing release the GIL: one stream per core keeps them all busy
            with ThreadPoolExecutor(len(groups), thread_name_prefix="restore") as pool:
                parts = list(pool.map(lambda group: self._stream_objects(group, wanted), groups))
            outcomes = [outcome for part in parts for outcome in part]
        for object_id, size, failure in outcomes:
            pending = wanted.pop(object_id)
            if size is None:
                self._lost(object_id, pending)
            elif failure is not None:
                self._corrupt_object(object_id, pending, failure)
            else:
                self._copies(pending, size)
        if wanted:
            raise Corrupt(f"{len(wanted)} objects did not arrive from the store")

    def _stream_objects(
        self, object_ids: list[bytes], wanted: Mapping[bytes, _Pending]
    ) -> list[tuple[bytes, int | None, Corrupt | None]]:
        """Read ``object_ids`` on one stream, each written to the first of its paths; returns
        per object its size (None when the store lacks it) and the check that failed, if any.
        Runs on a worker thread: it touches only its own objects' files."""
        outcomes: list[tuple[bytes, int | None, Corrupt | None]] = []
        request = bs.GetObjectsRequest(client=self.client, object_ids=object_ids)
        current: bytes | None = None
        decoder: ObjectDecoder | None = None
        writer: platform.SparseWriter | None = None
        failure: Corrupt | None = None
        try:
            for reply in self.ingest.read_objects(request):
                for piece in reply.pieces:
                    if piece.missing:
                        outcomes.append((piece.object_id, None, None))
                        continue
                    if piece.object_id != current:
                        current, failure = piece.object_id, None
                        decoder = ObjectDecoder(self.cipher, current if self.authenticate else None, kind=KIND_FULL)
                        writer = platform.SparseWriter(self._open_output(wanted[current].paths[0][0]))
                    assert decoder is not None and writer is not None
                    if failure is None:
                        try:
                            for plain in decoder.feed(piece.data):
                                writer.write(plain)
                        except Corrupt as exc:
                            failure = exc
                    if piece.last:
                        assert current is not None
                        writer.finish()
                        os.close(writer.fd)
                        writer = None
                        if failure is None:
                            try:
                                decoder.finish()
                            except Corrupt as exc:
                                failure = exc
                        outcomes.append((current, decoder.size, failure))
                        current, decoder = None, None
        finally:
            if writer is not None:
                os.close(writer.fd)
        return outcomes

    def _restore_deltas(self, wanted: dict[bytes, _Pending]) -> None:
        """Objects stored as deltas are rebuilt from their chain (chain.py), one at a time."""
        chains = ChainReader(self.ingest, self.client, self.cipher)
        for object_id, info in chains.infos(list(wanted)).items():
            if not info.basis_id:
                continue
            pending = wanted.pop(object_id)
            writer = platform.SparseWriter(self._open_output(pending.paths[0][0]))
            try:
                chains.materialize(object_id, writer)  # type: ignore[arg-type]
                writer.finish()
            except Corrupt as exc:
                os.close(writer.fd)
                self._corrupt_object(object_id, pending, exc)
                continue
            except BaseException:
                os.close(writer.fd)
                raise
            os.close(writer.fd)
            self._copies(pending, info.size)

    def _lost(self, object_id: bytes, pending: _Pending) -> None:
        """Content the store does not have (missing, or set aside as damaged): every name of it
        is reported and left out; the rest of the restore goes on."""
        shown = object_id.decode("ascii", "replace")
        for path, _entry in pending.paths:
            self._unvouched.discard(path)
            self.corrupt.append((path, object_id))
            self.stats.corrupt += 1
            self.report(f"missing: {path} (object {shown}): not in the store; not restored")

    def _corrupt_object(self, object_id: bytes, pending: _Pending, failure: Corrupt) -> None:
        """Content that failed its check: raise, or keep, rename or delete every name of it."""
        first = pending.paths[0][0]
        if self.verify_action is None:
            self._clear(first)  # never leave the wrong bytes under the file's name
            raise failure
        for index, (path, _entry) in enumerate(pending.paths):
            if index:
                self._copy(first, path)
        for path, entry in reversed(pending.paths):  # the first name last: the others copy it
            self._damaged(path, entry, object_id, str(failure))

    def _damaged(self, path: str, entry: common.Entry, object_id: bytes, reason: str) -> None:
        """A restored file or symlink that failed a check: keep, rename or delete it, reported
        (without a verify action: removed, and Corrupt raised)."""
        self._unvouched.discard(path)
        shown = object_id.decode("ascii", "replace")
        what = f"{path} (object {shown})" if shown else path
        if self.verify_action is None:
            self._clear(path)
            raise Corrupt(f"{what}: {reason}")
        self.corrupt.append((path, object_id))
        self.stats.corrupt += 1
        symlink = entry.type == SYMLINK
        if self.verify_action == "delete":
            os.unlink(path)
            self.report(f"corrupt: {what}: {reason}; deleted")
            return
        kept = path
        if self.verify_action == "rename":
            kept = f"{path}-CORRUPT-{shown[:8] or 'manifest'}"
            self._clear(kept)
            os.rename(path, kept)
            self._link_later = [(p, kept if f == path else f, e) for p, f, e in self._link_later]
        self._apply_meta(kept, entry, symlink=symlink)
        if symlink:
            self.stats.symlinks += 1
        else:
            self.stats.files += 1
        self.report(f"corrupt: {what}: {reason}; " + ("kept" if kept == path else f"renamed to {kept}"))

    def _copies(self, pending: _Pending, size: int) -> None:
        first = pending.paths[0][0]
        for path, _entry in pending.paths[1:]:
            self._copy(first, path)
        for path, entry in reversed(pending.paths):  # the first name last: it may be renamed
            self._finish_file(path, entry)
            self.stats.bytes += size

    def _copy(self, source: str, path: str) -> None:
        """A copy of the restored file ``source`` (same content, another inode), holes kept."""
        fd_in = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            writer = platform.SparseWriter(self._open_output(path))
            try:
                while chunk := os.read(fd_in, COPY_BLOCK):
                    writer.write(chunk)
                writer.finish()
            finally:
                os.close(writer.fd)
        finally:
            os.close(fd_in)

    def _make_links(self) -> None:
        """The other names of hard-linked files, once the first name of each is complete."""
        later, self._link_later = self._link_later, []
        for path, first, entry in later:
            self._clear(path)
            try:
                os.link(first, path, follow_symlinks=False)
            except OSError as exc:
                log.warning("cannot link %s to %s (%s): restoring a copy", path, first, exc.strerror)
                try:
                    self._copy(first, path)
                except OSError as copy_exc:
                    log.warning("cannot restore %s: %s", path, copy_exc.strerror)
                    self.stats.skipped += 1
                    continue
                self._finish_file(path, entry)
                continue
            self.stats.hardlinks += 1
            if path in self._unvouched:
                self._damaged(path, entry, entry.object_id, _UNVOUCHED)
            else:
                self.stats.files += 1

    def _finish_file(self, path: str, entry: common.Entry) -> None:
        """Metadata of a restored file; one the manifest does not vouch for gets the verify action."""
        if path in self._unvouched:
            self._damaged(path, entry, entry.object_id, _UNVOUCHED)
            return
        self._apply_meta(path, entry)
        self.stats.files += 1

    def _apply_meta(self, path: str, entry: common.Entry, *, symlink: bool = False) -> None:
        """Owner, extended attributes and ACLs, mode, times: in that order (chown clears
        setuid and file capabilities, setting an ACL rewrites the group bits)."""
        if self.set_perms:
            self._chown(path, entry)
        if entry.xattrs and (self.set_attrs or self.set_acl):
            platform.apply_xattrs(path, self.cipher.decrypt_name(entry.xattrs), acls=self.set_acl, attrs=self.set_attrs)
        if not symlink:
            mode = stat.S_IMODE(entry.mode) if self.set_perms else None
            if mode is None and entry.type == FILE:
                mode = self._default_mode  # files are created 0600 while being written
            if mode is not None:
                os.chmod(path, mode)
        if self.set_times:
            self._set_times(path, entry, symlink=symlink)

    def _chown(self, path: str, entry: common.Entry) -> None:
        key = (entry.user, entry.group, entry.uid, entry.gid)
        ids = self._owners.get(key)
        if ids is None:
            ids = self._owners[key] = platform.owner_ids(
                self.cipher.decrypt_name(entry.user) if entry.user else b"",
                self.cipher.decrypt_name(entry.group) if entry.group else b"",
                entry.uid,
                entry.gid,
            )
        uid, gid = ids
        try:
            os.chown(path, uid, gid, follow_symlinks=False)
        except OSError as exc:
            if self._root:
                log.warning("cannot set the owner of %s to %d:%d: %s", path, uid, gid, exc.strerror)
            elif not self._chown_failed:
                self._chown_failed = True
                log.info("cannot set owners when not running as root (first: %s): %s", path, exc.strerror)

    def _set_times(self, path: str, entry: common.Entry, symlink: bool = False) -> None:
        try:
            os.utime(path, ns=(entry.atime_ns, entry.mtime_ns), follow_symlinks=not symlink)
        except (NotImplementedError, OSError) as exc:
            log.debug("cannot set times of %s: %s", path, exc)

    def _finish_dirs(self) -> None:
        """Permissions and times of directories, deepest first, once their contents exist."""
        dirs, self._dir_meta = self._dir_meta, []
        for path, entry in sorted(dirs, key=lambda pe: pe[0].count(os.sep), reverse=True):
            self._apply_meta(path, entry)


def _balanced(wanted: Mapping[bytes, _Pending], count: int) -> list[list[bytes]]:
    """``wanted``'s object ids in at most ``count`` groups of about equal bytes (largest first)."""
    if count <= 1 or len(wanted) < 2:
        return [list(wanted)]
    groups: list[list[bytes]] = [[] for _ in range(min(count, len(wanted)))]
    loads = [0] * len(groups)
    for object_id in sorted(wanted, key=lambda i: wanted[i].paths[0][1].size, reverse=True):
        lightest = loads.index(min(loads))
        groups[lightest].append(object_id)
        loads[lightest] += wanted[object_id].paths[0][1].size + 4096
    return groups


def components_of(path: str) -> list[bytes]:
    return [os.fsencode(p) for p in os.path.abspath(path).split("/") if p]
