"""mfusepy's FUSE with two speed-ups for libfuse 3, so ``ls -l`` of a large directory is fast.

- readdirplus: mfusepy hands libfuse directory entries without attributes, so the kernel
  then looks up every name again (one more call into Python per entry). Here, when the
  kernel asks for READDIRPLUS, each entry goes with its full attributes
  (``FUSE_FILL_DIR_PLUS``) and the kernel caches them for ``entry_timeout``.
- a Python thread state kept per libfuse worker thread: a ctypes callback from a thread
  Python does not know creates and destroys one on every call, which costs more than
  most of our operations; taking one extra reference on the first call keeps it.
- symlink caching (``FUSE_CAP_CACHE_SYMLINKS``, set in ``init_with_config`` of the
  operations): paths through ``Current`` do not call ``readlink`` every time.

With libfuse 2 everything falls back to mfusepy's own behaviour.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import mfusepy

FUSE_READDIR_PLUS = 1  # enum fuse_readdir_flags
FUSE_FILL_DIR_PLUS = 2  # enum fuse_fill_dir_flags
FUSE_CAP_CACHE_SYMLINKS = 1 << 23


_seen = threading.local()
_ensure = ctypes.pythonapi.PyGILState_Ensure
_ensure.restype = ctypes.c_int


class FastFUSE(mfusepy.FUSE):
    def _wrapper(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        if not getattr(_seen, "kept", False):
            _ensure()  # never released: this thread's state outlives the callback
            _seen.kept = True
        return super()._wrapper(func, *args, **kwargs)

    def readdir_fuse_3(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any, flags: int) -> int:
        if not flags & FUSE_READDIR_PLUS:
            return super().readdir_fuse_3(path, buf, filler, offset, fip, flags)
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        for name, attrs, _offset in self.operations.readdir(decoded, fip.contents.fh):
            st = mfusepy.c_stat()
            mfusepy.set_st_attrs(st, attrs, use_ns=True)
            encoded = name.encode(self.encoding, self.errors)
            plus = FUSE_FILL_DIR_PLUS if name not in (".", "..") else 0
            if filler(buf, encoded, ctypes.byref(st), 0, plus) != 0:
                break
        return 0


def want_symlink_cache(conn: Any) -> None:
    """Ask the kernel to cache symlink targets, when it can (libfuse 3, kernel 4.20+)."""
    if conn is not None and mfusepy.fuse_version_major == 3 and conn.capable & FUSE_CAP_CACHE_SYMLINKS:
        conn.want |= FUSE_CAP_CACHE_SYMLINKS
