"""sonic getconfig and setconfig: the client's own settings, which override the server's."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from tardis.v1 import catalog_pb2 as cat

from tardis_common.argparsing import add_common_options
from tardis_common.errors import InvalidArgument

from . import create as creating
from .connect import open_repository
from .passwords import get_password
from .sonic_common import Handler, open_repo, settings

# Settings a client may hold for itself; they override the server's (the seed's per-client Config).
CLIENT_SETTINGS = ("Formats", "Priorities", "KeepPeriods")


def register(commands: Any) -> dict[str, Handler]:
    get = commands.add_parser("getconfig", help="show the client's own settings (overriding the server's)")
    add_common_options(get)
    get.add_argument("--json", action="store_true", help="print JSON")
    get.add_argument("keys", nargs="*", help="settings to show (default: all)")
    put = commands.add_parser("setconfig", help="set the client's own settings, e.g. Formats, Priorities")
    add_common_options(put)
    put.add_argument("assignments", nargs="+", metavar="KEY=VALUE", help="a setting; an empty value removes it")
    create = commands.add_parser("create", help="create the client's repository before its first backup")
    add_common_options(create)
    return {"getconfig": getconfig, "setconfig": setconfig, "create": create_command}


def create_command(args: argparse.Namespace) -> int:
    config, url = settings(args)
    if url.is_local:
        os.makedirs(url.base_dir, exist_ok=True)
    password = get_password(config, confirm=True)
    with open_repository(url, config, timeout=config.timeout, unlock=False) as repo:
        info = creating.create_client(repo, config, password)
    print(f"created client {info.client} (id {info.client_id}, catalog schema {info.schema_version})")
    return 0


def getconfig(args: argparse.Namespace) -> int:
    with open_repo(args) as repo:
        values = dict(repo.ingest.get_client_config(cat.ClientRequest(client=repo.client)).values)
    if args.keys:
        values = {k: values.get(k, "") for k in args.keys}
    if args.json:
        print(json.dumps(values, indent=2, sort_keys=True))
    else:
        for key in sorted(values):
            print(f"{key} = {values[key]}")
    return 0


def setconfig(args: argparse.Namespace) -> int:
    changes: dict[str, str] = {}
    for assignment in args.assignments:
        key, sep, value = assignment.partition("=")
        if not sep or key.strip() not in CLIENT_SETTINGS:
            raise InvalidArgument(
                f"bad setting {assignment!r}: use KEY=VALUE with KEY one of {', '.join(CLIENT_SETTINGS)}"
            )
        changes[key.strip()] = value.strip()
    with open_repo(args) as repo:
        config = cat.ClientConfig(client=repo.client, values=changes)
        values = dict(repo.ingest.set_client_config(config).values)
    for key in sorted(values):
        print(f"{key} = {values[key]}")
    return 0
