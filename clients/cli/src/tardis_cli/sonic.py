"""sonic: administration of a client's backups. This release: list, getconfig, setconfig."""

from __future__ import annotations

import argparse
import json
import sys
import time

from tardis.v1 import catalog_pb2 as cat

from tardis_common.argparsing import add_common_options, make_parser
from tardis_common.errors import InvalidArgument

from .connect import open_repository
from .sets import list_sets
from .tool import run, settings_and_url, setup_logging


def parser() -> argparse.ArgumentParser:
    p = make_parser("sonic", "Administer a client's Tardis backups.")
    commands = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    listing = commands.add_parser("list", help="list the backup sets")
    add_common_options(listing)
    listing.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    get = commands.add_parser("getconfig", help="show the client's own settings (overriding the server's)")
    add_common_options(get)
    get.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    get.add_argument("keys", nargs="*", default=argparse.SUPPRESS, help="settings to show (default: all)")
    put = commands.add_parser("setconfig", help="set the client's own settings, e.g. Formats, Priorities")
    add_common_options(put)
    put.add_argument("assignments", nargs="+", metavar="KEY=VALUE", help="a setting; an empty value removes it")
    return p


# Settings a client may hold for itself; they override the server's (the seed's per-client Config).
CLIENT_SETTINGS = ("Formats", "Priorities", "KeepPeriods")


def _time(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9)) if ns else "-"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(getattr(args, "verbosity", 0))
    commands = {"list": _list, "getconfig": _getconfig, "setconfig": _setconfig}
    return run("sonic", lambda: commands[args.command](args), exceptions=getattr(args, "exceptions", False))


def _getconfig(args: argparse.Namespace) -> int:
    settings, url = settings_and_url(args, drop=("command", "json", "keys"))
    with open_repository(url, timeout=settings.timeout) as repo:
        values = dict(repo.ingest.get_client_config(cat.ClientRequest(client=repo.client)).values)
    wanted = getattr(args, "keys", None)
    if wanted:
        values = {k: values.get(k, "") for k in wanted}
    if getattr(args, "json", False):
        print(json.dumps(values, indent=2, sort_keys=True))
    else:
        for key in sorted(values):
            print(f"{key} = {values[key]}")
    return 0


def _setconfig(args: argparse.Namespace) -> int:
    changes: dict[str, str] = {}
    for assignment in args.assignments:
        key, sep, value = assignment.partition("=")
        if not sep or key.strip() not in CLIENT_SETTINGS:
            raise InvalidArgument(
                f"bad setting {assignment!r}: use KEY=VALUE with KEY one of {', '.join(CLIENT_SETTINGS)}"
            )
        changes[key.strip()] = value.strip()
    settings, url = settings_and_url(args, drop=("command", "assignments"))
    with open_repository(url, timeout=settings.timeout) as repo:
        config = cat.ClientConfig(client=repo.client, values=changes)
        values = dict(repo.ingest.set_client_config(config).values)
    for key in sorted(values):
        print(f"{key} = {values[key]}")
    return 0


def _list(args: argparse.Namespace) -> int:
    settings, url = settings_and_url(args, drop=("command", "json"))
    with open_repository(url, timeout=settings.timeout) as repo:
        sets = list_sets(repo.ingest, repo.client)
    if getattr(args, "json", False):
        rows = [
            {
                "id": s.id,
                "name": s.name,
                "completed": s.completed,
                "priority": s.priority,
                "start": _time(s.start_time_ns),
                "end": _time(s.end_time_ns),
                "tags": list(s.tags),
                "files_full": s.files_full,
                "files_delta": s.files_delta,
                "bytes_received": s.bytes_received,
            }
            for s in sets
        ]
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'Id':>4}  {'Name':<32} {'Done':<4} {'Prio':>4}  {'Started':<19}  {'Finished':<19}")
    for s in sets:
        done = "yes" if s.completed else "no"
        started, ended = _time(s.start_time_ns), _time(s.end_time_ns)
        print(f"{s.id:>4}  {s.name:<32} {done:<4} {s.priority:>4}  {started:<19}  {ended:<19}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
