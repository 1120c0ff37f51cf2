"""Operating-system specific calls, behind one small module with portable fallbacks.

Only this module may use Linux-only interfaces (xattrs, ACLs, device numbers, /proc,
fadvise and the like; tests/unit/test_platform.py checks every other client module). Where
the platform lacks them (``os.listxattr`` is missing on macOS builds of Python), a portable
fallback stands in: :class:`NoXattrs` reads nothing and applies nothing, and callers never
need to know which one they got.

Extended attributes are serialised as::

    blob   = version u8 (1) | record*            (b"" when the path has none)
    record = name_len u16 | name | value_len u32 | value

integers big-endian, names as the kernel spells them (bytes, e.g. ``user.comment``), records
sorted by name so that an unchanged file always gives the same bytes. Linux exposes POSIX
ACLs as the attributes ``system.posix_acl_access`` and ``system.posix_acl_default``, so they
travel in the same blob.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import struct
from collections.abc import Iterable
from functools import lru_cache

log = logging.getLogger(__name__)

XATTR_VERSION = 1
ACL_NAMES = frozenset({b"system.posix_acl_access", b"system.posix_acl_default"})
BLOCK = 4096
_ZERO_BLOCK = bytes(BLOCK)
_NAME_LEN = struct.Struct(">H")
_VALUE_LEN = struct.Struct(">I")
_reported: set[str] = set()


def _report_once(kind: str, message: str, *args: object) -> None:
    """A warning the first time a kind of failure happens, debug lines afterwards."""
    if kind in _reported:
        log.debug(message, *args)
    else:
        _reported.add(kind)
        log.warning(message, *args)


# -- extended attributes and ACLs ------------------------------------------------------------


def encode_xattrs(attrs: dict[bytes, bytes]) -> bytes:
    """The serialised form of ``attrs`` (see the module docstring); b"" when empty."""
    if not attrs:
        return b""
    out = [bytes([XATTR_VERSION])]
    for name in sorted(attrs):
        value = attrs[name]
        out += [_NAME_LEN.pack(len(name)), name, _VALUE_LEN.pack(len(value)), value]
    return b"".join(out)


def decode_xattrs(blob: bytes) -> dict[bytes, bytes]:
    """The attributes in a blob made by :func:`encode_xattrs`; ValueError when malformed."""
    if not blob:
        return {}
    if blob[0] != XATTR_VERSION:
        raise ValueError(f"unknown extended attribute format {blob[0]}")
    attrs: dict[bytes, bytes] = {}
    pos, end = 1, len(blob)
    while pos < end:
        if pos + _NAME_LEN.size > end:
            raise ValueError("truncated extended attribute name")
        (name_len,) = _NAME_LEN.unpack_from(blob, pos)
        pos += _NAME_LEN.size
        name = blob[pos : pos + name_len]
        pos += name_len
        if len(name) != name_len or pos + _VALUE_LEN.size > end:
            raise ValueError("truncated extended attribute")
        (value_len,) = _VALUE_LEN.unpack_from(blob, pos)
        pos += _VALUE_LEN.size
        value = blob[pos : pos + value_len]
        pos += value_len
        if len(value) != value_len:
            raise ValueError("truncated extended attribute value")
        attrs[name] = value
    return attrs


class NativeXattrs:
    """Extended attributes through the os module's Linux calls (which also carry POSIX ACLs)."""

    available = True

    def names(self, path: str) -> list[str]:
        return os.listxattr(path, follow_symlinks=False)

    def value(self, path: str, name: str) -> bytes:
        return os.getxattr(path, name, follow_symlinks=False)

    def put(self, path: str, name: bytes, value: bytes) -> None:
        os.setxattr(path, name, value, follow_symlinks=False)


class NoXattrs:
    """The portable fallback (macOS builds of Python, others): nothing to read, nothing applied."""

    available = False

    def names(self, path: str) -> list[str]:
        return []

    def value(self, path: str, name: str) -> bytes:
        raise OSError(errno.ENOTSUP, "extended attributes are not supported on this platform", path)

    def put(self, path: str, name: bytes, value: bytes) -> None:
        raise OSError(errno.ENOTSUP, "extended attributes are not supported on this platform", path)


XattrBackend = NativeXattrs | NoXattrs


def native_xattrs() -> XattrBackend:
    """The backend this platform supports."""
    return NativeXattrs() if hasattr(os, "listxattr") and hasattr(os, "setxattr") else NoXattrs()


XATTRS: XattrBackend = native_xattrs()


def read_xattrs(path: str, backend: XattrBackend | None = None) -> bytes:
    """The extended attributes of ``path`` (not following symlinks), serialised; b"" if none.

    Unsupported platforms and filesystems, permission errors and attributes vanishing while
    read give what could be read (b"" at worst), never an exception."""
    backend = backend or XATTRS
    if not backend.available:
        return b""
    try:
        names = backend.names(path)
    except OSError as exc:
        log.debug("cannot list extended attributes of %s: %s", path, exc.strerror)
        return b""
    attrs: dict[bytes, bytes] = {}
    for name in names:
        try:
            attrs[os.fsencode(name)] = backend.value(path, name)
        except OSError as exc:
            log.debug("cannot read extended attribute %s of %s: %s", name, path, exc.strerror)
    return encode_xattrs(attrs)


def _kind(name: bytes) -> str:
    return "acl" if name in ACL_NAMES else name.split(b".", 1)[0].decode("ascii", "replace")


def apply_xattrs(
    path: str, blob: bytes, *, acls: bool = True, attrs: bool = True, backend: XattrBackend | None = None
) -> int:
    """Set the attributes of ``blob`` on ``path`` (not following symlinks); returns how many.

    ACL names are skipped unless ``acls``, all other names unless ``attrs``. Failures are
    not fatal: each kind (ACLs, or an attribute namespace such as ``user``) is reported once;
    a platform without extended attributes is reported once too."""
    if not blob or not (acls or attrs):
        return 0
    try:
        wanted = decode_xattrs(blob)
    except ValueError as exc:
        _report_once("format", "cannot restore extended attributes of %s: %s", path, exc)
        return 0
    backend = backend or XATTRS
    if not backend.available:
        _report_once("platform", "extended attributes and ACLs cannot be restored on this platform")
        return 0
    applied = 0
    for name, value in wanted.items():
        is_acl = name in ACL_NAMES
        if (is_acl and not acls) or (not is_acl and not attrs):
            continue
        try:
            backend.put(path, name, value)
            applied += 1
        except OSError as exc:
            kind = _kind(name)
            what = "ACLs" if kind == "acl" else f"{kind}.* extended attributes"
            _report_once(kind, "cannot restore %s (first: %s): %s", what, path, exc.strerror)
    return applied


# -- owners ----------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _uid_of(name: bytes) -> int | None:
    try:
        return pwd.getpwnam(os.fsdecode(name)).pw_uid
    except (KeyError, ValueError):
        return None


@lru_cache(maxsize=4096)
def _gid_of(name: bytes) -> int | None:
    try:
        return grp.getgrnam(os.fsdecode(name)).gr_gid
    except (KeyError, ValueError):
        return None


def owner_ids(user: bytes, group: bytes, uid: int, gid: int) -> tuple[int, int]:
    """The local (uid, gid) for an owner recorded by name, falling back to the recorded numbers."""
    by_name_uid = _uid_of(user) if user else None
    by_name_gid = _gid_of(group) if group else None
    return (uid if by_name_uid is None else by_name_uid, gid if by_name_gid is None else by_name_gid)


# -- sparse files ----------------------------------------------------------------------------


class SparseWriter:
    """Writes a file sequentially, leaving holes for runs of zeros.

    Every block of BLOCK bytes, aligned on the file offset, that is all zeros is skipped
    with lseek instead of written; :meth:`finish` sets the final size with ftruncate, so a
    file ending in zeros keeps its length. A chunk without any BLOCK zero bytes in a row is
    written in one call (a single ``bytes.find``), so normal files pay almost nothing.
    The file must be new (or empty): skipped regions are assumed to read as zeros."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.offset = 0  # logical size written so far
        self._skip = 0  # bytes to seek over before the next write

    def write(self, data: bytes) -> None:
        n = len(data)
        if not n:
            return
        i = (-self.offset) % BLOCK  # first block boundary inside data
        if i + BLOCK > n or data.find(_ZERO_BLOCK, i) < 0:
            self._emit(data)
            return
        start = 0  # start of the data not yet written
        while i + BLOCK <= n:
            found = data.find(_ZERO_BLOCK, i)
            if found < 0:
                break
            i += -(-(found - i) // BLOCK) * BLOCK  # the first block boundary at or after found
            if i + BLOCK > n:
                break
            if data[i : i + BLOCK] != _ZERO_BLOCK:
                i += BLOCK
                continue
            run = i + BLOCK
            while run + BLOCK <= n and data[run : run + BLOCK] == _ZERO_BLOCK:
                run += BLOCK
            if i > start:
                self._emit(memoryview(data)[start:i])
            self._skip += run - i
            self.offset += run - i
            start = i = run
        if start < n:
            self._emit(memoryview(data)[start:])

    def _emit(self, data: bytes | memoryview) -> None:
        if self._skip:
            os.lseek(self.fd, self._skip, os.SEEK_CUR)
            self._skip = 0
        view = memoryview(data)
        self.offset += len(view)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def finish(self) -> int:
        """Give the file its full length (a trailing hole); returns the size."""
        if self._skip:
            os.ftruncate(self.fd, self.offset)
            self._skip = 0
        return self.offset


def write_sparse(fd: int, chunks: Iterable[bytes]) -> int:
    """Write ``chunks`` to the new file ``fd`` with holes for zero blocks; returns the size."""
    writer = SparseWriter(fd)
    for chunk in chunks:
        writer.write(chunk)
    return writer.finish()
