"""The tardisfs command line: tool options, ``-o name=value`` mount options, and the fstab form.

``mount -t fuse`` (or an fstab line ``tardisfs#0 /mnt/x fuse user,noauto,...,database=DIR,client=C``)
runs ``tardisfs 0 /mnt/x -o OPTIONS``: the first of two positional arguments is the source,
ignored when it is ``0`` or ``tardisfs`` and otherwise taken as the repository. Options Tardis
knows select the repository, password and cache; the rest go to FUSE as they are.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from tardis_cli.passwords import MOUNT_OPTIONS
from tardis_common.argparsing import add_common_options, make_parser
from tardis_common.errors import InvalidArgument

PROG = "tardisfs"
DEFAULT_CACHE_MIB = 1024

# -o names Tardis reads, and the ClientSettings field each one sets.
SETTINGS_OPTIONS = {
    "repo": "repository",
    "repository": "repository",
    "database": "database",
    "client": "client",
    "host": "client",  # the seed's spelling: "the host you wish to mount backups for"
    "server": "server",
    "port": "port",
    "config": "config",
    "job": "job",
    **MOUNT_OPTIONS,
}
OWN_OPTIONS = {"cachedir", "cachesize", "verbose"}
# Options of mount(8) and fstab that mean nothing to FUSE; ``rw`` is refused quietly (read-only).
IGNORED = {"user", "nouser", "users", "auto", "noauto", "_netdev", "nofail", "defaults", "rw", "ro", "owner", "group"}


@dataclass
class MountOptions:
    mountpoint: str
    settings: dict[str, Any]  # ClientSettings fields given (command line and -o)
    fuse: dict[str, Any] = field(default_factory=dict)  # options passed to FUSE
    foreground: bool = False
    debug: bool = False
    single_thread: bool = False
    verbosity: int = 0
    exceptions: bool = False
    cache_dir: str | None = None
    cache_mib: int = DEFAULT_CACHE_MIB
    password_prompt: bool = False  # password= given empty: ask for it


def parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Mount the backup sets of a Tardis client as a read-only filesystem.")
    add_common_options(p)
    p.add_argument("places", nargs="+", metavar="[SOURCE] MOUNTPOINT", help="where to mount (fstab gives a source)")
    p.add_argument(
        "-o",
        dest="mount_options",
        action="append",
        default=[],
        metavar="OPT[=VALUE],...",
        help="repo=URL, database=DIR, client=NAME, password=[PW], pwfile=PATH, pwprog=CMD, keys=FILE,"
        " cachedir=DIR, cachesize=MIB (delta chains rebuilt, default 1024); others go to FUSE"
        " (allow_other, default_permissions, ...)",
    )
    p.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    p.add_argument("-d", "--debug", action="store_true", help="FUSE debug output (implies -f)")
    p.add_argument("-s", "--single-thread", action="store_true", help="serve one request at a time")
    return p


def _split_options(values: list[str]) -> list[tuple[str, str | None]]:
    pairs: list[tuple[str, str | None]] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item:
                name, eq, rest = item.partition("=")
                pairs.append((name.strip(), rest if eq else None))
    return pairs


def parse(argv: list[str] | None) -> MountOptions:
    args = parser().parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k not in ("places", "mount_options", "foreground", "debug")}
    given.pop("single_thread", None)
    places: list[str] = args.places
    if len(places) > 2:
        raise InvalidArgument(f"too many arguments: {' '.join(places)}")
    options = MountOptions(
        mountpoint=places[-1],
        settings={},
        foreground=args.foreground or args.debug,
        debug=args.debug,
        single_thread=args.single_thread,
        verbosity=int(given.pop("verbosity", 0)),
        exceptions=bool(given.pop("exceptions", False)),
    )
    for name, value in _split_options(args.mount_options):
        if name in SETTINGS_OPTIONS:
            if value is None:
                raise InvalidArgument(f"-o {name} needs a value ({name}=...)")
            key = SETTINGS_OPTIONS[name]
            if key == "password" and value == "":
                options.password_prompt = True
                continue
            given[key] = value
        elif name == "cachedir":
            options.cache_dir = value or None
        elif name == "cachesize":
            try:
                options.cache_mib = int(value or "")
            except ValueError:
                raise InvalidArgument(f"-o cachesize={value}: give a number of MiB") from None
        elif name == "verbose":
            options.verbosity += 1
        elif name in IGNORED:
            continue
        else:
            options.fuse[name] = True if value is None else value
    if "password" in given and given["password"] == "":
        options.password_prompt = True  # --password with no value
        del given["password"]
    if len(places) == 2 and places[0] not in ("0", "none", PROG, f"{PROG}#0") and "repository" not in given:
        source = places[0].removeprefix(f"{PROG}#")
        if "database" not in given:
            given["repository"] = source
    if "port" in given:
        try:
            given["port"] = int(given["port"])
        except ValueError:
            raise InvalidArgument(f"invalid port {given['port']!r}") from None
    options.settings = given
    return options
