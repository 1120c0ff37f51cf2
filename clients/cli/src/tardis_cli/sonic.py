"""sonic: administration of a client's backups. This release: list."""

from __future__ import annotations

import argparse
import json
import sys
import time

from tardis_common.argparsing import add_common_options, make_parser

from .connect import open_repository
from .sets import list_sets
from .tool import run, settings_and_url, setup_logging


def parser() -> argparse.ArgumentParser:
    p = make_parser("sonic", "Administer a client's Tardis backups.")
    commands = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    listing = commands.add_parser("list", help="list the backup sets")
    add_common_options(listing)
    listing.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    return p


def _time(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9)) if ns else "-"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(getattr(args, "verbosity", 0))
    return run("sonic", lambda: _list(args), exceptions=getattr(args, "exceptions", False))


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
