"""Rebuilding a lost catalog's ``objects`` table from the blobstore's ``.meta`` records.

Only objects can come back this way: a ``.meta`` describes one object (id, sizes, codec,
encryption, basis, chain length) and nothing else. Sets, entries, names, tags, per-client
settings and credentials live only in ``tardis.db`` (and its rotated copies, DBBackups).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tardis.v1 import common_pb2 as common

from tardis_common.errors import AlreadyExists

from . import db
from .rows import to_i64


@dataclass
class Rebuilt:
    objects: int = 0
    deltas: int = 0
    missing_basis: list[bytes] = field(default_factory=list)  # deltas whose basis has no .meta: left out


def rebuild_objects(root: Path, client: str, infos: Iterable[common.ObjectInfo], created_ns: int) -> Rebuilt:
    """Create ``root/client/tardis.db`` afresh holding ``infos`` as its objects (no sets).

    A delta whose basis chain does not reach a full object among ``infos`` is left out (it
    could not be restored) and named in the result."""
    path = Path(root) / client / db.DB_NAME
    if path.exists():
        raise AlreadyExists(f"client {client} has a catalog ({path}); move it aside to rebuild")
    by_id = {info.object_id: info for info in infos}
    usable: dict[bytes, int] = {}  # object id -> chain length, for objects whose chain ends in a full one

    def chain(object_id: bytes, depth: int = 0) -> int | None:
        if object_id in usable:
            return usable[object_id]
        info = by_id.get(object_id)
        if info is None or depth > len(by_id):
            return None
        if not info.basis_id:
            usable[object_id] = 0
            return 0
        below = chain(info.basis_id, depth + 1)
        if below is None:
            return None
        usable[object_id] = below + 1
        return below + 1

    result = Rebuilt()
    for object_id in by_id:
        if chain(object_id) is None:
            result.missing_basis.append(object_id)
    db.create(path.parent, client, created_ns)
    conn = db.connect(path)
    try:
        with db.write_tx(conn, full_sync=True):
            for object_id, length in sorted(usable.items(), key=lambda item: item[1]):
                info = by_id[object_id]
                basis = None
                if info.basis_id:
                    basis = conn.execute(
                        "SELECT object_id FROM objects WHERE address = ?", (info.basis_id,)
                    ).fetchone()[0]
                    result.deltas += 1
                conn.execute(
                    "INSERT INTO objects (address, size, stored_size, compression, encrypted, basis_id, chain_length,"
                    " added_set, has_signature) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
                    (
                        object_id,
                        to_i64(info.size),
                        to_i64(info.stored_size),
                        info.compression,
                        int(info.encrypted),
                        basis,
                        length,
                        int(info.has_signature),
                    ),
                )
                result.objects += 1
    except sqlite3.Error:
        conn.close()
        path.unlink(missing_ok=True)
        raise
    conn.close()
    return result
