"""The catalog side of encrypting an existing client in place (sonic encrypt; local only).

The job (tardis_cli.encrypt_job) holds the keys; this module never sees them: it hands out
the plaintext rows still to convert and stores the cipher text the job computed.

Durable progress, so a job killed at any point resumes without converting anything twice:
- the plan (one transaction, once per client) decides which rows are the unencrypted
  history, from the sets (a set without a sealed manifest is from before the password), and
  lists them in ``convert_names``, ``convert_entries`` (link targets, xattrs) and
  ``convert_sets`` (tags and command line; manifest still to seal). A row's bytes never
  decide whether it is encrypted.
- objects still to convert are those whose row says ``encrypted = 0``.
- a row leaves its list in the transaction that stores its cipher text; the object files it
  replaces are listed in ``convert_trash`` by that transaction and deleted after it.
Every write checks the writer lease the job holds (``take_lease``), one batch at a time.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from tardis.v1 import common_pb2 as common

from tardis_common.clock import Clock
from tardis_common.errors import Conflict, InvalidArgument

from . import db, leases
from .rows import OBJECT_SELECT, chunks, marks, object_from_row, to_i64

Opener = Callable[[], AbstractContextManager[sqlite3.Connection]]
PLAN_KEY = "encrypt_plan"
VACUUM_KEY = "encrypt_vacuumed"


@dataclass(frozen=True)
class PendingObject:
    """An object still stored in the clear, with what its conversion needs."""

    row_id: int
    address: bytes
    size: int
    compression: str
    has_signature: bool
    chain_length: int
    basis_row: int | None
    basis_address: bytes
    basis_encrypted: bool


@dataclass(frozen=True)
class ObjectChange:
    """Object ``row_id`` (stored at ``old_address``) now lives at ``new_address``."""

    row_id: int
    old_address: bytes
    new_address: bytes
    stored_size: int
    has_signature: bool


@dataclass(frozen=True)
class ObjectState:
    encrypted: bool
    basis_address: bytes


@dataclass
class Progress:
    planned: bool = False
    names: int = 0
    entries: int = 0
    set_texts: int = 0
    objects: int = 0
    manifests: int = 0
    trash: int = 0

    @property
    def names_done(self) -> bool:
        return self.planned and not (self.names or self.entries or self.set_texts)


class Conversion:
    def __init__(self, opener: Opener, client: str, clock: Clock, lease_ns: int) -> None:
        self._open = opener
        self.client = client
        self._clock = clock
        self._lease_ns = lease_ns
        with self._open() as conn:
            # Freed cells and pages are zeroed, so converted plaintext is not left in free space.
            conn.execute("PRAGMA secure_delete = ON")

    # -- the lease --------------------------------------------------------------------------

    def take_lease(self, holder: str, take_over: str = "") -> int:
        """The client's writer lease, when no live writer holds it (or ``take_over`` names the
        holder, known to be dead); its fence. Conflict otherwise."""
        with self._open() as conn, db.write_tx(conn):
            now = self._clock.now_ns()
            lease = leases.read(conn)
            if leases.live(lease, now) and not (take_over and lease and lease[0] == take_over):
                assert lease is not None
                raise Conflict(leases.held_by(self.client, lease))
            return leases.take(conn, lease, holder, None, now + self._lease_ns, now)

    def lease_holder(self) -> str | None:
        """Who holds the writer lease now (None when nobody does, or it has expired)."""
        with self._open() as conn:
            lease = conn.execute("SELECT holder, expires_ns FROM lease WHERE id = 1").fetchone()
        return lease[0] if lease is not None and lease[0] and lease[1] > self._clock.now_ns() else None

    def release_lease(self, fence: int) -> None:
        with self._open() as conn, db.write_tx(conn):
            conn.execute(
                "UPDATE lease SET holder = NULL, session = NULL, expires_ns = 0 WHERE id = 1 AND fence = ?", (fence,)
            )

    def _check(self, conn: sqlite3.Connection, fence: int) -> None:
        lease = conn.execute("SELECT holder, fence FROM lease WHERE id = 1").fetchone()
        if lease is None or lease[1] != fence or not lease[0]:
            raise Conflict(f"the encryption job of client {self.client} lost its lease")
        conn.execute("UPDATE lease SET expires_ns = ? WHERE id = 1", (self._clock.now_ns() + self._lease_ns,))

    # -- the plan ---------------------------------------------------------------------------

    def plan(self, fence: int) -> bool:
        """List the unencrypted history, once; True when planned by this call."""
        with self._open() as conn, db.write_tx(conn):
            self._check(conn, fence)
            if conn.execute("SELECT 1 FROM meta WHERE key = ?", (PLAN_KEY,)).fetchone():
                return False
            unfinished = conn.execute("SELECT set_id, name FROM sets WHERE completed = 0").fetchall()
            if unfinished:
                raise Conflict(
                    f"client {self.client} has an unfinished backup set ({unfinished[0][1]}): let the next backup"
                    " finish it, or remove it with sonic purge --incomplete, then run sonic encrypt again"
                )
            plain = [r[0] for r in conn.execute("SELECT set_id FROM sets WHERE manifest IS NULL ORDER BY set_id")]
            sealed = [r[0] for r in conn.execute("SELECT set_id FROM sets WHERE manifest IS NOT NULL")]
            boundary = max(plain, default=0)
            if sealed and min(sealed) < boundary:
                raise Conflict(
                    f"client {self.client}: sealed and unsealed backup sets are interleaved; this is not a history"
                    " backed up in the clear before a password was set"
                )
            crossing = conn.execute(
                "SELECT COUNT(*) FROM entries WHERE first_set <= ? AND last_set > ?", (boundary, boundary)
            ).fetchone()[0]
            if crossing:
                raise Conflict(f"client {self.client}: {crossing} entries span both unencrypted and encrypted sets")
            self._drop_orphans(conn)
            for table, side in (("plain_dirs", "<="), ("sealed_dirs", ">")):
                conn.execute(f"DROP TABLE IF EXISTS temp.{table}")
                conn.execute(
                    f"CREATE TEMP TABLE {table} AS WITH RECURSIVE used(id) AS ("
                    f" SELECT dir_id FROM entries WHERE first_set {side} :b"
                    f" UNION SELECT child_dir_id FROM entries WHERE first_set {side} :b AND child_dir_id IS NOT NULL"
                    " UNION SELECT d.parent_id FROM dirs d JOIN used u ON d.dir_id = u.id)"
                    " SELECT id FROM used WHERE id != 0",
                    {"b": boundary},
                )
            for table, side, dirs in (("plain_names", "<=", "plain_dirs"), ("sealed_names", ">", "sealed_dirs")):
                conn.execute(f"DROP TABLE IF EXISTS temp.{table}")
                conn.execute(
                    f"CREATE TEMP TABLE {table} AS"
                    f" SELECT name_id AS id FROM dirs WHERE dir_id IN (SELECT id FROM {dirs})"
                    f" UNION SELECT name_id FROM entries WHERE first_set {side} :b"
                    f" UNION SELECT user_id FROM entries WHERE first_set {side} :b AND user_id IS NOT NULL"
                    f" UNION SELECT group_id FROM entries WHERE first_set {side} :b AND group_id IS NOT NULL",
                    {"b": boundary},
                )
            mixed = conn.execute(
                "SELECT (SELECT COUNT(*) FROM plain_dirs WHERE id IN (SELECT id FROM sealed_dirs)),"
                " (SELECT COUNT(*) FROM plain_names WHERE id IN (SELECT id FROM sealed_names))"
            ).fetchone()
            if mixed[0] or mixed[1]:
                raise Conflict(
                    f"client {self.client}: {mixed[0]} directories and {mixed[1]} names are used by both unencrypted"
                    " and encrypted sets"
                )
            conn.execute("INSERT OR IGNORE INTO convert_names (name_id) SELECT id FROM plain_names")
            conn.execute(
                "INSERT OR IGNORE INTO convert_entries (entry_id) SELECT entry_id FROM entries"
                " WHERE first_set <= ? AND (link_target IS NOT NULL OR xattrs IS NOT NULL)",
                (boundary,),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO convert_sets (set_id, texts, manifest) VALUES (?, 1, 1)", [(s,) for s in plain]
            )
            for table in ("plain_dirs", "sealed_dirs", "plain_names", "sealed_names"):
                conn.execute(f"DROP TABLE temp.{table}")
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                (PLAN_KEY, json.dumps({"boundary": boundary, "planned_ns": self._clock.now_ns()})),
            )
            return True

    @staticmethod
    def _drop_orphans(conn: sqlite3.Connection) -> int:
        """Forget directories and names nothing refers to any more (left by removed sets)."""
        before = conn.total_changes
        conn.execute(
            "WITH RECURSIVE used(id) AS (SELECT dir_id FROM entries"
            " UNION SELECT child_dir_id FROM entries WHERE child_dir_id IS NOT NULL"
            " UNION SELECT d.parent_id FROM dirs d JOIN used u ON d.dir_id = u.id)"
            " DELETE FROM dirs WHERE dir_id NOT IN (SELECT id FROM used)"
        )
        conn.execute(
            "DELETE FROM names WHERE name_id NOT IN (SELECT name_id FROM dirs)"
            " AND name_id NOT IN (SELECT name_id FROM entries)"
            " AND name_id NOT IN (SELECT user_id FROM entries WHERE user_id IS NOT NULL)"
            " AND name_id NOT IN (SELECT group_id FROM entries WHERE group_id IS NOT NULL)"
        )
        return conn.total_changes - before

    def progress(self) -> Progress:
        with self._open() as conn:
            planned = conn.execute("SELECT 1 FROM meta WHERE key = ?", (PLAN_KEY,)).fetchone() is not None
            counts = conn.execute(
                "SELECT (SELECT COUNT(*) FROM convert_names JOIN names USING (name_id)),"
                " (SELECT COUNT(*) FROM convert_entries JOIN entries USING (entry_id)),"
                " (SELECT COUNT(*) FROM convert_sets c JOIN sets s USING (set_id) WHERE c.texts = 1),"
                " (SELECT COUNT(*) FROM objects WHERE encrypted = 0),"
                " (SELECT COUNT(*) FROM convert_sets c JOIN sets s USING (set_id) WHERE c.manifest = 1),"
                " (SELECT COUNT(*) FROM convert_trash)"
            ).fetchone()
        return Progress(planned, *counts)

    def flag(self, key: str) -> bool:
        with self._open() as conn:
            return conn.execute("SELECT 1 FROM meta WHERE key = ?", (key,)).fetchone() is not None

    def set_flag(self, key: str, on: bool) -> None:
        with self._open() as conn, db.write_tx(conn):
            if on:
                conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, '1')", (key,))
            else:
                conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    def vacuum(self) -> None:
        """Rebuild the database file and empty the WAL, so freed pages are gone from both."""
        with self._open() as conn:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- names ------------------------------------------------------------------------------

    def pending_names(self, limit: int) -> list[tuple[int, bytes]]:
        with self._open() as conn:
            rows = conn.execute(
                "SELECT n.name_id, n.name FROM convert_names c JOIN names n USING (name_id) ORDER BY c.name_id LIMIT ?",
                (limit,),
            ).fetchall()
            if not rows:  # rows whose name went away (never expected): nothing to convert
                conn.execute("DELETE FROM convert_names")
        return [(r[0], bytes(r[1])) for r in rows]

    def convert_names(self, fence: int, sealed: dict[int, bytes]) -> int:
        """Store each name's cipher text; a name already held sealed (a backup since the
        password) takes the plain one's place everywhere. Returns how many were merged."""
        merged = 0
        with self._open() as conn, db.write_tx(conn):
            self._check(conn, fence)
            for name_id, blob in sealed.items():
                if not conn.execute("SELECT 1 FROM convert_names WHERE name_id = ?", (name_id,)).fetchone():
                    continue  # converted by an earlier run
                if not blob:
                    raise InvalidArgument("a sealed name is empty")
                held = conn.execute("SELECT name_id FROM names WHERE name = ?", (blob,)).fetchone()
                if held is None:
                    conn.execute("UPDATE names SET name = ? WHERE name_id = ?", (blob, name_id))
                else:
                    if conn.execute("SELECT 1 FROM convert_names WHERE name_id = ?", (held[0],)).fetchone():
                        raise Conflict(f"client {self.client}: a sealed name equals an unencrypted one")
                    self._merge_name(conn, name_id, held[0])
                    merged += 1
                conn.execute("DELETE FROM convert_names WHERE name_id = ?", (name_id,))
        return merged

    @classmethod
    def _merge_name(cls, conn: sqlite3.Connection, old: int, new: int) -> None:
        for column in ("name_id", "user_id", "group_id"):
            conn.execute(f"UPDATE entries SET {column} = ? WHERE {column} = ?", (new, old))
        for dir_id, parent in conn.execute("SELECT dir_id, parent_id FROM dirs WHERE name_id = ?", (old,)).fetchall():
            twin = conn.execute("SELECT dir_id FROM dirs WHERE parent_id = ? AND name_id = ?", (parent, new)).fetchone()
            if twin is None:
                conn.execute("UPDATE dirs SET name_id = ? WHERE dir_id = ?", (new, dir_id))
            else:
                cls._merge_dir(conn, dir_id, twin[0])
        conn.execute("DELETE FROM names WHERE name_id = ?", (old,))

    @staticmethod
    def _merge_dir(conn: sqlite3.Connection, old: int, new: int) -> None:
        """Directory ``old`` is the same path as ``new``: move its entries and subdirectories."""
        pending = [(old, new)]
        while pending:
            source, target = pending.pop()
            conn.execute("UPDATE entries SET dir_id = ? WHERE dir_id = ?", (target, source))
            conn.execute("UPDATE entries SET child_dir_id = ? WHERE child_dir_id = ?", (target, source))
            children = conn.execute("SELECT dir_id, name_id FROM dirs WHERE parent_id = ?", (source,)).fetchall()
            for child, name_id in children:
                twin = conn.execute(
                    "SELECT dir_id FROM dirs WHERE parent_id = ? AND name_id = ?", (target, name_id)
                ).fetchone()
                if twin is None:
                    conn.execute("UPDATE dirs SET parent_id = ? WHERE dir_id = ?", (target, child))
                else:
                    pending.append((child, twin[0]))
            conn.execute("DELETE FROM dirs WHERE dir_id = ?", (source,))

    def pending_entries(self, limit: int) -> list[tuple[int, bytes, bytes]]:
        """(entry id, link target, xattrs) of unencrypted entries that have either."""
        with self._open() as conn:
            rows = conn.execute(
                "SELECT e.entry_id, e.link_target, e.xattrs FROM convert_entries c JOIN entries e USING (entry_id)"
                " ORDER BY c.entry_id LIMIT ?",
                (limit,),
            ).fetchall()
            if not rows:
                conn.execute("DELETE FROM convert_entries")  # rows of versions removed since the plan
        return [(r[0], bytes(r[1] or b""), bytes(r[2] or b"")) for r in rows]

    def convert_entries(self, fence: int, sealed: Sequence[tuple[int, bytes, bytes]]) -> None:
        with self._open() as conn, db.write_tx(conn):
            self._check(conn, fence)
            for entry_id, link, xattrs in sealed:
                if conn.execute("DELETE FROM convert_entries WHERE entry_id = ?", (entry_id,)).rowcount:
                    conn.execute(
                        "UPDATE entries SET link_target = ?, xattrs = ? WHERE entry_id = ?",
                        (link or None, xattrs or None, entry_id),
                    )

    def pending_set_texts(self, limit: int) -> list[tuple[int, str, list[str]]]:
        """(set id, command line, tags) of unencrypted sets whose texts are still in the clear."""
        with self._open() as conn:
            rows = conn.execute(
                "SELECT s.set_id, s.command_line FROM convert_sets c JOIN sets s USING (set_id)"
                " WHERE c.texts = 1 ORDER BY s.set_id LIMIT ?",
                (limit,),
            ).fetchall()
            return [
                (r[0], r[1] or "", [t[0] for t in conn.execute("SELECT tag FROM tags WHERE set_id = ?", (r[0],))])
                for r in rows
            ]

    def convert_set_texts(self, fence: int, sealed: Sequence[tuple[int, str, dict[str, str]]]) -> None:
        """Each set's sealed command line and tags (old tag -> sealed tag). A sealed tag already
        given to another set since the password stays there (it is the newer)."""
        with self._open() as conn, db.write_tx(conn):
            self._check(conn, fence)
            for set_id, command_line, tags in sealed:
                done = conn.execute("UPDATE convert_sets SET texts = 0 WHERE set_id = ? AND texts = 1", (set_id,))
                if not done.rowcount:
                    continue
                conn.execute("UPDATE sets SET command_line = ? WHERE set_id = ?", (command_line, set_id))
                for old, new in tags.items():
                    conn.execute("DELETE FROM tags WHERE tag = ? AND set_id = ?", (old, set_id))
                    conn.execute("INSERT OR IGNORE INTO tags (tag, set_id) VALUES (?, ?)", (new, set_id))

    def tidy_dirs(self, fence: int) -> tuple[int, int]:
        """(directories kept, rows of unused directories and names dropped)."""
        with self._open() as conn, db.write_tx(conn):
            self._check(conn, fence)
            dropped = self._drop_orphans(conn)
            return conn.execute("SELECT COUNT(*) FROM dirs").fetchone()[0], dropped

    # -- objects ----------------------------------------------------------------------------

    def pending_objects(self, limit: int, skip: Sequence[int] = ()) -> list[PendingObject]:
        """Unencrypted objects, bases before the deltas built on them."""
        with self._open() as conn:
            rows = conn.execute(
                "SELECT o.object_id, o.address, o.size, o.compression, o.has_signature, o.chain_length,"
                " o.basis_id, b.address, b.encrypted FROM objects o LEFT JOIN objects b ON b.object_id = o.basis_id"
                f" WHERE o.encrypted = 0 AND o.object_id NOT IN ({marks(len(skip))})"
                " ORDER BY o.chain_length, o.object_id LIMIT ?",
                (*skip, limit),
            ).fetchall()
        return [
            PendingObject(r[0], bytes(r[1]), r[2], r[3], bool(r[4]), r[5], r[6], bytes(r[7] or b""), bool(r[8]))
            for r in rows
        ]

    def object_state(self, address: bytes) -> ObjectState | None:
        with self._open() as conn:
            row = conn.execute(
                "SELECT o.encrypted, b.address FROM objects o LEFT JOIN objects b ON b.object_id = o.basis_id"
                " WHERE o.address = ?",
                (address,),
            ).fetchone()
        return None if row is None else ObjectState(bool(row[0]), bytes(row[1] or b""))

    def holds(self, address: bytes) -> bool:
        with self._open() as conn:
            return conn.execute("SELECT 1 FROM objects WHERE address = ?", (address,)).fetchone() is not None

    def convert_objects(self, fence: int, changes: Sequence[ObjectChange]) -> int:
        """Give each object its new address (its files are already stored there); an address
        already held (the content was backed up again since the password) takes the old
        row's place. The old addresses go to the trash. Returns how many were merged."""
        merged = 0
        with self._open() as conn, db.write_tx(conn):
            self._check(conn, fence)
            for change in changes:
                row = conn.execute(
                    "SELECT 1 FROM objects WHERE object_id = ? AND address = ? AND encrypted = 0",
                    (change.row_id, change.old_address),
                ).fetchone()
                if row is None:
                    continue
                held = conn.execute(
                    "SELECT object_id, chain_length FROM objects WHERE address = ?", (change.new_address,)
                ).fetchone()
                if held is None:
                    conn.execute(
                        "UPDATE objects SET address = ?, encrypted = 1, stored_size = ?, has_signature = ?"
                        " WHERE object_id = ?",
                        (change.new_address, to_i64(change.stored_size), int(change.has_signature), change.row_id),
                    )
                else:
                    conn.execute("UPDATE entries SET object_id = ? WHERE object_id = ?", (held[0], change.row_id))
                    conn.execute(
                        "UPDATE objects SET basis_id = ?, chain_length = ? WHERE basis_id = ?",
                        (held[0], held[1] + 1, change.row_id),
                    )
                    conn.execute("DELETE FROM objects WHERE object_id = ?", (change.row_id,))
                    merged += 1
                conn.execute("INSERT OR IGNORE INTO convert_trash (address) VALUES (?)", (change.old_address,))
        return merged

    def trash(self) -> list[bytes]:
        """Addresses whose files are to be deleted (none that an object row still uses): old
        ones this job replaced, and those an interrupted purge left in the deletion journal
        (``doomed``), whose files may hold content in the clear. Call it under the lease."""
        with self._open() as conn:
            conn.execute("DELETE FROM convert_trash WHERE address IN (SELECT address FROM objects)")
            rows = conn.execute(
                "SELECT address FROM convert_trash UNION"
                " SELECT address FROM doomed WHERE address NOT IN (SELECT address FROM objects)"
            )
            return [bytes(r[0]) for r in rows]

    def clear_trash(self, addresses: Sequence[bytes]) -> None:
        with self._open() as conn, db.write_tx(conn):
            for part in chunks(list(addresses), 500):
                conn.execute(f"DELETE FROM convert_trash WHERE address IN ({marks(len(part))})", part)
                conn.execute(f"DELETE FROM doomed WHERE address IN ({marks(len(part))})", part)

    def object_infos(self, after: int, limit: int) -> list[tuple[int, common.ObjectInfo]]:
        """(row id, ObjectInfo) of every object after row ``after``, in row order."""
        with self._open() as conn:
            rows = conn.execute(
                OBJECT_SELECT.replace("SELECT ", "SELECT o.object_id, ", 1)
                + " WHERE o.object_id > ? ORDER BY o.object_id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [(r[0], object_from_row(r[1:])) for r in rows]

    # -- manifests --------------------------------------------------------------------------

    def pending_manifests(self) -> list[int]:
        with self._open() as conn:
            return [
                r[0]
                for r in conn.execute(
                    "SELECT c.set_id FROM convert_sets c JOIN sets s USING (set_id) WHERE c.manifest = 1"
                    " ORDER BY c.set_id"
                )
            ]

    def attach_manifest(self, fence: int, set_id: int, info: common.ObjectInfo) -> None:
        """Record the sealed manifest (already stored) of a converted set."""
        with self._open() as conn, db.write_tx(conn):
            self._check(conn, fence)
            pending = conn.execute("SELECT 1 FROM convert_sets WHERE set_id = ? AND manifest = 1", (set_id,))
            if pending.fetchone() is None:
                return
            conn.execute(
                "INSERT INTO objects (address, size, stored_size, compression, encrypted, chain_length, added_set,"
                " has_signature) VALUES (?, ?, ?, ?, 1, 0, ?, 0) ON CONFLICT (address) DO NOTHING",
                (info.object_id, to_i64(info.size), to_i64(info.stored_size), info.compression, set_id),
            )
            conn.execute("UPDATE sets SET manifest = ? WHERE set_id = ?", (info.object_id, set_id))
            conn.execute("UPDATE convert_sets SET manifest = 0 WHERE set_id = ?", (set_id,))
