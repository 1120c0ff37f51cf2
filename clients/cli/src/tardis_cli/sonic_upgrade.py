"""sonic upgrade: bring a local client's catalog to the current schema (the seed's upgrade).

Tools upgrade a local catalog on open anyway; this does it explicitly and says what it did.
A server upgrades its clients' catalogs itself when AllowSchemaUpgrades is set.
"""

from __future__ import annotations

import argparse
import sqlite3
from typing import Any

from tardis.v1 import catalog_pb2 as cat

from tardis_common.argparsing import add_common_options
from tardis_common.errors import Corrupt, InvalidArgument, NotFound

from .sonic_common import Handler, settings


def register(commands: Any) -> dict[str, Handler]:
    upgrade = commands.add_parser("upgrade", help="upgrade a local client's catalog to the current schema")
    add_common_options(upgrade)
    return {"upgrade": upgrade_catalog}


def _version(path: str) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise Corrupt(f"{path} is not a readable catalog: {exc}") from None


def upgrade_catalog(args: argparse.Namespace) -> int:
    from tardis_catalog import db, schema
    from tardis_catalog.core import CatalogCore

    _config, url = settings(args)
    if not url.is_local:
        raise InvalidArgument(
            "sonic upgrade works on a local repository; a server upgrades its clients' catalogs"
            " itself when AllowSchemaUpgrades is set"
        )
    path = url.client_dir / db.DB_NAME
    if not path.is_file():
        raise NotFound(f"client {url.client} does not exist in {url.base_dir}")
    before = _version(str(path))
    catalog = CatalogCore(url.base_dir, allow_upgrades=True)
    try:
        info = catalog.get_client(cat.ClientRequest(client=url.client))
    finally:
        catalog.close()
    if before == schema.SCHEMA_VERSION:
        print(f"catalog of client {url.client} is at schema version {before}, the current one; nothing to do")
    else:
        print(
            f"upgraded the catalog of client {url.client} from schema version {before} to {info.schema_version}"
            f" (the old one is kept as {path.name}.schema-v{before}.bak)"
        )
    return 0
