"""Names and directories: interning opaque names and resolving directory paths to ids."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from tardis_common.errors import InvalidArgument

from .rows import chunks, marks

DirCache = dict[tuple[bytes, ...], int]


def max_params(conn: sqlite3.Connection) -> int:
    """How many values one IN list may carry (leaving room for the other parameters)."""
    return max(100, min(conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - 16, 30_000))


def name_ids(conn: sqlite3.Connection, names: Iterable[bytes]) -> dict[bytes, int]:
    """The ids of those ``names`` that are already interned."""
    unique = list(set(names))
    found: dict[bytes, int] = {}
    for part in chunks(unique, max_params(conn)):
        sql = f"SELECT name_id, name FROM names WHERE name IN ({marks(len(part))})"
        for name_id, name in conn.execute(sql, part):
            found[bytes(name)] = name_id
    return found


def intern(conn: sqlite3.Connection, names: Iterable[bytes]) -> dict[bytes, int]:
    """The ids of ``names``, adding those not yet known (inside a write transaction)."""
    unique = list(set(names))
    conn.executemany("INSERT OR IGNORE INTO names (name) VALUES (?)", [(n,) for n in unique])
    return name_ids(conn, unique)


def find_dir(conn: sqlite3.Connection, components: Sequence[bytes], cache: DirCache) -> int | None:
    """The id of a directory path, or None when it was never recorded. Creates nothing."""
    dir_id = 0
    for depth, component in enumerate(components):
        key = tuple(components[: depth + 1])
        cached = cache.get(key)
        if cached is None:
            row = conn.execute(
                "SELECT d.dir_id FROM dirs d JOIN names n ON n.name_id = d.name_id"
                " WHERE d.parent_id = ? AND n.name = ?",
                (dir_id, component),
            ).fetchone()
            if row is None:
                return None
            cached = cache[key] = row[0]
        dir_id = cached
    return dir_id


def make_dir(conn: sqlite3.Connection, components: Sequence[bytes], cache: DirCache) -> int:
    """The id of a directory path, creating missing parts parent first (inside a write transaction)."""
    dir_id = 0
    for depth, component in enumerate(components):
        key = tuple(components[: depth + 1])
        cached = cache.get(key)
        if cached is None:
            if not component:
                raise InvalidArgument("a directory path has an empty component")
            name_id = intern(conn, [component])[component]
            cached = cache[key] = child_dirs(conn, dir_id, [name_id])[name_id]
        dir_id = cached
    return dir_id


def child_dirs(conn: sqlite3.Connection, parent_id: int, names: Sequence[int]) -> dict[int, int]:
    """name_id -> dir_id of the subdirectories ``names`` of ``parent_id``, creating missing ones."""
    conn.executemany("INSERT OR IGNORE INTO dirs (parent_id, name_id) VALUES (?, ?)", [(parent_id, n) for n in names])
    found: dict[int, int] = {}
    for part in chunks(list(set(names)), max_params(conn)):
        sql = f"SELECT name_id, dir_id FROM dirs WHERE parent_id = ? AND name_id IN ({marks(len(part))})"
        for name_id, dir_id in conn.execute(sql, (parent_id, *part)):
            found[name_id] = dir_id
    return found


PathCache = dict[int, tuple[bytes, ...]]


def dir_paths(conn: sqlite3.Connection, dir_ids: Iterable[int], cache: PathCache) -> PathCache:
    """Fill ``cache`` with the path (components from the root) of each of ``dir_ids``.

    One recursive query per batch walks each directory's parents up to the root; ids already
    in ``cache`` are not asked again (0, the root, is the empty path)."""
    cache.setdefault(0, ())
    wanted = [d for d in set(dir_ids) if d not in cache]
    for part in chunks(wanted, max_params(conn)):
        found: dict[int, list[tuple[int, bytes]]] = {d: [] for d in part}
        sql = (
            "WITH RECURSIVE up(start, dir_id, depth) AS ("
            f" SELECT dir_id, dir_id, 0 FROM dirs WHERE dir_id IN ({marks(len(part))})"
            " UNION ALL SELECT up.start, d.parent_id, up.depth + 1 FROM up JOIN dirs d ON d.dir_id = up.dir_id"
            " WHERE d.parent_id != 0)"
            " SELECT up.start, up.depth, n.name FROM up JOIN dirs d ON d.dir_id = up.dir_id"
            " JOIN names n ON n.name_id = d.name_id"
        )
        for start, depth, name in conn.execute(sql, part):
            found[start].append((depth, bytes(name)))
        for dir_id, names in found.items():
            cache[dir_id] = tuple(name for _, name in sorted(names, reverse=True))
    return cache
