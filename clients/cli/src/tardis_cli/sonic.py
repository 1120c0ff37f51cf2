"""sonic: administration of a client's backups.

A small dispatcher: each group of subcommands lives in its own module, which adds its
parsers and returns its handlers (``register``). This release: list, info, files, tag,
lock, unlock, priority, rename (sonic_sets, sonic_files), getconfig, setconfig (sonic_config),
purge, delete, orphans (sonic_purge), verify (sonic_verify), setpass, chpass, keys,
mkkeybackup (sonic_keys), upgrade (sonic_upgrade).
"""

from __future__ import annotations

import argparse
import sys

from tardis_common.argparsing import make_parser

from . import (
    sonic_config,
    sonic_files,
    sonic_keys,
    sonic_purge,
    sonic_rebuild,
    sonic_sets,
    sonic_tools,
    sonic_upgrade,
    sonic_verify,
)
from .sonic_common import Handler
from .sonic_config import CLIENT_SETTINGS
from .sonic_encrypt import register as register_encrypt
from .tool import run, setup_logging

__all__ = ["CLIENT_SETTINGS", "main", "parser"]


def _build() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    p = make_parser("sonic", "Administer a client's Tardis backups.")
    commands = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    handlers: dict[str, Handler] = {}
    for module in (sonic_sets, sonic_files, sonic_config, sonic_keys, sonic_purge, sonic_verify, sonic_upgrade):
        handlers.update(module.register(commands))
    handlers.update(sonic_tools.register(commands))  # decryptname, encryptname, cdfile
    handlers.update(register_encrypt(commands))  # encrypt (encryptDB)
    handlers.update(sonic_rebuild.register(commands))  # rebuild (a lost tardis.db, from .meta files)
    sonic_tools.add_seed_aliases(commands, handlers)  # last: decryptName, mkKeyBackup, ... (hidden)
    return p, handlers


def parser() -> argparse.ArgumentParser:
    return _build()[0]


def main(argv: list[str] | None = None) -> int:
    p, handlers = _build()
    args = p.parse_args(argv)
    setup_logging(getattr(args, "verbosity", 0))
    handler = handlers[args.command]
    return run("sonic", lambda: handler(args), exceptions=getattr(args, "exceptions", False))


if __name__ == "__main__":
    sys.exit(main())
