"""BlobStoreCore: the BlobStoreService methods over one object tree per client."""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import common_pb2 as common

from tardis_common.clock import Clock, SystemClock
from tardis_common.errors import InvalidArgument, NoSpace
from tardis_common.faults import fault_point
from tardis_common.limits import quota_exceeded
from tardis_common.logsetup import event

from .storage import ObjectMeta, ObjectTree, check_object_id
from .tmpsweep import sweep_tmp

log = logging.getLogger(__name__)

PIECE_SIZE = 1024 * 1024  # data per reply, and per piece of a large object
MAX_PIECES_PER_REPLY = 1024  # bounds a reply made of many empty or missing objects
MAX_OPEN_TOKENS = 256
FINISHERS = 4  # threads placing finished objects  # objects one put stream may have unfinished at once


class BlobStoreCore:
    """Stores each client's objects under ``root/<client>/``; with ``quota`` (ClientQuota,
    bytes), a put stream that would take a client's objects beyond it is refused. The first
    put stream of each client removes the temporary files dead writers left (``tmpsweep``),
    judging their age by ``clock``."""

    def __init__(self, root: Path, quota: int = 0, clock: Clock | None = None) -> None:
        self.root = Path(root)
        self.quota = quota
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._swept: set[str] = set()  # clients whose tmp/ this core has swept
        self._usage: dict[str, int] = {}  # client -> bytes its objects take (measured when first needed)
        self._known_dirs: dict[str, set[Path]] = {}
        self._finishers = ThreadPoolExecutor(max_workers=FINISHERS, thread_name_prefix="blob-place")
        self._counting = threading.Lock()

    def tree(self, client: str) -> ObjectTree:
        return ObjectTree(self.root, client, self._known_dirs.setdefault(client, set()))

    def usage(self, client: str) -> int:
        """Bytes of the client's stored objects and signatures (for ClientQuota)."""
        tree = self.tree(client)
        with self._counting:
            known = self._usage.get(client)
        if known is None:
            known = tree.stored_bytes()
            with self._counting:
                self._usage[client] = known
        return known

    # -- PutObjects ------------------------------------------------------------------------

    def put_objects(self, requests: Iterable[bs.PutObjectsRequest]) -> bs.PutObjectsReply:
        reply = bs.PutObjectsReply()
        tree: ObjectTree | None = None
        open_objects: dict[int, BinaryIO] = {}
        commits: list[Future[None]] = []
        by_id: dict[bytes, Future[None]] = {}  # per object id, its latest placing in this stream
        allowed = 0  # with a quota: bytes this stream may still bring (counted as received)
        placed: list[bytes] = []  # objects this stream stored that did not exist before
        done = False
        try:
            for request in requests:
                if tree is None:
                    tree = self.tree(request.client)
                    self._sweep_once(tree)
                    allowed = self.quota - self.usage(tree.client) if self.quota else 0
                elif request.client and request.client != tree.client:
                    raise InvalidArgument(f"client changed within a put stream ({tree.client!r} to {request.client!r})")
                if self.quota:
                    allowed -= sum(len(piece.data) for piece in request.pieces)
                    if allowed < 0:
                        raise quota_exceeded(tree.client, self.quota)
                for piece in request.pieces:
                    self._put_piece(tree, open_objects, piece, reply, commits, by_id, placed)
            if open_objects:
                token = next(iter(open_objects))
                raise InvalidArgument(f"object stream ended inside object token {token}")
            _wait_all(commits)
            if tree is not None and (reply.stored + reply.deduplicated > 0 or reply.bytes_written > 0):
                fault_point("blobstore.before-sync")
                tree.sync()
                if self.quota:
                    with self._counting:
                        if tree.client in self._usage:
                            self._usage[tree.client] += reply.bytes_written
            done = True
            return reply
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise NoSpace(
                f"no space left on the server for the objects of client {tree.client if tree else '?'}"
                f" ({exc.strerror}); free space and back up again (completed sets are intact)"
            ) from None
        finally:
            _wait_all(commits, raise_first=False)
            if tree is not None:
                for temp in open_objects.values():
                    tree.abort(temp)
                if not done:
                    _forget(tree, placed)

    def _sweep_once(self, tree: ObjectTree) -> None:
        """Remove dead writers' temporary files from the client's ``tmp/``, once per core."""
        with self._counting:
            if tree.client in self._swept:
                return
            self._swept.add(tree.client)
        try:
            removed = sweep_tmp(tree.tmp, self._clock.now_ns())
        except OSError as exc:  # a sweep that fails must not fail the backup
            log.warning("cannot sweep the temporary files of client %s: %s", tree.client, exc)
            return
        event(log, "tmp_swept", logging.INFO if removed else logging.DEBUG, client=tree.client, removed=removed)

    def _put_piece(
        self,
        tree: ObjectTree,
        open_objects: dict[int, BinaryIO],
        piece: bs.PutPiece,
        reply: bs.PutObjectsReply,
        commits: list[Future[None]],
        by_id: dict[bytes, Future[None]],
        placed: list[bytes],
    ) -> None:
        temp = open_objects.get(piece.token)
        if temp is None and piece.last:
            # A whole object in one piece (most objects): its temporary file is created on the
            # pool too, not on this stream's thread, and not at all when the object is held.
            if not piece.abort:
                self._submit(piece, by_id, commits, self._finish_whole, tree, piece, reply, placed)
            return
        if temp is None:
            if len(open_objects) >= MAX_OPEN_TOKENS:
                raise InvalidArgument(f"more than {MAX_OPEN_TOKENS} objects unfinished at once in one put stream")
            temp = open_objects[piece.token] = tree.begin()
        if piece.data:
            temp.write(piece.data)
        if not piece.last:
            fault_point("blobstore.mid-object")
            return
        del open_objects[piece.token]
        if piece.abort:
            tree.abort(temp)
            return
        # Placing a finished object costs a few metadata operations (mkdir, link, .meta);
        # they run on a small pool so a batch of small objects is not one long serial chain.
        info = bs.PutPiece()
        info.info.CopyFrom(piece.info)
        info.signature = piece.signature
        self._submit(info, by_id, commits, self._finish, tree, temp, info, reply, placed)

    def _submit(
        self,
        piece: bs.PutPiece,
        by_id: dict[bytes, Future[None]],
        commits: list[Future[None]],
        job: Callable[..., None],
        *args: object,
    ) -> None:
        """Run ``job(*args)`` on the placing pool, after any earlier placing of the same object
        in this stream, keeping at most a bounded window of placings in flight."""
        earlier = by_id.get(piece.info.object_id) if not piece.signature else None
        if earlier is not None:
            earlier.result()  # the same object twice in one stream: place them in stream order
        future = self._finishers.submit(job, *args)
        if not piece.signature:
            by_id[piece.info.object_id] = future
        commits.append(future)
        while len(commits) > 4 * FINISHERS:  # a bounded window: wait for the oldest
            commits.pop(0).result()

    def _finish_whole(
        self, tree: ObjectTree, piece: bs.PutPiece, reply: bs.PutObjectsReply, placed: list[bytes]
    ) -> None:
        """Place an object that arrived in one piece: nothing to write when the store already
        holds it in a form the commit would keep (see ``ObjectTree.holds``)."""
        if not piece.signature and tree.holds(_meta(piece.info, stored_size=len(piece.data))):
            with self._counting:
                reply.deduplicated += 1
            return
        temp = tree.begin()
        try:
            if piece.data:
                temp.write(piece.data)
        except BaseException:
            tree.abort(temp)
            raise
        self._finish(tree, temp, piece, reply, placed)

    def _finish(
        self,
        tree: ObjectTree,
        temp: BinaryIO,
        piece: bs.PutPiece,
        reply: bs.PutObjectsReply,
        placed: list[bytes] | None = None,
    ) -> None:
        try:
            if piece.signature:
                tree.commit_signature(temp, piece.info.object_id)
                size = os.stat(tree.path(piece.info.object_id).with_suffix(".sig")).st_size
                with self._counting:
                    reply.bytes_written += size
                return
            meta = _meta(piece.info, stored_size=temp.tell())
            fresh = tree.stat(piece.info.object_id) < 0
            stored = tree.commit(temp, meta)
        except BaseException:
            tree.abort(temp)
            raise
        with self._counting:
            if stored and fresh and placed is not None:
                placed.append(piece.info.object_id)
            if stored:
                reply.stored += 1
                reply.bytes_written += meta.stored_size
            else:
                reply.deduplicated += 1

    # -- GetObjects ------------------------------------------------------------------------

    def get_objects(self, request: bs.GetObjectsRequest) -> Iterator[bs.GetObjectsReply]:
        tree = self.tree(request.client)
        for object_id in request.object_ids:
            check_object_id(object_id)
        reply = bs.GetObjectsReply()
        budget = PIECE_SIZE
        for object_id in request.object_ids:
            source = tree.open(object_id, signature=request.signatures)
            if source is None:
                reply.pieces.add(object_id=object_id, missing=True, last=True)
            else:
                with source:
                    remaining = _size(source)
                    if request.offset:
                        source.seek(min(request.offset, remaining))
                        remaining = max(0, remaining - request.offset)
                    if request.length:
                        remaining = min(remaining, request.length)
                    while True:
                        data = source.read(min(remaining, budget))
                        remaining -= len(data)
                        last = remaining <= 0 or len(data) == 0
                        reply.pieces.add(object_id=object_id, data=data, last=last)
                        budget -= len(data)
                        if last:
                            break
                        if budget <= 0 or len(reply.pieces) >= MAX_PIECES_PER_REPLY:
                            yield reply
                            reply, budget = bs.GetObjectsReply(), PIECE_SIZE
            if budget <= 0 or len(reply.pieces) >= MAX_PIECES_PER_REPLY:
                yield reply
                reply, budget = bs.GetObjectsReply(), PIECE_SIZE
        if reply.pieces:
            yield reply

    # -- StatObjects / DeleteObjects -------------------------------------------------------

    def stat_objects(self, request: bs.StatObjectsRequest) -> bs.StatObjectsReply:
        tree = self.tree(request.client)
        ids = list(request.object_ids)
        for object_id in ids:
            check_object_id(object_id)
        if not tree.exists():
            return bs.StatObjectsReply(stored_sizes=[-1] * len(ids))
        return bs.StatObjectsReply(stored_sizes=[tree.stat(object_id) for object_id in ids])

    def delete_objects(self, request: bs.DeleteObjectsRequest) -> bs.DeleteObjectsReply:
        tree = self.tree(request.client)
        for object_id in request.object_ids:
            check_object_id(object_id)
        if not tree.exists():
            return bs.DeleteObjectsReply(deleted=0)
        remove = tree.quarantine if request.quarantine else tree.delete
        try:
            return bs.DeleteObjectsReply(deleted=sum(remove(object_id) for object_id in request.object_ids))
        finally:
            with self._counting:
                self._usage.pop(tree.client, None)  # measured afresh when next needed

    # -- local maintenance (sonic encrypt) --------------------------------------------------

    def rewrite_meta(self, client: str, infos: Iterable[common.ObjectInfo]) -> int:
        """Write the ``.meta`` of each stored object in ``infos`` afresh; how many were written."""
        tree = self.tree(client)
        written = 0
        for info in infos:
            path = tree.path(info.object_id)
            try:
                stored_size = path.stat().st_size
            except (FileNotFoundError, NotADirectoryError):
                continue
            tree._write_meta(path.with_name(path.name + ".meta"), _meta(info, stored_size))
            written += 1
        if written:
            tree.sync()
        return written


def _forget(tree: ObjectTree, placed: list[bytes]) -> None:
    """Remove the objects a failed put stream stored: the caller records objects in the catalog
    only after a stream succeeds, so nothing refers to them, and left behind they would be
    orphans (a content that changed before the next run is never sent again)."""
    for object_id in placed:
        try:
            tree.delete(object_id)
        except OSError as exc:
            log.warning("cannot remove object %s of a failed put stream: %s", object_id[:16], exc)


def _wait_all(futures: list[Future[None]], raise_first: bool = True) -> None:
    """Wait for every future and empty the list; re-raise the first failure if asked."""
    first: BaseException | None = None
    for future in futures:
        try:
            future.result()
        except BaseException as exc:
            first = first or exc
    futures.clear()
    if first is not None and raise_first:
        raise first


def _meta(info: common.ObjectInfo, stored_size: int) -> ObjectMeta:
    """The .meta record for a finished object; ``stored_size`` is what actually arrived."""
    object_id = check_object_id(info.object_id)
    basis_id = check_object_id(info.basis_id) if info.basis_id else ""
    return ObjectMeta(
        object_id=object_id,
        size=info.size,
        stored_size=stored_size,
        compression=info.compression,
        encrypted=info.encrypted,
        basis_id=basis_id,
        chain_length=info.chain_length,
    )


def _size(source: BinaryIO) -> int:
    return os.fstat(source.fileno()).st_size
