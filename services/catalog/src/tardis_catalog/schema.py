"""The catalog's SQLite schema: version 1 DDL, the migrations registry and version helpers.

A new database is created with the version 1 DDL and then brought to SCHEMA_VERSION by the
same migrations that upgrade an old one, so both paths always end in the same schema.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

SCHEMA_VERSION = 5

SCHEMA_V1: list[str] = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE sets (
        set_id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        session TEXT UNIQUE,
        completed INTEGER NOT NULL DEFAULT 0,
        priority INTEGER NOT NULL DEFAULT 0,
        locked INTEGER NOT NULL DEFAULT 0,
        start_ns INTEGER NOT NULL,
        end_ns INTEGER NOT NULL DEFAULT 0,
        client_time_ns INTEGER NOT NULL DEFAULT 0,
        client_end_ns INTEGER NOT NULL DEFAULT 0,
        client_version TEXT,
        server_version TEXT,
        explicit_name INTEGER NOT NULL DEFAULT 0,
        files_full INTEGER NOT NULL DEFAULT 0,
        files_delta INTEGER NOT NULL DEFAULT 0,
        bytes_received INTEGER NOT NULL DEFAULT 0)""",
    "CREATE TABLE names (name_id INTEGER PRIMARY KEY, name BLOB NOT NULL UNIQUE)",
    """CREATE TABLE dirs (
        dir_id INTEGER PRIMARY KEY,
        parent_id INTEGER NOT NULL,
        name_id INTEGER NOT NULL REFERENCES names,
        UNIQUE (parent_id, name_id))""",
    """CREATE TABLE objects (
        object_id INTEGER PRIMARY KEY,
        address BLOB NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        stored_size INTEGER NOT NULL,
        compression TEXT NOT NULL,
        encrypted INTEGER NOT NULL,
        basis_id INTEGER REFERENCES objects,
        chain_length INTEGER NOT NULL DEFAULT 0,
        added_set INTEGER NOT NULL,
        bad INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE entries (
        entry_id INTEGER PRIMARY KEY,
        dir_id INTEGER NOT NULL,
        name_id INTEGER NOT NULL REFERENCES names,
        first_set INTEGER NOT NULL,
        last_set INTEGER NOT NULL,
        type INTEGER NOT NULL,
        mode INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        device INTEGER NOT NULL,
        nlink INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        gid INTEGER NOT NULL,
        user_id INTEGER REFERENCES names,
        group_id INTEGER REFERENCES names,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        ctime_ns INTEGER NOT NULL,
        atime_ns INTEGER NOT NULL,
        object_id INTEGER REFERENCES objects,
        link_target BLOB,
        child_dir_id INTEGER)""",
    "CREATE INDEX entries_by_name ON entries (dir_id, name_id, last_set)",
    "CREATE INDEX entries_by_span ON entries (last_set, first_set)",
    "CREATE INDEX entries_by_object ON entries (object_id)",
    """CREATE TABLE lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        holder TEXT,
        session TEXT,
        fence INTEGER NOT NULL,
        expires_ns INTEGER NOT NULL,
        since_ns INTEGER NOT NULL)""",
]

# MIGRATIONS[v] converts a version v database to version v + 1. Steps run inside the
# caller's transaction: they must not commit (so no executescript).


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """Incremental backups: xattrs and flags on entries, signatures, tags, explicit priorities."""
    conn.execute("ALTER TABLE entries ADD COLUMN xattrs BLOB")
    conn.execute("ALTER TABLE entries ADD COLUMN flags INTEGER NOT NULL DEFAULT 0")
    conn.execute("ALTER TABLE objects ADD COLUMN has_signature INTEGER NOT NULL DEFAULT 0")
    conn.execute("CREATE INDEX objects_by_size ON objects (size)")
    conn.execute("ALTER TABLE sets ADD COLUMN explicit_priority INTEGER NOT NULL DEFAULT 0")
    conn.execute("ALTER TABLE sets ADD COLUMN pending_tags TEXT NOT NULL DEFAULT ''")
    conn.execute("CREATE TABLE tags (tag TEXT PRIMARY KEY, set_id INTEGER NOT NULL)")
    conn.execute("CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("ALTER TABLE sets ADD COLUMN keep_days INTEGER NOT NULL DEFAULT 0")


def _v2_to_v3(conn: sqlite3.Connection) -> None:
    """Encryption and login: credentials, each set's manifest object and recorded command line."""
    conn.execute(
        """CREATE TABLE credentials (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        kdf_params BLOB NOT NULL,
        srp_salt BLOB NOT NULL,
        srp_verifier BLOB NOT NULL,
        wrapped_keys BLOB NOT NULL,
        encrypted INTEGER NOT NULL)"""
    )
    conn.execute("ALTER TABLE sets ADD COLUMN manifest BLOB")
    conn.execute("ALTER TABLE sets ADD COLUMN command_line TEXT NOT NULL DEFAULT ''")


def _v3_to_v4(conn: sqlite3.Connection) -> None:
    """Encrypting an existing client in place (sonic encrypt): the work still to do, durably.

    Filled once by the job's plan; a row leaves its table in the transaction that converts it."""
    conn.execute("CREATE TABLE convert_names (name_id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE convert_entries (entry_id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE convert_sets (set_id INTEGER PRIMARY KEY, texts INTEGER NOT NULL, manifest INTEGER NOT NULL)"
    )
    conn.execute("CREATE TABLE convert_trash (address BLOB PRIMARY KEY)")


def _v4_to_v5(conn: sqlite3.Connection) -> None:
    """The deletion journal: objects the catalog forgot whose files may still exist.

    A purge inserts its orphans in the transaction that forgets them; they leave once their
    files are deleted (ForgetDeleted). An object row inserted again, or renamed to a doomed
    address, takes its address out of the journal in the same statement (the triggers), so
    content stored again after an interrupted purge is never deleted by the next one."""
    conn.execute("CREATE TABLE doomed (address BLOB PRIMARY KEY, stored_size INTEGER NOT NULL DEFAULT 0)")
    conn.execute(
        "CREATE TRIGGER objects_revive_doomed AFTER INSERT ON objects"
        " BEGIN DELETE FROM doomed WHERE address = NEW.address; END"
    )
    conn.execute(
        "CREATE TRIGGER objects_readdress_doomed AFTER UPDATE OF address ON objects"
        " BEGIN DELETE FROM doomed WHERE address = NEW.address; END"
    )


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _v1_to_v2,
    2: _v2_to_v3,
    3: _v3_to_v4,
    4: _v4_to_v5,
}


def get_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def set_version(conn: sqlite3.Connection, version: int) -> None:
    """Record ``version`` in both places: PRAGMA user_version and meta('schema_version')."""
    conn.execute(f"PRAGMA user_version = {int(version)}")
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(version),),
    )


def migrate(conn: sqlite3.Connection, start: int) -> None:
    """Run the migrations from ``start`` to SCHEMA_VERSION (inside the caller's transaction)."""
    for version in range(start, SCHEMA_VERSION):
        step = MIGRATIONS.get(version)
        if step is None:
            raise RuntimeError(f"no migration from catalog schema version {version} to {version + 1}")
        step(conn)
    set_version(conn, SCHEMA_VERSION)


def create_schema(conn: sqlite3.Connection) -> None:
    """Create a current-version schema (inside the caller's transaction)."""
    for statement in SCHEMA_V1:
        conn.execute(statement)
    set_version(conn, 1)
    migrate(conn, 1)
