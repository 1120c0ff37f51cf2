"""sonic rebuild: a new catalog for a client whose ``tardis.db`` is lost, from the ``.meta``
files beside its objects.

It runs on the repository's local path (the catalog and the object tree are read and
written directly, as the services would). It brings back the objects table (ids, sizes,
codecs, encryption, delta bases and chain lengths) and says plainly what it cannot: backup
sets, their entries, names, tags, settings and credentials exist only in the database. A
rotated copy (``tardis.db.1``, DBBackups) holds those up to its last completed set and is
the better way back when there is one; the rebuild names it.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from tardis.v1 import common_pb2 as common

from tardis_common.argparsing import add_common_options
from tardis_common.errors import AlreadyExists, InvalidArgument, NotFound

from .sonic_common import Handler, settings


def register(commands: Any) -> dict[str, Handler]:
    rebuild = commands.add_parser(
        "rebuild",
        help="rebuild a lost catalog's objects from the .meta files (local repository only)",
    )
    add_common_options(rebuild)
    return {"rebuild": rebuild_catalog}


def _read_metas(tree: Any) -> tuple[list[common.ObjectInfo], list[str]]:
    """The objects with a valid .meta matching the stored file, and the ids of those without."""
    infos: list[common.ObjectInfo] = []
    unreadable: list[str] = []
    for object_id in tree.list():
        meta = tree.read_meta(object_id)
        path = tree.path(object_id)
        try:
            stored = path.stat().st_size
            if meta is None or meta.get("object_id") != object_id.decode("ascii") or meta["stored_size"] != stored:
                raise ValueError("no matching .meta")
            infos.append(
                common.ObjectInfo(
                    object_id=object_id,
                    size=int(meta["size"]),
                    stored_size=stored,
                    compression=str(meta["compression"]),
                    encrypted=bool(meta["encrypted"]),
                    basis_id=str(meta.get("basis_id") or "").encode("ascii"),
                    chain_length=int(meta.get("chain_length", 0)),
                    has_signature=path.with_name(path.name + ".sig").is_file(),
                )
            )
        except (KeyError, TypeError, ValueError, OSError):
            unreadable.append(object_id.decode("ascii"))
    return infos, unreadable


def rebuild_catalog(args: argparse.Namespace) -> int:
    from tardis_blobstore.storage import ObjectTree
    from tardis_catalog import db
    from tardis_catalog.rebuild import rebuild_objects

    _, url = settings(args)
    if not url.is_local:
        raise InvalidArgument(
            "sonic rebuild reads the object tree directly: run it on the server host, on the client's directory"
            " (sonic rebuild --repository /path/to/BaseDir/CLIENT)"
        )
    client_dir = url.client_dir
    database = client_dir / db.DB_NAME
    if database.exists():
        raise AlreadyExists(f"client {url.client} has a catalog ({database}); rebuild only replaces a lost one")
    tree = ObjectTree(url.base_dir, url.client)
    if not tree.exists():
        raise NotFound(f"client {url.client} has no directory in {url.base_dir}")
    # A -wal left by the lost database must not be replayed into the new one.
    for suffix in ("-wal", "-shm"):
        stale = client_dir / (db.DB_NAME + suffix)
        if stale.exists():
            os.replace(stale, stale.with_name(stale.name + ".orphaned"))
    infos, unreadable = _read_metas(tree)
    rebuilt = rebuild_objects(url.base_dir, url.client, infos, time.time_ns())
    print(
        f"rebuilt the catalog of client {url.client}: {rebuilt.objects} objects"
        f" ({rebuilt.deltas} deltas) from their .meta files"
    )
    print(
        "not recoverable: backup sets and their entries (file names, versions, attributes), tags,"
        " client settings and credentials are kept only in tardis.db; run a backup to start a new set"
        " (content already stored is reused)"
    )
    if any(info.encrypted for info in infos):
        print(
            "not recoverable: this client's password and wrapped keys; insert them from a key file"
            " (sonic keys --insert --keys FILE) before using the encrypted objects"
        )
    if unreadable:
        shown = ", ".join(unreadable[:10]) + (" ..." if len(unreadable) > 10 else "")
        print(f"not recoverable: {len(unreadable)} objects without a valid .meta (left on disk, unused): {shown}")
    if rebuilt.missing_basis:
        shown = ", ".join(o.decode("ascii") for o in rebuilt.missing_basis[:10])
        print(f"not recoverable: {len(rebuilt.missing_basis)} deltas whose basis is missing (left out): {shown}")
    copies = sorted(client_dir.glob(db.DB_NAME + ".[0-9]*"))
    if copies:
        print(
            f"note: {copies[0].name} is a copy of the lost catalog (DBBackups) with its sets; to get them back,"
            f" replace {db.DB_NAME} with it (docs/operations.md, DBBackups)"
        )
    return 0
