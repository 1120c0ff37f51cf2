"""sonic setpass, chpass, keys and mkkeybackup: a client's password and keys.

setpass adds a password to a client that has none (new data is encrypted unless Crypt is
False); chpass re-wraps the same keys under a new password and replaces the verifier (no
data is re-encrypted); keys moves the wrapped keys between the catalog and a key file;
mkkeybackup prints them as a page to keep on paper (still useless without the password).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from tardis.v1 import common_pb2 as common

from tardis_common.argparsing import add_common_options
from tardis_common.auth.srp_login import make_verifier
from tardis_common.crypto.kdf import KdfParams, derive
from tardis_common.crypto.keyfile import parse_printable_backup, printable_backup, read_key_file, write_key_file
from tardis_common.crypto.keys import unwrap_keys
from tardis_common.errors import ConfigError, InvalidArgument

from .connect import Repository, open_repository, unlock_repository
from .credentials import Unlocked, make_credentials
from .passwords import get_password
from .sonic_common import Handler, settings


def register(commands: Any) -> dict[str, Handler]:
    setpass = commands.add_parser("setpass", help="add a password to a client that has none")
    add_common_options(setpass)
    setpass.add_argument("--no-crypt", action="store_true", help="authenticate only; store new data unencrypted")
    chpass = commands.add_parser("chpass", help="change the client's password (the keys stay, re-wrapped)")
    add_common_options(chpass)
    new = chpass.add_mutually_exclusive_group(required=True)
    new.add_argument("--newpassword", nargs="?", const="", help="the new password (no value: prompt)")
    new.add_argument("--newpassword-file", help="read the new password from a file or URL")
    new.add_argument("--newpassword-prog", help="run a program for the new password")
    keys = commands.add_parser("keys", help="move the wrapped keys between the catalog and a key file (--keys)")
    add_common_options(keys)
    way = keys.add_mutually_exclusive_group(required=True)
    way.add_argument("--extract", action="store_true", help="write the keys to the --keys file")
    way.add_argument("--insert", action="store_true", help="store the keys from the --keys file in the catalog")
    keys.add_argument("--delete", action="store_true", help="and remove them from where they came from")
    keys.add_argument("--printable", metavar="FILE", help="with --insert: read a mkkeybackup page instead")
    backup = commands.add_parser("mkkeybackup", help="print the wrapped keys as a page to keep on paper")
    add_common_options(backup)
    backup.add_argument("--output", "-o", help="write the page to this file instead of standard output")
    return {"setpass": set_password, "chpass": change_password, "keys": move_keys, "mkkeybackup": key_backup}


def _store(repo: Repository, credentials: common.Credentials) -> None:
    repo.ingest.set_credentials(credentials)
    repo.known.forget_kdf()


def set_password(args: argparse.Namespace) -> int:
    config, url = settings(args)
    password = get_password(config, confirm=True)
    if password is None:
        raise ConfigError("give the new password with --password, --password-file or --password-prog")
    with open_repository(url, config, timeout=config.timeout, unlock=False) as repo:
        from .credentials import probe

        if probe(repo.ingest, repo.client).kdf_params:
            raise InvalidArgument(f"client {repo.client} already has a password; use sonic chpass to change it")
        encrypt = config.crypt and not args.no_crypt
        credentials, _keys, params = make_credentials(repo.client, password, encrypt=encrypt)
        if config.keyfile and credentials.wrapped_keys:
            write_key_file(config.keyfile, repo.client, params, credentials.wrapped_keys)
            credentials.wrapped_keys = b""
        _store(repo, credentials)
    what = "new backups are encrypted" if encrypt else "backups are authenticated but not encrypted"
    print(f"password set for client {repo.client}; {what}")
    if encrypt:
        print("keep the password safe: there is no way to recover it (see sonic mkkeybackup for the keys)")
    return 0


def _new_password(args: argparse.Namespace, config: Any) -> bytes:
    fresh = config.model_copy(
        update={
            "password": args.newpassword,
            "password_file": args.newpassword_file,
            "password_prog": args.newpassword_prog,
        }
    )
    password = get_password(fresh, confirm=True)
    assert password is not None  # the argument group is required
    return password


def _unlocked(repo: Repository) -> Unlocked:
    if repo.unlocked is None:
        raise ConfigError(f"client {repo.client} has no password; give it one with sonic setpass")
    return repo.unlocked


def change_password(args: argparse.Namespace) -> int:
    config, url = settings(args)
    with open_repository(url, config, timeout=config.timeout) as repo:
        unlocked = _unlocked(repo)
        new_password = _new_password(args, config)
        credentials, _keys, params = make_credentials(
            repo.client, new_password, encrypt=unlocked.encrypted, keys=unlocked.keys
        )
        if unlocked.encrypted and config.keyfile:
            write_key_file(config.keyfile, repo.client, params, credentials.wrapped_keys)
            credentials.wrapped_keys = b""  # the keys stay where they were: in the key file
        _store(repo, credentials)
    print(f"password of client {repo.client} changed; the data keeps its keys, nothing was re-encrypted")
    return 0


def _same_login(repo: Repository, unlocked: Unlocked, wrapped: bytes) -> common.Credentials:
    """The client's current login (same password, same KDF) with ``wrapped`` as its keys."""
    assert unlocked.params is not None and unlocked.secrets is not None
    srp_salt, verifier = make_verifier(repo.client, unlocked.secrets.auth_secret)
    return common.Credentials(
        client=repo.client,
        present=True,
        kdf_params=unlocked.params.to_json(),
        srp_salt=srp_salt,
        srp_verifier=verifier,
        wrapped_keys=wrapped,
        encrypted=True,
    )


def move_keys(args: argparse.Namespace) -> int:
    config, url = settings(args)
    if not config.keyfile and not args.printable:
        raise ConfigError("name the key file with --keys FILE")
    if args.extract:
        with open_repository(url, config.model_copy(update={"keyfile": None}), timeout=config.timeout) as repo:
            unlocked = _unlocked(repo)
            if not unlocked.encrypted:
                raise InvalidArgument(f"client {repo.client} is not encrypted: it has no keys")
            assert unlocked.params is not None and config.keyfile
            write_key_file(config.keyfile, repo.client, unlocked.params, unlocked.wrapped)
            if args.delete:
                _store(repo, _same_login(repo, unlocked, b""))
        where = " and removed them from the catalog" if args.delete else ""
        print(f"wrote the keys of client {repo.client} to {config.keyfile}{where}")
        return 0
    password = get_password(config)
    if password is None:
        raise ConfigError("the password is needed to check the keys before storing them")
    without_file = config.model_copy(update={"keyfile": None})
    with open_repository(url, without_file, timeout=config.timeout, unlock=False) as repo:
        unlock_repository(repo, without_file, password=password, need_keys=False)
        unlocked = _unlocked(repo)
        source: str = args.printable or config.keyfile or ""
        if args.printable:
            with open(args.printable, encoding="utf-8") as handle:
                params, wrapped = parse_printable_backup(handle.read(), repo.client)
        else:
            params, wrapped = read_key_file(source, repo.client)
        _check_unwraps(password, params, wrapped, repo.client, unlocked)
        _store(repo, _same_login(repo, unlocked, wrapped))
    if args.delete and not args.printable:
        os.unlink(source)
    print(f"stored the keys of client {repo.client} from {source} in the catalog")
    return 0


def _check_unwraps(password: bytes, params: KdfParams, wrapped: bytes, client: str, unlocked: Unlocked) -> None:
    kek = (
        unlocked.secrets.kek
        if unlocked.secrets is not None and params == unlocked.params
        else derive(password, params).kek
    )
    unwrap_keys(wrapped, kek, client)


def key_backup(args: argparse.Namespace) -> int:
    config, url = settings(args)
    with open_repository(url, config, timeout=config.timeout) as repo:
        unlocked = _unlocked(repo)
        if not unlocked.encrypted or unlocked.params is None:
            raise InvalidArgument(f"client {repo.client} is not encrypted: it has no keys")
        page = printable_backup(repo.client, unlocked.params, unlocked.wrapped)
    if args.output:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(page)
        print(f"wrote the key backup of client {repo.client} to {args.output}")
    else:
        sys.stdout.write(page)
    return 0
