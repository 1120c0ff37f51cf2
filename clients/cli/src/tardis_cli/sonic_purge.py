"""sonic purge, delete and orphans: removing backup sets and the objects only they needed."""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import sys
import time
from typing import Any

from tardis.v1 import catalog_pb2 as cat

from tardis_common.argparsing import add_common_options
from tardis_common.errors import Conflict, InvalidArgument
from tardis_common.interfaces import Ingest

from .backup_run import ended_run_on_this_host
from .dates import date_arg
from .progress import human
from .sets import list_sets, resolve_set
from .sonic_common import Handler, open_repo

log = logging.getLogger(__name__)
HOUR_NS = 3600 * 1_000_000_000
_RANGE = re.compile(r"^(\d+)-(\d+)$")


def register(commands: Any) -> dict[str, Handler]:
    purge = commands.add_parser("purge", help="remove old sets by priority and age (and their orphaned data)")
    add_common_options(purge)
    purge.add_argument("--priority", type=int, default=0, help="purge sets of this priority or lower (default 0)")
    when = purge.add_mutually_exclusive_group()
    when.add_argument("--keep-days", type=float, metavar="DAYS", help="keep sets newer than this many days")
    when.add_argument("--keep-hours", type=float, metavar="HOURS", help="keep sets newer than this many hours")
    when.add_argument("--before", type=date_arg, metavar="DATE", help="purge sets that ended before DATE")
    purge.add_argument("--incomplete", action="store_true", help="purge abandoned incomplete sets instead")
    purge.add_argument("--confirm", action="store_true", help="do not ask on a terminal")
    delete = commands.add_parser("delete", help="delete sets by name, id or id range (e.g. 3-7)")
    add_common_options(delete)
    delete.add_argument("sets", nargs="+", metavar="SET", help="a set name, id, tag, or an id range A-B")
    delete.add_argument("--confirm", action="store_true", help="do not ask on a terminal")
    orphans = commands.add_parser("orphans", help="remove stored data no set needs any more")
    add_common_options(orphans)
    return {"purge": purge_sets, "delete": delete_sets, "orphans": remove_orphans}


def cutoff_ns(args: argparse.Namespace, now_ns: int) -> int:
    if args.before is not None:
        return int(args.before)  # date_arg gives nanoseconds
    if args.keep_hours is not None:
        return now_ns - int(args.keep_hours * HOUR_NS)
    if args.keep_days is not None:
        return now_ns - int(args.keep_days * 24 * HOUR_NS)
    return now_ns


def confirmed(question: str, args: argparse.Namespace) -> bool:
    """Destructive commands ask on a terminal unless --confirm; without a terminal they go ahead."""
    if getattr(args, "confirm", False) or not sys.stdin.isatty():
        return True
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _report(reply: cat.ExpireSetsReply, verb: str) -> int:
    for removed in reply.removed:
        print(f"{verb} {removed.name} (id {removed.id})")
    print(f"{len(reply.removed)} sets {verb}, {len(reply.orphans)} objects removed, {human(reply.orphan_bytes)} freed")
    return 0


def remove_sets(ingest: Ingest, request: cat.RemoveSetsRequest) -> cat.ExpireSetsReply:
    """RemoveSets as this process: ``host:pid`` holds the client's writer lease while the
    orphans are deleted. The lease of a run on this host that ended without releasing it (a
    killed backup or purge) is taken over, as a backup does."""
    request.holder = f"{socket.gethostname()}:{os.getpid()}"
    try:
        return ingest.remove_sets(request)
    except Conflict as exc:
        ended = ended_run_on_this_host(str(exc))
        if ended is None:
            raise
        log.warning("taking over the lease of run %d on this host, which ended without finishing", ended)
        request.take_over = f"{socket.gethostname()}:{ended}"
        return ingest.remove_sets(request)


def purge_sets(args: argparse.Namespace) -> int:
    request = cat.RemoveSetsRequest(
        purge=True, max_priority=args.priority, before_ns=cutoff_ns(args, time.time_ns()), incomplete=args.incomplete
    )
    with open_repo(args) as repo:
        request.client = repo.client
        if not confirmed(f"purge old backup sets of {repo.client}?", args):
            return 1
        return _report(remove_sets(repo.ingest, request), "purged")


def delete_sets(args: argparse.Namespace) -> int:
    with open_repo(args) as repo:
        ids: list[int] = []
        for wanted in args.sets:
            span = _RANGE.match(wanted)
            if span:
                low, high = int(span.group(1)), int(span.group(2))
                if low > high:
                    raise InvalidArgument(f"malformed range {wanted!r}: {low} is after {high}")
                known = {s.id for s in list_sets(repo.ingest, repo.client)}
                ids += [i for i in range(low, high + 1) if i in known]
            else:
                ids.append(resolve_set(repo.ingest, repo.client, wanted).id)
        if not ids:
            raise InvalidArgument("no backup set matches")
        if not confirmed(f"delete {len(ids)} backup sets of {repo.client}?", args):
            return 1
        removed = remove_sets(repo.ingest, cat.RemoveSetsRequest(client=repo.client, set_ids=ids))
        if repo.unlocked is not None:  # this client itself made the newest set older: not a rollback
            newest = max((s.id for s in list_sets(repo.ingest, repo.client) if s.completed), default=0)
            repo.known.forget_newest_set(newest)
        return _report(removed, "deleted")


def remove_orphans(args: argparse.Namespace) -> int:
    with open_repo(args) as repo:
        return _report(remove_sets(repo.ingest, cat.RemoveSetsRequest(client=repo.client)), "deleted")
