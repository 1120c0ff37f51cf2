"""Finding a backup set by what a user types: an id, a name, or Current."""

from __future__ import annotations

from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_common.errors import NotFound
from tardis_common.interfaces import Ingest

RECENT = "Current"


def list_sets(ingest: Ingest, client: str) -> list[common.BackupSet]:
    return list(ingest.list_sets(cat.ClientRequest(client=client)).sets)


def resolve_set(ingest: Ingest, client: str, wanted: str | None, recent_name: str = RECENT) -> common.BackupSet:
    sets = list_sets(ingest, client)
    complete = [s for s in sets if s.completed]
    if not wanted or wanted == recent_name:
        if not complete:
            raise NotFound(f"client {client} has no complete backup set")
        return complete[-1]
    for s in sets:
        if s.name == wanted:
            return s
    for s in sets:
        if wanted in s.tags:
            return s
    if wanted.isdigit():
        for s in sets:
            if s.id == int(wanted):
                return s
    raise NotFound(f"backup set {wanted} does not exist")
