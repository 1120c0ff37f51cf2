"""What ingest answers for each entry, given its previous version.

An entry is unchanged only when inode, device, size, mtime and ctime (nanoseconds) all
equal its previous version's: never from whole seconds, never from the server's clock.
"""

from __future__ import annotations

from enum import Enum

from tardis.v1 import common_pb2 as common

FILE = common.ENTRY_TYPE_FILE

# Fields that, when all equal, let a version carry on into the new set unchanged.
_IDENTITY = ("type", "inode", "device", "size", "mtime_ns", "ctime_ns")
_METADATA = ("mode", "nlink", "uid", "gid", "user", "group", "link_target")


class Outcome(Enum):
    EXTEND = "extend"  # the previous version carries on into this set
    RECORD = "record"  # a new version, no content needed
    CONTENT = "content"  # a new version whose content the client must send


def _same(a: common.Entry, b: common.Entry, fields: tuple[str, ...]) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in fields)


def decide(entry: common.Entry, previous: common.Entry | None) -> Outcome:
    """Classify ``entry``; for RECORD of a file, ``entry.object_id`` is filled from ``previous``."""
    unchanged = previous is not None and _same(entry, previous, _IDENTITY)
    if entry.type != FILE:
        if unchanged and previous is not None and _same(entry, previous, _METADATA):
            return Outcome.EXTEND
        return Outcome.RECORD
    if entry.size == 0:
        entry.object_id = b""
        if unchanged and previous is not None and _same(entry, previous, _METADATA):
            return Outcome.EXTEND
        return Outcome.RECORD
    if unchanged and previous is not None and previous.object_id:
        if _same(entry, previous, _METADATA):
            return Outcome.EXTEND
        entry.object_id = previous.object_id
        return Outcome.RECORD
    return Outcome.CONTENT
