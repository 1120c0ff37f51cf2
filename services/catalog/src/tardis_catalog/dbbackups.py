"""Rotated copies of a client's catalog (the seed's ``DBBackups``): ``tardis.db.1`` (newest)
to ``tardis.db.N``, taken with SQLite's online backup API after each completed set.

A copy is a complete, consistent database (no -wal beside it): to use one, stop the
catalog, copy it over ``tardis.db``, remove ``tardis.db-wal`` and ``tardis.db-shm``, and
start again. It holds the sets complete when it was taken; objects stored since then are
still on disk and reused by the next backup.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)


def backup_path(db_path: Path, number: int) -> Path:
    return db_path.with_name(f"{db_path.name}.{number}")


def rotate(conn: sqlite3.Connection, db_path: Path, keep: int) -> None:
    """Copy the database behind ``conn`` to ``<db>.1``, shifting older copies up to ``<db>.<keep>``.

    A failure (a full disk, say) is logged, never raised: the set is already complete."""
    if keep <= 0:
        return
    temp = db_path.with_name(f"{db_path.name}.backup-tmp")
    try:
        temp.unlink(missing_ok=True)
        copy = sqlite3.connect(str(temp))
        try:
            conn.backup(copy)
        finally:
            copy.close()
        with open(temp, "rb") as made:
            os.fsync(made.fileno())
        for number in range(keep - 1, 0, -1):
            older = backup_path(db_path, number)
            if older.exists():
                os.replace(older, backup_path(db_path, number + 1))
        os.replace(temp, backup_path(db_path, 1))
        _drop_beyond(db_path, keep)
    except (OSError, sqlite3.Error) as exc:
        log.warning("could not save a backup copy of %s (DBBackups): %s", db_path, exc)
        temp.unlink(missing_ok=True)


def _drop_beyond(db_path: Path, keep: int) -> None:
    """Remove copies numbered above ``keep`` (DBBackups was lowered)."""
    pattern = re.compile(re.escape(db_path.name) + r"\.(\d+)")
    for entry in os.scandir(db_path.parent):
        found = pattern.fullmatch(entry.name)
        if found and int(found.group(1)) > keep:
            os.unlink(entry.path)
