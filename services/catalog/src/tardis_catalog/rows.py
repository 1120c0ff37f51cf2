"""Conversions between catalog rows and tardis.v1 messages."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from tardis.v1 import common_pb2 as common

T = TypeVar("T")

_2_63 = 1 << 63
_2_64 = 1 << 64

# Every column an Entry needs, in the order entry_from_row reads them.
ENTRY_SELECT = """
SELECT e.entry_id, e.dir_id, n.name, e.first_set, e.last_set, e.type, e.mode, e.inode, e.device,
       e.nlink, e.uid, e.gid, u.name, g.name, e.size, e.mtime_ns, e.ctime_ns, e.atime_ns,
       o.address, e.link_target, e.child_dir_id, e.xattrs, e.flags
FROM entries e
JOIN names n ON n.name_id = e.name_id
LEFT JOIN names u ON u.name_id = e.user_id
LEFT JOIN names g ON g.name_id = e.group_id
LEFT JOIN objects o ON o.object_id = e.object_id
"""

SET_SELECT = """
SELECT set_id, name, session, completed, priority, locked, start_ns, end_ns, client_time_ns,
       client_version, server_version, files_full, files_delta, bytes_received, manifest, command_line
FROM sets
"""

OBJECT_SELECT = """
SELECT o.address, o.size, o.stored_size, o.compression, o.encrypted, b.address, o.chain_length,
       o.has_signature
FROM objects o LEFT JOIN objects b ON b.object_id = o.basis_id
"""
OBJECT_SELECT_WITH_BAD = OBJECT_SELECT.replace("o.has_signature", "o.has_signature, o.bad")


def to_i64(value: int) -> int:
    """A uint64 as the signed 64-bit integer SQLite can store."""
    return value - _2_64 if value >= _2_63 else value


def to_u64(value: int) -> int:
    """The inverse of to_i64."""
    return value + _2_64 if value < 0 else value


def entry_from_row(row: Sequence[Any]) -> common.Entry:
    return common.Entry(
        entry_id=row[0],
        dir_id=row[1],
        name=row[2],
        first_set=row[3],
        last_set=row[4],
        type=row[5],
        mode=row[6],
        inode=to_u64(row[7]),
        device=to_u64(row[8]),
        nlink=row[9],
        uid=row[10],
        gid=row[11],
        user=row[12] or b"",
        group=row[13] or b"",
        size=to_u64(row[14]),
        mtime_ns=row[15],
        ctime_ns=row[16],
        atime_ns=row[17],
        object_id=row[18] or b"",
        link_target=row[19] or b"",
        child_dir_id=row[20] or 0,
        xattrs=row[21] or b"",
        flags=row[22],
    )


def set_from_row(row: Sequence[Any]) -> common.BackupSet:
    return common.BackupSet(
        id=row[0],
        name=row[1],
        session=row[2] or "",
        completed=bool(row[3]),
        priority=row[4],
        locked=bool(row[5]),
        start_time_ns=row[6],
        end_time_ns=row[7],
        client_time_ns=row[8],
        client_version=row[9] or "",
        server_version=row[10] or "",
        files_full=to_u64(row[11]),
        files_delta=to_u64(row[12]),
        bytes_received=to_u64(row[13]),
        manifest_id=bytes(row[14] or b""),
        command_line=row[15] or "",
    )


def object_from_row(row: Sequence[Any]) -> common.ObjectInfo:
    return common.ObjectInfo(
        object_id=row[0],
        size=to_u64(row[1]),
        stored_size=to_u64(row[2]),
        compression=row[3],
        encrypted=bool(row[4]),
        basis_id=row[5] or b"",
        chain_length=row[6],
        has_signature=bool(row[7]),
        bad=len(row) > 8 and bool(row[8]),
    )


def show_id(address: bytes) -> str:
    """An object address for a message: its text when it is printable ASCII, else hex."""
    if address and all(0x21 <= b < 0x7F for b in address):
        return address.decode("ascii")
    return address.hex()


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def marks(count: int) -> str:
    """``?, ?, ...`` for an IN list of ``count`` parameters."""
    return ", ".join("?" * count)
