"""Conformance of the BlobStore interface: the core directly, and the gRPC client to a real server."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import common_pb2 as common

from tardis_blobstore.client import BlobStoreClient
from tardis_blobstore.core import PIECE_SIZE, BlobStoreCore
from tardis_blobstore.grpc_service import handler
from tardis_common.clock import FixedClock
from tardis_common.errors import InvalidArgument
from tardis_common.interfaces import BlobStore
from tardis_common.rpc import make_server, open_channel

CLIENT = "alice"
MiB = 1024 * 1024


@dataclass
class Env:
    store: BlobStore
    root: Path


@pytest.fixture(params=["core", "grpc"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    root = tmp_path / "base"
    root.mkdir()
    core = BlobStoreCore(root)
    if request.param == "core":
        yield Env(core, root)
        return
    server, port = make_server("127.0.0.1:0", [handler(core)])
    client = BlobStoreClient(open_channel(f"127.0.0.1:{port}"))
    try:
        yield Env(client, root)
    finally:
        client.close()
        server.stop(None).wait()


def oid(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode("ascii")


def info(data: bytes, **extra: object) -> common.ObjectInfo:
    return common.ObjectInfo(object_id=oid(data), size=len(data), stored_size=len(data), **extra)  # type: ignore[arg-type]


def pieces_of(token: int, data: bytes, chunk: int = 256 * 1024) -> list[bs.PutPiece]:
    """The pieces of one object, ``chunk`` bytes each, the last carrying its ObjectInfo."""
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
    out = [bs.PutPiece(token=token, data=c) for c in chunks]
    out[-1].last = True
    out[-1].info.CopyFrom(info(data))
    return out


def put(store: BlobStore, *blobs: bytes, client: str = CLIENT) -> bs.PutObjectsReply:
    """Put each blob as one object, one request per piece, the client on the first request."""
    requests = []
    for token, data in enumerate(blobs):
        for piece in pieces_of(token, data):
            requests.append(bs.PutObjectsRequest(pieces=[piece]))
    if requests:
        requests[0].client = client
    return store.put_objects(iter(requests))


def get(
    store: BlobStore, *ids: bytes, client: str = CLIENT
) -> tuple[dict[bytes, bytes | None], list[bs.GetObjectsReply]]:
    """Reassemble the objects of a get (None for missing), checking order and last flags."""
    replies = list(store.get_objects(bs.GetObjectsRequest(client=client, object_ids=list(ids))))
    found: dict[bytes, bytes | None] = {}
    order: list[bytes] = []
    current: bytearray | None = None
    for reply in replies:
        for piece in reply.pieces:
            if current is None:
                order.append(piece.object_id)
                current = bytearray()
            assert piece.object_id == order[-1], "pieces of one object must be contiguous"
            current += piece.data
            if piece.last:
                found[piece.object_id] = None if piece.missing else bytes(current)
                current = None
    assert current is None, "stream ended inside an object"
    assert order == list(ids)
    return found, replies


def tmp_files(root: Path, client: str = CLIENT) -> list[Path]:
    tmp = root / client / "tmp"
    return sorted(tmp.iterdir()) if tmp.is_dir() else []


SMALL = b"x"
EMPTY = b""
BIG = os.urandom(3 * MiB + 17)


def test_round_trip_various_sizes(env: Env) -> None:
    reply = put(env.store, EMPTY, SMALL, BIG)
    assert (reply.stored, reply.deduplicated, reply.bytes_written) == (3, 0, 1 + len(BIG))
    found, _ = get(env.store, oid(BIG), oid(EMPTY), oid(SMALL))
    assert found == {oid(BIG): BIG, oid(EMPTY): EMPTY, oid(SMALL): SMALL}
    assert tmp_files(env.root) == []


def test_interleaved_tokens(env: Env) -> None:
    a, b, c = os.urandom(700_000), os.urandom(300_000), b"c" * 10
    pa, pb = pieces_of(7, a, chunk=100_000), pieces_of(3, b, chunk=100_000)
    mixed: list[bs.PutPiece] = []
    for i in range(max(len(pa), len(pb))):
        mixed += pa[i : i + 1] + pb[i : i + 1]
    requests = [bs.PutObjectsRequest(client=CLIENT, pieces=mixed[:5])]
    requests += [bs.PutObjectsRequest(pieces=mixed[i : i + 3]) for i in range(5, len(mixed), 3)]
    requests.append(bs.PutObjectsRequest(pieces=pieces_of(3, c)))  # token 3 reused after it finished
    reply = env.store.put_objects(iter(requests))
    assert (reply.stored, reply.deduplicated) == (3, 0)
    found, _ = get(env.store, oid(a), oid(b), oid(c))
    assert found == {oid(a): a, oid(b): b, oid(c): c}


def test_dedup_counted(env: Env) -> None:
    first = put(env.store, SMALL, BIG)
    assert (first.stored, first.deduplicated) == (2, 0)
    again = put(env.store, BIG, SMALL, b"new", SMALL)
    assert (again.stored, again.deduplicated, again.bytes_written) == (1, 3, 3)
    assert tmp_files(env.root) == []
    found, _ = get(env.store, oid(BIG))
    assert found[oid(BIG)] == BIG


def test_concurrent_puts_of_one_object_store_it_once(env: Env) -> None:
    # Several rounds: the race this guards (a second writer between one writer's link and its
    # .meta) is narrow, and one round can miss it.
    for _ in range(10):
        data = os.urandom(200_000)
        with ThreadPoolExecutor(max_workers=8) as pool:
            replies = list(pool.map(lambda payload: put(env.store, payload), [data] * 8))
        assert sum(r.stored for r in replies) == 1
        assert sum(r.deduplicated for r in replies) == 7
        assert get(env.store, oid(data))[0] == {oid(data): data}
    assert tmp_files(env.root) == []


def test_layout_and_meta_on_disk(env: Env) -> None:
    data = b"hello tardis"
    basis = oid(b"basis")
    piece = bs.PutPiece(token=1, data=data, last=True)
    piece.info.CopyFrom(info(data, compression="zstd", encrypted=True, basis_id=basis, chain_length=2))
    piece.info.size = 100
    env.store.put_objects(iter([bs.PutObjectsRequest(client=CLIENT, pieces=[piece])]))
    text = oid(data).decode()
    path = env.root / CLIENT / text[:2] / text[2:4] / text
    assert path.read_bytes() == data
    raw = path.with_name(text + ".meta").read_text()
    assert raw.endswith("\n") and raw.count("\n") == 1
    meta = json.loads(raw)
    assert meta == {
        "format": 1,
        "object_id": text,
        "size": 100,
        "stored_size": len(data),
        "compression": "zstd",
        "encrypted": True,
        "basis_id": basis.decode(),
        "chain_length": 2,
    }
    assert list(meta) == sorted(meta), "keys are sorted"
    put(env.store, SMALL)
    small = oid(SMALL).decode()
    full = json.loads((env.root / CLIENT / small[:2] / small[2:4] / (small + ".meta")).read_text())
    assert full["basis_id"] == "" and full["chain_length"] == 0


def test_get_missing_and_unknown_client(env: Env) -> None:
    put(env.store, SMALL)
    absent = oid(b"absent")
    found, replies = get(env.store, absent, oid(SMALL))
    assert found == {absent: None, oid(SMALL): SMALL}
    missing = [p for r in replies for p in r.pieces if p.object_id == absent]
    assert len(missing) == 1 and missing[0].missing and missing[0].last and not missing[0].data
    found, _ = get(env.store, oid(SMALL), client="nobody")
    assert found == {oid(SMALL): None}


def test_range_reads_of_stored_bytes(env: Env) -> None:
    put(env.store, SMALL, BIG)

    def read(offset: int, length: int, *ids: bytes) -> list[bytes]:
        replies = env.store.get_objects(
            bs.GetObjectsRequest(client=CLIENT, object_ids=list(ids), offset=offset, length=length)
        )
        out: list[bytes] = []
        current = bytearray()
        for reply in replies:
            for piece in reply.pieces:
                current += piece.data
                if piece.last:
                    out.append(bytes(current))
                    current = bytearray()
        return out

    assert read(MiB, 1000, oid(BIG)) == [BIG[MiB : MiB + 1000]]
    assert read(3 * MiB, 0, oid(BIG)) == [BIG[3 * MiB :]]  # length 0: to the end
    assert read(len(BIG) - 5, 100, oid(BIG)) == [BIG[-5:]]  # clipped at the end
    assert read(len(BIG) + 10, 100, oid(BIG), oid(SMALL)) == [b"", b""]  # past the end: empty
    assert read(0, PIECE_SIZE + 3, oid(BIG)) == [BIG[: PIECE_SIZE + 3]]  # spans several pieces


def test_stat(env: Env) -> None:
    put(env.store, EMPTY, BIG)
    ids = [oid(BIG), oid(b"absent"), oid(EMPTY)]
    assert list(env.store.stat_objects(bs.StatObjectsRequest(client=CLIENT, object_ids=ids)).stored_sizes) == [
        len(BIG),
        -1,
        0,
    ]
    reply = env.store.stat_objects(bs.StatObjectsRequest(client="nobody", object_ids=ids))
    assert list(reply.stored_sizes) == [-1, -1, -1]


def test_delete(env: Env) -> None:
    put(env.store, SMALL, BIG)
    text = oid(SMALL).decode()
    sig = env.root / CLIENT / text[:2] / text[2:4] / (text + ".sig")
    sig.write_bytes(b"signature")
    request = bs.DeleteObjectsRequest(client=CLIENT, object_ids=[oid(SMALL), oid(b"absent")])
    assert env.store.delete_objects(request).deleted == 1
    assert not sig.exists() and not sig.with_name(text + ".meta").exists() and not sig.with_name(text).exists()
    assert env.store.delete_objects(request).deleted == 0
    sizes = env.store.stat_objects(bs.StatObjectsRequest(client=CLIENT, object_ids=[oid(SMALL), oid(BIG)]))
    assert list(sizes.stored_sizes) == [-1, len(BIG)]
    assert env.store.delete_objects(bs.DeleteObjectsRequest(client="nobody", object_ids=[oid(BIG)])).deleted == 0


BAD_IDS = [
    b"",
    b"abc",
    b"0" * 15,
    b"0" * 129,
    b"ABCDEF0123456789",
    b"0123456789abcdeg",
    b"../../etc/passwd0000",
    "é".encode() * 10,
]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_invalid_ids_rejected(env: Env, bad: bytes) -> None:
    with pytest.raises(InvalidArgument, match="invalid object id"):
        env.store.stat_objects(bs.StatObjectsRequest(client=CLIENT, object_ids=[oid(SMALL), bad]))
    with pytest.raises(InvalidArgument, match="invalid object id"):
        list(env.store.get_objects(bs.GetObjectsRequest(client=CLIENT, object_ids=[bad])))
    with pytest.raises(InvalidArgument, match="invalid object id"):
        env.store.delete_objects(bs.DeleteObjectsRequest(client=CLIENT, object_ids=[bad]))
    piece = bs.PutPiece(token=1, data=b"data", last=True, info=common.ObjectInfo(object_id=bad))
    with pytest.raises(InvalidArgument, match="invalid object id"):
        env.store.put_objects(iter([bs.PutObjectsRequest(client=CLIENT, pieces=[piece])]))
    assert tmp_files(env.root) == []


def test_boundary_id_lengths_accepted(env: Env) -> None:
    for length in (16, 128):
        object_id = b"a" * length
        piece = bs.PutPiece(token=1, data=b"z", last=True, info=common.ObjectInfo(object_id=object_id))
        assert env.store.put_objects(iter([bs.PutObjectsRequest(client=CLIENT, pieces=[piece])])).stored == 1
        sizes = env.store.stat_objects(bs.StatObjectsRequest(client=CLIENT, object_ids=[object_id]))
        assert list(sizes.stored_sizes) == [1]


def test_invalid_client_rejected(env: Env) -> None:
    for name in ("", "..", "a/b", ".hidden"):
        with pytest.raises(InvalidArgument):
            env.store.stat_objects(bs.StatObjectsRequest(client=name, object_ids=[oid(SMALL)]))
        with pytest.raises(InvalidArgument):
            put(env.store, SMALL, client=name)
    assert sorted(p.name for p in env.root.iterdir()) == []


def test_unfinished_stream_leaves_no_tmp_files(env: Env) -> None:
    done = pieces_of(1, SMALL)
    open_a = pieces_of(2, BIG)[:2]
    open_b = [bs.PutPiece(token=9, data=b"partial")]
    requests = [
        bs.PutObjectsRequest(client=CLIENT, pieces=done + open_a),
        bs.PutObjectsRequest(pieces=open_b),
    ]
    with pytest.raises(InvalidArgument, match=r"object stream ended inside object token (2|9)"):
        env.store.put_objects(iter(requests))
    assert tmp_files(env.root) == []
    # The object completed earlier in the failed stream may stay; the unfinished ones are absent.
    sizes = env.store.stat_objects(bs.StatObjectsRequest(client=CLIENT, object_ids=[oid(BIG)]))
    assert list(sizes.stored_sizes) == [-1]


def test_stream_failing_midway_leaves_no_tmp_files(env: Env) -> None:
    bad_last = bs.PutPiece(token=2, data=b"more", last=True, info=common.ObjectInfo(object_id=b"nothex"))
    requests = [
        bs.PutObjectsRequest(client=CLIENT, pieces=[bs.PutPiece(token=1, data=b"open")]),
        bs.PutObjectsRequest(pieces=[bs.PutPiece(token=2, data=b"x"), bad_last]),
        bs.PutObjectsRequest(pieces=pieces_of(3, SMALL)),
    ]
    with pytest.raises(InvalidArgument):
        env.store.put_objects(iter(requests))
    assert tmp_files(env.root) == []


def test_empty_stream(env: Env) -> None:
    reply = env.store.put_objects(iter([bs.PutObjectsRequest(client=CLIENT)]))
    assert (reply.stored, reply.deduplicated, reply.bytes_written) == (0, 0, 0)


def test_reply_pieces_bounded(env: Env) -> None:
    smalls = [os.urandom(1000) + bytes([i]) for i in range(50)]
    put(env.store, BIG, *smalls)
    ids = [oid(s) for s in smalls[:25]] + [oid(BIG)] + [oid(s) for s in smalls[25:]] + [oid(b"absent")]
    found, replies = get(env.store, *ids)
    assert found[oid(BIG)] == BIG and all(found[oid(s)] == s for s in smalls)
    sizes = [sum(len(p.data) for p in r.pieces) for r in replies]
    assert all(size <= PIECE_SIZE for size in sizes)
    assert len(replies) <= 5, "small objects share replies"
    assert max(len(r.pieces) for r in replies) > 1


# -- the real program ----------------------------------------------------------------------


def _program(*args: str) -> list[str]:
    return [sys.executable, "-m", "tardis_blobstore.main", *args]


def test_program_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        _program("--listen", "127.0.0.1:0", "--basedir", str(tmp_path / "base")),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("tardis-blobstore listening on 127.0.0.1:"), line
        address = line.split()[-1]
        assert not address.endswith(":0")
        client = BlobStoreClient(open_channel(address))
        try:
            assert put(client, SMALL, BIG).stored == 2
            found, _ = get(client, oid(BIG), oid(SMALL))
            assert found == {oid(BIG): BIG, oid(SMALL): SMALL}
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_program_bad_basedir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = subprocess.run(
        _program("--listen", "127.0.0.1:0", "--basedir", str(blocker / "sub")),
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "basedir" in result.stderr and "Traceback" not in result.stderr


def test_program_address_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            _program("--listen", f"127.0.0.1:{port}", "--basedir", str(tmp_path / "base")),
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "cannot listen" in result.stderr and "Traceback" not in result.stderr


def test_a_full_copy_replaces_a_stored_delta_of_the_same_content(env: Env) -> None:
    """Full wins, in one stream (in stream order) and across streams; a delta never replaces a full."""
    content = b"the content" * 100
    basis = oid(b"the basis")
    as_delta = bs.PutPiece(token=1, data=b"DELTA BYTES", last=True)
    as_delta.info.CopyFrom(info(content, basis_id=basis))
    as_full = bs.PutPiece(token=2, data=b"FULL BYTES", last=True)
    as_full.info.CopyFrom(info(content))
    one_stream = [bs.PutObjectsRequest(client=CLIENT, pieces=[as_delta, as_full])]
    env.store.put_objects(iter(one_stream))
    found, _ = get(env.store, oid(content))
    assert found[oid(content)] == b"FULL BYTES"
    text = oid(content).decode()
    meta = json.loads((env.root / CLIENT / text[:2] / text[2:4] / f"{text}.meta").read_text())
    assert meta["basis_id"] == ""
    env.store.put_objects(iter([bs.PutObjectsRequest(client=CLIENT, pieces=[as_delta])]))
    found, _ = get(env.store, oid(content))
    assert found[oid(content)] == b"FULL BYTES"


def test_an_object_without_a_valid_meta_is_written_again(env: Env) -> None:
    """A writer that died between placing an object and its .meta left it unvouched for: the
    next put of that content, in one piece or several, stores it afresh instead of
    deduplicating against it; with its .meta back, later puts deduplicate again."""
    for content in (b"small, one piece" * 10, os.urandom(600 * 1024)):
        put(env.store, content)
        text = oid(content).decode()
        path = env.root / CLIENT / text[:2] / text[2:4] / text
        path.write_bytes(b"torn")
        path.with_name(text + ".meta").write_text('{"format": 1, "obj')  # torn by a crash
        again = put(env.store, content)
        assert (again.stored, again.deduplicated) == (1, 0)
        assert get(env.store, oid(content))[0] == {oid(content): content}
        assert json.loads(path.with_name(text + ".meta").read_text())["stored_size"] == len(content)
        assert (put(env.store, content).stored, put(env.store, content).deduplicated) == (0, 1)
    assert tmp_files(env.root) == []


def test_quarantine_sets_an_object_aside_and_frees_its_name(env: Env) -> None:
    put(env.store, SMALL, BIG)
    text = oid(SMALL).decode()
    reply = env.store.delete_objects(
        bs.DeleteObjectsRequest(client=CLIENT, object_ids=[oid(SMALL), oid(b"absent")], quarantine=True)
    )
    assert reply.deleted == 1
    aside = env.root / CLIENT / "quarantine"
    assert sorted(p.name for p in aside.iterdir()) == [text, text + ".meta"]
    assert get(env.store, oid(SMALL))[0] == {oid(SMALL): None}
    assert put(env.store, SMALL).stored == 1  # a fresh copy takes the name
    assert get(env.store, oid(SMALL), oid(BIG))[0] == {oid(SMALL): SMALL, oid(BIG): BIG}


# -- temporary files of dead writers -------------------------------------------------------

NOW_NS = 1_800_000_000 * 1_000_000_000
MINUTE_NS = 60 * 1_000_000_000


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _temp_file(root: Path, name: str, age_minutes: float, client: str = CLIENT) -> Path:
    """A file in the client's tmp/ last written ``age_minutes`` before NOW_NS."""
    path = root / client / "tmp" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"partial object")
    stamp = NOW_NS - int(age_minutes * MINUTE_NS)
    os.utime(path, ns=(stamp, stamp))
    return path


@pytest.mark.parametrize("mode", ["core", "grpc"])
def test_first_put_of_a_client_sweeps_dead_writers_temp_files(tmp_path: Path, mode: str) -> None:
    """A dead pid's file older than 15 minutes goes, a live writer's stays, a dead writer's
    fresh file stays; anything older than 24 hours goes whatever its pid. Once per client."""
    root = tmp_path / "base"
    dead, live = _dead_pid(), os.getpid()
    doomed = [
        _temp_file(root, f"{dead}-140000-7.part", 16),
        _temp_file(root, f"{live}-140000-8.part", 25 * 60),
        _temp_file(root, "left-by-someone.part", 24 * 60 + 1),
        _temp_file(root, f"{dead}-1-9.part", 60, client="bob"),
    ]
    kept = [
        _temp_file(root, f"{live}-140000-9.part", 16),
        _temp_file(root, f"{dead}-140000-10.part", 14),
        _temp_file(root, "left-by-someone-else.part", 22 * 60),
    ]
    clock = FixedClock(NOW_NS)
    core = BlobStoreCore(root, clock=clock)
    server = client = None
    store: BlobStore = core
    if mode == "grpc":
        server, port = make_server("127.0.0.1:0", [handler(core)])
        store = client = BlobStoreClient(open_channel(f"127.0.0.1:{port}"))
    try:
        assert put(store, SMALL).stored == 1
        assert [p.exists() for p in doomed] == [False, False, False, True]  # bob has not put yet
        assert all(p.exists() for p in kept)
        clock.advance(3600)  # the dead writer's file is old now, but this core swept alice already
        assert put(store, BIG).stored == 1
        assert tmp_files(root) == sorted(kept)
        assert put(store, SMALL, client="bob").stored == 1
        assert tmp_files(root, "bob") == []
        assert get(store, oid(SMALL), oid(BIG))[0] == {oid(SMALL): SMALL, oid(BIG): BIG}
    finally:
        if client is not None:
            client.close()
        if server is not None:
            server.stop(None).wait()
    # A new core (the restarted process) sweeps again: the dead writer's file is past 15 minutes now.
    fresh = BlobStoreCore(root, clock=clock)
    put(fresh, b"third")
    assert tmp_files(root) == sorted([kept[0], kept[2]])
