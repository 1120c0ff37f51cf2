"""The writer lease of a client: who holds it, and how a refusal names them.

One row (table ``lease``): ``holder`` (``host:pid``), ``session`` (a backup's session id,
``PURGE_SESSION`` for a purge deleting its orphans, ``REPAIR_SESSION`` while bad objects'
files move to quarantine, NULL for an encryption job), ``fence``,
``expires_ns``, ``since_ns``. The wording of a refusal is read by clients: a backup takes
over the lease of an ended run on its own host when the message says
``is being backed up by <host>:<pid> since`` or ``is being purged by <host>:<pid> since``.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

PURGE_SESSION = "(purge)"
REPAIR_SESSION = "(repair)"  # sonic verify --repair moving bad objects' files to quarantine
REPAIR_HOLDER = "sonic verify --repair"
_DOING = {PURGE_SESSION: "purged", REPAIR_SESSION: "repaired"}
LEASE_SELECT = "SELECT holder, session, fence, expires_ns, since_ns FROM lease WHERE id = 1"


def local_time(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1_000_000_000))


def read(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
    """The lease row (holder, session, fence, expires_ns, since_ns), or None."""
    row = conn.execute(LEASE_SELECT).fetchone()
    return tuple(row) if row is not None else None


def live(lease: tuple[Any, ...] | None, now_ns: int) -> bool:
    """Whether someone holds ``lease`` and it has not expired."""
    return lease is not None and bool(lease[0]) and lease[3] > now_ns


def held_by(client: str, lease: tuple[Any, ...]) -> str:
    """``client X is being backed up (or purged) by H since T``, for a Conflict."""
    doing = _DOING.get(lease[1], "backed up")
    return f"client {client} is being {doing} by {lease[0]} since {local_time(lease[4])}"


def take(
    conn: sqlite3.Connection,
    lease: tuple[Any, ...] | None,
    holder: str,
    session: str | None,
    expires_ns: int,
    now_ns: int,
) -> int:
    """Give the lease to ``holder`` with the next fence (the caller has checked it may); the fence."""
    fence = (lease[2] if lease is not None else 0) + 1
    conn.execute(
        "INSERT INTO lease (id, holder, session, fence, expires_ns, since_ns) VALUES (1, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, session = excluded.session,"
        " fence = excluded.fence, expires_ns = excluded.expires_ns, since_ns = excluded.since_ns",
        (holder, session, fence, expires_ns, now_ns),
    )
    return int(fence)


def release(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE lease SET holder = NULL, session = NULL, expires_ns = 0 WHERE id = 1")
