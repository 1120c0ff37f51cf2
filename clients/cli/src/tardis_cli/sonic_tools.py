"""sonic decryptname, encryptname and cdfile: the seed's maintenance tools for reading a
catalog by hand (its tools/decryptName.py and tools/cdfile.py), plus the seed's script
names as hidden aliases (``decryptName``, ``encryptName``, ``mkKeyBackup``).

How names are stored: a path component (and an owner name, a symlink target) is the raw
AES-SIV ciphertext, a BLOB that ``sqlite3`` shows with ``hex(name)``; a tag or a recorded
command line is a text, ``"~"`` + base64url. decryptname takes either form (hex, optionally
as an SQL literal ``X'...'``, or ``~...``); encryptname gives the hex form, or with
``--text`` the ``~`` form.
"""

from __future__ import annotations

import argparse
import binascii
import logging
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_common.argparsing import add_common_options
from tardis_common.cipher import Cipher
from tardis_common.crypto.encrypting_cipher import TEXT_MARK
from tardis_common.errors import Corrupt, InvalidArgument, NotFound

from .connect import Repository, open_repository
from .dates import date_arg, format_ns, set_at
from .restore import components_of
from .sets import list_sets, resolve_set
from .sonic_common import Handler, settings

log = logging.getLogger(__name__)

# The seed's script names (tools/<name>.py), accepted as subcommands but not listed in --help.
SEED_ALIASES = {"decryptName": "decryptname", "encryptName": "encryptname", "mkKeyBackup": "mkkeybackup"}
_SQL_BLOB = re.compile(r"^[xX]'([0-9a-fA-F]*)'$")
MAX_CHAIN = 64


def register(commands: Any) -> dict[str, Handler]:
    decrypt = commands.add_parser("decryptname", help="decrypt names as stored in the catalog (hex or ~text)")
    add_common_options(decrypt)
    decrypt.add_argument("names", nargs="+", metavar="NAME", help="hex of a stored name (X'..' too), or a ~text")
    encrypt = commands.add_parser("encryptname", help="encrypt names the way the catalog stores them")
    add_common_options(encrypt)
    encrypt.add_argument("names", nargs="+", metavar="NAME", help="a plaintext name (one path component)")
    encrypt.add_argument("--text", action="store_true", help="seal as a text (tag, command line): ~base64url")
    cdfile = commands.add_parser("cdfile", help="where a backed-up file's object lives in the store")
    add_common_options(cdfile)
    cdfile.add_argument("path", metavar="PATH", help="the file's path as it was backed up")
    which = cdfile.add_mutually_exclusive_group()
    which.add_argument("--backup", "-b", help="backup set name, tag or id (default: Current)")
    which.add_argument("--date", "-d", type=date_arg, metavar="DATE", help="the newest complete set at or before DATE")
    which.add_argument("--last", "-l", action="store_true", help="the newest complete set holding PATH")
    cdfile.add_argument(
        "--all", "-a", action="store_true", help="also the delta chain's objects and the .sig and .meta files"
    )
    return {"decryptname": decrypt_names, "encryptname": encrypt_names, "cdfile": cdfile_main}


def add_seed_aliases(commands: Any, handlers: dict[str, Handler]) -> None:
    """Accept the seed's script names as subcommands, hidden from the listing in --help.

    Call after every module has registered: an alias shares its target's parser."""
    for alias, target in SEED_ALIASES.items():
        if target in commands.choices and alias not in commands.choices:
            commands.choices[alias] = commands.choices[target]
            handlers[alias] = handlers[target]


# -- names -----------------------------------------------------------------------------------


def _open(args: argparse.Namespace) -> Repository:
    config, url = settings(args)
    return open_repository(url, config, timeout=config.timeout)


def _not_encrypted(repo: Repository) -> bool:
    if repo.cipher.encrypted:
        return False
    print(f"sonic: client {repo.client} is not encrypted: its names are stored as they are", file=sys.stderr)
    return True


def _stored_bytes(name: str) -> bytes:
    """The bytes of a stored name given as hex (``sqlite3``'s ``hex(name)``) or as ``X'..'``."""
    literal = _SQL_BLOB.match(name)
    digits = literal.group(1) if literal else name.removeprefix("0x")
    try:
        return binascii.unhexlify(digits)
    except (binascii.Error, ValueError):
        raise InvalidArgument(
            f"{name[:60]!r} is neither the hex of a stored name (SELECT hex(name) FROM names) nor a ~text"
        ) from None


def decrypt_one(cipher: Cipher, name: str) -> str:
    """The plaintext of one stored name or text (see the module docstring)."""
    try:
        if name.startswith(TEXT_MARK):
            return cipher.decrypt_text(name)
        return cipher.decrypt_name(_stored_bytes(name)).decode("utf-8", "backslashreplace")
    except Corrupt:
        raise Corrupt(
            f"{name[:60]} does not decrypt with this client's keys (another client's name, or damaged)"
        ) from None


def encrypt_one(cipher: Cipher, name: str, *, text: bool) -> str:
    if text:
        return cipher.encrypt_text(name)
    return cipher.encrypt_name(os.fsencode(name)).hex().upper()


def decrypt_names(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        if _not_encrypted(repo):
            _print_lines(args.names)
            return 0
        _print_lines([decrypt_one(repo.cipher, n) for n in args.names])
    return 0


def encrypt_names(args: argparse.Namespace) -> int:
    with _open(args) as repo:
        if _not_encrypted(repo):
            _print_lines(args.names)
            return 0
        _print_lines([encrypt_one(repo.cipher, n, text=args.text) for n in args.names])
    return 0


def _print_lines(lines: Iterable[str]) -> None:
    for line in lines:
        print(line)


# -- cdfile ----------------------------------------------------------------------------------


def _chosen_set(repo: Repository, args: argparse.Namespace, recent: str, stored: list[bytes]) -> common.BackupSet:
    sets = list_sets(repo.ingest, repo.client)
    if args.date is not None:
        return set_at(sets, args.date)
    if not args.last:
        return resolve_set(repo.ingest, repo.client, args.backup, recent)
    found = repo.ingest.lookup_path(
        cat.LookupPathRequest(client=repo.client, set_id=0, path=common.DirPath(components=stored))
    )
    spans = [(v.first_set, v.last_set) for v in found.versions] if found.found else []
    held = [s for s in sets if s.completed and any(first <= s.id <= last for first, last in spans)]
    if not held:
        raise NotFound(f"{args.path} is in no complete backup set")
    return held[-1]


def chain_of(repo: Repository, object_id: bytes) -> list[common.ObjectInfo]:
    """The object and, for a delta, its bases down to the full object (newest first)."""
    chain: list[common.ObjectInfo] = []
    wanted = object_id
    while wanted:
        if len(chain) > MAX_CHAIN:
            raise Corrupt(f"object {object_id.decode('ascii', 'replace')}: delta chain longer than {MAX_CHAIN}")
        reply = repo.ingest.get_object_info(cat.ObjectIdsRequest(client=repo.client, object_ids=[wanted]))
        if not reply.objects:
            raise Corrupt(f"object {wanted.decode('ascii', 'replace')} is not in the catalog")
        info = reply.objects[0]
        chain.append(info)
        wanted = info.basis_id
    return chain


def object_paths(repo: Repository, chain: list[common.ObjectInfo], everything: bool) -> list[Path]:
    """The files of ``chain`` in a local store (each object, and with ``everything`` its
    .sig and .meta where they exist)."""
    from tardis_blobstore.storage import ObjectTree

    tree = ObjectTree(repo.url.base_dir, repo.client)
    out: list[Path] = []
    for info in chain if everything else chain[:1]:
        path = tree.path(info.object_id)
        out.append(path)
        if everything:
            out += [p for p in (path.with_name(path.name + s) for s in (".sig", ".meta")) if p.exists()]
    return out


def cdfile_main(args: argparse.Namespace) -> int:
    config, url = settings(args)
    components = components_of(args.path)
    if not components:
        raise InvalidArgument("/ is a directory: it has no object")
    with open_repository(url, config, timeout=config.timeout) as repo:
        stored = [repo.cipher.encrypt_name(c) for c in components]
        chosen = _chosen_set(repo, args, config.recent_set, stored)
        shown = "/" + "/".join(os.fsdecode(c) for c in components)
        found = repo.ingest.lookup_path(
            cat.LookupPathRequest(client=repo.client, set_id=chosen.id, path=common.DirPath(components=stored))
        )
        if not found.found:
            raise NotFound(f"{shown} is not in backup set {chosen.name}")
        entry = found.entry
        if entry.type != common.ENTRY_TYPE_FILE:
            kind = common.EntryType.Name(entry.type).removeprefix("ENTRY_TYPE_").lower()
            raise InvalidArgument(f"{shown} is a {kind} in backup set {chosen.name}: only files have objects")
        if not entry.object_id:
            raise NotFound(f"{shown} is empty in backup set {chosen.name}: no object is stored for it")
        chain = chain_of(repo, entry.object_id) if args.all else []
        log.info("%s in set %s (%s): object %s", shown, chosen.name, format_ns(chosen.start_time_ns), entry.object_id)
        if not url.is_local:
            ids = [i.object_id for i in chain] if args.all else [entry.object_id]
            for object_id in ids:
                text = object_id.decode("ascii")
                print(text)
            print(
                f"sonic: the objects are on the server, under <BaseDir>/{repo.client}/ab/cd/<id> there",
                file=sys.stderr,
            )
            return 0
        paths = object_paths(repo, chain or [common.ObjectInfo(object_id=entry.object_id)], args.all)
    missing = [p for p in paths if not p.exists()]
    for path in paths:
        print(path)
    if missing:
        print(f"sonic: error: {missing[0]} is missing from the store", file=sys.stderr)
        return 1
    return 0


# -- the seed's tool names as programs (clients/cli/pyproject.toml [project.scripts]) ---------


def _as_sonic(command: str) -> int:
    from . import sonic  # not at import time: sonic imports this module

    return sonic.main([command, *sys.argv[1:]])


def mk_key_backup_main() -> int:
    """``mkKeyBackup ...`` = ``sonic mkkeybackup ...``."""
    return _as_sonic("mkkeybackup")


def decrypt_name_main() -> int:
    """``decryptName ...`` = ``sonic decryptname ...``."""
    return _as_sonic("decryptname")


def cdfile_script_main() -> int:
    """``cdfile ...`` = ``sonic cdfile ...``."""
    return _as_sonic("cdfile")
