"""IngestClient: the Ingest interface over gRPC."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import grpc
from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import ingest_pb2 as ing
from tardis.v1 import ingest_pb2_grpc

from tardis_common.catalog_calls import CatalogCalls


class IngestClient(CatalogCalls):
    def __init__(self, channel: grpc.Channel, timeout: float | None = None, compress: bool = False) -> None:
        super().__init__(channel, ingest_pb2_grpc.IngestServiceStub(channel), timeout, compress)

    def hello(self, request: ing.HelloRequest) -> ing.HelloReply:
        return self._unary("Hello", request)  # type: ignore[no-any-return]

    def open_session(self, request: ing.OpenSessionRequest) -> ing.OpenSessionReply:
        return self._unary("OpenSession", request)  # type: ignore[no-any-return]

    def submit_entries(self, request: ing.SubmitEntriesRequest) -> ing.SubmitEntriesReply:
        return self._unary("SubmitEntries", request)  # type: ignore[no-any-return]

    def upload_content(self, requests: Iterable[ing.UploadContentRequest]) -> ing.UploadContentReply:
        return self._stream_in("UploadContent", iter(requests))  # type: ignore[no-any-return]

    def check_content(self, request: ing.SubmitEntriesRequest) -> ing.SubmitEntriesReply:
        return self._unary("CheckContent", request)  # type: ignore[no-any-return]

    def finish_session(self, request: ing.FinishSessionRequest) -> ing.FinishSessionReply:
        return self._unary("FinishSession", request)  # type: ignore[no-any-return]

    def read_objects(self, request: bs.GetObjectsRequest) -> Iterator[bs.GetObjectsReply]:
        return self._stream_out("ReadObjects", request)

    def stat_objects(self, request: bs.StatObjectsRequest) -> bs.StatObjectsReply:
        return self._unary("StatObjects", request)  # type: ignore[no-any-return]
