"""sonic verify: the catalog checked against the object tree; with --deep, every object read.

Plain: every object the catalog holds must exist in the blobstore with the stored size the
catalog recorded (one StatObjects call per thousand objects). Deep: every object is read
and decoded, and its content checked against its address (deltas rebuilt from their chain).
For an encrypted client, every complete set is also checked against its sealed manifest, so
rows the server added, removed or altered are named.
"""

from __future__ import annotations

import argparse
import io
from typing import Any

from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import catalog_pb2 as cat

from tardis_common.argparsing import add_common_options
from tardis_common.errors import Corrupt
from tardis_common.objectformat import KIND_FULL, ObjectDecoder

from .chain import ChainReader
from .manifest_store import verify_set
from .sets import list_sets
from .sonic_common import Handler, open_repo


class _Sink(io.RawIOBase):
    """Discards what is written to it (deep verification needs the check, not the bytes)."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


def register(commands: Any) -> dict[str, Handler]:
    verify = commands.add_parser("verify", help="check the catalog against the stored objects")
    add_common_options(verify)
    verify.add_argument("--deep", action="store_true", help="read every object and check it against its address")
    return {"verify": verify_objects}


def _read_all(repo: Any, chains: ChainReader, infos: list[Any]) -> list[str]:
    """Decode every object: full ones on one stream per batch, deltas through their chain."""
    problems: list[str] = []
    full = [i.object_id for i in infos if not i.basis_id]
    decoders: dict[bytes, ObjectDecoder] = {}
    failed: set[bytes] = set()
    request = bs.GetObjectsRequest(client=repo.client, object_ids=full)
    for reply in repo.ingest.read_objects(request) if full else ():
        for piece in reply.pieces:
            if piece.object_id in failed:
                continue
            decoder = decoders.setdefault(piece.object_id, ObjectDecoder(repo.cipher, piece.object_id, kind=KIND_FULL))
            try:
                if piece.missing:
                    raise Corrupt(f"object {piece.object_id.decode('ascii', 'replace')} vanished while verified")
                decoder.feed(piece.data)
                if piece.last:
                    decoder.finish()
            except Corrupt as exc:
                failed.add(piece.object_id)
                problems.append(f"damaged: {exc}")
    for info in infos:
        if info.basis_id:
            try:
                chains.materialize(info.object_id, _Sink())  # type: ignore[arg-type]
            except Corrupt as exc:
                problems.append(f"damaged: {exc}")
    return problems


def verify_objects(args: argparse.Namespace) -> int:
    problems: list[str] = []
    checked = 0
    with open_repo(args) as repo:
        chains = ChainReader(repo.ingest, repo.client, repo.cipher)
        for batch in repo.ingest.list_objects(cat.ClientRequest(client=repo.client)):
            ids = [o.object_id for o in batch.objects]
            sizes = repo.ingest.stat_objects(bs.StatObjectsRequest(client=repo.client, object_ids=ids)).stored_sizes
            present: list[cat.ObjectInfoReply] = []
            for info, size in zip(batch.objects, sizes, strict=True):
                checked += 1
                name = info.object_id.decode("ascii", "replace")
                if size < 0:
                    problems.append(f"missing: {name}")
                elif size != info.stored_size:
                    problems.append(f"wrong size: {name} ({size} bytes stored, {info.stored_size} expected)")
                else:
                    present.append(info)
            if args.deep:
                problems += _read_all(repo, chains, present)
        sealed = 0
        keys = repo.unlocked.keys if repo.unlocked is not None else None
        if keys is not None:
            for backup_set in list_sets(repo.ingest, repo.client):
                if backup_set.completed:
                    sealed += 1
                    problems += verify_set(repo.ingest, repo.client, repo.cipher, keys.manifest_key, backup_set)
    for problem in problems:
        print(problem)
    kind = "read and checked" if args.deep else "checked"
    against = f", {sealed} sets checked against their manifests" if sealed else ""
    print(f"{checked} objects {kind}{against}, {len(problems)} problems")
    return 1 if problems else 0
