"""Conformance of the catalog: the core and the gRPC client must behave the same."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_catalog import schema
from tardis_catalog.client import CatalogClient
from tardis_catalog.core import CatalogCore
from tardis_catalog.grpc_service import handler
from tardis_common.clock import FixedClock
from tardis_common.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from tardis_common.rpc import make_server, open_channel

START_NS = 1_700_000_000 * 1_000_000_000
FILE = common.ENTRY_TYPE_FILE
DIR = common.ENTRY_TYPE_DIR


@dataclass
class Env:
    api: Any  # CatalogCore or CatalogClient: the same interface
    clock: FixedClock
    root: Path
    core: CatalogCore


@pytest.fixture(params=["core", "grpc"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    clock = FixedClock(START_NS)
    core = CatalogCore(tmp_path, clock=clock)
    if request.param == "core":
        yield Env(core, clock, tmp_path, core)
        core.close()
        return
    server, port = make_server("127.0.0.1:0", [handler(core)])
    client = CatalogClient(open_channel(f"127.0.0.1:{port}"))
    yield Env(client, clock, tmp_path, core)
    client.close()
    server.stop(None)
    core.close()


# -- helpers -------------------------------------------------------------------------------


def entry(
    name: bytes, kind: int = FILE, size: int = 10, mtime: int = 1, object_id: bytes = b"", **kw: Any
) -> common.Entry:
    mode = (stat.S_IFDIR | 0o755) if kind == DIR else (stat.S_IFREG | 0o644)
    return common.Entry(
        name=name, type=kind, mode=mode, inode=kw.pop("inode", 7), device=kw.pop("device", 9), nlink=1,
        user=b"alice", group=b"staff", uid=1000, gid=100, size=size, mtime_ns=mtime, ctime_ns=mtime,
        atime_ns=mtime, object_id=object_id, **kw,
    )  # fmt: skip


def group(path: list[bytes], *entries: common.Entry) -> common.EntryGroup:
    return common.EntryGroup(dir=common.DirPath(components=path), entries=entries)


def obj(address: bytes, basis: bytes = b"", size: int = 10) -> common.ObjectInfo:
    return common.ObjectInfo(
        object_id=address, size=size, stored_size=size + 5, compression="zstd", encrypted=True,
        basis_id=basis, chain_length=1 if basis else 0,
    )  # fmt: skip


def begin(env: Env, session: str = "s1", holder: str = "hostA:1", **kw: Any) -> cat.BeginSetReply:
    return env.api.begin_set(cat.BeginSetRequest(client="c", session=session, holder=holder, **kw))


def record(env: Env, b: cat.BeginSetReply, *groups: common.EntryGroup, **kw: Any) -> cat.RecordEntriesReply:
    return env.api.record_entries(
        cat.RecordEntriesRequest(client="c", set_id=b.set.id, fence=b.fence, insert=groups, **kw)
    )


def complete(env: Env, b: cat.BeginSetReply) -> common.BackupSet:
    return env.api.complete_set(cat.CompleteSetRequest(client="c", set_id=b.set.id, fence=b.fence))


def lookup(env: Env, set_id: int, *groups: common.EntryGroup) -> list[cat.PreviousVersion]:
    reply = env.api.lookup_entries(cat.LookupEntriesRequest(client="c", set_id=set_id, groups=groups))
    return list(reply.previous)


def tree(env: Env, set_id: int, dir_id: int = 0) -> list[common.Entry]:
    request = cat.ReadTreeRequest(client="c", set_id=set_id, dir_id=dir_id)
    return [e for msg in env.api.read_tree(request) for e in msg.entries]


def path_of(env: Env, set_id: int, *components: bytes) -> cat.LookupPathReply:
    request = cat.LookupPathRequest(client="c", set_id=set_id, path=common.DirPath(components=components))
    return env.api.lookup_path(request)


def backup(env: Env, session: str, *groups: common.EntryGroup, extend: list[int] | None = None, **kw: Any) -> int:
    """One full cycle: begin, record, complete; returns the set id."""
    b = begin(env, session, **kw)
    env.api.record_entries(
        cat.RecordEntriesRequest(client="c", set_id=b.set.id, fence=b.fence, insert=groups, extend_entry_ids=extend)
    )
    complete(env, b)
    return b.set.id


def deleted(env: Env, removal: cat.ExpireSetsReply, *, release: bool = True) -> cat.ForgetDeletedReply:
    """What a purge does once the files of ``removal``'s orphans are gone: ForgetDeleted under
    the lease RemoveSets took (released by default)."""
    return env.api.forget_deleted(
        cat.ForgetDeletedRequest(client="c", object_ids=removal.orphans, fence=removal.fence, release=release)
    )


@pytest.fixture
def cenv(env: Env) -> Env:
    """An env with client "c" created."""
    env.api.create_client(cat.ClientRequest(client="c"))
    return env


# -- clients -------------------------------------------------------------------------------


def test_create_and_get_client(env: Env) -> None:
    info = env.api.create_client(cat.ClientRequest(client="c"))
    assert info.client == "c" and info.schema_version == schema.SCHEMA_VERSION
    assert info.created_ns == START_NS and len(info.client_id) == 36
    assert env.api.get_client(cat.ClientRequest(client="c")) == info
    assert (env.root / "c" / "tardis.db").is_file()
    with pytest.raises(AlreadyExists, match="client c already exists"):
        env.api.create_client(cat.ClientRequest(client="c"))


def test_missing_client_is_not_found_and_never_created(env: Env) -> None:
    with pytest.raises(NotFound, match="client nobody does not exist"):
        env.api.get_client(cat.ClientRequest(client="nobody"))
    with pytest.raises(NotFound):
        env.api.list_sets(cat.ClientRequest(client="nobody"))
    with pytest.raises(NotFound):
        env.api.begin_set(cat.BeginSetRequest(client="nobody", session="s"))
    with pytest.raises(NotFound):
        list(env.api.read_tree(cat.ReadTreeRequest(client="nobody", set_id=1)))
    assert not (env.root / "nobody" / "tardis.db").exists()
    with pytest.raises(InvalidArgument):
        env.api.get_client(cat.ClientRequest(client="../x"))


# -- the backup cycle ----------------------------------------------------------------------


def test_begin_record_complete_cycle(cenv: Env) -> None:
    b = begin(cenv, client_time_ns=START_NS, client_version="1.2", name="")
    assert not b.resumed and b.previous_set_id == 0 and b.fence >= 1
    assert b.set.name == "INCOMPLETE-s1" and not b.set.completed and b.set.start_time_ns == START_NS
    reply = record(
        cenv,
        b,
        group([], entry(b"a", object_id=b"aa11")),
        objects=[obj(b"aa11")],
        bytes_received=15,
        files_full=1,
    )
    assert (reply.extended, reply.inserted) == (0, 1)
    cenv.clock.advance(5)
    done = complete(cenv, b)
    assert done.completed and done.end_time_ns == START_NS + 5_000_000_000
    assert done.bytes_received == 15 and done.files_full == 1 and done.client_version == "1.2"
    sets = cenv.api.list_sets(cat.ClientRequest(client="c")).sets
    assert [s.id for s in sets] == [b.set.id] and sets[0].completed
    b2 = begin(cenv, "s2")
    assert b2.previous_set_id == b.set.id and b2.set.id > b.set.id
    with pytest.raises(Conflict):
        complete(cenv, b)  # already complete (and its fence is stale)


def test_unchanged_file_is_one_row_across_sets(cenv: Env) -> None:
    s1 = backup(cenv, "s1", group([b"d"], entry(b"f", inode=2**64 - 1, device=2**63)))
    ids = []
    for session in ("s2", "s3"):
        b = begin(cenv, session)
        prev = lookup(cenv, b.set.id, group([b"d"], entry(b"f")))
        assert prev[0].found
        ids.append(prev[0].entry.entry_id)
        reply = record(cenv, b, extend_entry_ids=[prev[0].entry.entry_id])
        assert reply.extended == 1
        complete(cenv, b)
    assert ids[0] == ids[1]
    rows = [e for e in tree(cenv, s1 + 2) if e.name == b"f"]
    assert len(rows) == 1
    f = rows[0]
    assert (f.first_set, f.last_set, f.entry_id) == (s1, s1 + 2, ids[0])
    assert f.inode == 2**64 - 1 and f.device == 2**63
    assert [e.entry_id for e in tree(cenv, s1) if e.name == b"f"] == [f.entry_id]


def test_changed_file_gets_a_new_version(cenv: Env) -> None:
    b1 = begin(cenv, "s1")
    record(cenv, b1, group([], entry(b"f", size=1, object_id=b"o1")), objects=[obj(b"o1")])
    complete(cenv, b1)
    b2 = begin(cenv, "s2")
    record(cenv, b2, group([], entry(b"f", size=2, object_id=b"o2")), objects=[obj(b"o2", basis=b"o1")])
    complete(cenv, b2)
    old = path_of(cenv, b1.set.id, b"f")
    new = path_of(cenv, b2.set.id, b"f")
    assert old.found and new.found
    assert (old.entry.size, old.entry.object_id) == (1, b"o1") and old.entry.last_set == b1.set.id
    assert (new.entry.size, new.entry.object_id) == (2, b"o2") and new.entry.first_set == b2.set.id
    assert old.entry.entry_id != new.entry.entry_id
    info = cenv.api.get_object_info(cat.ObjectIdsRequest(client="c", object_ids=[b"o2", b"nope", b"o1"])).objects
    assert [o.object_id for o in info] == [b"o2", b"o1"]
    assert info[0].basis_id == b"o1" and info[0].chain_length == 1 and info[0].compression == "zstd"
    assert info[1].basis_id == b"" and info[1].stored_size == 15 and info[1].encrypted


def test_lookup_entries_alignment_and_full_entries(cenv: Env) -> None:
    b = begin(cenv, "s1")
    record(
        cenv,
        b,
        group([], entry(b"d", kind=DIR), entry(b"x")),
        group(
            [b"d"],
            entry(b"one", object_id=b"o1"),
            entry(b"link", kind=common.ENTRY_TYPE_SYMLINK, link_target=b"t"),
        ),
        objects=[obj(b"o1")],
    )
    complete(cenv, b)
    b2 = begin(cenv, "s2")
    prev = lookup(
        cenv,
        b2.set.id,
        group([b"d"], entry(b"missing"), entry(b"one"), entry(b"link")),
        group([b"nodir"], entry(b"one")),
        group([], entry(b"x"), entry(b"d")),
    )
    assert [p.found for p in prev] == [False, True, True, False, True, True]
    one, link, d = prev[1].entry, prev[2].entry, prev[5].entry
    assert one.name == b"one" and one.object_id == b"o1" and one.user == b"alice" and one.group == b"staff"
    assert one.dir_id == d.child_dir_id != 0 and one.first_set == one.last_set == b.set.id and one.entry_id
    assert link.link_target == b"t" and link.type == common.ENTRY_TYPE_SYMLINK
    assert d.type == DIR and d.dir_id == 0


def test_lookup_ignores_versions_absent_from_previous_set(cenv: Env) -> None:
    s1 = backup(cenv, "s1", group([], entry(b"gone"), entry(b"kept")))
    b2 = begin(cenv, "s2")
    kept = lookup(cenv, b2.set.id, group([], entry(b"kept")))[0].entry
    record(cenv, b2, extend_entry_ids=[kept.entry_id])
    complete(cenv, b2)
    b3 = begin(cenv, "s3")
    prev = lookup(cenv, b3.set.id, group([], entry(b"gone"), entry(b"kept")))
    assert [p.found for p in prev] == [False, True]
    # An extension of a version absent from the previous set is refused (counted 0).
    gone_id = next(e.entry_id for e in tree(cenv, s1) if e.name == b"gone")
    assert record(cenv, b3, extend_entry_ids=[gone_id]).extended == 0


def test_a_verified_racy_version_carries_on_with_its_flag_cleared(cenv: Env) -> None:
    """verified_entry_ids: the version carries into the set as with extend_entry_ids (one
    version across both sets), no longer flagged racy; plain extension keeps the flag."""
    s1 = backup(cenv, "s1", group([], entry(b"racy", flags=common.ENTRY_FLAG_RACY), entry(b"other", flags=1)))
    b2 = begin(cenv, "s2")
    racy, other = (p.entry for p in lookup(cenv, b2.set.id, group([], entry(b"racy"), entry(b"other"))))
    assert record(cenv, b2, verified_entry_ids=[racy.entry_id], extend_entry_ids=[other.entry_id]).extended == 2
    complete(cenv, b2)
    now = {e.name: e for e in tree(cenv, b2.set.id)}
    assert now[b"racy"].entry_id == racy.entry_id and now[b"racy"].first_set == s1
    assert now[b"racy"].flags == 0 and now[b"other"].flags == common.ENTRY_FLAG_RACY
    assert {e.name: e.flags for e in tree(cenv, s1)}[b"racy"] == 0  # one version, as s1 lists it too


def test_resume_incomplete_set_and_rerecord(cenv: Env) -> None:
    s1 = backup(cenv, "s1", group([], entry(b"a", size=1), entry(b"b", size=1)))
    b = begin(cenv, "s2")
    prev = lookup(cenv, b.set.id, group([], entry(b"a"), entry(b"b")))
    record(cenv, b, group([], entry(b"new", size=5)), extend_entry_ids=[prev[0].entry.entry_id])
    # The run dies; the next one resumes the same set.
    cenv.clock.advance(60)
    again = begin(cenv, "s3", holder="hostA:2")
    assert again.resumed and again.set.id == b.set.id and again.set.session == "s3"
    assert again.fence > b.fence and again.previous_set_id == s1
    # Looking up in the resumed set finds what the interrupted run recorded.
    prev = lookup(cenv, again.set.id, group([], entry(b"a"), entry(b"new")))
    assert prev[0].entry.last_set == again.set.id and prev[1].entry.first_set == again.set.id
    # Re-recording replaces: "new" (first recorded in this set) and "a" (extended into it).
    reply = record(cenv, again, group([], entry(b"new", size=6), entry(b"a", size=2)))
    assert reply.inserted == 2
    complete(cenv, again)
    rows = sorted((e.name, e.size) for e in tree(cenv, again.set.id))
    assert rows == [(b"a", 2), (b"new", 6)]
    old = [(e.name, e.size, e.last_set) for e in tree(cenv, s1)]
    assert sorted(old) == [(b"a", 1, s1), (b"b", 1, s1)]


# -- the lease -----------------------------------------------------------------------------


def test_lease_refusal_force_and_stale_fence(cenv: Env) -> None:
    first = begin(cenv, "s1", holder="hostA:100")
    with pytest.raises(Conflict, match=r"client c is being backed up by hostA:100 since .*; use --force"):
        begin(cenv, "s2", holder="hostB:200")
    second = begin(cenv, "s2", holder="hostB:200", force=True)
    assert second.fence == first.fence + 1 and second.resumed and second.set.id == first.set.id
    with pytest.raises(Conflict, match="was taken over by hostB:200"):
        record(cenv, first, group([], entry(b"x")))
    with pytest.raises(Conflict, match="was taken over by hostB:200"):
        complete(cenv, first)
    record(cenv, second, group([], entry(b"x")))
    assert complete(cenv, second).completed
    # After completion the lease is free.
    third = begin(cenv, "s3", holder="hostC:1")
    assert third.fence == second.fence + 1 and not third.resumed


def test_lease_expires_and_writes_renew_it(cenv: Env) -> None:
    first = begin(cenv, "s1", holder="hostA:1")
    cenv.clock.advance(25)
    record(cenv, first, group([], entry(b"x")))  # renews the lease for 30 s from now
    cenv.clock.advance(25)
    with pytest.raises(Conflict, match="hostA:1"):
        begin(cenv, "s2", holder="hostB:2")
    cenv.clock.advance(6)
    second = begin(cenv, "s2", holder="hostB:2")
    assert second.resumed and second.fence == first.fence + 1
    with pytest.raises(Conflict, match="taken over by hostB:2"):
        record(cenv, first, group([], entry(b"y")))


# -- naming --------------------------------------------------------------------------------


def test_automatic_names(cenv: Env) -> None:
    moment = time.mktime((2024, 3, 5, 10, 0, 0, 0, 0, -1))
    t_ns = int(moment) * 1_000_000_000
    local = time.localtime(moment)
    expected = [
        (time.strftime("Monthly-%Y-%m", local), 40),
        (time.strftime("Weekly-%Y-%U", local), 30),
        (time.strftime("Daily-%Y-%m-%d", local), 20),
        (time.strftime("Hourly-%Y-%m-%d-%H", local), 10),
        (time.strftime("Backup_%Y-%m-%d_%H:%M:%S", local), 0),
        (time.strftime("Backup_%Y-%m-%d_%H:%M:%S", local) + "_2", 0),
    ]
    for n, (name, priority) in enumerate(expected):
        b = begin(cenv, f"s{n}", client_time_ns=t_ns)
        assert b.set.name == f"INCOMPLETE-s{n}"
        done = complete(cenv, b)
        assert (done.name, done.priority) == (name, priority)
    b = begin(cenv, "last")
    names = [s.name for s in cenv.api.list_sets(cat.ClientRequest(client="c")).sets]
    assert names == [n for n, _ in expected] + ["INCOMPLETE-last"]
    assert not cenv.api.list_sets(cat.ClientRequest(client="c")).sets[-1].completed


def test_client_config_overrides_the_server_naming(cenv: Env) -> None:
    moment = time.mktime((2024, 3, 5, 10, 0, 0, 0, 0, -1))
    t_ns = int(moment) * 1_000_000_000
    config = cat.ClientConfig(client="c", values={"Formats": "Nightly-%Y-%m-%d, Monthly-%Y-%m", "Priorities": "55, 40"})
    assert dict(cenv.api.set_client_config(config).values) == dict(config.values)
    first = complete(cenv, begin(cenv, "s1", client_time_ns=t_ns))
    assert (first.name, first.priority) == (time.strftime("Nightly-%Y-%m-%d", time.localtime(moment)), 55)
    cenv.api.set_client_config(cat.ClientConfig(client="c", values={"Formats": "", "Priorities": ""}))
    assert dict(cenv.api.get_client_config(cat.ClientRequest(client="c")).values) == {}
    second = complete(cenv, begin(cenv, "s2", client_time_ns=t_ns))
    assert (second.name, second.priority) == (time.strftime("Monthly-%Y-%m", time.localtime(moment)), 40)


def test_explicit_names(cenv: Env) -> None:
    b = begin(cenv, "s1", name="before-upgrade")
    assert complete(cenv, b).name == "before-upgrade"
    with pytest.raises(AlreadyExists, match="before-upgrade"):
        begin(cenv, "s2", name="before-upgrade")
    b2 = begin(cenv, "s2", name="other")
    assert complete(cenv, b2).name == "other"


# -- reading -------------------------------------------------------------------------------


def test_read_tree_subtree_and_order(cenv: Env) -> None:
    many = [entry(b"f%04d" % i, inode=i) for i in range(2100)]
    b = begin(cenv, "s1")
    record(
        cenv,
        b,
        group([], entry(b"a", kind=DIR), entry(b"z")),
        group([b"a"], entry(b"b", kind=DIR), entry(b"fa")),
        group([b"a", b"b"], entry(b"fb"), *many),
        group([b"other"], entry(b"fo")),
    )
    complete(cenv, b)
    request = cat.ReadTreeRequest(client="c", set_id=b.set.id, dir_id=0)
    sizes = [len(m.entries) for m in cenv.api.read_tree(request)]
    assert max(sizes) <= 1000 and sum(sizes) == 2100 + 6
    everything = tree(cenv, b.set.id)
    keys = [(e.dir_id, e.entry_id) for e in everything]
    assert keys == sorted(keys)
    position = {e.dir_id: i for i, e in reversed(list(enumerate(everything)))}
    for i, e in enumerate(everything):
        if e.type == DIR:
            assert position[e.child_dir_id] > i  # a directory's entry precedes its children
    a = path_of(cenv, b.set.id, b"a").entry
    sub = tree(cenv, b.set.id, a.child_dir_id)
    assert {e.name for e in sub} == {b"b", b"fa", b"fb"} | {e.name for e in many}
    assert sub[0].dir_id == a.child_dir_id
    full = next(e for e in sub if e.name == b"f0005")
    assert full.user == b"alice" and full.inode == 5 and full.first_set == b.set.id
    prev = lookup(cenv, b.set.id, group([b"a", b"b"], *many))
    assert all(p.found for p in prev) and [p.entry.name for p in prev] == [e.name for e in many]
    with pytest.raises(NotFound):
        tree(cenv, 999)


def test_read_tree_reads_a_snapshot(cenv: Env) -> None:
    b = begin(cenv, "s1")
    record(cenv, b, group([], *[entry(b"f%04d" % i, size=1) for i in range(2500)]))
    stream = iter(cenv.api.read_tree(cat.ReadTreeRequest(client="c", set_id=b.set.id)))
    first = next(stream)
    # Re-recording every entry replaces the rows while the reader is still going.
    record(cenv, b, group([], *[entry(b"f%04d" % i, size=2) for i in range(2500)]))
    complete(cenv, b)
    rest = [e for msg in stream for e in msg.entries]
    seen = list(first.entries) + rest
    assert len(seen) == 2500 and {e.size for e in seen} == {1}
    assert {e.size for e in tree(cenv, b.set.id)} == {2}


def test_concurrent_clients(env: Env) -> None:
    def run(name: str) -> int:
        env.api.create_client(cat.ClientRequest(client=name))
        total = 0
        for n in range(3):
            b = env.api.begin_set(cat.BeginSetRequest(client=name, session=f"{name}-{n}", holder=name))
            req = cat.LookupEntriesRequest(client=name, set_id=b.set.id, groups=[group([b"d"], entry(b"f"))])
            prev = env.api.lookup_entries(req).previous[0]
            rec = cat.RecordEntriesRequest(client=name, set_id=b.set.id, fence=b.fence)
            if prev.found:
                rec.extend_entry_ids.append(prev.entry.entry_id)
            else:
                rec.insert.append(group([b"d"], entry(b"f")))
            reply = env.api.record_entries(rec)
            total += reply.extended + reply.inserted
            env.api.complete_set(cat.CompleteSetRequest(client=name, set_id=b.set.id, fence=b.fence))
        return total

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(run, [f"client{i}" for i in range(8)])) == [3] * 8


def test_lookup_path(cenv: Env) -> None:
    b = begin(cenv, "s1")
    record(cenv, b, group([], entry(b"a", kind=DIR)), group([b"a"], entry(b"f", size=3)))
    complete(cenv, b)
    root = path_of(cenv, b.set.id)
    assert root.found and root.entry.type == DIR and root.entry.child_dir_id == 0
    assert root.entry.mode == stat.S_IFDIR | 0o755
    f = path_of(cenv, b.set.id, b"a", b"f")
    assert f.found and f.entry.size == 3 and f.entry.dir_id == path_of(cenv, b.set.id, b"a").entry.child_dir_id
    assert not path_of(cenv, b.set.id, b"a", b"nope").found
    assert not path_of(cenv, b.set.id, b"x", b"f").found
    b2 = begin(cenv, "s2")
    complete(cenv, b2)  # nothing carried over
    assert not path_of(cenv, b2.set.id, b"a", b"f").found
    with pytest.raises(NotFound, match="backup set 77 does not exist"):
        path_of(cenv, 77)


def test_unknown_object_is_invalid(cenv: Env) -> None:
    b = begin(cenv, "s1")
    with pytest.raises(InvalidArgument, match="unknown object deadbeef"):
        record(cenv, b, group([], entry(b"f", object_id=b"deadbeef")))
    with pytest.raises(InvalidArgument, match="unknown basis object"):
        record(cenv, b, objects=[obj(b"o2", basis=b"o1")])
    # Nothing of a refused batch was kept; an object recorded earlier is accepted later.
    assert cenv.api.get_object_info(cat.ObjectIdsRequest(client="c", object_ids=[b"o2"])).objects == []
    record(cenv, b, objects=[obj(b"o1")])
    assert record(cenv, b, group([], entry(b"f", object_id=b"o1"))).inserted == 1


# -- schema upgrades (core only) -----------------------------------------------------------


def test_schema_upgrade_from_the_first_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A catalog made by schema version 1 is upgraded, data intact, by the real migrations."""
    current = schema.SCHEMA_VERSION
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 1)
    old = CatalogCore(tmp_path, clock=FixedClock(START_NS))
    old.create_client(cat.ClientRequest(client="c"))
    old.close()
    with sqlite3.connect(tmp_path / "c" / "tardis.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        conn.execute("INSERT INTO names (name_id, name) VALUES (1, x'66')")
        conn.execute(
            "INSERT INTO entries (dir_id, name_id, first_set, last_set, type, mode, inode, device, nlink, uid, gid,"
            " size, mtime_ns, ctime_ns, atime_ns) VALUES (0, 1, 1, 1, 2, 16877, 5, 6, 1, 0, 0, 0, 7, 8, 9)"
        )
        conn.execute("INSERT INTO sets (name, start_ns, completed) VALUES ('Old', 1, 1)")
    conn.close()
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current)

    refusing = CatalogCore(tmp_path, allow_upgrades=False)
    with pytest.raises(Conflict, match=f"schema version 1, this server needs {current}; allow schema upgrades"):
        refusing.get_client(cat.ClientRequest(client="c"))
    refusing.close()

    core = CatalogCore(tmp_path)
    assert core.get_client(cat.ClientRequest(client="c")).schema_version == current
    tree_entries = [e for b in core.read_tree(cat.ReadTreeRequest(client="c", set_id=1)) for e in b.entries]
    assert [(e.name, e.mtime_ns, e.xattrs, e.flags) for e in tree_entries] == [(b"f", 7, b"", 0)]
    core.close()
    bak = tmp_path / "c" / "tardis.db.schema-v1.bak"
    assert bak.is_file()
    with sqlite3.connect(tmp_path / "c" / "tardis.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == current
        assert "xattrs" in [r[1] for r in conn.execute("PRAGMA table_info(entries)")]
        assert [r[1] for r in conn.execute("PRAGMA table_info(doomed)")] == ["address", "stored_size"]
        triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert triggers == {"objects_revive_doomed", "objects_readdress_doomed"}
    conn.close()
    with sqlite3.connect(bak) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()

    monkeypatch.setattr(schema, "SCHEMA_VERSION", 1)
    newer = CatalogCore(tmp_path)
    with pytest.raises(Conflict, match=f"schema version {current}, newer than version 1"):
        newer.get_client(cat.ClientRequest(client="c"))
    newer.close()


# -- the executable ------------------------------------------------------------------------


def test_tardis_catalog_process(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tardis_catalog.main", "--listen", "127.0.0.1:0", "--basedir", str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.fullmatch(r"tardis-catalog listening on (127\.0\.0\.1:\d+)\n", line)
        assert match, line
        client = CatalogClient(open_channel(match.group(1)))
        try:
            assert client.create_client(cat.ClientRequest(client="c")).client == "c"
            assert client.list_sets(cat.ClientRequest(client="c")).sets == []
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    bad = subprocess.run(
        [sys.executable, "-m", "tardis_catalog.main", "--basedir", os.fspath(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1


def test_history_of_a_path_and_of_a_subtree(cenv: Env) -> None:
    """set_id 0 asks for every version: lstardis and tardiff read history this way."""
    b1 = begin(cenv, "s1")
    record(cenv, b1, group([], entry(b"d", DIR)), group([b"d"], entry(b"f", size=1, mtime=1)))
    complete(cenv, b1)
    b2 = begin(cenv, "s2")
    record(cenv, b2, group([], entry(b"d", DIR)), group([b"d"], entry(b"f", size=2, mtime=2)))
    complete(cenv, b2)
    path = common.DirPath(components=[b"d", b"f"])
    found = cenv.api.lookup_path(cat.LookupPathRequest(client="c", set_id=0, path=path))
    assert found.found and [(v.first_set, v.last_set, v.size) for v in found.versions] == [(1, 1, 1), (2, 2, 2)]
    assert found.entry.size == 2
    history = [e for m in cenv.api.read_tree(cat.ReadTreeRequest(client="c", set_id=0)) for e in m.entries]
    assert sorted((e.name, e.first_set) for e in history) == [(b"d", 1), (b"d", 2), (b"f", 1), (b"f", 2)]
    nowhere = common.DirPath(components=[b"x"])
    missing = cenv.api.lookup_path(cat.LookupPathRequest(client="c", set_id=0, path=nowhere))
    assert not missing.found


def test_update_set(cenv: Env) -> None:
    first = complete(cenv, begin(cenv, "s1"))
    second = complete(cenv, begin(cenv, "s2"))
    update = cenv.api.update_set
    done = update(cat.UpdateSetRequest(client="c", set_id=first.id, name="renamed", set_priority=True, priority=7))
    assert (done.name, done.priority) == ("renamed", 7)
    with pytest.raises(AlreadyExists, match="renamed"):
        update(cat.UpdateSetRequest(client="c", set_id=second.id, name="renamed"))
    assert update(cat.UpdateSetRequest(client="c", set_id=first.id, add_tags=["t"])).tags == ["t"]
    assert update(cat.UpdateSetRequest(client="c", set_id=second.id, add_tags=["t"])).tags == ["t"]  # moved
    sets = cenv.api.list_sets(cat.ClientRequest(client="c")).sets
    assert [list(s.tags) for s in sets] == [[], ["t"]]
    assert update(cat.UpdateSetRequest(client="c", set_id=second.id, remove_tags=["t"])).tags == []
    assert update(cat.UpdateSetRequest(client="c", set_id=first.id, set_locked=True, locked=True)).locked
    with pytest.raises(NotFound):
        update(cat.UpdateSetRequest(client="c", set_id=99, name="x"))


def test_expire_sets_keeps_what_is_still_needed(cenv: Env) -> None:
    keep_a_day = {"Formats": "S-%Y%m%d%H%M%S", "Priorities": "1", "KeepPeriods": "1"}
    cenv.api.set_client_config(cat.ClientConfig(client="c", values=keep_a_day))
    b1 = begin(cenv, "s1", client_time_ns=cenv.clock.now_ns())
    record(cenv, b1, group([], entry(b"f", object_id=b"o1")), objects=[obj(b"o1")])
    complete(cenv, b1)
    cenv.clock.advance(3600)
    b2 = begin(cenv, "s2", client_time_ns=cenv.clock.now_ns())
    record(cenv, b2, group([], entry(b"f", size=11, object_id=b"o2")), objects=[obj(b"o2", basis=b"o1")])
    s2 = complete(cenv, b2)
    cenv.api.update_set(cat.UpdateSetRequest(client="c", set_id=s2.id, set_locked=True, locked=True))
    cenv.clock.advance(3600)
    b3 = begin(cenv, "s3", client_time_ns=cenv.clock.now_ns())
    record(cenv, b3, group([], entry(b"g", object_id=b"o3")), objects=[obj(b"o3")])
    complete(cenv, b3)
    cenv.clock.advance(3 * 86_400)
    b4 = begin(cenv, "s4", client_time_ns=cenv.clock.now_ns())
    expired = cenv.api.expire_sets(cat.ExpireSetsRequest(client="c", set_id=b4.set.id, fence=b4.fence))
    # Set 1 goes; set 2 is locked; set 3 is the newest complete set; o1 stays as the basis of o2.
    assert [s.id for s in expired.removed] == [1]
    assert list(expired.orphans) == []
    held = {
        o.object_id
        for o in cenv.api.get_object_info(cat.ObjectIdsRequest(client="c", object_ids=[b"o1", b"o2", b"o3"])).objects
    }
    assert held == {b"o1", b"o2", b"o3"}
    cenv.api.update_set(cat.UpdateSetRequest(client="c", set_id=s2.id, set_locked=True, locked=False))
    again = cenv.api.expire_sets(cat.ExpireSetsRequest(client="c", set_id=b4.set.id, fence=b4.fence))
    assert [s.id for s in again.removed] == [2]
    assert sorted(again.orphans) == [b"o1", b"o2"] and again.orphan_bytes == 30
    with pytest.raises(Conflict):
        cenv.api.expire_sets(cat.ExpireSetsRequest(client="c", set_id=b4.set.id, fence=b4.fence + 7))


def test_a_full_copy_replaces_a_delta_row(cenv: Env) -> None:
    b1 = begin(cenv, "s1")
    record(cenv, b1, objects=[obj(b"base"), obj(b"x", basis=b"base")])
    record(cenv, b1, objects=[obj(b"x")])  # the same content, now sent whole
    found = cenv.api.get_object_info(cat.ObjectIdsRequest(client="c", object_ids=[b"x"])).objects[0]
    assert (found.basis_id, found.chain_length) == (b"", 0)
    record(cenv, b1, objects=[obj(b"x", basis=b"base")])  # a delta never replaces a full copy
    found = cenv.api.get_object_info(cat.ObjectIdsRequest(client="c", object_ids=[b"x"])).objects[0]
    assert (found.basis_id, found.chain_length) == (b"", 0)


def sets_each_with_own_object(cenv: Env, count: int, hours_apart: int = 0) -> list[common.BackupSet]:
    """``count`` complete sets setN, each holding one file f of its own object oN (size 10 + N)."""
    sets = []
    for n in range(count):
        b = begin(cenv, f"s{n}", name=f"set{n}")
        f = entry(b"f", size=10 + n, object_id=f"o{n}".encode())
        record(cenv, b, group([], f), objects=[obj(f"o{n}".encode(), size=10 + n)])
        sets.append(complete(cenv, b))
        cenv.clock.advance(3600 * hours_apart)
    return sets


def test_remove_sets_by_id_and_by_purge(cenv: Env) -> None:
    sets = sets_each_with_own_object(cenv, 4, hours_apart=1)
    cenv.api.update_set(cat.UpdateSetRequest(client="c", set_id=sets[1].id, set_locked=True, locked=True))
    with pytest.raises(Conflict, match="locked"):
        cenv.api.remove_sets(cat.RemoveSetsRequest(client="c", set_ids=[sets[1].id]))
    gone = cenv.api.remove_sets(cat.RemoveSetsRequest(client="c", set_ids=[sets[0].id]))
    assert [s.name for s in gone.removed] == ["set0"] and list(gone.orphans) == [b"o0"]
    deleted(cenv, gone)  # its files are gone
    # Purge everything before now: set1 is locked, set3 is the newest complete set.
    purged = cenv.api.remove_sets(
        cat.RemoveSetsRequest(client="c", purge=True, max_priority=100, before_ns=cenv.clock.now_ns())
    )
    assert [s.name for s in purged.removed] == ["set2"] and list(purged.orphans) == [b"o2"]
    deleted(cenv, purged)
    left = [s.name for s in cenv.api.list_sets(cat.ClientRequest(client="c")).sets]
    assert left == ["set1", "set3"]
    running = begin(cenv, "s9")
    with pytest.raises(Conflict, match="being backed up"):
        cenv.api.remove_sets(cat.RemoveSetsRequest(client="c", purge=True, incomplete=True))
    cenv.clock.advance(3600)  # the lease of the dead run expires
    abandoned = cenv.api.remove_sets(cat.RemoveSetsRequest(client="c", purge=True, incomplete=True))
    assert [s.id for s in abandoned.removed] == [running.set.id]


def test_deletion_journal_names_orphans_until_their_files_are_forgotten(cenv: Env) -> None:
    """A purge killed before its deletions strands nothing: its orphans come back in every
    later ExpireSets/RemoveSets reply until ForgetDeleted; content recorded again meanwhile
    (its file still existed) leaves the journal and is never named as an orphan."""
    sets = sets_each_with_own_object(cenv, 3)
    gone = cenv.api.remove_sets(cat.RemoveSetsRequest(client="c", set_ids=[sets[0].id]))
    assert list(gone.orphans) == [b"o0"] and gone.orphan_bytes == 15
    # The caller died before deleting (its lease expires): the next purge (nothing new to
    # remove) names o0 again, and so does retention at the end of a backup.
    cenv.clock.advance(60)
    again = cenv.api.remove_sets(cat.RemoveSetsRequest(client="c"))
    assert (list(again.removed), list(again.orphans), again.orphan_bytes) == ([], [b"o0"], 15)
    assert again.fence == gone.fence + 1  # journal leftovers alone take the lease too
    cenv.clock.advance(60)  # that one died as well
    running = begin(cenv, "s9")
    expired = cenv.api.expire_sets(cat.ExpireSetsRequest(client="c", set_id=running.set.id, fence=running.fence))
    assert (list(expired.removed), list(expired.orphans), expired.orphan_bytes) == ([], [b"o0"], 15)
    assert expired.fence == 0  # retention runs under the backup's own lease
    complete(cenv, running)
    # A second removal adds its own orphans to the one still pending.
    both = cenv.api.remove_sets(cat.RemoveSetsRequest(client="c", set_ids=[sets[1].id]))
    assert list(both.orphans) == [b"o1", b"o0"] and both.orphan_bytes == 15 + 16
    forgot = cenv.api.forget_deleted(
        cat.ForgetDeletedRequest(client="c", object_ids=[b"o0", b"o0", b"unknown"], fence=both.fence, release=True)
    )
    assert forgot.forgotten == 1
    left = cenv.api.remove_sets(cat.RemoveSetsRequest(client="c"))
    assert list(left.orphans) == [b"o1"]
    deleted(cenv, cat.ExpireSetsReply(fence=left.fence))  # released, o1 not deleted after all
    # o1 is stored again (the blobstore still had its file) and recorded by a backup: it
    # leaves the journal with that commit and is never an orphan, though never forgotten.
    b = begin(cenv, "s10", name="again")
    record(cenv, b, group([], entry(b"g", size=11, object_id=b"o1")), objects=[obj(b"o1", size=11)])
    complete(cenv, b)
    after = cenv.api.remove_sets(cat.RemoveSetsRequest(client="c"))
    assert (list(after.orphans), after.orphan_bytes, after.fence) == ([], 0, 0)
    # A backup's retention forgets under the session's fence and keeps its lease.
    running = begin(cenv, "s11")
    kept = cat.ForgetDeletedRequest(client="c", object_ids=[b"o1"], fence=running.fence)
    assert cenv.api.forget_deleted(kept).forgotten == 0
    held = cenv.api.get_object_info(cat.ObjectIdsRequest(client="c", object_ids=[b"o0", b"o1", b"o2"])).objects
    assert sorted(o.object_id for o in held) == [b"o1", b"o2"]
    assert cenv.api.forget_deleted(cat.ForgetDeletedRequest(client="c", fence=running.fence)).forgotten == 0
    assert complete(cenv, running).completed
    with pytest.raises(NotFound):
        cenv.api.forget_deleted(cat.ForgetDeletedRequest(client="nobody", object_ids=[b"o0"], fence=1))


def test_deletion_journal_never_names_an_object_the_catalog_holds(tmp_path: Path) -> None:
    """Core only: every path that gives an object row an address (insert, or a new address as
    sonic encrypt does) takes it out of the journal; a journal row that still names a held
    object (written behind the catalog's back) is not returned as an orphan either."""
    core = CatalogCore(tmp_path, clock=FixedClock(START_NS))
    env = Env(core, FixedClock(START_NS), tmp_path, core)
    core.create_client(cat.ClientRequest(client="c"))
    b = begin(env, "s1", name="one")
    record(env, b, group([], entry(b"f", object_id=b"old")), objects=[obj(b"old"), obj(b"kept")])
    record(env, b, group([], entry(b"g", object_id=b"kept", inode=8)))
    complete(env, b)
    b2 = begin(env, "s2", name="two")
    record(env, b2, group([], entry(b"g", object_id=b"kept", inode=8)))
    complete(env, b2)
    removal = core.remove_sets(cat.RemoveSetsRequest(client="c", set_ids=[b.set.id]))
    assert list(removal.orphans) == [b"old"]
    core.forget_deleted(cat.ForgetDeletedRequest(client="c", fence=removal.fence, release=True))  # files kept
    path = tmp_path / "c" / "tardis.db"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT address FROM doomed").fetchall() == [(b"old",)]
        conn.execute("UPDATE objects SET address = ? WHERE address = ?", (b"old", b"kept"))  # readdressed
        assert conn.execute("SELECT COUNT(*) FROM doomed").fetchone()[0] == 0
        conn.execute("INSERT INTO doomed (address, stored_size) VALUES (?, 5)", (b"old",))  # behind its back
    conn.close()
    reply = core.remove_sets(cat.RemoveSetsRequest(client="c"))
    assert list(reply.orphans) == [] and reply.orphan_bytes == 0
    core.close()


def test_a_purge_holds_the_lease_while_it_deletes(cenv: Env) -> None:
    """RemoveSets that returns orphans takes the writer lease in its transaction: no backup
    can begin (and store one of them again) until ForgetDeleted with its fence releases it;
    each ForgetDeleted renews it; a wrong fence is refused; no orphans, no lease."""
    sets = sets_each_with_own_object(cenv, 3)
    purge = cenv.api.remove_sets(cat.RemoveSetsRequest(client="c", set_ids=[sets[0].id], holder="hostP:7"))
    assert list(purge.orphans) == [b"o0"] and purge.fence > 0
    with pytest.raises(Conflict, match=r"client c is being purged by hostP:7 since .*; use --force to take over"):
        begin(cenv, "s9", holder="hostB:1")
    with pytest.raises(Conflict, match=r"client c is being purged by hostP:7 since .*; try again when it is done"):
        cenv.api.remove_sets(cat.RemoveSetsRequest(client="c", set_ids=[sets[1].id], holder="hostQ:8"))
    with pytest.raises(Conflict, match="taken over by hostP:7"):
        cenv.api.forget_deleted(cat.ForgetDeletedRequest(client="c", object_ids=[b"o0"], fence=purge.fence + 1))
    # Each chunk renews the lease: 20 s + 20 s is past the first 30 s, not past the renewal.
    cenv.clock.advance(20)
    assert deleted(cenv, purge, release=False).forgotten == 1
    cenv.clock.advance(20)
    with pytest.raises(Conflict, match="being purged by hostP:7"):
        begin(cenv, "s9", holder="hostB:1")
    assert deleted(cenv, cat.ExpireSetsReply(fence=purge.fence)).forgotten == 0  # the last chunk: released
    running = begin(cenv, "s9", holder="hostB:1")
    assert running.fence == purge.fence + 1
    with pytest.raises(Conflict, match="taken over by hostB:1"):
        deleted(cenv, purge)
    complete(cenv, running)
    with pytest.raises(Conflict, match="has ended"):
        deleted(cenv, purge)
    # set1 and the newest set share o1's content: removing set1 orphans nothing, takes no lease.
    b = begin(cenv, "s10", name="shares")
    record(cenv, b, group([], entry(b"f", size=11, object_id=b"o1")))
    complete(cenv, b)
    none = cenv.api.remove_sets(cat.RemoveSetsRequest(client="c", set_ids=[sets[1].id], holder="hostP:7"))
    assert [s.name for s in none.removed] == ["set1"] and (list(none.orphans), none.fence) == ([], 0)
    assert complete(cenv, begin(cenv, "s11", holder="hostB:1")).completed
    # A purge without a holder is "a purge"; a backup with --force takes over as ever, and the
    # purge's next ForgetDeleted is refused (it stops; the journal keeps the rest).
    anonymous = cenv.api.remove_sets(cat.RemoveSetsRequest(client="c", set_ids=[sets[2].id]))
    assert list(anonymous.orphans) == [b"o2"]
    with pytest.raises(Conflict, match="being purged by a purge since"):
        begin(cenv, "s12", holder="hostB:1")
    forced = begin(cenv, "s12", holder="hostB:1", force=True)
    with pytest.raises(Conflict, match="taken over by hostB:1"):
        deleted(cenv, anonymous)
    complete(cenv, forced)


def test_a_dead_purge_lease_is_taken_over_by_name(cenv: Env) -> None:
    """take_over names the holder of a live lease known to have ended (the caller checked its
    pid on its own host): RemoveSets takes that lease; any other holder is still refused."""
    sets = sets_each_with_own_object(cenv, 3)
    dead = cenv.api.remove_sets(cat.RemoveSetsRequest(client="c", set_ids=[sets[0].id], holder="hostP:7"))
    with pytest.raises(Conflict, match="being purged by hostP:7"):
        cenv.api.remove_sets(cat.RemoveSetsRequest(client="c", holder="hostP:9", take_over="hostP:8"))
    nxt = cenv.api.remove_sets(
        cat.RemoveSetsRequest(client="c", set_ids=[sets[1].id], holder="hostP:9", take_over="hostP:7")
    )
    assert list(nxt.orphans) == [b"o1", b"o0"] and nxt.fence == dead.fence + 1
    with pytest.raises(Conflict, match="taken over by hostP:9"):
        deleted(cenv, dead)
    assert deleted(cenv, nxt).forgotten == 2
    assert complete(cenv, begin(cenv, "s9")).completed


def test_list_objects_streams_every_held_object(cenv: Env) -> None:
    b = begin(cenv, "s1")
    record(cenv, b, objects=[obj(f"o{n:04}".encode()) for n in range(1500)])
    listed = [o.object_id for m in cenv.api.list_objects(cat.ClientRequest(client="c")) for o in m.objects]
    assert len(listed) == 1500 and listed[0] == b"o0000" and listed[-1] == b"o1499"


def test_marked_bad_objects_and_their_deltas_stop_counting_as_held(cenv: Env) -> None:
    b1 = begin(cenv, "s1")
    f = entry(b"f", size=10, object_id=b"o1")
    g = entry(b"g", size=10, object_id=b"o3", inode=8)
    record(cenv, b1, group([], f, g), objects=[obj(b"o1"), obj(b"o2", basis=b"o1"), obj(b"o3")])
    record(cenv, b1, objects=[obj(b"o4", basis=b"o2")])
    complete(cenv, b1)
    reply = cenv.api.mark_objects_bad(cat.ObjectIdsRequest(client="c", object_ids=[b"o1", b"unknown", b"o1"]))
    assert list(reply.marked) == [b"o1"] and sorted(reply.dependents) == [b"o2", b"o4"]
    held = cenv.api.get_object_info(cat.ObjectIdsRequest(client="c", object_ids=[b"o1", b"o2", b"o3", b"o4"]))
    assert [o.object_id for o in held.objects] == [b"o3"]
    listed = {o.object_id: o.bad for r in cenv.api.list_objects(cat.ClientRequest(client="c")) for o in r.objects}
    assert listed == {b"o1": True, b"o2": True, b"o3": False, b"o4": True}
    # Until their files are in quarantine the repair holds the writer lease: no backup now.
    assert reply.fence
    with pytest.raises(Conflict, match="is being repaired by sonic verify --repair"):
        begin(cenv, "early")
    cenv.api.forget_deleted(cat.ForgetDeletedRequest(client="c", fence=reply.fence, release=True))
    b2 = begin(cenv, "s2")
    # And no repair while a backup holds the lease; nothing is marked then.
    with pytest.raises(Conflict, match="is being backed up"):
        cenv.api.mark_objects_bad(cat.ObjectIdsRequest(client="c", object_ids=[b"o3"]))
    previous = lookup(cenv, b2.set.id, group([], f, g))
    assert previous[0].found and not previous[0].HasField("object")  # content not held: send it again
    assert previous[1].object.object_id == b"o3"
    record(cenv, b2, objects=[obj(b"o1")])  # stored again: held once more
    held = cenv.api.get_object_info(cat.ObjectIdsRequest(client="c", object_ids=[b"o1", b"o2"]))
    assert [o.object_id for o in held.objects] == [b"o1"]
    with pytest.raises(NotFound):
        cenv.api.mark_objects_bad(cat.ObjectIdsRequest(client="nobody", object_ids=[b"o1"]))


def test_find_entries_names_versions_with_paths_through_delta_chains(cenv: Env) -> None:
    b1 = begin(cenv, "s1", name="one")
    record(
        cenv,
        b1,
        group([], entry(b"top", DIR), entry(b"r", object_id=b"o3", inode=5)),
        group([b"top"], entry(b"mid", DIR)),
        group([b"top", b"mid"], entry(b"f", object_id=b"o1"), entry(b"g", object_id=b"o3", inode=8)),
        objects=[obj(b"o1"), obj(b"o2", basis=b"o1"), obj(b"o3")],
    )
    complete(cenv, b1)
    kept = [e.entry_id for e in tree(cenv, b1.set.id) if e.name in (b"top", b"mid", b"r", b"g")]
    b2 = begin(cenv, "s2", name="two")
    record(cenv, b2, objects=[obj(b"o4", basis=b"o2")], extend_entry_ids=kept)
    record(cenv, b2, group([b"top", b"mid"], entry(b"f", size=11, mtime=2, object_id=b"o4")))
    complete(cenv, b2)

    def found(*ids: bytes) -> list[tuple[tuple[bytes, ...], bytes, int, int, bytes, bytes]]:
        request = cat.ObjectIdsRequest(client="c", object_ids=ids)
        return sorted(
            (tuple(h.dir.components), h.entry.name, h.entry.first_set, h.entry.last_set, h.entry.object_id, h.named_id)
            for m in cenv.api.find_entries(request)
            for h in m.found
        )

    one, two = b1.set.id, b2.set.id
    # f's first version uses o1 itself, its second a delta two links down o1's chain.
    assert found(b"o1", b"unknown") == [
        ((b"top", b"mid"), b"f", one, one, b"o1", b"o1"),
        ((b"top", b"mid"), b"f", two, two, b"o4", b"o1"),
    ]
    # Unchanged versions span both sets; each version is found once, tied to its own object.
    assert found(b"o3", b"o3") == [((), b"r", one, two, b"o3", b"o3"), ((b"top", b"mid"), b"g", one, two, b"o3", b"o3")]
    assert found(b"o4", b"o2") == [((b"top", b"mid"), b"f", two, two, b"o4", b"o4")]
    assert found() == [] and found(b"unknown") == []
    with pytest.raises(NotFound):
        list(cenv.api.find_entries(cat.ObjectIdsRequest(client="nobody", object_ids=[b"o1"])))
