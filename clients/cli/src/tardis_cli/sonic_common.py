"""What the sonic subcommands share: opening the repository, and finding the set a user names."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from tardis.v1 import common_pb2 as common

from tardis_common.argparsing import add_common_options
from tardis_common.errors import InvalidArgument
from tardis_common.settings import ClientSettings
from tardis_common.urls import RepoURL

from .connect import Repository, open_repository
from .dates import date_arg, set_at
from .sets import RECENT, list_sets, resolve_set
from .tool import settings_and_url

Handler = Callable[[argparse.Namespace], int]


def _common_dests() -> frozenset[str]:
    probe = argparse.ArgumentParser(add_help=False)
    add_common_options(probe)
    return frozenset(action.dest for action in probe._actions)


COMMON = _common_dests()


def settings(args: argparse.Namespace) -> tuple[ClientSettings, RepoURL]:
    """The settings from the common options only; a subcommand's own options are not settings."""
    return settings_and_url(args, drop=tuple(k for k in vars(args) if k not in COMMON))


def open_repo(args: argparse.Namespace) -> Repository:
    config, url = settings(args)
    return open_repository(url, config, timeout=config.timeout)


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def add_set_choice(parser: argparse.ArgumentParser, *, optional: bool) -> None:
    """SET (a name, id, tag or Current), and with ``optional`` also ``--date DATE``."""
    help_text = f"a set name, id or tag, or {RECENT} (the newest complete set)"
    if optional:
        parser.add_argument("set", nargs="?", metavar="SET", help=help_text + "; default " + RECENT)
        parser.add_argument(
            "--date",
            "-d",
            type=date_arg,
            metavar="DATE",
            help="the newest complete set started at or before DATE",
        )
    else:
        parser.add_argument("set", metavar="SET", help=help_text)


def chosen_set(repo: Repository, args: argparse.Namespace) -> common.BackupSet:
    date: Any = getattr(args, "date", None)
    if date is not None:
        if args.set:
            raise InvalidArgument("give a set or --date, not both")
        return set_at(list_sets(repo.ingest, repo.client), date)
    return resolve_set(repo.ingest, repo.client, args.set)
