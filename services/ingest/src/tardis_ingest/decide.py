"""What ingest answers for each entry, given its previous version.

An entry is unchanged only when inode, device, size, mtime and ctime (nanoseconds) all
equal its previous version's: never from whole seconds, never from the server's clock.
A previous version read while it could still change (racily clean) is re-hashed; a file
that only moved (same size and mtime, other inode or device) is checked by hash, not
re-sent; a modified large file is sent as a delta against its previous version.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from tardis.v1 import common_pb2 as common

FILE = common.ENTRY_TYPE_FILE

# Fields that, when all equal, let a version carry on into the new set unchanged.
_IDENTITY = ("type", "inode", "device", "size", "mtime_ns", "ctime_ns")
_METADATA = ("mode", "nlink", "uid", "gid", "user", "group", "link_target", "xattrs", "flags")


class Outcome(Enum):
    EXTEND = "extend"  # the previous version carries on into this set
    VERIFIED = "verified"  # a racily clean previous version, re-hashed and unchanged: carries on, flag cleared
    RECORD = "record"  # a new version, no content needed
    CONTENT = "content"  # the client must send the content
    CHECKSUM = "checksum"  # the client must send the content's hash first
    DELTA = "delta"  # the client must send a delta against the previous version's object


@dataclass(frozen=True)
class Policy:
    """The server's settings that shape decisions (the seed's names in brackets)."""

    max_delta_chain: int = 5  # [MaxDeltaChain]
    max_change_percent: int = 50  # [MaxChangePercent]
    save_full: bool = False  # [SaveFull]: never ask for deltas
    delta_min_size: int = 64 * 1024  # smaller files are always sent whole
    checksum_min_size: int = 64 * 1024  # new files this large whose size is held offer a hash first


@dataclass(frozen=True)
class Previous:
    entry: common.Entry
    object: common.ObjectInfo | None


def _same(a: common.Entry, b: common.Entry, fields: tuple[str, ...]) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in fields)


_RACY = common.ENTRY_FLAG_RACY
_METADATA_BUT_FLAGS = tuple(f for f in _METADATA if f != "flags")


def _verified(entry: common.Entry, prev: common.Entry) -> bool:
    """``prev`` was recorded racy and ``entry`` is the same version read safely: only the racy
    flag differs (its content the caller has checked)."""
    return bool(prev.flags & _RACY) and entry.flags == prev.flags & ~_RACY and _same(entry, prev, _METADATA_BUT_FLAGS)


def _carry(entry: common.Entry, previous: common.Entry) -> Outcome:
    """The previous version's content is right for ``entry``: extend it or record metadata."""
    entry.object_id = previous.object_id
    return Outcome.EXTEND if _same(entry, previous, _METADATA) else Outcome.RECORD


def delta_basis(entry: common.Entry, previous: Previous | None, policy: Policy, full: bool) -> bytes:
    """The object a delta for ``entry`` may be based on, or b"" when a delta is not allowed."""
    if full or policy.save_full or previous is None or previous.object is None:
        return b""
    old = previous.object
    if previous.entry.type != FILE or not old.has_signature or old.chain_length >= policy.max_delta_chain:
        return b""
    if entry.size < policy.delta_min_size or old.size == 0:
        return b""
    change = abs(entry.size - old.size) * 100
    if change > old.size * policy.max_change_percent:
        return b""
    return old.object_id


def decide(
    entry: common.Entry,
    previous: Previous | None,
    *,
    size_held: bool,
    policy: Policy,
    full: bool = False,
) -> tuple[Outcome, bytes]:
    """Classify ``entry``; returns the outcome and, for DELTA, the basis object id.

    For EXTEND and RECORD of a file, ``entry.object_id`` is filled in from ``previous``.
    """
    prev = previous.entry if previous is not None else None
    unchanged = prev is not None and _same(entry, prev, _IDENTITY)
    if entry.type != FILE or entry.size == 0:
        entry.object_id = b""
        if unchanged and prev is not None and _same(entry, prev, _METADATA):
            return Outcome.EXTEND, b""
        return Outcome.RECORD, b""
    # A previous version whose object is not held (marked bad, or gone) cannot be carried on:
    # its content is sent again.
    held = previous is not None and previous.object is not None
    if prev is not None and prev.type == FILE and prev.object_id and held:
        refresh = full and previous is not None and previous.object is not None and previous.object.chain_length > 0
        if unchanged and not refresh:
            if prev.flags & common.ENTRY_FLAG_RACY:
                return Outcome.CHECKSUM, b""
            return _carry(entry, prev), b""
        if not refresh and entry.size == prev.size and entry.mtime_ns == prev.mtime_ns:
            return Outcome.CHECKSUM, b""  # moved, or only ctime/inode changed
    basis = delta_basis(entry, previous, policy, full)
    if basis:
        return Outcome.DELTA, basis
    if size_held and not full and entry.size >= policy.checksum_min_size:
        return Outcome.CHECKSUM, b""
    return Outcome.CONTENT, b""


def after_checksum(
    entry: common.Entry, previous: Previous | None, held: common.ObjectInfo | None, *, policy: Policy, full: bool
) -> tuple[Outcome, bytes]:
    """What to do once the client has told us the content's hash (``entry.object_id``)."""
    if held is not None and not (full and held.chain_length > 0):
        prev = previous.entry if previous is not None else None
        if prev is not None and prev.object_id == entry.object_id and _same(entry, prev, _IDENTITY):
            if _same(entry, prev, _METADATA):
                return Outcome.EXTEND, b""
            return (Outcome.VERIFIED if _verified(entry, prev) else Outcome.RECORD), b""
        return Outcome.RECORD, b""
    basis = delta_basis(entry, previous, policy, full)
    if basis and basis != entry.object_id:
        return Outcome.DELTA, basis
    return Outcome.CONTENT, b""
