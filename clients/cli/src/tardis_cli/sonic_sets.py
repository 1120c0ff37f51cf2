"""sonic list, info, tag, lock, unlock, priority, rename: the backup sets and their labels."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_common.argparsing import add_common_options
from tardis_common.errors import InvalidArgument, NotFound

from .dates import date_arg, format_ns
from .sets import RECENT, list_sets
from .sonic_common import Handler, add_json, add_set_choice, chosen_set, open_repo


def register(commands: Any) -> dict[str, Handler]:
    listing = commands.add_parser("list", help="list the backup sets, oldest first")
    add_common_options(listing)
    add_json(listing)
    listing.add_argument("--priority", type=int, metavar="N", help="only sets with priority N or more")
    ends = listing.add_mutually_exclusive_group()
    ends.add_argument("--first", type=int, metavar="N", help="only the first (oldest) N sets that pass the filters")
    ends.add_argument("--last", type=int, metavar="N", help="only the last (newest) N sets that pass the filters")
    listing.add_argument("--before", type=date_arg, metavar="DATE", help="only sets started before DATE")
    listing.add_argument("--after", type=date_arg, metavar="DATE", help="only sets started after DATE")
    state = listing.add_mutually_exclusive_group()
    state.add_argument("--complete", action="store_true", help="only complete sets")
    state.add_argument("--incomplete", action="store_true", help="only incomplete sets")

    info = commands.add_parser("info", help="one set's details")
    add_common_options(info)
    add_set_choice(info, optional=True)
    add_json(info)

    tag = commands.add_parser("tag", help="add tags to a set (a tag another set holds moves), or remove them")
    add_common_options(tag)
    add_set_choice(tag, optional=False)
    tag.add_argument("tags", nargs="+", metavar="TAG")
    tag.add_argument("--remove", "-r", action="store_true", help="remove the tags instead")

    for name, text in (("lock", "lock a set: purge never removes it"), ("unlock", "unlock a set")):
        one = commands.add_parser(name, help=text)
        add_common_options(one)
        add_set_choice(one, optional=False)

    priority = commands.add_parser("priority", help="set a set's priority")
    add_common_options(priority)
    add_set_choice(priority, optional=False)
    priority.add_argument("priority", type=int, metavar="N")

    rename = commands.add_parser("rename", help="rename a complete set")
    add_common_options(rename)
    add_set_choice(rename, optional=False)
    rename.add_argument("name", metavar="NEWNAME")

    return {
        "list": list_command,
        "info": info_command,
        "tag": tag_command,
        "lock": lambda args: _lock(args, True),
        "unlock": lambda args: _lock(args, False),
        "priority": priority_command,
        "rename": rename_command,
    }


# -- list and info ---------------------------------------------------------------------------


def set_json(s: common.BackupSet) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "completed": s.completed,
        "locked": s.locked,
        "priority": s.priority,
        "start": format_ns(s.start_time_ns),
        "end": format_ns(s.end_time_ns),
        "start_ns": s.start_time_ns,
        "end_ns": s.end_time_ns,
        "tags": list(s.tags),
        "files_full": s.files_full,
        "files_delta": s.files_delta,
        "bytes_received": s.bytes_received,
    }


def filter_sets(sets: list[common.BackupSet], args: argparse.Namespace) -> list[common.BackupSet]:
    """The sets passing every filter of ``sonic list``, oldest first; --first/--last apply last."""
    shown = list(sets)
    if args.priority is not None:
        shown = [s for s in shown if s.priority >= args.priority]
    if args.before is not None:
        shown = [s for s in shown if s.start_time_ns < args.before]
    if args.after is not None:
        shown = [s for s in shown if s.start_time_ns > args.after]
    if args.complete:
        shown = [s for s in shown if s.completed]
    if args.incomplete:
        shown = [s for s in shown if not s.completed]
    for option in ("first", "last"):
        value = getattr(args, option)
        if value is not None and value < 0:
            raise InvalidArgument(f"--{option} {value}: must not be negative")
    if args.first is not None:
        shown = shown[: args.first]
    if args.last is not None:
        shown = shown[len(shown) - args.last :] if args.last else []
    return shown


def list_command(args: argparse.Namespace) -> int:
    with open_repo(args) as repo:
        sets = filter_sets(list_sets(repo.ingest, repo.client), args)
    if args.json:
        print(json.dumps([set_json(s) for s in sets], indent=2))
        return 0
    print(f"{'Id':>4}  {'Name':<32} {'Done':<4} {'Prio':>4}  {'Started':<19}  {'Finished':<19}")
    for s in sets:
        done = "yes" if s.completed else "no"
        started, ended = format_ns(s.start_time_ns), format_ns(s.end_time_ns)
        print(f"{s.id:>4}  {s.name:<32} {done:<4} {s.priority:>4}  {started:<19}  {ended:<19}")
    return 0


def info_rows(s: common.BackupSet) -> list[tuple[str, str]]:
    return [
        ("Id", str(s.id)),
        ("Name", s.name),
        ("Tags", " ".join(s.tags) or "-"),
        ("Completed", "yes" if s.completed else "no"),
        ("Locked", "yes" if s.locked else "no"),
        ("Priority", str(s.priority)),
        ("Started", format_ns(s.start_time_ns)),
        ("Finished", format_ns(s.end_time_ns)),
        ("Client time", format_ns(s.client_time_ns)),
        ("Client version", s.client_version or "-"),
        ("Server version", s.server_version or "-"),
        ("Files full", str(s.files_full)),
        ("Files delta", str(s.files_delta)),
        ("Bytes received", str(s.bytes_received)),
    ]


def info_command(args: argparse.Namespace) -> int:
    with open_repo(args) as repo:
        s = chosen_set(repo, args)
    if args.json:
        row = set_json(s)
        row.update(
            client_time=format_ns(s.client_time_ns),
            client_time_ns=s.client_time_ns,
            client_version=s.client_version,
            server_version=s.server_version,
        )
        print(json.dumps(row, indent=2))
        return 0
    width = max(len(key) for key, _ in info_rows(s))
    for key, value in info_rows(s):
        print(f"{key + ':':<{width + 1}}  {value}")
    return 0


# -- changes ---------------------------------------------------------------------------------


def _label(s: common.BackupSet) -> str:
    return f"set {s.id} {s.name}"


def _update(repo: Any, s: common.BackupSet, **fields: Any) -> common.BackupSet:
    return repo.ingest.update_set(cat.UpdateSetRequest(client=repo.client, set_id=s.id, **fields))  # type: ignore[no-any-return]


def tag_command(args: argparse.Namespace) -> int:
    tags = list(dict.fromkeys(args.tags))
    if any(not t.strip() for t in tags):
        raise InvalidArgument("a tag cannot be empty")
    with open_repo(args) as repo:
        s = chosen_set(repo, args)
        if args.remove:
            missing = [t for t in tags if t not in s.tags]
            if missing:
                raise NotFound(f"{_label(s)} has no tag {', '.join(missing)}")
            done = _update(repo, s, remove_tags=tags)
            moved: list[str] = []
        else:
            holders = {t: o for o in list_sets(repo.ingest, repo.client) if o.id != s.id for t in o.tags}
            moved = [f"{t} moved from set {holders[t].id} {holders[t].name}" for t in tags if t in holders]
            done = _update(repo, s, add_tags=tags)
    for line in moved:
        print(f"tag {line}")
    print(f"{_label(done)}: tags {' '.join(done.tags) or '-'}")
    return 0


def _lock(args: argparse.Namespace, locked: bool) -> int:
    with open_repo(args) as repo:
        done = _update(repo, chosen_set(repo, args), set_locked=True, locked=locked)
    print(f"{_label(done)}: {'locked' if done.locked else 'unlocked'}")
    return 0


def priority_command(args: argparse.Namespace) -> int:
    if not -(2**31) <= args.priority < 2**31:
        raise InvalidArgument(f"priority {args.priority} is out of range")
    with open_repo(args) as repo:
        done = _update(repo, chosen_set(repo, args), set_priority=True, priority=args.priority)
    print(f"{_label(done)}: priority {done.priority}")
    return 0


def rename_command(args: argparse.Namespace) -> int:
    new = args.name.strip()
    if not new or new != args.name:
        raise InvalidArgument(f"bad set name {args.name!r}: empty, or with spaces around it")
    if new == RECENT or new.isdigit():
        raise InvalidArgument(f"bad set name {new}: {RECENT} and numbers name other sets")
    with open_repo(args) as repo:
        s = chosen_set(repo, args)
        done = _update(repo, s, name=new)
    print(f"{_label(done)}: renamed from {s.name}")
    return 0
