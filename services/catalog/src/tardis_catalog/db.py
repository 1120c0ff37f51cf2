"""Opening, creating and upgrading one client's SQLite database."""

from __future__ import annotations

import logging
import os
import sqlite3
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tardis_common.errors import AlreadyExists, Conflict, Corrupt, NoSpace, PermissionDenied

from . import schema

log = logging.getLogger(__name__)

DB_NAME = "tardis.db"


def connect(path: Path, read_only: bool = False, immutable: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the catalog's pragmas.

    ``immutable``: read-only without locks, -wal or -shm (a catalog on a network filesystem,
    where SQLite's locking cannot be trusted); writes are refused (``write_tx``)."""
    if read_only or immutable:
        flags = "mode=ro&immutable=1" if immutable else "mode=ro"
        uri = f"file:{urllib.parse.quote(str(path))}?{flags}"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    if immutable:
        conn.execute("PRAGMA query_only = ON")
    elif not read_only:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


@contextmanager
def write_tx(conn: sqlite3.Connection, full_sync: bool = False) -> Iterator[sqlite3.Connection]:
    """One write transaction; ``full_sync`` makes its commit fully synchronous."""
    if conn.execute("PRAGMA query_only").fetchone()[0]:
        raise PermissionDenied(
            "this repository is opened read-only (it is on a network filesystem); back up to the server that holds it"
        )
    if full_sync:
        conn.execute("PRAGMA synchronous = FULL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if not disk_full(exc):
            raise
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise NoSpace(
            f"no space left on the server for the catalog of client {_client_of(conn)} ({exc});"
            " free space and try again (completed sets are intact)"
        ) from None
    finally:
        if full_sync:
            conn.execute("PRAGMA synchronous = NORMAL")


def disk_full(exc: sqlite3.Error) -> bool:
    """SQLite's "database or disk is full" (SQLITE_FULL, from ENOSPC or a quota)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == sqlite3.SQLITE_FULL) or "disk is full" in str(exc)


def _client_of(conn: sqlite3.Connection) -> str:
    """The client a catalog belongs to: the name of the directory its file is in."""
    try:
        return Path(conn.execute("PRAGMA database_list").fetchone()[2]).parent.name or "?"
    except sqlite3.Error:
        return "?"


def create(directory: Path, client: str, created_ns: int) -> None:
    """Create ``directory/tardis.db`` atomically: built aside, then linked into place."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / DB_NAME
    if final.exists():
        raise AlreadyExists(f"client {client} already exists")
    tmp = directory / f"{DB_NAME}.creating"
    for stale in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        stale.unlink(missing_ok=True)
    conn = connect(tmp)
    try:
        with write_tx(conn, full_sync=True):
            schema.create_schema(conn)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("client_id", str(uuid.uuid4())), ("created_ns", str(created_ns))],
            )
    finally:
        conn.close()
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise AlreadyExists(f"client {client} already exists") from None
    finally:
        tmp.unlink(missing_ok=True)


def open_existing(path: Path, client: str, allow_upgrades: bool, immutable: bool = False) -> sqlite3.Connection:
    """Open a catalog, upgrading an older schema (after a backup copy) when allowed."""
    conn = connect(path, immutable=immutable)
    try:
        version = schema.get_version(conn)
        current = schema.SCHEMA_VERSION
        if version == 0:
            raise Corrupt(f"catalog of client {client} has no schema version; it is not a Tardis catalog")
        if version > current:
            raise Conflict(
                f"catalog of client {client} has schema version {version}, newer than version {current}"
                " that this server supports; upgrade the server"
            )
        if version < current:
            if not allow_upgrades:
                raise Conflict(
                    f"catalog of client {client} has schema version {version}, this server needs {current};"
                    " allow schema upgrades to convert it"
                )
            upgrade(conn, path, client, version)
    except BaseException:
        conn.close()
        raise
    return conn


def upgrade(conn: sqlite3.Connection, path: Path, client: str, version: int) -> None:
    backup_path = path.with_name(f"{path.name}.schema-v{version}.bak")
    copy = sqlite3.connect(str(backup_path))
    try:
        conn.backup(copy)
    finally:
        copy.close()
    log.warning(
        "upgrading catalog of client %s from schema version %d to %d (copy kept in %s)",
        client,
        version,
        schema.SCHEMA_VERSION,
        backup_path,
    )
    with write_tx(conn, full_sync=True):
        schema.migrate(conn, version)
