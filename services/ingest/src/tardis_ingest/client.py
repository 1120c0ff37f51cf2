"""IngestClient: the Ingest interface over gRPC."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import grpc
from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing
from tardis.v1 import ingest_pb2_grpc

from tardis_common.catalog_calls import CatalogCalls


class IngestClient(CatalogCalls):
    def __init__(
        self,
        channel: grpc.Channel,
        timeout: float | None = None,
        compress: bool = False,
        metadata: Callable[[], Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)  # type: ignore[no-untyped-call]
        super().__init__(channel, stub, timeout, compress, metadata=metadata)

    def hello(self, request: ing.HelloRequest) -> ing.HelloReply:
        return self._unary("Hello", request)  # type: ignore[no-any-return]

    def login_start(self, request: ing.LoginStartRequest) -> ing.LoginStartReply:
        return self._unary("LoginStart", request)  # type: ignore[no-any-return]

    def login_finish(self, request: ing.LoginFinishRequest) -> ing.LoginFinishReply:
        return self._unary("LoginFinish", request)  # type: ignore[no-any-return]

    def renew_token(self, request: ing.RenewTokenRequest) -> ing.RenewTokenReply:
        return self._unary("RenewToken", request)  # type: ignore[no-any-return]

    def set_credentials(self, request: common.Credentials) -> common.Credentials:
        return self._unary("SetCredentials", request)  # type: ignore[no-any-return]

    def create_client(self, request: ing.CreateClientRequest) -> common.ClientInfo:
        return self._unary("CreateClient", request)  # type: ignore[no-any-return]

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
