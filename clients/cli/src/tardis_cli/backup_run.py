"""One backup run: open a session, stream entries in batches, send what ingest asks for."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing

from tardis_common.cipher import Cipher
from tardis_common.clock import Clock, SystemClock
from tardis_common.errors import Conflict, Corrupt, InvalidArgument
from tardis_common.faults import fault_point
from tardis_common.interfaces import Ingest
from tardis_common.objectformat import ObjectDecoder
from tardis_common.processes import pid_alive
from tardis_common.version import PROTOCOL_VERSION, __version__

from .excludes import Selection
from .hashing import hash_file
from .manifest_store import seal_set
from .progress import Estimate, human, time_left
from .upload import Upload, Uploader, UploadOptions, UploadStats, signature_identity
from .walker import Group, Item, Walker

log = logging.getLogger(__name__)
# The catalog's lease conflict: a backup, or a purge deleting its orphans, holds the lease.
_HELD_BY = re.compile(r"is being (?:backed up|purged) by (?P<host>.+):(?P<pid>\d+) since ")


def ended_run_on_this_host(message: str) -> int | None:
    """The pid of the run (a backup or a purge) named in a lease conflict when it ran on this
    host and has ended (killed, or failed before it could finish): its lease may be taken
    over at once."""
    held = _HELD_BY.search(message)
    if held is None or held["host"] != socket.gethostname():
        return None
    pid = int(held["pid"])
    if pid == os.getpid():
        return None
    return None if pid_alive(pid) else pid


BATCH_ENTRIES = 1000
T = TypeVar("T")


@dataclass
class BackupOptions:
    create: bool = False
    force: bool = False
    name: str = ""
    upload: UploadOptions | None = None
    exclude_dirs: list[str] = field(default_factory=list)
    cross_devices: bool = False
    selection: Selection | None = None
    full: bool = False
    priority: int = 0
    tags: list[str] = field(default_factory=list)
    command_line: str = ""
    manifest_key: bytes | None = None  # seal the set with an authenticated manifest (encrypted clients)
    report: bool = False  # keep the list of files sent, for --report
    clock: Clock = field(default_factory=SystemClock)  # the client's clock: set names come from it


@dataclass
class BackupResult:
    set: common.BackupSet
    resumed: bool
    entries: int = 0
    files_sent: int = 0
    bytes_sent: int = 0
    batches: int = 0
    deltas: int = 0
    checked: int = 0
    linked: int = 0
    wire_bytes: int = 0
    skipped: int = 0  # unreadable or vanished files and directories
    purged: list[str] = field(default_factory=list)  # sets removed by retention
    bytes_freed: int = 0
    report: list[tuple[str, str, int]] = field(default_factory=list)  # (path, full|delta|link, size)


class _Batcher:
    """Collects groups into SubmitEntries batches of about BATCH_ENTRIES entries."""

    def __init__(self, run: BackupRun) -> None:
        self.run = run
        self.groups: list[tuple[common.DirPath, list[Item]]] = []
        self.count = 0

    def add(self, group: Group) -> None:
        items = group.items
        path = common.DirPath(components=[self.run.cipher.encrypt_name(c) for c in group.components])
        while items:
            room = BATCH_ENTRIES - self.count
            self.groups.append((path, items[:room]))
            self.count += len(items[:room])
            items = items[room:]
            if self.count >= BATCH_ENTRIES:
                self.flush()

    def flush(self) -> None:
        if self.groups:
            self.run.submit(self.groups)
        self.groups, self.count = [], 0


_END = object()


def prefetched(source: Iterator[T], depth: int, stop: threading.Event | None = None) -> Iterator[T]:
    """``source`` produced on a thread of its own, up to ``depth`` items ahead of the consumer.

    Encoding (reading, hashing, compressing) then overlaps with storing or sending. Setting
    ``stop`` (the consumer's call ended) ends production quietly, whatever fails after it.
    """
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = stop if stop is not None else threading.Event()

    def produce() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_END)
        except BaseException as exc:
            if stop.is_set():  # no one is listening (the encoders may be shut down): end quietly
                with contextlib.suppress(queue.Full):
                    slots.put_nowait(_END)
                return
            slots.put(exc)

    thread = threading.Thread(target=produce, name="encode-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


class BackupRun:
    """One run. Batches are submitted from this thread; each batch's content is uploaded on a
    background thread while the walk and the next batch's negotiation go on."""

    def __init__(self, ingest: Ingest, client: str, cipher: Cipher, options: BackupOptions) -> None:
        self.ingest = ingest
        self.client = client
        self.cipher = cipher
        self.options = options
        self.session = ""
        self.stats = UploadStats()
        self.entries = 0
        self.batches = 0
        self.checked = 0
        self.workers = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="encode")
        self.sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="send")
        self.sending: Future[None] | None = None
        self.uploader: Uploader | None = None
        self.estimate: Estimate | None = None  # set by --progress

    def _request(self, groups: list[tuple[common.DirPath, list[Item]]]) -> ing.SubmitEntriesRequest:
        request = ing.SubmitEntriesRequest(session=self.session, full=self.options.full)
        for path, items in groups:
            request.groups.append(common.EntryGroup(dir=path, entries=[i.entry for i in items]))
        return request

    def submit(self, groups: list[tuple[common.DirPath, list[Item]]]) -> None:
        reply = self.ingest.submit_entries(self._request(groups))
        fault_point("client.after-submit")
        flat = [(path, item) for path, items in groups for item in items]
        if len(reply.actions) != len(flat):
            raise InvalidArgument("server answered for a different number of entries")
        self.entries += len(flat)
        self.batches += 1
        answers = list(zip(flat, reply.actions, reply.delta_basis or [b""] * len(flat), strict=True))
        checks = [pair for pair, action, _ in answers if action == ing.ACTION_SEND_CHECKSUM]
        if checks:
            answers = [a for a in answers if a[1] != ing.ACTION_SEND_CHECKSUM] + self._check(checks)
        uploads = [
            Upload(path, item, basis)
            for (path, item), action, basis in answers
            if action in (ing.ACTION_SEND_CONTENT, ing.ACTION_SEND_DELTA)
        ]
        if uploads:
            self._fetch_signatures(uploads)
            self._send(uploads)

    def _check(self, pairs: list[tuple[common.DirPath, Item]]) -> list[tuple[tuple[common.DirPath, Item], Any, bytes]]:
        """Hash the files ingest asked about and ask again; unreadable ones go as content."""
        hashed = list(self.workers.map(lambda pair: hash_file(pair[1].path, pair[1].entry, self.cipher), pairs))
        self.checked += len(pairs)
        known = [pair for pair, ok in zip(pairs, hashed, strict=True) if ok]
        fallback = [(pair, ing.ACTION_SEND_CONTENT, b"") for pair, ok in zip(pairs, hashed, strict=True) if not ok]
        if not known:
            return fallback
        reply = self.ingest.check_content(self._request([(path, [item]) for path, item in known]))
        for _, item in known:
            item.entry.object_id = b""
        bases = reply.delta_basis or [b""] * len(known)
        return fallback + list(zip(known, reply.actions, bases, strict=True))

    def _fetch_signatures(self, uploads: list[Upload]) -> None:
        wanted = list({u.basis for u in uploads if u.basis})
        if not wanted:
            return
        signatures: dict[bytes, bytes] = {}
        decoders: dict[bytes, ObjectDecoder] = {}
        parts: dict[bytes, list[bytes]] = {}
        damaged: set[bytes] = set()
        request = bs.GetObjectsRequest(client=self.client, object_ids=wanted, signatures=True)
        for reply in self.ingest.read_objects(request):
            for piece in reply.pieces:
                if piece.missing or piece.object_id in damaged:
                    continue
                # A signature is bound to its object's address: another object's signature
                # (swapped on the server) would make a delta that rebuilds the wrong file.
                identity = signature_identity(piece.object_id)
                decoder = decoders.setdefault(piece.object_id, ObjectDecoder(self.cipher, identity=identity))
                try:
                    parts.setdefault(piece.object_id, []).extend(decoder.feed(piece.data))
                    if piece.last:
                        decoder.finish()
                        signatures[piece.object_id] = b"".join(parts.pop(piece.object_id))
                except Corrupt as exc:
                    log.warning("ignoring a damaged signature (the file is sent whole): %s", exc)
                    damaged.add(piece.object_id)
                    parts.pop(piece.object_id, None)
        for upload in uploads:
            if upload.basis:
                upload.basis_signature = signatures.get(upload.basis, b"")

    def _send(self, uploads: list[Upload]) -> None:
        """Upload a batch's content on the sender thread, after the previous batch's."""
        self.wait()
        assert self.uploader is not None
        ended = threading.Event()
        requests = prefetched(self.uploader.requests(uploads), depth=8, stop=ended)

        def send() -> None:
            try:
                self.ingest.upload_content(requests)
            finally:
                ended.set()  # a failed call leaves gRPC's reader thread behind: stop feeding it
            fault_point("after-upload")

        self.sending = self.sender.submit(send)

    def wait(self) -> None:
        if self.sending is not None:
            sending, self.sending = self.sending, None
            sending.result()

    def progress_line(self, elapsed: float) -> str:
        s = self.stats
        left = ""
        if self.estimate is not None and self.estimate.done:
            left = time_left(self.entries, self.estimate.entries, elapsed)
        return (
            f"{self.entries} entries  {s.files} files sent ({s.deltas} deltas)  {human(s.bytes)}"
            f"  {human(s.sent / elapsed)}/s on the wire  {int(elapsed)} s{left}"
        )

    def run(self, roots: list[str]) -> BackupResult:
        try:
            return self._run(roots)
        finally:
            self.sender.shutdown(wait=True, cancel_futures=True)
            self.workers.shutdown(wait=True, cancel_futures=True)

    def _run(self, roots: list[str]) -> BackupResult:
        for root in roots:
            if not os.path.isdir(root):
                raise InvalidArgument(
                    f"{root} is not a directory" if os.path.exists(root) else f"{root} does not exist"
                )
        request = ing.OpenSessionRequest(
            client=self.client,
            create=self.options.create,
            host=socket.gethostname(),
            pid=os.getpid(),
            client_version=__version__,
            protocol_version=PROTOCOL_VERSION,
            force=self.options.force,
            name=self.options.name,
            client_time_ns=self.options.clock.now_ns(),
            priority=self.options.priority,
            tags=self.options.tags,
            command_line=self.options.command_line,
        )
        try:
            opened = self.ingest.open_session(request)
        except Conflict as exc:
            ended = ended_run_on_this_host(str(exc))
            if ended is None:
                raise
            log.warning("taking over the backup of run %d on this host, which ended without finishing", ended)
            request.force = True
            opened = self.ingest.open_session(request)
        self.session = opened.session
        log.info(
            "%s backup set %d of client %s", "resuming" if opened.resumed else "starting", opened.set.id, self.client
        )
        assert self.options.upload is not None
        self.uploader = Uploader(self.session, self.cipher, self.options.upload, self.workers, self.stats)
        self.uploader.report = [] if self.options.report else None
        walker = Walker(
            self.cipher,
            exclude_dirs=self.options.exclude_dirs,
            cross_devices=self.options.cross_devices,
            selection=self.options.selection,
        )
        batcher = _Batcher(self)
        seen_ancestors: set[str] = set()
        for root in roots:
            for group in walker.ancestors(root):
                if group.items[0].path not in seen_ancestors:
                    seen_ancestors.add(group.items[0].path)
                    batcher.add(group)
            for group in walker.walk(root):
                batcher.add(group)
        batcher.flush()
        self.wait()
        manifest_id = b""
        fault_point("client.before-finish")
        if self.options.manifest_key is not None:
            manifest_id = seal_set(
                self.ingest, self.client, self.session, opened.set.id, self.cipher, self.options.manifest_key
            )
        finished = self.ingest.finish_session(
            ing.FinishSessionRequest(
                session=self.session, client_end_time_ns=self.options.clock.now_ns(), manifest_id=manifest_id
            )
        )
        return BackupResult(
            set=finished.set,
            resumed=opened.resumed,
            entries=self.entries,
            files_sent=self.stats.files,
            bytes_sent=self.stats.bytes,
            batches=self.batches,
            deltas=self.stats.deltas,
            checked=self.checked,
            linked=self.stats.linked,
            wire_bytes=self.stats.sent,
            skipped=len(self.stats.skipped) + walker.skipped,
            report=self.uploader.report or [],
            purged=list(finished.purged),
            bytes_freed=finished.bytes_freed,
        )
