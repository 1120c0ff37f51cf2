"""IngestClient: the Ingest interface over gRPC."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import grpc
from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing
from tardis.v1 import ingest_pb2_grpc

from tardis_common.rpc import RpcClient


class IngestClient(RpcClient):
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

    def get_object_info(self, request: cat.ObjectIdsRequest) -> cat.ObjectInfoReply:
        return self._unary("GetObjectInfo", request)  # type: ignore[no-any-return]

    def finish_session(self, request: ing.FinishSessionRequest) -> ing.FinishSessionReply:
        return self._unary("FinishSession", request)  # type: ignore[no-any-return]

    def list_sets(self, request: cat.ClientRequest) -> cat.ListSetsReply:
        return self._unary("ListSets", request)  # type: ignore[no-any-return]

    def lookup_path(self, request: cat.LookupPathRequest) -> cat.LookupPathReply:
        return self._unary("LookupPath", request)  # type: ignore[no-any-return]

    def read_tree(self, request: cat.ReadTreeRequest) -> Iterator[common.StoredEntries]:
        return self._stream_out("ReadTree", request)

    def read_objects(self, request: bs.GetObjectsRequest) -> Iterator[bs.GetObjectsReply]:
        return self._stream_out("ReadObjects", request)

    def get_client_config(self, request: cat.ClientRequest) -> cat.ClientConfig:
        return self._unary("GetClientConfig", request)  # type: ignore[no-any-return]

    def set_client_config(self, request: cat.ClientConfig) -> cat.ClientConfig:
        return self._unary("SetClientConfig", request)  # type: ignore[no-any-return]

    def update_set(self, request: cat.UpdateSetRequest) -> common.BackupSet:
        return self._unary("UpdateSet", request)  # type: ignore[no-any-return]

    def remove_sets(self, request: cat.RemoveSetsRequest) -> cat.ExpireSetsReply:
        return self._unary("RemoveSets", request)  # type: ignore[no-any-return]

    def create_client(self, request: cat.ClientRequest) -> common.ClientInfo:
        return self._unary("CreateClient", request)  # type: ignore[no-any-return]

    def list_objects(self, request: cat.ClientRequest) -> Iterator[cat.ObjectInfoReply]:
        return self._stream_out("ListObjects", request)

    def stat_objects(self, request: bs.StatObjectsRequest) -> bs.StatObjectsReply:
        return self._unary("StatObjects", request)  # type: ignore[no-any-return]
