"""The catalog core: per-client SQLite databases of backup sets, entries and objects.

Version spans: an unchanged file is one row valid for sets first_set..last_set. Writers
hold a lease per client and present its fencing number on every write.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_common.clock import Clock, SystemClock
from tardis_common.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, PermissionDenied
from tardis_common.faults import fault_point
from tardis_common.names import check_client_name
from tardis_common.netfs import network_filesystem
from tardis_common.version import __version__

from . import db, dbbackups, leases, naming, tree
from .rows import (
    ENTRY_SELECT,
    OBJECT_SELECT,
    OBJECT_SELECT_WITH_BAD,
    SET_SELECT,
    chunks,
    entry_from_row,
    marks,
    object_from_row,
    set_from_row,
    show_id,
    to_i64,
    to_u64,
)

TREE_BATCH = 1000
ROOT_MODE = stat.S_IFDIR | 0o755
DAY_NS = 86_400 * 1_000_000_000


def _tag(conn: sqlite3.Connection, tag: str, set_id: int) -> None:
    """Give ``tag`` to ``set_id``; a tag names one set, so it moves from any other."""
    conn.execute(
        "INSERT INTO tags (tag, set_id) VALUES (?, ?) ON CONFLICT (tag) DO UPDATE SET set_id = excluded.set_id",
        (tag, set_id),
    )


log = logging.getLogger(__name__)


class _Slot:
    """One client's connection and the lock that serialises its use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None


def _maybe_changed(entry: common.Entry, row: tuple[Any, ...] | None) -> bool:
    """Whether ``entry`` may hold new content: no previous version, or another size or mtime."""
    return row is None or to_u64(row[14]) != entry.size or row[15] != entry.mtime_ns


class CatalogCore:
    def __init__(
        self,
        root: Path,
        clock: Clock | None = None,
        server_version: str = __version__,
        allow_upgrades: bool = True,
        lease_seconds: float = 30.0,
        set_formats: Sequence[str] = naming.DEFAULT_FORMATS,
        set_priorities: Sequence[int] = naming.DEFAULT_PRIORITIES,
        set_keep_days: Sequence[int] = naming.DEFAULT_KEEP_DAYS,
        read_only: bool | None = None,
        db_backups: int = 5,
    ) -> None:
        """``read_only``: open every catalog without locks and refuse writes; by default, when
        ``root`` is on a network filesystem (NFS, SMB), where SQLite's WAL cannot be trusted.
        ``db_backups`` (DBBackups): rotated copies of a catalog kept, one taken per completed set."""
        self._db_backups = db_backups
        self._root = Path(root)
        if read_only is None:
            kind = network_filesystem(self._root) if self._root.exists() else None
            if kind is not None:
                log.info("%s is on a network filesystem (%s): opening its catalogs read-only", self._root, kind)
            read_only = kind is not None
        self.read_only = read_only
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._server_version = server_version
        self._allow_upgrades = allow_upgrades
        self._lease_ns = int(lease_seconds * 1_000_000_000)
        self._formats = list(set_formats)
        self._priorities = list(set_priorities)
        self._keep_days = list(set_keep_days)
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}

    # -- plumbing ---------------------------------------------------------------------------

    def _path(self, client: str) -> Path:
        return self._root / client / db.DB_NAME

    def _slot(self, client: str) -> _Slot:
        with self._lock:
            return self._slots.setdefault(client, _Slot())

    @contextmanager
    def _db(self, client: str) -> Iterator[sqlite3.Connection]:
        """The client's connection, opened (and upgraded) on first use, under its lock."""
        name = check_client_name(client)
        slot = self._slot(name)
        with slot.lock:
            if slot.conn is None:
                path = self._path(name)
                if not path.is_file():
                    raise NotFound(f"client {name} does not exist")
                slot.conn = db.open_existing(path, name, self._allow_upgrades, immutable=self.read_only)
            yield slot.conn

    def close(self) -> None:
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            with slot.lock:
                if slot.conn is not None:
                    slot.conn.close()
                    slot.conn = None

    @staticmethod
    def _set_row(conn: sqlite3.Connection, client: str, set_id: int) -> tuple[Any, ...]:
        row = conn.execute(
            "SELECT set_id, completed, explicit_name, name, priority, client_time_ns, start_ns"
            " FROM sets WHERE set_id = ?",
            (set_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"backup set {set_id} of client {client} does not exist")
        return tuple(row)

    @staticmethod
    def _floor(conn: sqlite3.Connection, set_id: int) -> int | None:
        """The largest complete set before ``set_id`` (None if there is none)."""
        row = conn.execute("SELECT MAX(set_id) FROM sets WHERE completed = 1 AND set_id < ?", (set_id,)).fetchone()
        return row[0] if row and row[0] is not None else None

    def _check_write(self, conn: sqlite3.Connection, client: str, set_id: int, fence: int) -> tuple[Any, ...]:
        """Refuse a write with a stale fence or to a complete set; renew the lease."""
        row = self._set_row(conn, client, set_id)
        lease = conn.execute("SELECT holder, fence FROM lease WHERE id = 1").fetchone()
        if lease is None or lease[1] != fence:
            holder = lease[0] if lease and lease[0] else "another session"
            raise Conflict(f"the backup session of client {client} was taken over by {holder}")
        if lease[0] is None:
            raise Conflict(f"the backup session of client {client} has ended; begin a new one")
        if row[1]:
            raise Conflict(f"backup set {set_id} of client {client} is already complete")
        conn.execute("UPDATE lease SET expires_ns = ? WHERE id = 1", (self._clock.now_ns() + self._lease_ns,))
        return row

    def _get_set(self, conn: sqlite3.Connection, set_id: int) -> common.BackupSet:
        found = set_from_row(conn.execute(SET_SELECT + " WHERE set_id = ?", (set_id,)).fetchone())
        found.tags.extend(r[0] for r in conn.execute("SELECT tag FROM tags WHERE set_id = ? ORDER BY tag", (set_id,)))
        return found

    # -- clients ----------------------------------------------------------------------------

    def create_client(self, request: cat.ClientRequest) -> common.ClientInfo:
        name = check_client_name(request.client)
        slot = self._slot(name)
        with slot.lock:
            if self._path(name).exists():
                raise AlreadyExists(f"client {name} already exists")
            if self.read_only:
                raise PermissionDenied(f"cannot create client {name}: this repository is opened read-only")
            db.create(self._root / name, name, self._clock.now_ns())
        return self.get_client(request)

    def get_client(self, request: cat.ClientRequest) -> common.ClientInfo:
        with self._db(request.client) as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            return common.ClientInfo(
                client=request.client,
                client_id=meta.get("client_id", ""),
                schema_version=int(meta.get("schema_version", "0")),
                created_ns=int(meta.get("created_ns", "0")),
            )

    # -- credentials ------------------------------------------------------------------------

    def get_credentials(self, request: cat.ClientRequest) -> common.Credentials:
        with self._db(request.client) as conn:
            row = conn.execute(
                "SELECT kdf_params, srp_salt, srp_verifier, wrapped_keys, encrypted FROM credentials WHERE id = 1"
            ).fetchone()
        if row is None:
            return common.Credentials(client=request.client, present=False)
        return common.Credentials(
            client=request.client,
            present=True,
            kdf_params=bytes(row[0]),
            srp_salt=bytes(row[1]),
            srp_verifier=bytes(row[2]),
            wrapped_keys=bytes(row[3]),
            encrypted=bool(row[4]),
        )

    def set_credentials(self, request: common.Credentials) -> common.Credentials:
        """Replace the client's credentials; ``present = False`` removes them."""
        if request.present and not (request.kdf_params and request.srp_salt and request.srp_verifier):
            raise InvalidArgument("credentials need KDF parameters, an SRP salt and a verifier")
        with self._db(request.client) as conn, db.write_tx(conn, full_sync=True):
            conn.execute("DELETE FROM credentials")
            if request.present:
                conn.execute(
                    "INSERT INTO credentials (id, kdf_params, srp_salt, srp_verifier, wrapped_keys, encrypted)"
                    " VALUES (1, ?, ?, ?, ?, ?)",
                    (
                        request.kdf_params,
                        request.srp_salt,
                        request.srp_verifier,
                        request.wrapped_keys,
                        int(request.encrypted),
                    ),
                )
        return self.get_credentials(cat.ClientRequest(client=request.client))

    # -- sets -------------------------------------------------------------------------------

    def begin_set(self, request: cat.BeginSetRequest) -> cat.BeginSetReply:
        client = request.client
        if not request.session:
            raise InvalidArgument("a backup session needs a session id")
        with self._db(client) as conn, db.write_tx(conn):
            now = self._clock.now_ns()
            lease = leases.read(conn)
            if leases.live(lease, now) and not request.force:
                assert lease is not None
                raise Conflict(f"{leases.held_by(client, lease)}; use --force to take over")
            fence = leases.take(
                conn, lease, request.holder or "an unnamed writer", request.session, now + self._lease_ns, now
            )
            row = conn.execute("SELECT set_id FROM sets WHERE completed = 0 ORDER BY set_id DESC LIMIT 1").fetchone()
            current = row[0] if row else 0
            other = conn.execute(
                "SELECT set_id FROM sets WHERE session = ? AND set_id != ?", (request.session, current)
            ).fetchone()
            if other is not None:
                raise Conflict(f"session {request.session} was already used by backup set {other[0]}")
            if request.name:
                taken = conn.execute(
                    "SELECT set_id FROM sets WHERE name = ? AND set_id != ?", (request.name, current)
                ).fetchone()
                if taken is not None:
                    raise AlreadyExists(f"backup set name {request.name} is already used by set {taken[0]}")
            if current:
                conn.execute(
                    "UPDATE sets SET session = ?, explicit_priority = ?, pending_tags = ?, command_line = ?"
                    " WHERE set_id = ?",
                    (request.session, request.priority, json.dumps(list(request.tags)), request.command_line, current),
                )
                if request.name:
                    conn.execute(
                        "UPDATE sets SET name = ?, explicit_name = 1 WHERE set_id = ?",
                        (request.name, current),
                    )
                set_id, resumed = current, True
            else:
                cur = conn.execute(
                    "INSERT INTO sets (name, session, start_ns, client_time_ns, client_version, server_version,"
                    " explicit_name, explicit_priority, pending_tags, command_line)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        request.name or naming.incomplete_name(request.session),
                        request.session,
                        now,
                        request.client_time_ns,
                        request.client_version,
                        request.server_version or self._server_version,
                        1 if request.name else 0,
                        request.priority,
                        json.dumps(list(request.tags)),
                        request.command_line,
                    ),
                )
                set_id, resumed = int(cur.lastrowid or 0), False
            previous = conn.execute("SELECT MAX(set_id) FROM sets WHERE completed = 1").fetchone()[0] or 0
            return cat.BeginSetReply(
                set=self._get_set(conn, set_id), previous_set_id=previous, resumed=resumed, fence=fence
            )

    def complete_set(self, request: cat.CompleteSetRequest) -> common.BackupSet:
        done = self._complete_set(request)
        if self._db_backups:
            with self._db(request.client) as conn:
                dbbackups.rotate(conn, self._path(request.client), self._db_backups)
        return done

    def _complete_set(self, request: cat.CompleteSetRequest) -> common.BackupSet:
        client, set_id = request.client, request.set_id
        with self._db(client) as conn, db.write_tx(conn, full_sync=True):
            row = self._check_write(conn, client, set_id, request.fence)
            _, _, explicit, name, priority, client_time_ns, start_ns = row
            keep_days = 0  # explicitly named sets are kept until deleted
            if not explicit:

                def is_used(candidate: str) -> bool:
                    sql = "SELECT 1 FROM sets WHERE name = ? AND set_id != ?"
                    return conn.execute(sql, (candidate, set_id)).fetchone() is not None

                formats, priorities, keeps = self._naming(conn)
                name, priority, index = naming.choose_name(client_time_ns or start_ns, is_used, formats, priorities)
                keep_days = keeps[index] if 0 <= index < len(keeps) else 0
            explicit_priority, pending = conn.execute(
                "SELECT explicit_priority, pending_tags FROM sets WHERE set_id = ?", (set_id,)
            ).fetchone()
            if explicit_priority:
                priority = explicit_priority
            if request.manifest_id:
                held = conn.execute("SELECT 1 FROM objects WHERE address = ?", (request.manifest_id,)).fetchone()
                if held is None:
                    raise InvalidArgument(f"the manifest object of backup set {set_id} was never stored")
                conn.execute("UPDATE sets SET manifest = ? WHERE set_id = ?", (request.manifest_id, set_id))
            conn.execute(
                "UPDATE sets SET name = ?, priority = ?, completed = 1, end_ns = ?, client_end_ns = ?,"
                " pending_tags = '', keep_days = ? WHERE set_id = ?",
                (name, priority, self._clock.now_ns(), request.client_end_time_ns, keep_days, set_id),
            )
            for tag in json.loads(pending or "[]"):
                _tag(conn, tag, set_id)
            leases.release(conn)
            fault_point("catalog.complete-before-commit")
            return self._get_set(conn, set_id)

    def _naming(self, conn: sqlite3.Connection) -> tuple[list[str], list[int], list[int]]:
        """Set-name formats, priorities and keep periods: the client's own if set, else the server's."""
        config = dict(
            conn.execute("SELECT key, value FROM config WHERE key IN ('Formats', 'Priorities', 'KeepPeriods')")
        )

        def numbers(key: str, default: list[int]) -> list[int]:
            try:
                return [int(v) for v in config[key].split(",")] if key in config else default
            except ValueError:
                return default

        formats = [f.strip() for f in config.get("Formats", "").split(",") if f.strip()] or self._formats
        priorities = numbers("Priorities", self._priorities)
        keeps = numbers("KeepPeriods", self._keep_days)
        if len(formats) != len(priorities):
            formats, priorities = self._formats, self._priorities
        if len(keeps) != len(formats):
            keeps = [0] * len(formats)
        return formats, priorities, keeps

    def get_client_config(self, request: cat.ClientRequest) -> cat.ClientConfig:
        with self._db(request.client) as conn:
            return cat.ClientConfig(client=request.client, values=dict(conn.execute("SELECT key, value FROM config")))

    def set_client_config(self, request: cat.ClientConfig) -> cat.ClientConfig:
        with self._db(request.client) as conn, db.write_tx(conn):
            for key, value in request.values.items():
                if not key:
                    raise InvalidArgument("a client setting needs a name")
                if value:
                    conn.execute(
                        "INSERT INTO config (key, value) VALUES (?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (key, value),
                    )
                else:
                    conn.execute("DELETE FROM config WHERE key = ?", (key,))
            self._check_naming(conn)
        return self.get_client_config(cat.ClientRequest(client=request.client))

    @staticmethod
    def _check_naming(conn: sqlite3.Connection) -> None:
        """Formats, Priorities and KeepPeriods, where a client sets them, must agree in count."""
        config = dict(conn.execute("SELECT key, value FROM config"))
        counts = {}
        for key in ("Formats", "Priorities", "KeepPeriods"):
            if key in config:
                items = [v.strip() for v in config[key].split(",") if v.strip()]
                if key != "Formats" and not all(v.lstrip("-").isdigit() for v in items):
                    raise InvalidArgument(f"{key} must be a comma-separated list of integers, not {config[key]!r}")
                counts[key] = len(items)
        if len(set(counts.values())) > 1:
            shown = ", ".join(f"{k} has {n}" for k, n in counts.items())
            raise InvalidArgument(f"client settings disagree in length: {shown}")

    def expire_sets(self, request: cat.ExpireSetsRequest) -> cat.ExpireSetsReply:
        client, set_id = request.client, request.set_id
        # Fully synchronous: the orphans' files are deleted next, so this commit must not be lost.
        with self._db(client) as conn, db.write_tx(conn, full_sync=True):
            self._check_write(conn, client, set_id, request.fence)
            newest = conn.execute("SELECT MAX(set_id) FROM sets WHERE completed = 1").fetchone()[0] or 0
            expired = [
                row[0]
                for row in conn.execute(
                    "SELECT set_id FROM sets WHERE completed = 1 AND locked = 0 AND keep_days > 0"
                    " AND set_id NOT IN (?, ?) AND end_ns + keep_days * ? < ? ORDER BY set_id",
                    (newest, set_id, DAY_NS, self._clock.now_ns()),
                )
            ]
            if expired:
                return self._remove(conn, expired)
            reply = cat.ExpireSetsReply()
            self._add_doomed(conn, reply)  # left by an interrupted purge: deleted now
            return reply

    def remove_sets(self, request: cat.RemoveSetsRequest) -> cat.ExpireSetsReply:
        """Remove sets (and the objects only they needed) while no one holds the writer lease,
        or ``take_over`` names its holder (a run known to have ended).

        When the reply names orphans, the writer lease goes to ``holder`` in the same
        transaction (``reply.fence``): from the commit until the caller's last
        ``forget_deleted`` (``release``), no backup can begin and be told one of them is not
        held, store it again (its file still exists: deduplicated) and record it, just before
        the caller deletes that file."""
        client = request.client
        with self._db(client) as conn, db.write_tx(conn, full_sync=True):  # as expire_sets
            now = self._clock.now_ns()
            lease = leases.read(conn)
            if leases.live(lease, now) and not (request.take_over and lease and lease[0] == request.take_over):
                assert lease is not None
                raise Conflict(f"{leases.held_by(client, lease)}; try again when it is done")
            chosen: list[int] = []
            for set_id in request.set_ids:
                row = self._set_row(conn, client, set_id)
                if conn.execute("SELECT locked FROM sets WHERE set_id = ?", (set_id,)).fetchone()[0]:
                    raise Conflict(f"backup set {row[3]} is locked; unlock it first")
                chosen.append(set_id)
            if request.purge:
                newest = conn.execute("SELECT MAX(set_id) FROM sets WHERE completed = 1").fetchone()[0] or 0
                if request.incomplete:  # no backup is running (checked above): these are abandoned
                    chosen += [r[0] for r in conn.execute("SELECT set_id FROM sets WHERE completed = 0")]
                else:
                    chosen += [
                        r[0]
                        for r in conn.execute(
                            "SELECT set_id FROM sets WHERE completed = 1 AND locked = 0 AND set_id != ?"
                            " AND priority <= ? AND end_ns < ?"
                            + (
                                " AND keep_days > 0 AND end_ns + keep_days * ? < ?"
                                if request.within_keep_periods
                                else ""
                            ),
                            (newest, request.max_priority, request.before_ns)
                            + ((DAY_NS, self._clock.now_ns()) if request.within_keep_periods else ()),
                        )
                    ]
            reply = self._remove(conn, sorted(set(chosen)))
            if reply.orphans:
                holder = request.holder or "a purge"
                reply.fence = leases.take(conn, lease, holder, leases.PURGE_SESSION, now + self._lease_ns, now)
            return reply

    def _remove(self, conn: sqlite3.Connection, set_ids: list[int]) -> cat.ExpireSetsReply:
        """Remove sets, the versions no remaining set holds, and the objects nothing needs.

        Objects are forgotten here, in the same transaction; the caller deletes them from the
        blobstore afterwards, so no session can be told an object exists that is going away.
        They go to the deletion journal (``doomed``) in this transaction too, and the reply
        names, besides them, every object an earlier, interrupted call left there, until the
        caller reports the files gone (``forget_deleted``).
        """
        reply = cat.ExpireSetsReply()
        reply.removed.extend(self._get_set(conn, s) for s in set_ids)
        limit = tree.max_params(conn)
        for part in chunks(set_ids, limit):
            conn.execute(f"DELETE FROM sets WHERE set_id IN ({marks(len(part))})", part)
            conn.execute(f"DELETE FROM tags WHERE set_id IN ({marks(len(part))})", part)
        if set_ids:
            conn.execute(
                "DELETE FROM entries WHERE NOT EXISTS"
                " (SELECT 1 FROM sets s WHERE s.set_id BETWEEN entries.first_set AND entries.last_set)"
            )
        orphans = conn.execute(
            "WITH RECURSIVE needed(id) AS ("
            " SELECT DISTINCT object_id FROM entries WHERE object_id IS NOT NULL"
            " UNION SELECT o.object_id FROM sets s JOIN objects o ON o.address = s.manifest"
            " UNION SELECT o.basis_id FROM objects o JOIN needed n ON o.object_id = n.id"
            " WHERE o.basis_id IS NOT NULL)"
            " SELECT object_id, address, stored_size FROM objects WHERE object_id NOT IN (SELECT id FROM needed)"
        ).fetchall()
        conn.executemany(
            "INSERT INTO doomed (address, stored_size) VALUES (?, ?)"
            " ON CONFLICT (address) DO UPDATE SET stored_size = excluded.stored_size",
            [(o[1], o[2]) for o in orphans],
        )
        for part in chunks([o[0] for o in orphans], limit):
            conn.execute(f"DELETE FROM objects WHERE object_id IN ({marks(len(part))})", part)
        reply.orphans.extend(bytes(o[1]) for o in orphans)
        reply.orphan_bytes = sum(to_i64(o[2]) for o in orphans)
        self._add_doomed(conn, reply)
        fault_point("catalog.remove-before-commit")
        return reply

    @staticmethod
    def _add_doomed(conn: sqlite3.Connection, reply: cat.ExpireSetsReply) -> None:
        """Add to ``reply`` the journal's objects it does not name yet. An address that has an
        object row again is content stored since: never an orphan (the triggers drop such
        rows; this guards the reply as well)."""
        named = set(reply.orphans)
        for address, stored_size in conn.execute(
            "SELECT address, stored_size FROM doomed WHERE address NOT IN (SELECT address FROM objects)"
            " ORDER BY address"
        ):
            if bytes(address) not in named:
                reply.orphans.append(bytes(address))
                reply.orphan_bytes += max(0, int(stored_size))

    def forget_deleted(self, request: cat.ForgetDeletedRequest) -> cat.ForgetDeletedReply:
        """Take objects whose files are deleted out of the deletion journal; how many were in it.

        Under the writer lease (``fence``: a purge's from ``remove_sets``, or the backup
        session's), renewed; ``release`` ends it in the same transaction."""
        client = request.client
        wanted = list(dict.fromkeys(request.object_ids))
        forgotten = 0
        with self._db(client) as conn, db.write_tx(conn):
            lease = leases.read(conn)
            if lease is None or not lease[0] or lease[2] != request.fence:
                if lease is not None and lease[0]:
                    raise Conflict(f"the writer lease of client {client} was taken over by {lease[0]}")
                raise Conflict(f"the writer lease of client {client} has ended; its deletions were not recorded")
            for part in chunks(wanted, tree.max_params(conn)):
                sql = f"DELETE FROM doomed WHERE address IN ({marks(len(part))})"
                forgotten += conn.execute(sql, part).rowcount
            if request.release:
                leases.release(conn)
            else:
                conn.execute("UPDATE lease SET expires_ns = ? WHERE id = 1", (self._clock.now_ns() + self._lease_ns,))
        return cat.ForgetDeletedReply(forgotten=forgotten)

    def update_set(self, request: cat.UpdateSetRequest) -> common.BackupSet:
        set_id = request.set_id
        with self._db(request.client) as conn, db.write_tx(conn):
            row = self._set_row(conn, request.client, set_id)
            if request.name and request.name != row[3]:
                if not row[1]:
                    raise Conflict(f"backup set {set_id} is not complete; it cannot be renamed yet")
                taken = conn.execute("SELECT set_id FROM sets WHERE name = ?", (request.name,)).fetchone()
                if taken is not None:
                    raise AlreadyExists(f"backup set name {request.name} is already used by set {taken[0]}")
                conn.execute("UPDATE sets SET name = ?, explicit_name = 1 WHERE set_id = ?", (request.name, set_id))
            if request.set_priority:
                conn.execute("UPDATE sets SET priority = ? WHERE set_id = ?", (request.priority, set_id))
            if request.set_locked:
                conn.execute("UPDATE sets SET locked = ? WHERE set_id = ?", (int(request.locked), set_id))
            for tag in request.remove_tags:
                conn.execute("DELETE FROM tags WHERE tag = ? AND set_id = ?", (tag, set_id))
            for tag in request.add_tags:
                if not tag:
                    raise InvalidArgument("a tag cannot be empty")
                _tag(conn, tag, set_id)
            return self._get_set(conn, set_id)

    def list_sets(self, request: cat.ClientRequest) -> cat.ListSetsReply:
        with self._db(request.client) as conn:
            rows = conn.execute(SET_SELECT + " ORDER BY set_id").fetchall()
            tags: dict[int, list[str]] = {}
            for tag, set_id in conn.execute("SELECT tag, set_id FROM tags ORDER BY tag"):
                tags.setdefault(set_id, []).append(tag)
            sets = [set_from_row(r) for r in rows]
            for one in sets:
                one.tags.extend(tags.get(one.id, []))
            return cat.ListSetsReply(sets=sets)

    # -- entries ----------------------------------------------------------------------------

    def lookup_entries(self, request: cat.LookupEntriesRequest) -> cat.LookupEntriesReply:
        set_id = request.set_id
        reply = cat.LookupEntriesReply()
        with self._db(request.client) as conn:
            self._set_row(conn, request.client, set_id)
            floor = self._floor(conn, set_id)
            low = floor if floor is not None else set_id
            cache: tree.DirCache = {}
            limit = tree.max_params(conn)
            for group in request.groups:
                dir_id = tree.find_dir(conn, group.dir.components, cache)
                best: dict[bytes, tuple[Any, ...]] = {}
                if dir_id is not None and group.entries:
                    names = list({e.name for e in group.entries})
                    for part in chunks(names, limit):
                        sql = (
                            ENTRY_SELECT + f" WHERE e.dir_id = ? AND n.name IN ({marks(len(part))})"
                            " AND e.last_set BETWEEN ? AND ?"
                        )
                        for row in conn.execute(sql, (dir_id, *part, low, set_id)):
                            name = bytes(row[2])
                            seen = best.get(name)
                            if seen is None or (row[4], row[0]) > (seen[4], seen[0]):
                                best[name] = row
                infos = self._objects(conn, [bytes(r[18]) for r in best.values() if r[18]], limit)
                # The dedup probe matters only for entries whose content may have changed:
                # new ones, and those whose size or mtime differ from their previous version.
                new_sizes = [e.size for e in group.entries if e.size and _maybe_changed(e, best.get(e.name))]
                held = self._sizes_held(conn, new_sizes, limit) if new_sizes else set()
                for entry in group.entries:
                    row = best.get(entry.name)
                    reply.size_held.append(entry.size in held)
                    if row is None:
                        reply.previous.add(found=False)
                        continue
                    previous = reply.previous.add(found=True, entry=entry_from_row(row))
                    info = infos.get(previous.entry.object_id)
                    if info is not None:
                        previous.object.CopyFrom(info)
        return reply

    @staticmethod
    def _objects(conn: sqlite3.Connection, addresses: Sequence[bytes], limit: int) -> dict[bytes, common.ObjectInfo]:
        """ObjectInfo of those ``addresses`` that are held and not bad."""
        found: dict[bytes, common.ObjectInfo] = {}
        for part in chunks(list(set(addresses)), limit):
            sql = OBJECT_SELECT + f" WHERE o.bad = 0 AND o.address IN ({marks(len(part))})"
            for row in conn.execute(sql, part):
                found[bytes(row[0])] = object_from_row(row)
        return found

    @staticmethod
    def _sizes_held(conn: sqlite3.Connection, sizes: Sequence[int], limit: int) -> set[int]:
        held: set[int] = set()
        for part in chunks(list({to_i64(s) for s in sizes}), limit):
            sql = f"SELECT DISTINCT size FROM objects WHERE bad = 0 AND size IN ({marks(len(part))})"
            held.update(r[0] for r in conn.execute(sql, part))
        return held

    def record_entries(self, request: cat.RecordEntriesRequest) -> cat.RecordEntriesReply:
        client, set_id = request.client, request.set_id
        with self._db(client) as conn, db.write_tx(conn):
            self._check_write(conn, client, set_id, request.fence)
            floor = self._floor(conn, set_id)
            limit = tree.max_params(conn)
            self._insert_objects(conn, set_id, request.objects)
            extended = 0
            low = floor if floor is not None else set_id
            ids = list(set(request.extend_entry_ids))
            for part in chunks(ids, limit):
                cur = conn.execute(
                    f"UPDATE entries SET last_set = ? WHERE entry_id IN ({marks(len(part))})"
                    " AND last_set BETWEEN ? AND ?",
                    (set_id, *part, low, set_id),
                )
                extended += cur.rowcount
            for part in chunks(list(set(request.verified_entry_ids)), limit):
                cur = conn.execute(  # the same, and the version is no longer racily clean
                    f"UPDATE entries SET last_set = ?, flags = flags & ~? WHERE entry_id IN ({marks(len(part))})"
                    " AND last_set BETWEEN ? AND ?",
                    (set_id, common.ENTRY_FLAG_RACY, *part, low, set_id),
                )
                extended += cur.rowcount
            cache: tree.DirCache = {}
            trimmed_to = floor if floor is not None else set_id - 1
            inserted = sum(
                self._insert_group(conn, set_id, trimmed_to, group, cache, limit) for group in request.insert
            )
            conn.execute(
                "UPDATE sets SET bytes_received = bytes_received + ?, files_full = files_full + ?,"
                " files_delta = files_delta + ? WHERE set_id = ?",
                (to_i64(request.bytes_received), to_i64(request.files_full), to_i64(request.files_delta), set_id),
            )
            fault_point("catalog.record-before-commit")
        return cat.RecordEntriesReply(extended=extended, inserted=inserted)

    @staticmethod
    def _insert_objects(conn: sqlite3.Connection, set_id: int, objects: Sequence[common.ObjectInfo]) -> None:
        """Insert new objects (or revive ones marked bad), then link deltas to their basis."""
        written: list[common.ObjectInfo] = []
        for obj in objects:
            if not obj.object_id:
                raise InvalidArgument("an object has an empty id")
            cur = conn.execute(
                "INSERT INTO objects (address, size, stored_size, compression, encrypted, chain_length, added_set,"
                " has_signature) VALUES (?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (address) DO UPDATE SET"
                " size = excluded.size, stored_size = excluded.stored_size, compression = excluded.compression,"
                " encrypted = excluded.encrypted, basis_id = NULL, chain_length = 0,"
                " added_set = excluded.added_set, has_signature = excluded.has_signature, bad = 0"
                " WHERE objects.bad = 1",
                (
                    obj.object_id,
                    to_i64(obj.size),
                    to_i64(obj.stored_size),
                    obj.compression,
                    int(obj.encrypted),
                    set_id,
                    int(obj.has_signature),
                ),
            )
            if cur.rowcount:
                written.append(obj)
        for obj in written:
            if not obj.basis_id:
                continue
            basis = conn.execute(
                "SELECT object_id, chain_length FROM objects WHERE address = ?", (obj.basis_id,)
            ).fetchone()
            if basis is None:
                raise InvalidArgument(
                    f"unknown basis object {show_id(obj.basis_id)} of object {show_id(obj.object_id)}"
                )
            conn.execute(
                "UPDATE objects SET basis_id = ?, chain_length = ? WHERE address = ?",
                (basis[0], basis[1] + 1, obj.object_id),
            )
        # A full copy of content held as a delta replaces it (the blobstore does the same).
        for obj in objects:
            if not obj.basis_id:
                conn.execute(
                    "UPDATE objects SET basis_id = NULL, chain_length = 0, stored_size = ?, compression = ?"
                    " WHERE address = ? AND basis_id IS NOT NULL",
                    (to_i64(obj.stored_size), obj.compression, obj.object_id),
                )

    @staticmethod
    def _insert_group(
        conn: sqlite3.Connection,
        set_id: int,
        trimmed_to: int,
        group: common.EntryGroup,
        cache: tree.DirCache,
        limit: int,
    ) -> int:
        """Insert one directory's new versions; returns how many."""
        if not group.entries:
            return 0
        dir_id = tree.make_dir(conn, group.dir.components, cache)
        entries = list({e.name: e for e in group.entries}.values())  # the last of duplicates wins
        if any(not e.name for e in entries):
            raise InvalidArgument("an entry has an empty name")
        ids = tree.intern(conn, [e.name for e in entries] + [n for e in entries for n in (e.user, e.group) if n])
        addresses = list({e.object_id for e in entries if e.object_id})
        objects: dict[bytes, int] = {}
        for part in chunks(addresses, limit):
            sql = f"SELECT address, object_id FROM objects WHERE address IN ({marks(len(part))})"
            objects.update((bytes(a), i) for a, i in conn.execute(sql, part))
        for address in addresses:
            if address not in objects:
                raise InvalidArgument(f"unknown object {show_id(address)}")
        # Versions recorded in this set by an earlier, interrupted run are replaced.
        name_ids = [ids[e.name] for e in entries]
        drop: list[int] = []
        trim: list[int] = []
        for part in chunks(name_ids, limit):
            sql = (
                "SELECT entry_id, first_set FROM entries"
                f" WHERE dir_id = ? AND last_set = ? AND name_id IN ({marks(len(part))})"
            )
            for entry_id, first_set in conn.execute(sql, (dir_id, set_id, *part)):
                (drop if first_set == set_id else trim).append(entry_id)
        for part in chunks(drop, limit):
            conn.execute(f"DELETE FROM entries WHERE entry_id IN ({marks(len(part))})", part)
        for part in chunks(trim, limit):
            conn.execute(f"UPDATE entries SET last_set = ? WHERE entry_id IN ({marks(len(part))})", (trimmed_to, *part))
        dir_names = [ids[e.name] for e in entries if e.type == common.ENTRY_TYPE_DIR]
        children = tree.child_dirs(conn, dir_id, dir_names) if dir_names else {}
        conn.executemany(
            "INSERT INTO entries (dir_id, name_id, first_set, last_set, type, mode, inode, device, nlink, uid,"
            " gid, user_id, group_id, size, mtime_ns, ctime_ns, atime_ns, object_id, link_target, child_dir_id,"
            " xattrs, flags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    dir_id,
                    ids[e.name],
                    set_id,
                    set_id,
                    e.type,
                    e.mode,
                    to_i64(e.inode),
                    to_i64(e.device),
                    e.nlink,
                    e.uid,
                    e.gid,
                    ids[e.user] if e.user else None,
                    ids[e.group] if e.group else None,
                    to_i64(e.size),
                    e.mtime_ns,
                    e.ctime_ns,
                    e.atime_ns,
                    objects[e.object_id] if e.object_id else None,
                    e.link_target or None,
                    children.get(ids[e.name]) if e.type == common.ENTRY_TYPE_DIR else None,
                    e.xattrs or None,
                    e.flags,
                )
                for e in entries
            ],
        )
        return len(entries)

    # -- reading ----------------------------------------------------------------------------

    def lookup_path(self, request: cat.LookupPathRequest) -> cat.LookupPathReply:
        set_id = request.set_id
        components = list(request.path.components)
        with self._db(request.client) as conn:
            if set_id and conn.execute("SELECT 1 FROM sets WHERE set_id = ?", (set_id,)).fetchone() is None:
                raise NotFound(f"backup set {set_id} does not exist")
            if not components:
                root = common.Entry(
                    type=common.ENTRY_TYPE_DIR,
                    mode=ROOT_MODE,
                    nlink=1,
                    child_dir_id=0,
                    first_set=set_id,
                    last_set=set_id,
                )
                return cat.LookupPathReply(found=True, entry=root, versions=[] if set_id else [root])
            parent = tree.find_dir(conn, components[:-1], {})
            if parent is None:
                return cat.LookupPathReply(found=False)
            if not set_id:
                rows = conn.execute(
                    ENTRY_SELECT + " WHERE e.dir_id = ? AND n.name = ? ORDER BY e.first_set, e.entry_id",
                    (parent, components[-1]),
                ).fetchall()
                if not rows:
                    return cat.LookupPathReply(found=False)
                versions = [entry_from_row(r) for r in rows]
                return cat.LookupPathReply(found=True, entry=versions[-1], versions=versions)
            found = conn.execute(
                ENTRY_SELECT + " WHERE e.dir_id = ? AND n.name = ? AND e.first_set <= ? AND e.last_set >= ?"
                " ORDER BY e.last_set DESC, e.entry_id DESC LIMIT 1",
                (parent, components[-1], set_id, set_id),
            ).fetchone()
            if found is None:
                return cat.LookupPathReply(found=False)
            return cat.LookupPathReply(found=True, entry=entry_from_row(found))

    def read_tree(self, request: cat.ReadTreeRequest) -> Iterator[common.StoredEntries]:
        """Entries valid in the set under ``dir_id``, read from a snapshot on a private connection."""
        client, set_id = request.client, request.set_id
        with self._db(client):  # validates the client and brings its schema up to date
            path = self._path(check_client_name(client))
        reader = db.connect(path, read_only=True, immutable=self.read_only)
        try:
            reader.execute("BEGIN")
            if set_id and reader.execute("SELECT 1 FROM sets WHERE set_id = ?", (set_id,)).fetchone() is None:
                raise NotFound(f"backup set {set_id} does not exist")
        except BaseException:
            reader.close()
            raise
        return self._stream_tree(reader, set_id, request.dir_id, request.shallow)

    @staticmethod
    def _stream_tree(
        reader: sqlite3.Connection, set_id: int, dir_id: int, shallow: bool = False
    ) -> Iterator[common.StoredEntries]:
        """Versions valid in ``set_id`` (or, for set 0, every version) under ``dir_id``
        (``shallow``: only those directly in it)."""
        try:
            if set_id:
                condition = "e.first_set <= ? AND e.last_set >= ? ORDER BY e.dir_id, e.entry_id"
                params: tuple[int, ...] = (set_id, set_id)
            else:
                condition = "1 ORDER BY e.dir_id, n.name, e.first_set"
                params = ()
            if shallow:
                cur = reader.execute(ENTRY_SELECT + " WHERE e.dir_id = ? AND " + condition, (dir_id, *params))
            elif dir_id == 0:
                cur = reader.execute(ENTRY_SELECT + " WHERE " + condition, params)
            else:
                cur = reader.execute(
                    "WITH RECURSIVE sub(id) AS (VALUES (?) UNION ALL"
                    " SELECT d.dir_id FROM dirs d JOIN sub ON d.parent_id = sub.id)"
                    + ENTRY_SELECT
                    + " WHERE e.dir_id IN (SELECT id FROM sub) AND "
                    + condition,
                    (dir_id, *params),
                )
            while rows := cur.fetchmany(TREE_BATCH):
                yield common.StoredEntries(entries=[entry_from_row(r) for r in rows])
        finally:
            reader.close()

    def list_objects(self, request: cat.ClientRequest) -> Iterator[cat.ObjectInfoReply]:
        """Every object (those marked bad flagged so), read from a snapshot on a private connection."""
        with self._db(request.client):
            path = self._path(check_client_name(request.client))
        reader = db.connect(path, read_only=True, immutable=self.read_only)

        def stream() -> Iterator[cat.ObjectInfoReply]:
            try:
                cur = reader.execute(OBJECT_SELECT_WITH_BAD + " ORDER BY o.object_id")
                while rows := cur.fetchmany(TREE_BATCH):
                    yield cat.ObjectInfoReply(objects=[object_from_row(r) for r in rows])
            finally:
                reader.close()

        return stream()

    def mark_objects_bad(self, request: cat.ObjectIdsRequest) -> cat.MarkObjectsBadReply:
        """Mark the named objects, and every delta whose chain runs through one, as bad.

        A bad object no longer counts as held: lookups do not offer it as a previous version's
        content, so the next backup of that content stores it again (and revives the row).
        When any is marked, the writer lease is taken in the same transaction (its fence in the
        reply) and held until their files are in quarantine (``forget_deleted`` releases it):
        a backup meanwhile could otherwise store such content again onto the damaged file
        just before it is moved away."""
        wanted = list(dict.fromkeys(request.object_ids))
        reply = cat.MarkObjectsBadReply()
        with self._db(request.client) as conn, db.write_tx(conn, full_sync=True):  # files move to quarantine next
            now = self._clock.now_ns()
            lease = leases.read(conn)
            if leases.live(lease, now):
                assert lease is not None
                raise Conflict(f"{leases.held_by(request.client, lease)}; try again when it is done")
            named: list[int] = []
            for part in chunks(wanted, tree.max_params(conn)):
                sql = f"SELECT object_id, address FROM objects WHERE address IN ({marks(len(part))})"
                for row_id, address in conn.execute(sql, part):
                    named.append(row_id)
                    reply.marked.append(bytes(address))
            if not named:
                return reply
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS marking (object_id INTEGER PRIMARY KEY)")
            conn.execute("DELETE FROM marking")
            conn.executemany("INSERT OR IGNORE INTO marking VALUES (?)", [(i,) for i in named])
            rows = conn.execute(
                "WITH RECURSIVE below(object_id) AS (SELECT object_id FROM marking"
                " UNION SELECT o.object_id FROM objects o JOIN below b ON o.basis_id = b.object_id)"
                " SELECT o.object_id, o.address FROM objects o JOIN below b USING (object_id)"
                " WHERE o.object_id NOT IN (SELECT object_id FROM marking)"
            ).fetchall()
            reply.dependents.extend(bytes(address) for _, address in rows)
            conn.executemany("INSERT OR IGNORE INTO marking VALUES (?)", [(i,) for i, _ in rows])
            conn.execute("UPDATE objects SET bad = 1 WHERE object_id IN (SELECT object_id FROM marking)")
            conn.execute("DELETE FROM marking")
            reply.fence = leases.take(
                conn, lease, leases.REPAIR_HOLDER, leases.REPAIR_SESSION, now + self._lease_ns, now
            )
        return reply

    def find_entries(self, request: cat.ObjectIdsRequest) -> Iterator[cat.FoundEntries]:
        """The versions whose content needs one of the named objects, with their directories' paths.

        A version needs an object when it is its own object or a basis anywhere down the delta
        chain of its own object; each version is found once, tied to the nearest named object.
        Read from a snapshot on a private connection, 1,000 versions per message."""
        wanted = list(dict.fromkeys(request.object_ids))
        with self._db(request.client):
            path = self._path(check_client_name(request.client))
        reader = db.connect(path, read_only=True, immutable=self.read_only)
        try:
            reader.execute("BEGIN")
            needs = self._needing(reader, wanted)
        except BaseException:
            reader.close()
            raise
        return self._stream_found(reader, needs)

    @staticmethod
    def _needing(conn: sqlite3.Connection, addresses: Sequence[bytes]) -> dict[int, bytes]:
        """Object row id -> the named address it needs: the named objects themselves, then every
        delta built on one, level by level down the chains (a breadth-first walk)."""
        limit = tree.max_params(conn)
        needs: dict[int, bytes] = {}
        for part in chunks(addresses, limit):
            sql = f"SELECT object_id, address FROM objects WHERE address IN ({marks(len(part))})"
            needs.update((row_id, bytes(address)) for row_id, address in conn.execute(sql, part))
        frontier = list(needs)
        while frontier:
            reached: list[int] = []
            for bases in chunks(frontier, limit):
                sql = f"SELECT object_id, basis_id FROM objects WHERE basis_id IN ({marks(len(bases))})"
                for row_id, basis in conn.execute(sql, bases):
                    if row_id not in needs:
                        needs[row_id] = needs[basis]
                        reached.append(row_id)
            frontier = reached
        return needs

    @staticmethod
    def _stream_found(reader: sqlite3.Connection, needs: dict[int, bytes]) -> Iterator[cat.FoundEntries]:
        try:
            paths: tree.PathCache = {}
            limit = tree.max_params(reader)
            for part in chunks(sorted(needs), limit):
                cur = reader.execute(
                    ENTRY_SELECT.replace("SELECT e.entry_id", "SELECT e.object_id, e.entry_id", 1)
                    + f" WHERE e.object_id IN ({marks(len(part))}) ORDER BY e.dir_id, n.name, e.first_set",
                    part,
                )
                while rows := cur.fetchmany(TREE_BATCH):
                    tree.dir_paths(reader, (r[2] for r in rows), paths)
                    yield cat.FoundEntries(
                        found=[
                            cat.FoundEntry(
                                dir=common.DirPath(components=paths[r[2]]),
                                entry=entry_from_row(r[1:]),
                                named_id=needs[r[0]],
                            )
                            for r in rows
                        ]
                    )
        finally:
            reader.close()

    def get_object_info(self, request: cat.ObjectIdsRequest) -> cat.ObjectInfoReply:
        wanted = list(dict.fromkeys(request.object_ids))
        with self._db(request.client) as conn:
            found = self._objects(conn, wanted, tree.max_params(conn))
        return cat.ObjectInfoReply(objects=[found[a] for a in wanted if a in found])

    # -- encrypting an existing client (sonic encrypt, local only) ---------------------------

    def conversion(self, client: str) -> Any:
        """The catalog side of converting a client's unencrypted history (``conversion.Conversion``)."""
        from .conversion import Conversion

        return Conversion(lambda: self._db(client), check_client_name(client), self._clock, self._lease_ns)
