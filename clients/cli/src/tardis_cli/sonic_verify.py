"""sonic verify: the catalog checked against the object tree; with --deep, every object read.

Plain: every object the catalog holds must exist in the blobstore with the stored size the
catalog recorded (one StatObjects call per thousand objects). Deep: every object is read
and decoded, and its content checked against its address (deltas rebuilt from their chain).
For an encrypted client, every complete set is also checked against its sealed manifest, so
rows the server added, removed or altered are named. After the object problems, every file
version that needs a damaged, missing or bad object (its own, or the basis of its delta) is
named with its path and the sets it spans (FindEntries), names decrypted for display.
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
from .manifest_store import show_path, verify_set
from .sets import list_sets
from .sonic_common import Handler, open_repo


def _show(object_id: bytes) -> str:
    return object_id.decode("ascii", "replace")


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
    verify.add_argument(
        "--repair",
        action="store_true",
        help="mark damaged and missing objects bad (their files set aside in quarantine/), so the next"
        " backup stores their content again",
    )
    return {"verify": verify_objects}


def _read_all(repo: Any, chains: ChainReader, infos: list[Any], damaged: list[bytes], failed: set[bytes]) -> list[str]:
    """Decode every object: full ones on one stream per batch, deltas through their chain.

    The ids of objects that fail are added to ``damaged``; a delta whose basis failed is
    reported as unreadable but not damaged (marking its basis bad covers it)."""
    problems: list[str] = []
    full = [i.object_id for i in infos if not i.basis_id]
    decoders: dict[bytes, ObjectDecoder] = {}
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
                damaged.append(piece.object_id)
                problems.append(f"damaged: {exc}")
    for info in infos:
        if info.basis_id in failed:
            failed.add(info.object_id)
            problems.append(f"unreadable: {_show(info.object_id)}: its basis {_show(info.basis_id)} is damaged")
        elif info.basis_id:
            try:
                chains.materialize(info.object_id, _Sink())  # type: ignore[arg-type]
            except Corrupt as exc:
                failed.add(info.object_id)
                damaged.append(info.object_id)
                problems.append(f"damaged: {exc}")
    return problems


def _mark_bad(repo: Any, damaged: list[bytes]) -> str:
    """Mark damaged objects bad on the server, so the next backup stores their content again."""
    ids = list(dict.fromkeys(damaged))
    if not ids:
        return ""
    reply = repo.ingest.mark_objects_bad(cat.ObjectIdsRequest(client=repo.client, object_ids=ids))
    also = f" and {len(reply.dependents)} deltas built on them" if reply.dependents else ""
    return (
        f"marked {len(reply.marked)} objects bad{also}; the next backup stores their content again"
        " where the files still exist"
    )


def _affected(repo: Any, lost: list[bytes]) -> list[str]:
    """One line per file version that needs one of the ``lost`` objects, sorted by path."""
    ids = list(dict.fromkeys(lost))
    if not ids:
        return []
    names = {s.id: s.name for s in list_sets(repo.ingest, repo.client)}
    found: dict[int, tuple[str, int, str]] = {}
    for reply in repo.ingest.find_entries(cat.ObjectIdsRequest(client=repo.client, object_ids=ids)):
        for hit in reply.found:
            entry = hit.entry
            path = show_path(repo.cipher, (*hit.dir.components, entry.name))
            first = names.get(entry.first_set, f"#{entry.first_set}")
            last = names.get(entry.last_set, f"#{entry.last_set}")
            sets = f"set {first}" if entry.first_set == entry.last_set else f"sets {first}..{last}"
            line = f"affected: {path} ({sets}) object {_show(entry.object_id)}"
            if hit.named_id != entry.object_id:
                line += f" (a delta on damaged {_show(hit.named_id)})"
            found.setdefault(entry.entry_id, (path, entry.first_set, line))
    return [line for _, _, line in sorted(found.values())]


def verify_objects(args: argparse.Namespace) -> int:
    problems: list[str] = []
    damaged: list[bytes] = []
    lost: list[bytes] = []  # damaged, missing or marked bad earlier: what file versions can need
    failed: set[bytes] = set()
    checked = 0
    with open_repo(args) as repo:
        chains = ChainReader(repo.ingest, repo.client, repo.cipher)
        for batch in repo.ingest.list_objects(cat.ClientRequest(client=repo.client)):
            for info in batch.objects:
                if info.bad:
                    checked += 1
                    failed.add(info.object_id)
                    lost.append(info.object_id)
                    problems.append(
                        f"bad: {info.object_id.decode('ascii', 'replace')} (marked earlier; not yet stored again)"
                    )
            good = [o for o in batch.objects if not o.bad]
            ids = [o.object_id for o in good]
            sizes = (
                repo.ingest.stat_objects(bs.StatObjectsRequest(client=repo.client, object_ids=ids)).stored_sizes
                if ids
                else []
            )
            present: list[cat.ObjectInfoReply] = []
            for info, size in zip(good, sizes, strict=True):
                checked += 1
                name = info.object_id.decode("ascii", "replace")
                if size < 0:
                    damaged.append(info.object_id)
                    failed.add(info.object_id)
                    problems.append(f"missing: {name}")
                elif size != info.stored_size:
                    damaged.append(info.object_id)
                    failed.add(info.object_id)
                    problems.append(f"wrong size: {name} ({size} bytes stored, {info.stored_size} expected)")
                else:
                    present.append(info)
            if args.deep:
                problems += _read_all(repo, chains, present, damaged, failed)
        sealed = 0
        keys = repo.unlocked.keys if repo.unlocked is not None else None
        if keys is not None:
            for backup_set in list_sets(repo.ingest, repo.client):
                if backup_set.completed:
                    sealed += 1
                    problems += verify_set(repo.ingest, repo.client, repo.cipher, keys.manifest_key, backup_set)
        affected = _affected(repo, lost + damaged)
        marked_note = _mark_bad(repo, damaged) if args.repair else ""
        if damaged and not args.repair:
            marked_note = "run sonic verify --repair to mark them bad, so the next backup stores their content again"
    for problem in problems:
        print(problem)
    for line in affected:
        print(line)
    if affected:
        print(f"{len(affected)} file versions affected")
    if marked_note:
        print(marked_note)
    kind = "read and checked" if args.deep else "checked"
    against = f", {sealed} sets checked against their manifests" if sealed else ""
    print(f"{checked} objects {kind}{against}, {len(problems)} problems")
    return 1 if problems else 0
