"""mfusepy's FUSE with two speed-ups for libfuse 3, so ``ls -l`` of a large directory is fast.

- readdirplus: mfusepy hands libfuse directory entries without attributes, so the kernel
  then looks up every name again (one more call into Python per entry). Here, when the
  kernel asks for READDIRPLUS, each entry goes with its full attributes
  (``FUSE_FILL_DIR_PLUS``) and an offset (libfuse links attributes to names only in its
  offset mode), and the kernel caches them for ``entry_timeout``.
- a Python thread state kept per libfuse worker thread: a ctypes callback from a thread
  Python does not know creates and destroys one on every call, which costs more than
  most of our operations; taking one extra reference on the first call keeps it.
- symlink caching (``FUSE_CAP_CACHE_SYMLINKS``, set in ``init_with_config`` of the
  operations): paths through ``Current`` do not call ``readlink`` every time.
- readdirplus on every batch: with libfuse's default ``FUSE_CAP_READDIRPLUS_AUTO`` the kernel
  asks for attributes with the first batch of a directory only, so ``ls -l`` of a large
  directory then looks up every later name on its own (one more round trip per entry).

With libfuse 2 everything falls back to mfusepy's own behaviour.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from typing import Any

import mfusepy

FUSE_READDIR_PLUS = 1  # enum fuse_readdir_flags
FUSE_FILL_DIR_PLUS = 2  # enum fuse_fill_dir_flags
FUSE_CAP_READDIRPLUS_AUTO = 1 << 14
FUSE_CAP_CACHE_SYMLINKS = 1 << 23


_seen = threading.local()
_ensure = ctypes.pythonapi.PyGILState_Ensure
_ensure.restype = ctypes.c_int


class FastFUSE(mfusepy.FUSE):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set before mfusepy's constructor, which mounts and runs the loop until unmounted.
        self._handles = itertools.count(1)
        self._listings: dict[int, list[tuple[bytes, dict[str, Any]]]] = {}  # open directory -> its entries
        super().__init__(*args, **kwargs)

    def _wrapper(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        if not getattr(_seen, "kept", False):
            _ensure()  # never released: this thread's state outlives the callback
            _seen.kept = True
        return super()._wrapper(func, *args, **kwargs)

    def opendir(self, path: bytes, fip: Any) -> int:
        result = super().opendir(path, fip)
        fip.contents.fh = next(self._handles)  # ours: the listing of this open directory
        return int(result)

    def releasedir(self, path: bytes | None, fip: Any) -> int:
        self._listings.pop(fip.contents.fh, None)
        return int(super().releasedir(path, fip))

    def readdir_fuse_3(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any, flags: int) -> int:
        """READDIRPLUS with offsets: libfuse's high-level API hands the kernel attributes it
        can link to names only in its offset mode (without offsets the kernel then looks up
        every name again). The listing is taken once per open directory and answered from
        there batch by batch."""
        if not flags & FUSE_READDIR_PLUS:
            return int(super().readdir_fuse_3(path, buf, filler, offset, fip, flags))
        handle = fip.contents.fh
        listing = self._listings.get(handle) if offset else None
        if listing is None:
            decoded = None if path is None else path.decode(self.encoding, self.errors)
            listing = [
                (name.encode(self.encoding, self.errors), attrs)
                for name, attrs, _offset in self.operations.readdir(decoded, handle)
            ]
            self._listings[handle] = listing
        for index in range(offset, len(listing)):
            encoded, attrs = listing[index]
            st = mfusepy.c_stat()
            mfusepy.set_st_attrs(st, attrs, use_ns=True)
            plus = FUSE_FILL_DIR_PLUS if encoded not in (b".", b"..") else 0
            if filler(buf, encoded, ctypes.byref(st), index + 1, plus) != 0:
                break
        return 0


def tune_connection(conn: Any) -> None:
    """Ask the kernel to cache symlink targets, when it can (libfuse 3, kernel 4.20+), and to
    use readdirplus for every batch of a directory, not only the first."""
    if conn is None or mfusepy.fuse_version_major != 3:
        return
    if conn.capable & FUSE_CAP_CACHE_SYMLINKS:
        conn.want |= FUSE_CAP_CACHE_SYMLINKS
    conn.want &= ~FUSE_CAP_READDIRPLUS_AUTO
