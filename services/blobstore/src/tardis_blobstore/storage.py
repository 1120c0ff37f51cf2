"""The on-disk object tree of one client: ``<root>/<client>/ab/cd/<id>`` plus ``<id>.meta``.

Incoming data is written under ``<root>/<client>/tmp/`` and renamed into place, so a reader
never sees a partial object. Nothing here calls fsync: ``sync()`` makes everything written
so far durable in one flush, and the caller decides when (once per put stream).

The public methods (begin/commit/abort, open, stat, delete, list, sync) are the whole
interface the core uses, so another backend (S3, say) can stand in for this class.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import itertools
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from tardis_common.errors import InvalidArgument
from tardis_common.faults import fault_point
from tardis_common.names import check_client_name

log = logging.getLogger(__name__)

META_FORMAT = 1
_COUNTER = itertools.count()
_OBJECT_ID = re.compile(rb"[0-9a-f]{16,128}")
_FAN_DIR = re.compile(r"[0-9a-f]{2}")
# Committing one object is link, then .meta: a second writer of the same id that ran between
# the two would take the missing .meta for a crashed writer's and replace the object. Commits
# of one id are serialised within the process (one blobstore process owns a tree).
_COMMIT_LOCKS = tuple(threading.Lock() for _ in range(64))


def _commit_lock(object_id: str) -> threading.Lock:
    return _COMMIT_LOCKS[int(object_id[:4], 16) % len(_COMMIT_LOCKS)]


def check_object_id(object_id: bytes) -> str:
    """The id as text if it is 16..128 lowercase hex characters, else InvalidArgument."""
    if not isinstance(object_id, bytes) or not _OBJECT_ID.fullmatch(object_id):
        shown = object_id[:40] if isinstance(object_id, bytes) else object_id
        raise InvalidArgument(f"invalid object id {shown!r}: expected 16 to 128 lowercase hex characters")
    return object_id.decode("ascii")


@dataclass(frozen=True)
class ObjectMeta:
    """What the ``.meta`` file beside an object records."""

    object_id: str
    size: int
    stored_size: int
    compression: str
    encrypted: bool
    basis_id: str
    chain_length: int

    def to_json(self) -> str:
        return json.dumps({"format": META_FORMAT, **asdict(self)}, sort_keys=True, separators=(",", ":"))


class _Syncer:
    """syncfs(2) through ctypes where the C library has it, else os.sync()."""

    def __init__(self) -> None:
        self._syncfs = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            self._syncfs = libc.syncfs
            self._syncfs.argtypes = [ctypes.c_int]
            self._syncfs.restype = ctypes.c_int
        except (OSError, AttributeError):
            self._syncfs = None

    def sync(self, directory: Path) -> None:
        if self._syncfs is not None:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if self._syncfs(fd) == 0:
                    return
                err = ctypes.get_errno()
                if err not in (errno.ENOSYS, errno.EINVAL):  # a write-back error: the batch is not durable
                    raise OSError(err, f"syncfs: {os.strerror(err)}", str(directory))
                log.warning("syncfs(%s) failed: %s; falling back to sync()", directory, os.strerror(err))
            finally:
                os.close(fd)
        os.sync()


_SYNCER = _Syncer()


class ObjectTree:
    """The objects of one client under ``<root>/<client>/``."""

    def __init__(self, root: Path, client: str, known_dirs: set[Path] | None = None) -> None:
        self.client = check_client_name(client)
        self.dir = Path(root) / client
        self.tmp = self.dir / "tmp"
        # Directories known to exist: creating ab/cd/ once, not once per object, matters
        # when a batch holds thousands of small objects.
        self._known = known_dirs if known_dirs is not None else set()

    def _ensure_dir(self, path: Path) -> None:
        if path not in self._known:
            path.mkdir(parents=True, exist_ok=True)
            self._known.add(path)

    def _temp(self, suffix: str) -> tuple[int, str]:
        """A new file in tmp/ named by process, thread and a counter (cheaper than mkstemp)."""
        self._ensure_dir(self.tmp)
        while True:
            name = str(self.tmp / f"{os.getpid()}-{threading.get_ident()}-{next(_COUNTER)}{suffix}")
            try:
                return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640), name
            except FileExistsError:
                continue
            except FileNotFoundError:  # tmp/ was removed behind our back
                self._known.discard(self.tmp)
                self._ensure_dir(self.tmp)

    def exists(self) -> bool:
        return self.dir.is_dir()

    def stored_bytes(self) -> int:
        """Bytes of every stored object and signature (not .meta, tmp/ or quarantine/)."""
        total = 0
        if not self.dir.is_dir():
            return 0
        for first in os.scandir(self.dir):
            if not (first.is_dir(follow_symlinks=False) and _FAN_DIR.fullmatch(first.name)):
                continue
            for second in os.scandir(first.path):
                if not (second.is_dir(follow_symlinks=False) and _FAN_DIR.fullmatch(second.name)):
                    continue
                for item in os.scandir(second.path):
                    if not item.name.endswith(".meta") and item.is_file(follow_symlinks=False):
                        total += item.stat(follow_symlinks=False).st_size
        return total

    def path(self, object_id: bytes) -> Path:
        """Where the object lives: ``ab/cd/<id>`` (validates the id)."""
        text = check_object_id(object_id)
        return self.dir / text[:2] / text[2:4] / text

    # -- writing ---------------------------------------------------------------------------

    def begin(self) -> BinaryIO:
        """A new temporary file for incoming data; its ``name`` is its path."""
        fd, name = self._temp(".part")
        return open(name, "wb", opener=lambda _path, _flags: fd)  # the caller closes it

    def abort(self, temp: BinaryIO) -> None:
        """Close and remove a temporary file."""
        temp.close()
        Path(temp.name).unlink(missing_ok=True)

    def commit(self, temp: BinaryIO, meta: ObjectMeta) -> bool:
        """Move ``temp`` into place as ``meta.object_id`` and write its .meta.

        Returns True when stored, False when the object already existed (``temp`` is then
        discarded). A full object replaces a stored delta of the same content (full wins:
        it needs no basis; the catalog applies the same rule). Not durable until ``sync()``.
        """
        temp.close()
        with _commit_lock(meta.object_id):
            return self._commit_locked(Path(temp.name), meta)

    def _commit_locked(self, temp: Path, meta: ObjectMeta) -> bool:
        final = self.path(meta.object_id.encode("ascii"))
        meta_path = final.with_name(final.name + ".meta")
        self._ensure_dir(final.parent)
        try:
            stored = _link(temp, final)
        except FileNotFoundError:  # the directory was removed behind our back
            self._known.discard(final.parent)
            self._ensure_dir(final.parent)
            stored = _link(temp, final)
        fault_point("blobstore.after-link")  # in place, without its .meta
        existing = None if stored else self.read_meta(meta.object_id.encode("ascii"))
        # A full object also replaces one without a valid .meta (its writer died between link
        # and .meta, or before the flush): a full copy is right for its id whatever was there.
        if not stored and not meta.basis_id and (existing is None or existing.get("basis_id")):
            os.replace(temp, final)
            self._write_meta(meta_path, meta)
            return True
        temp.unlink(missing_ok=True)
        if stored or existing is None:
            self._write_meta(meta_path, meta)
            fault_point("blobstore.after-meta")
        return stored

    def holds(self, meta: ObjectMeta) -> bool:
        """Whether a commit of ``meta``'s object would keep what is stored: the object exists
        with a valid .meta, and is not a delta where a full copy arrives (full wins)."""
        object_id = meta.object_id.encode("ascii")
        existing = self.read_meta(object_id)
        if existing is None or (existing.get("basis_id") and not meta.basis_id):
            return False
        return self.stat(object_id) >= 0

    def commit_signature(self, temp: BinaryIO, object_id: bytes) -> None:
        """Move ``temp`` into place as the object's ``.sig`` (replacing an older one)."""
        temp.close()
        final = self.path(object_id)
        self._ensure_dir(final.parent)
        os.replace(temp.name, final.with_name(final.name + ".sig"))

    def _write_meta(self, meta_path: Path, meta: ObjectMeta) -> None:
        """Written in place (one create, not create + rename: it is on the hot path). A .meta
        torn by a crash is not valid JSON; ``read_meta`` then reports it missing and the next
        store of the object, or a rebuild from the object's own header, replaces it."""
        data = (meta.to_json() + "\n").encode("utf-8")
        fd = os.open(meta_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            view = memoryview(data)  # a few hundred bytes: os.write, no file object
            while view:
                view = view[os.write(fd, view) :]  # a short write is followed by ENOSPC, if any
        finally:
            os.close(fd)

    def sync(self) -> None:
        """Make every file and directory written so far durable (one flush)."""
        _SYNCER.sync(self.dir)

    # -- reading ---------------------------------------------------------------------------

    def open(self, object_id: bytes, signature: bool = False) -> BinaryIO | None:
        """The object (or its ``.sig``) opened for reading, or None when it does not exist."""
        path = self.path(object_id)
        if signature:
            path = path.with_name(path.name + ".sig")
        try:
            return path.open("rb")
        except (FileNotFoundError, NotADirectoryError):
            return None

    def stat(self, object_id: bytes) -> int:
        """The stored size of the object, or -1 when it does not exist."""
        try:
            return self.path(object_id).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return -1

    def read_meta(self, object_id: bytes) -> dict[str, object] | None:
        path = self.path(object_id)
        try:
            return json.loads(path.with_name(path.name + ".meta").read_text(encoding="utf-8"))  # type: ignore[no-any-return]
        except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: torn by a crash
            return None

    def delete(self, object_id: bytes) -> bool:
        """Remove the object with its .meta and .sig; True if the object existed."""
        path = self.path(object_id)
        fault_point("blobstore.mid-delete")
        for suffix in (".meta", ".sig"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def quarantine(self, object_id: bytes) -> bool:
        """Move the object with its .meta and .sig to ``quarantine/`` (a damaged object kept for
        inspection), freeing its name for a fresh copy; True if the object existed."""
        path = self.path(object_id)
        if not path.is_file():
            return self.delete(object_id)
        aside = self.dir / "quarantine"
        aside.mkdir(exist_ok=True)
        for suffix in (".meta", ".sig", ""):
            source = path.with_name(path.name + suffix)
            if source.exists():
                os.replace(source, aside / source.name)
        return True

    def list(self) -> Iterator[bytes]:
        """Every stored object id, in no particular order."""
        if not self.exists():
            return
        for top in os.scandir(self.dir):
            if not (top.is_dir(follow_symlinks=False) and _FAN_DIR.fullmatch(top.name)):
                continue
            for mid in os.scandir(top.path):
                if not (mid.is_dir(follow_symlinks=False) and _FAN_DIR.fullmatch(mid.name)):
                    continue
                for entry in os.scandir(mid.path):
                    name = entry.name.encode("ascii", "replace")
                    if _OBJECT_ID.fullmatch(name) and entry.is_file(follow_symlinks=False):
                        yield name


def _link(temp: Path, final: Path) -> bool:
    """Give ``temp``'s file the name ``final`` unless ``final`` exists; True if it was placed.

    ``temp`` keeps its name either way (the caller removes it). A hard link refuses to
    replace an existing name, so two streams storing the same object at once store it once;
    filesystems without hard links fall back to a copy under a checked name.
    """
    try:
        os.link(temp, final)
    except FileExistsError:
        return False
    except OSError:
        if final.exists():
            return False
        shutil.copyfile(temp, final)
    return True
