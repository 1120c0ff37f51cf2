"""The FUSE operations of tardisfs (the fusepy API, through mfusepy): read-only, threaded."""

from __future__ import annotations

import errno
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import mfusepy

from tardis_common.errors import Corrupt, TardisError

from .content import Content, ContentStore
from .fastfuse import tune_connection
from .view import CURRENT, XATTR_CHAIN, XATTR_CHECKSUM, XATTR_SINCE, TreeView, fs_error

log = logging.getLogger(__name__)

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _erofs(*_args: object) -> int:
    raise fs_error(errno.EROFS)


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Tardis errors become errno values (EIO for damaged data), never a crashed mount."""

    def wrapper(*args: Any) -> Any:
        try:
            return method(*args)
        except OSError:
            raise
        except Corrupt as exc:
            log.error("%s", exc)
            raise fs_error(errno.EIO) from None
        except TardisError as exc:
            log.error("%s", exc)
            raise fs_error(errno.EIO) from None

    wrapper.__name__ = method.__name__
    return wrapper


class TardisFS(mfusepy.Operations):
    """Backup sets as directories; every call that would change something fails with EROFS."""

    use_ns = True

    def __init__(self, view: TreeView, contents: ContentStore, ready: Callable[[], None] | None = None) -> None:
        self.view = view
        self.contents = contents
        self._ready = ready
        self._handles: dict[int, Content | None] = {}
        self._next = itertools.count(1)
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    def init_with_config(self, conn: Any, config: Any) -> None:
        tune_connection(conn)
        if self._ready is not None:
            self._ready()

    def destroy(self, path: str) -> None:
        self.contents.close()

    # -- names and attributes --------------------------------------------------------------

    @_guarded
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        return self.view.resolve(path).attrs

    @_guarded
    def readlink(self, path: str) -> str:
        node = self.view.resolve(path)
        if not node.link:
            raise fs_error(errno.EINVAL)
        return os.fsdecode(node.link)

    def opendir(self, path: str) -> int:
        return 0

    @_guarded
    def readdir(self, path: str, fh: int) -> Iterator[str | tuple[str, dict[str, Any], int]]:
        # With use_ino every entry needs its inode number: readdir(3) skips entries with 0.
        here = self.view.resolve(path).attrs
        yield ".", here, 0
        yield "..", here, 0
        if path == "/":
            for name in self.view.top_names():
                try:
                    yield name, self.view.resolve("/" + name).attrs, 0
                except FileNotFoundError:
                    continue  # a set removed meanwhile
            return
        for name, node in self.view.children(path):
            yield name, node.attrs, 0

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 0, "f_bfree": 0, "f_bavail": 0, "f_namemax": 255}

    # -- extended attributes ---------------------------------------------------------------

    @_guarded
    def listxattr(self, path: str) -> list[str]:
        return self.view.xattr_names(self.view.resolve(path))

    @_guarded
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        node = self.view.resolve(path)
        value = self.view.stored_xattrs(node).get(name)
        if value is not None:
            return value
        entry = node.entry
        if entry is not None and name in self.view.xattr_names(node):
            if name == XATTR_CHECKSUM:
                return bytes(entry.object_id)
            if name == XATTR_SINCE:
                return self.view.set_name(entry.first_set).encode()
            if name == XATTR_CHAIN:
                return str(self.contents.info(entry.object_id).chain_length).encode()
        raise fs_error(mfusepy.ENOATTR or errno.ENODATA)

    # -- contents --------------------------------------------------------------------------

    @_guarded
    def open(self, path: str, flags: int) -> int:
        if flags & WRITE_FLAGS:
            raise fs_error(errno.EROFS)
        node = self.view.resolve(path)
        if node.is_dir:
            raise fs_error(errno.EISDIR)
        entry = node.entry
        content = self.contents.open(entry.object_id) if entry is not None and entry.object_id else None
        with self._lock:
            handle = next(self._next)
            self._handles[handle] = content
        return handle

    @_guarded
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._lock:
            try:
                content = self._handles[fh]
            except KeyError:
                raise fs_error(errno.EBADF) from None
        if content is None:
            return b""
        return content.read(offset, size)

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            content = self._handles.pop(fh, None)
        if content is not None:
            content.close()
        return 0

    def access(self, path: str, amode: int) -> int:
        if amode & os.W_OK:
            raise fs_error(errno.EROFS)
        return 0

    # -- everything that would change the tree ---------------------------------------------

    chmod = chown = create = link = mkdir = mknod = rename = rmdir = _erofs  # type: ignore[assignment]
    setxattr = removexattr = symlink = truncate = unlink = utimens = write = _erofs  # type: ignore[assignment]


__all__ = ["CURRENT", "TardisFS"]
