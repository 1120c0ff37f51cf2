"""IngestCore: backup sessions, change negotiation, and the read calls of the CLI tools.

It holds no durable state: the catalog owns sets, entries and the writer lease, the
blobstore owns objects, and the session id carries the rest (see session.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence

from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing

from tardis_common.clock import Clock, SystemClock
from tardis_common.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    TardisError,
    Unauthenticated,
    VersionMismatch,
)
from tardis_common.faults import fault_point
from tardis_common.interfaces import BlobStore, Catalog
from tardis_common.limits import Limits
from tardis_common.logsetup import event
from tardis_common.names import check_client_name
from tardis_common.version import MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, __version__, compatible

from .access import Access, AccessPolicy
from .decide import Outcome, Policy, Previous, after_checksum, decide
from .login import Logins
from .session import Session

log = logging.getLogger(__name__)
DELETE_CHUNK = 1000  # a purge's orphans deleted (and its lease renewed) per round


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
        policy: Policy | None = None,
        access: AccessPolicy | None = None,
        server_key: bytes | None = None,
        token_lifetime_s: float = 900.0,
        limits: Limits | None = None,
    ) -> None:
        """``access`` says who may call (embedded by default: the process owns the repository);
        ``server_key`` seals login handshakes and tokens (shared by every replica; a random
        one is fine for a single process)."""
        self.catalog = catalog
        self.blobstore = blobstore
        self.clock = clock or SystemClock()
        self.policy = policy or Policy()
        self.limits = limits or Limits()
        self.access = Access(catalog, access or AccessPolicy())
        self.logins = Logins(catalog, self.access, server_key or os.urandom(32), self.clock, token_lifetime_s)

    @property
    def allow_new_clients(self) -> bool:
        return self.access.policy.allow_new_clients

    def _session(self, encoded: str) -> Session:
        """Decode a session id and check the caller may act for its client."""
        session = Session.decode(encoded)
        self.access.require_client(session.client)
        return session

    def _client(self, name: str) -> str:
        client = check_client_name(name)
        self.access.require_client(client)
        return client

    # -- login -----------------------------------------------------------------------------

    def login_start(self, request: ing.LoginStartRequest) -> ing.LoginStartReply:
        return self.logins.start(request)

    def login_finish(self, request: ing.LoginFinishRequest) -> ing.LoginFinishReply:
        return self.logins.finish(request)

    def renew_token(self, request: ing.RenewTokenRequest) -> ing.RenewTokenReply:
        return self.logins.renew(request)

    def _check_credentials(self, credentials: common.Credentials) -> None:
        policy = self.access.policy
        if policy.require_password and not (credentials.present and credentials.encrypted):
            raise PermissionDenied(
                f"this server requires every client to be encrypted with a password; {credentials.client} is not"
            )

    def set_credentials(self, request: common.Credentials) -> common.Credentials:
        """Add, change or remove a client's password and keys; the verifier never goes back."""
        client = self._client(request.client)
        self._check_credentials(request)
        self.catalog.set_credentials(request)
        self.access.forget(client)
        log.info("client %s: credentials %s", client, "set" if request.present else "removed")
        return _public(self.catalog.get_credentials(cat.ClientRequest(client=client)))

    # -- handshake -------------------------------------------------------------------------

    def hello(self, request: ing.HelloRequest) -> ing.HelloReply:
        check_version(request.client_version, request.protocol_version)
        return ing.HelloReply(server_version=__version__, protocol_version=PROTOCOL_VERSION)

    # -- backup session --------------------------------------------------------------------

    def open_session(self, request: ing.OpenSessionRequest) -> ing.OpenSessionReply:
        check_version(request.client_version, request.protocol_version)
        client = check_client_name(request.client)
        if request.create:
            self.create_client(ing.CreateClientRequest(client=client), existing_hint=True)
        else:
            try:
                self.catalog.get_client(cat.ClientRequest(client=client))
            except NotFound:
                raise NotFound(f"client {client} does not exist; use --create for its first backup") from None
        self.access.require_client(client)
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
                priority=request.priority,
                tags=request.tags,
                command_line=request.command_line,
            )
        )
        session = Session(client, begun.set.id, begun.fence, nonce)
        event(log, "session_opened", client=client, set_id=begun.set.id, resumed=begun.resumed, host=request.host)
        return ing.OpenSessionReply(
            session=session.encode(),
            set=begun.set,
            previous_set_id=begun.previous_set_id,
            resumed=begun.resumed,
            server_version=__version__,
        )

    def _previous(
        self, session: Session, groups: Sequence[common.EntryGroup]
    ) -> tuple[list[Previous | None], list[bool]]:
        looked = self.catalog.lookup_entries(
            cat.LookupEntriesRequest(client=session.client, set_id=session.set_id, groups=groups)
        )
        total = sum(len(g.entries) for g in groups)
        if len(looked.previous) != total or len(looked.size_held) not in (0, total):
            raise InvalidArgument("catalog answered for a different number of entries")
        previous = [
            Previous(p.entry, p.object if p.HasField("object") else None) if p.found else None for p in looked.previous
        ]
        held = list(looked.size_held) or [False] * total
        return previous, held

    def _answer(
        self,
        session: Session,
        groups: Sequence[common.EntryGroup],
        outcomes: list[tuple[Outcome, bytes]],
        entries: list[common.Entry],
        previous: list[Previous | None],
    ) -> ing.SubmitEntriesReply:
        """Record what needs no content, in one catalog call, and build the reply."""
        reply = ing.SubmitEntriesReply()
        extend: list[int] = []
        verified: list[int] = []
        record: list[common.EntryGroup] = []
        position = 0
        for group in groups:
            to_record = common.EntryGroup(dir=group.dir)
            for _ in group.entries:
                (outcome, basis), entry, prev = outcomes[position], entries[position], previous[position]
                position += 1
                reply.actions.append(_ACTIONS[outcome])
                reply.delta_basis.append(basis)
                if outcome is Outcome.EXTEND and prev is not None:
                    extend.append(prev.entry.entry_id)
                elif outcome is Outcome.VERIFIED and prev is not None:
                    verified.append(prev.entry.entry_id)
                elif outcome is Outcome.RECORD:
                    to_record.entries.append(entry)
            if to_record.entries:
                record.append(to_record)
        if extend or verified or record:
            self.catalog.record_entries(
                cat.RecordEntriesRequest(
                    client=session.client,
                    set_id=session.set_id,
                    fence=session.fence,
                    extend_entry_ids=extend,
                    verified_entry_ids=verified,
                    insert=record,
                )
            )
        return reply

    def submit_entries(self, request: ing.SubmitEntriesRequest) -> ing.SubmitEntriesReply:
        session = self._session(request.session)
        self.limits.check_batch(sum(len(g.entries) for g in request.groups))
        previous, held = self._previous(session, request.groups)
        entries = [_copy(e) for g in request.groups for e in g.entries]
        outcomes = [
            decide(entry, prev, size_held=h, policy=self.policy, full=request.full)
            for entry, prev, h in zip(entries, previous, held, strict=True)
        ]
        return self._answer(session, request.groups, outcomes, entries, previous)

    def check_content(self, request: ing.SubmitEntriesRequest) -> ing.SubmitEntriesReply:
        """Entries answered SEND_CHECKSUM, now with their content hash in ``object_id``."""
        session = self._session(request.session)
        self.limits.check_batch(sum(len(g.entries) for g in request.groups))
        previous, _ = self._previous(session, request.groups)
        entries = [_copy(e) for g in request.groups for e in g.entries]
        if any(not e.object_id for e in entries):
            raise InvalidArgument("CheckContent needs the content hash of every entry")
        found = self.catalog.get_object_info(
            cat.ObjectIdsRequest(client=session.client, object_ids=list({e.object_id for e in entries}))
        )
        held = {o.object_id: o for o in found.objects}
        outcomes = [
            after_checksum(entry, prev, held.get(entry.object_id), policy=self.policy, full=request.full)
            for entry, prev in zip(entries, previous, strict=True)
        ]
        return self._answer(session, request.groups, outcomes, entries, previous)

    def upload_content(self, requests: Iterable[ing.UploadContentRequest]) -> ing.UploadContentReply:
        """Stream every piece to the blobstore; record the entries once their objects are durable."""
        iterator = iter(requests)
        try:
            first = next(iterator)
        except StopIteration:
            raise InvalidArgument("empty upload stream") from None
        session = self._session(first.session)
        pending: dict[int, tuple[common.DirPath, common.Entry] | None] = {}
        groups: list[common.EntryGroup] = []
        objects: list[common.ObjectInfo] = []
        existing: list[bytes] = []
        reply = ing.UploadContentReply()

        def finished(directory: common.DirPath, entry: common.Entry, info: common.ObjectInfo) -> None:
            entry.object_id = info.object_id
            entry.size = info.size
            groups.append(common.EntryGroup(dir=directory, entries=[entry]))
            reply.files += 1
            self.limits.check_batch(reply.files, "files in one upload")

        def pieces() -> Iterator[bs.PutObjectsRequest]:
            for request in _chain(first, iterator):
                put = bs.PutObjectsRequest(client=session.client)
                for piece in request.pieces:
                    if piece.existing:
                        if not piece.HasField("entry") or not piece.info.object_id:
                            raise InvalidArgument("a piece for an existing object needs its entry and object id")
                        existing.append(piece.info.object_id)
                        finished(piece.dir, _copy(piece.entry), piece.info)
                        continue
                    if piece.HasField("entry"):
                        pending[piece.token] = (piece.dir, _copy(piece.entry))
                    elif piece.token not in pending:
                        pending[piece.token] = None  # a signature, or a continuation without entry
                    reply.bytes += len(piece.data)
                    put.pieces.append(
                        bs.PutPiece(
                            token=piece.token,
                            data=piece.data,
                            last=piece.last,
                            signature=piece.signature,
                            abort=piece.abort,
                        )
                    )
                    if not piece.last:
                        continue
                    owner = pending.pop(piece.token)
                    if piece.abort:
                        continue
                    if not piece.info.object_id:
                        raise InvalidArgument(f"upload token {piece.token} ended without an object id")
                    put.pieces[-1].info.CopyFrom(piece.info)
                    if piece.signature:
                        continue
                    objects.append(piece.info)
                    if piece.info.basis_id:
                        reply.deltas += 1
                    if owner is not None:
                        finished(owner[0], owner[1], piece.info)
                yield put

        self.blobstore.put_objects(pieces())
        fault_point("ingest.after-put")  # objects durable, catalog rows not yet written
        if pending:
            raise InvalidArgument(f"upload ended inside {len(pending)} file(s)")
        if existing:
            known = self.catalog.get_object_info(cat.ObjectIdsRequest(client=session.client, object_ids=existing))
            sent = {o.object_id for o in objects}
            missing = set(existing) - {o.object_id for o in known.objects} - sent
            if missing:
                raise InvalidArgument(f"{len(missing)} existing object(s) are not held by this client")
        if groups or objects:
            self.catalog.record_entries(
                cat.RecordEntriesRequest(
                    client=session.client,
                    set_id=session.set_id,
                    fence=session.fence,
                    insert=groups,
                    objects=objects,
                    bytes_received=reply.bytes,
                    files_full=reply.files - reply.deltas,
                    files_delta=reply.deltas,
                )
            )
            fault_point("ingest.after-record")
        return reply

    def finish_session(self, request: ing.FinishSessionRequest) -> ing.FinishSessionReply:
        """Apply retention while still holding the lease, then mark the set complete.

        The catalog forgets expired sets' orphaned objects first; only then are they deleted
        from the blobstore, so no later session can be told an object exists that is gone.
        """
        session = self._session(request.session)
        expired = self.catalog.expire_sets(
            cat.ExpireSetsRequest(client=session.client, set_id=session.set_id, fence=session.fence)
        )
        fault_point("ingest.after-expire")  # retention committed, its objects not yet deleted
        if expired.orphans:
            self.blobstore.delete_objects(bs.DeleteObjectsRequest(client=session.client, object_ids=expired.orphans))
            self.catalog.forget_deleted(  # under the session's lease, which it keeps to complete the set
                cat.ForgetDeletedRequest(client=session.client, object_ids=expired.orphans, fence=session.fence)
            )
        fault_point("ingest.before-complete")
        done = self.catalog.complete_set(
            cat.CompleteSetRequest(
                client=session.client,
                set_id=session.set_id,
                fence=session.fence,
                client_end_time_ns=request.client_end_time_ns,
                manifest_id=request.manifest_id,
            )
        )
        fault_point("ingest.after-complete")  # the set is complete; the client has not heard
        event(
            log,
            "session_finished",
            client=session.client,
            set_id=done.id,
            set_name=done.name,
            files=done.files_full + done.files_delta,
            bytes=done.bytes_received,
            duration_s=max(0, done.end_time_ns - done.start_time_ns) / 1e9,
        )
        if expired.removed:
            _purged(session.client, "retention", expired)
        return ing.FinishSessionReply(
            set=done,
            purged=[s.name for s in expired.removed],
            objects_removed=len(expired.orphans),
            bytes_freed=expired.orphan_bytes,
        )

    # -- read side -------------------------------------------------------------------------

    def list_sets(self, request: cat.ClientRequest) -> cat.ListSetsReply:
        self._client(request.client)
        return self.catalog.list_sets(request)

    def lookup_path(self, request: cat.LookupPathRequest) -> cat.LookupPathReply:
        self._client(request.client)
        return self.catalog.lookup_path(request)

    def read_tree(self, request: cat.ReadTreeRequest) -> Iterator[common.StoredEntries]:
        self._client(request.client)
        return self.catalog.read_tree(request)

    def get_object_info(self, request: cat.ObjectIdsRequest) -> cat.ObjectInfoReply:
        self._client(request.client)
        return self.catalog.get_object_info(request)

    def list_objects(self, request: cat.ClientRequest) -> Iterator[cat.ObjectInfoReply]:
        self._client(request.client)
        return self.catalog.list_objects(request)

    def find_entries(self, request: cat.ObjectIdsRequest) -> Iterator[cat.FoundEntries]:
        self._client(request.client)
        return self.catalog.find_entries(request)

    def stat_objects(self, request: bs.StatObjectsRequest) -> bs.StatObjectsReply:
        self._client(request.client)
        self.catalog.get_client(cat.ClientRequest(client=request.client))
        return self.blobstore.stat_objects(request)

    def create_client(self, request: ing.CreateClientRequest, existing_hint: bool = False) -> common.ClientInfo:
        """A new client, with its credentials when it has a password (sonic create, tardis --create)."""
        client = check_client_name(request.client)
        if not self.allow_new_clients and not self.access.is_privileged():
            raise PermissionDenied(f"this server does not allow new clients; cannot create {client}")
        credentials = common.Credentials()
        credentials.CopyFrom(request.credentials)
        credentials.client = client
        self._check_credentials(credentials)
        caller = self.access.caller()
        if caller.kind == "client":
            raise PermissionDenied(f"logged in as client {caller.client}; cannot create client {client}")
        anonymous_ok = self.access.policy.allow_anonymous or self.access.identity().local_socket
        if caller.kind == "anonymous" and not credentials.present and not anonymous_ok:
            raise Unauthenticated(f"this server does not allow clients without a password; cannot create {client}")
        try:
            info = self.catalog.create_client(cat.ClientRequest(client=client))
        except AlreadyExists:
            hint = "; run without --create" if existing_hint else ""
            raise AlreadyExists(f"client {client} already exists{hint}") from None
        if credentials.present:
            self.catalog.set_credentials(credentials)
        return info

    def get_client_config(self, request: cat.ClientRequest) -> cat.ClientConfig:
        self._client(request.client)
        return self.catalog.get_client_config(request)

    def set_client_config(self, request: cat.ClientConfig) -> cat.ClientConfig:
        check_client_name(request.client)
        self.access.require_admin("changing a client's settings")
        return self.catalog.set_client_config(request)

    def update_set(self, request: cat.UpdateSetRequest) -> common.BackupSet:
        self._client(request.client)
        if request.set_locked and not request.locked:
            self.access.require_admin("unlocking a backup set")
        return self.catalog.update_set(request)

    def remove_sets(self, request: cat.RemoveSetsRequest) -> cat.ExpireSetsReply:
        """Delete or purge sets, then delete the objects the catalog has already forgotten.

        Without admin rights a purge keeps every set inside its KeepPeriods. While it deletes
        them it holds the client's writer lease (taken by the catalog with the removal), so no
        backup of the client can store one of them again meanwhile."""
        self._client(request.client)
        if request.set_ids:
            self.access.require_admin("deleting backup sets")
        if not self.access.is_privileged() and request.purge and not request.incomplete:
            request = _copy_message(request)
            request.within_keep_periods = True
        removed = self.catalog.remove_sets(request)
        fault_point("ingest.after-remove")  # sets forgotten, their objects not yet deleted
        if removed.orphans:
            self._delete_orphans(request.client, list(removed.orphans), removed.fence)
        if removed.removed:
            _purged(request.client, "delete" if request.set_ids else "purge", removed)
        return removed

    def _delete_orphans(self, client: str, orphans: list[bytes], fence: int) -> None:
        """Delete a purge's orphans a chunk at a time, each chunk then taken out of the deletion
        journal under the purge's lease (renewing it; the last releases it). A failure still
        releases the lease; what was not deleted stays in the journal for the next purge."""
        released = False
        try:
            for start in range(0, len(orphans), DELETE_CHUNK):
                chunk = orphans[start : start + DELETE_CHUNK]
                last = start + DELETE_CHUNK >= len(orphans)
                self.blobstore.delete_objects(bs.DeleteObjectsRequest(client=client, object_ids=chunk))
                self.catalog.forget_deleted(
                    cat.ForgetDeletedRequest(client=client, object_ids=chunk, fence=fence, release=last)
                )
                released = last
        finally:
            if not released:
                try:
                    self.catalog.forget_deleted(cat.ForgetDeletedRequest(client=client, fence=fence, release=True))
                except TardisError as exc:  # taken over, or the catalog is gone: the lease expires
                    log.warning("client %s: could not release the purge's lease: %s", client, exc)

    def mark_objects_bad(self, request: cat.ObjectIdsRequest) -> cat.MarkObjectsBadReply:
        """Objects verification found damaged or missing: bad in the catalog (with the deltas
        built on them), their files set aside in quarantine so a fresh copy can take the name."""
        self._client(request.client)
        marked = self.catalog.mark_objects_bad(request)
        doomed = [*marked.marked, *marked.dependents]
        try:
            if doomed:
                self.blobstore.delete_objects(
                    bs.DeleteObjectsRequest(client=request.client, object_ids=doomed, quarantine=True)
                )
        finally:
            if marked.fence:  # the lease the catalog took while the files move
                self.catalog.forget_deleted(
                    cat.ForgetDeletedRequest(client=request.client, fence=marked.fence, release=True)
                )
        log.warning(
            "client %s: %d objects marked bad, %d deltas built on them",
            request.client,
            len(marked.marked),
            len(marked.dependents),
        )
        return marked

    def read_objects(self, request: bs.GetObjectsRequest) -> Iterator[bs.GetObjectsReply]:
        self._client(request.client)
        self.catalog.get_client(cat.ClientRequest(client=request.client))
        return self.blobstore.get_objects(request)


_ACTIONS = {
    Outcome.EXTEND: ing.ACTION_DONE,
    Outcome.VERIFIED: ing.ACTION_DONE,
    Outcome.RECORD: ing.ACTION_DONE,
    Outcome.CONTENT: ing.ACTION_SEND_CONTENT,
    Outcome.CHECKSUM: ing.ACTION_SEND_CHECKSUM,
    Outcome.DELTA: ing.ACTION_SEND_DELTA,
}


def _purged(client: str, how: str, reply: cat.ExpireSetsReply) -> None:
    event(
        log,
        "sets_purged",
        client=client,
        how=how,
        sets=[s.name for s in reply.removed],
        objects_removed=len(reply.orphans),
        bytes_freed=reply.orphan_bytes,
    )


def _public(credentials: common.Credentials) -> common.Credentials:
    """Credentials as a client may see them: never the verifier."""
    shown = common.Credentials()
    shown.CopyFrom(credentials)
    shown.ClearField("srp_verifier")
    return shown


def _copy_message(request: cat.RemoveSetsRequest) -> cat.RemoveSetsRequest:
    copy = cat.RemoveSetsRequest()
    copy.CopyFrom(request)
    return copy


def _copy(entry: common.Entry) -> common.Entry:
    copy = common.Entry()
    copy.CopyFrom(entry)
    return copy


def _chain(
    first: ing.UploadContentRequest, rest: Iterator[ing.UploadContentRequest]
) -> Iterator[ing.UploadContentRequest]:
    yield first
    yield from rest
