"""IngestCore: backup sessions, change negotiation, and the read calls of the CLI tools.

It holds no durable state: the catalog owns sets, entries and the writer lease, the
blobstore owns objects, and the session id carries the rest (see session.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing

from tardis_common.clock import Clock, SystemClock
from tardis_common.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied, VersionMismatch
from tardis_common.interfaces import BlobStore, Catalog
from tardis_common.names import check_client_name
from tardis_common.version import MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, __version__, compatible

from .decide import Outcome, decide
from .session import Session

log = logging.getLogger(__name__)


def check_version(client_version: str, protocol: int) -> None:
    if not compatible(protocol):
        raise VersionMismatch(
            f"client version {client_version or '?'} (protocol {protocol}) cannot talk to server version "
            f"{__version__} (protocols {MIN_PROTOCOL_VERSION}-{PROTOCOL_VERSION})"
        )


class IngestCore:
    def __init__(
        self,
        catalog: Catalog,
        blobstore: BlobStore,
        *,
        clock: Clock | None = None,
        allow_new_clients: bool = True,
    ) -> None:
        self.catalog = catalog
        self.blobstore = blobstore
        self.clock = clock or SystemClock()
        self.allow_new_clients = allow_new_clients

    # -- handshake -------------------------------------------------------------------------

    def hello(self, request: ing.HelloRequest) -> ing.HelloReply:
        check_version(request.client_version, request.protocol_version)
        return ing.HelloReply(server_version=__version__, protocol_version=PROTOCOL_VERSION)

    # -- backup session --------------------------------------------------------------------

    def open_session(self, request: ing.OpenSessionRequest) -> ing.OpenSessionReply:
        check_version(request.client_version, request.protocol_version)
        client = check_client_name(request.client)
        if request.create:
            if not self.allow_new_clients:
                raise PermissionDenied(f"this server does not allow new clients; cannot create {client}")
            try:
                self.catalog.create_client(cat.ClientRequest(client=client))
            except AlreadyExists:
                raise AlreadyExists(f"client {client} already exists; run without --create") from None
        else:
            try:
                self.catalog.get_client(cat.ClientRequest(client=client))
            except NotFound:
                raise NotFound(f"client {client} does not exist; use --create for its first backup") from None
        nonce = Session.new_nonce()
        begun = self.catalog.begin_set(
            cat.BeginSetRequest(
                client=client,
                session=nonce,
                holder=f"{request.host}:{request.pid}",
                force=request.force,
                client_time_ns=request.client_time_ns,
                client_version=request.client_version,
                server_version=__version__,
                name=request.name,
            )
        )
        session = Session(client, begun.set.id, begun.fence, nonce)
        log.info("client %s: %s set %d", client, "resumed" if begun.resumed else "opened", begun.set.id)
        return ing.OpenSessionReply(
            session=session.encode(),
            set=begun.set,
            previous_set_id=begun.previous_set_id,
            resumed=begun.resumed,
            server_version=__version__,
        )

    def submit_entries(self, request: ing.SubmitEntriesRequest) -> ing.SubmitEntriesReply:
        session = Session.decode(request.session)
        looked = self.catalog.lookup_entries(
            cat.LookupEntriesRequest(client=session.client, set_id=session.set_id, groups=request.groups)
        )
        total = sum(len(g.entries) for g in request.groups)
        if len(looked.previous) != total:
            raise InvalidArgument("catalog answered for a different number of entries")
        actions: list[ing.Action] = []
        extend: list[int] = []
        record: list[common.EntryGroup] = []
        position = 0
        for group in request.groups:
            to_record = common.EntryGroup(dir=group.dir)
            for entry in group.entries:
                previous = looked.previous[position]
                position += 1
                new = common.Entry()
                new.CopyFrom(entry)
                outcome = decide(new, previous.entry if previous.found else None)
                if outcome is Outcome.EXTEND:
                    extend.append(previous.entry.entry_id)
                    actions.append(ing.ACTION_DONE)
                elif outcome is Outcome.RECORD:
                    to_record.entries.append(new)
                    actions.append(ing.ACTION_DONE)
                else:
                    actions.append(ing.ACTION_SEND_CONTENT)
            if to_record.entries:
                record.append(to_record)
        if extend or record:
            self.catalog.record_entries(
                cat.RecordEntriesRequest(
                    client=session.client,
                    set_id=session.set_id,
                    fence=session.fence,
                    extend_entry_ids=extend,
                    insert=record,
                )
            )
        return ing.SubmitEntriesReply(actions=actions)

    def upload_content(self, requests: Iterable[ing.UploadContentRequest]) -> ing.UploadContentReply:
        """Stream every piece to the blobstore; record the entries once their objects are durable."""
        iterator = iter(requests)
        try:
            first = next(iterator)
        except StopIteration:
            raise InvalidArgument("empty upload stream") from None
        session = Session.decode(first.session)
        pending: dict[int, tuple[common.DirPath, common.Entry]] = {}
        groups: list[common.EntryGroup] = []
        objects: list[common.ObjectInfo] = []
        counters = {"bytes": 0, "files": 0}

        def pieces() -> Iterator[bs.PutObjectsRequest]:
            for request in _chain(first, iterator):
                put = bs.PutObjectsRequest(client=session.client)
                for piece in request.pieces:
                    if piece.HasField("entry"):
                        pending[piece.token] = (piece.dir, piece.entry)
                    elif piece.token not in pending:
                        raise InvalidArgument(f"content piece for unknown file token {piece.token}")
                    counters["bytes"] += len(piece.data)
                    put.pieces.append(bs.PutPiece(token=piece.token, data=piece.data, last=piece.last))
                    if piece.last:
                        directory, entry = pending.pop(piece.token)
                        if piece.info.object_id == b"":
                            raise InvalidArgument(f"file token {piece.token} ended without an object id")
                        put.pieces[-1].info.CopyFrom(piece.info)
                        entry.object_id = piece.info.object_id
                        entry.size = piece.info.size
                        objects.append(piece.info)
                        groups.append(common.EntryGroup(dir=directory, entries=[entry]))
                        counters["files"] += 1
                yield put

        self.blobstore.put_objects(pieces())
        if pending:
            raise InvalidArgument(f"upload ended inside {len(pending)} file(s)")
        if groups:
            self.catalog.record_entries(
                cat.RecordEntriesRequest(
                    client=session.client,
                    set_id=session.set_id,
                    fence=session.fence,
                    insert=groups,
                    objects=objects,
                    bytes_received=counters["bytes"],
                    files_full=counters["files"],
                )
            )
        return ing.UploadContentReply(files=counters["files"], bytes=counters["bytes"])

    def finish_session(self, request: ing.FinishSessionRequest) -> ing.FinishSessionReply:
        session = Session.decode(request.session)
        done = self.catalog.complete_set(
            cat.CompleteSetRequest(
                client=session.client,
                set_id=session.set_id,
                fence=session.fence,
                client_end_time_ns=request.client_end_time_ns,
            )
        )
        log.info("client %s: completed set %d as %s", session.client, done.id, done.name)
        return ing.FinishSessionReply(set=done)

    # -- read side -------------------------------------------------------------------------

    def list_sets(self, request: cat.ClientRequest) -> cat.ListSetsReply:
        check_client_name(request.client)
        return self.catalog.list_sets(request)

    def lookup_path(self, request: cat.LookupPathRequest) -> cat.LookupPathReply:
        check_client_name(request.client)
        return self.catalog.lookup_path(request)

    def read_tree(self, request: cat.ReadTreeRequest) -> Iterator[common.StoredEntries]:
        check_client_name(request.client)
        return self.catalog.read_tree(request)

    def get_object_info(self, request: cat.ObjectIdsRequest) -> cat.ObjectInfoReply:
        check_client_name(request.client)
        return self.catalog.get_object_info(request)

    def check_content(self, request: ing.SubmitEntriesRequest) -> ing.SubmitEntriesReply:
        raise InvalidArgument("CheckContent is not implemented yet")

    def read_objects(self, request: bs.GetObjectsRequest) -> Iterator[bs.GetObjectsReply]:
        check_client_name(request.client)
        self.catalog.get_client(cat.ClientRequest(client=request.client))
        return self.blobstore.get_objects(request)


def _chain(
    first: ing.UploadContentRequest, rest: Iterator[ing.UploadContentRequest]
) -> Iterator[ing.UploadContentRequest]:
    yield first
    yield from rest
