"""One backup run: open a session, stream entries in batches, send what ingest asks for."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field

from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing

from tardis_common.cipher import Cipher
from tardis_common.errors import InvalidArgument
from tardis_common.faults import fault_point
from tardis_common.interfaces import Ingest
from tardis_common.version import PROTOCOL_VERSION, __version__

from .upload import Upload, UploadOptions, upload_requests
from .walker import Group, Walker

log = logging.getLogger(__name__)

BATCH_ENTRIES = 1000


@dataclass
class BackupOptions:
    create: bool = False
    force: bool = False
    name: str = ""
    upload: UploadOptions | None = None
    exclude_dirs: list[str] = field(default_factory=list)
    cross_devices: bool = False


@dataclass
class BackupResult:
    set: common.BackupSet
    resumed: bool
    entries: int = 0
    files_sent: int = 0
    bytes_sent: int = 0
    batches: int = 0


class _Batcher:
    """Collects groups into SubmitEntries batches of about BATCH_ENTRIES entries."""

    def __init__(self, run: BackupRun) -> None:
        self.run = run
        self.groups: list[tuple[common.DirPath, list]] = []
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


class BackupRun:
    def __init__(self, ingest: Ingest, client: str, cipher: Cipher, options: BackupOptions) -> None:
        self.ingest = ingest
        self.client = client
        self.cipher = cipher
        self.options = options
        self.session = ""
        self.stats: dict[str, int] = {}
        self.entries = 0
        self.batches = 0

    def submit(self, groups: list) -> None:
        request = ing.SubmitEntriesRequest(session=self.session)
        for path, items in groups:
            request.groups.append(common.EntryGroup(dir=path, entries=[i.entry for i in items]))
        reply = self.ingest.submit_entries(request)
        flat = [(path, item) for path, items in groups for item in items]
        if len(reply.actions) != len(flat):
            raise InvalidArgument("server answered for a different number of entries")
        self.entries += len(flat)
        self.batches += 1
        send = ing.ACTION_SEND_CONTENT
        wanted = [Upload(p, i) for (p, i), action in zip(flat, reply.actions, strict=True) if action == send]
        if wanted:
            assert self.options.upload is not None
            self.ingest.upload_content(
                upload_requests(self.session, wanted, self.cipher, self.options.upload, self.stats)
            )
            fault_point("after-upload")

    def run(self, roots: list[str]) -> BackupResult:
        for root in roots:
            if not os.path.isdir(root):
                raise InvalidArgument(
                    f"{root} is not a directory" if os.path.exists(root) else f"{root} does not exist"
                )
        opened = self.ingest.open_session(
            ing.OpenSessionRequest(
                client=self.client,
                create=self.options.create,
                host=socket.gethostname(),
                pid=os.getpid(),
                client_version=__version__,
                protocol_version=PROTOCOL_VERSION,
                force=self.options.force,
                name=self.options.name,
                client_time_ns=time.time_ns(),
            )
        )
        self.session = opened.session
        walker = Walker(self.cipher, exclude_dirs=self.options.exclude_dirs, cross_devices=self.options.cross_devices)
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
        finished = self.ingest.finish_session(
            ing.FinishSessionRequest(session=self.session, client_end_time_ns=time.time_ns())
        )
        return BackupResult(
            set=finished.set,
            resumed=opened.resumed,
            entries=self.entries,
            files_sent=self.stats.get("files", 0),
            bytes_sent=self.stats.get("bytes", 0),
            batches=self.batches,
        )
