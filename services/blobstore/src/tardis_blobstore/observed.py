"""A BlobStoreCore as the servers use it: the same calls, with stored objects counted in the
metrics (tardis-blobstore and tardisd wrap their core; embedded tools do not)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tardis.v1 import blobstore_pb2 as bs

from tardis_common import metrics


class ObservedBlobStore:
    """Delegates every call to ``core``; ``put_objects`` also counts what it stored."""

    def __init__(self, core: Any) -> None:
        self._core = core

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    def put_objects(self, requests: Iterable[bs.PutObjectsRequest]) -> bs.PutObjectsReply:
        reply = self._core.put_objects(requests)
        metrics.OBJECTS_STORED.inc(reply.stored)
        metrics.OBJECTS_DEDUPLICATED.inc(reply.deduplicated)
        metrics.BYTES_STORED.inc(reply.bytes_written)
        return reply  # type: ignore[no-any-return]
