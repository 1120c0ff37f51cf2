"""Opens a repository URL as an Ingest interface: cores in-process, or a gRPC client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tardis.v1 import ingest_pb2 as ing

from tardis_common.errors import InvalidArgument
from tardis_common.interfaces import Ingest
from tardis_common.rpc import open_channel
from tardis_common.urls import RepoURL
from tardis_common.version import PROTOCOL_VERSION, __version__


@dataclass
class Repository:
    url: RepoURL
    ingest: Ingest
    _closers: list[Any] = field(default_factory=list)

    @property
    def client(self) -> str:
        return self.url.client

    def close(self) -> None:
        for closer in self._closers:
            closer()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def embedded(url: RepoURL) -> Repository:
    """All service cores in this process, on the directory ``url`` names."""
    from tardis_blobstore.core import BlobStoreCore
    from tardis_catalog.core import CatalogCore
    from tardis_ingest.core import IngestCore

    catalog = CatalogCore(url.base_dir)
    blobstore = BlobStoreCore(url.base_dir)
    return Repository(url, IngestCore(catalog, blobstore, allow_admin=True), [catalog.close])


def open_repository(url: RepoURL, *, timeout: float = 10.0, compress_messages: bool = False) -> Repository:
    """``compress_messages`` gzips the metadata calls over gRPC (CompressMsgs)."""
    if url.scheme == "file":
        return embedded(url)
    if url.scheme == "tardis":
        from tardis_ingest.client import IngestClient

        channel = open_channel(url.address, timeout=min(timeout, 10.0))
        client = IngestClient(channel, compress=compress_messages)
        repo = Repository(url, client, [channel.close])
        try:
            client.hello(ing.HelloRequest(client_version=__version__, protocol_version=PROTOCOL_VERSION))
        except Exception:
            repo.close()
            raise
        return repo
    raise InvalidArgument(f"{url.scheme}:// repositories are not supported by this release yet")
