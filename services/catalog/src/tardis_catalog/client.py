"""CatalogService over gRPC, with the same Python interface as the core."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import catalog_pb2_grpc
from tardis.v1 import common_pb2 as common

from tardis_common.rpc import RpcClient


class CatalogClient(RpcClient):
    def __init__(self, channel: grpc.Channel, timeout: float | None = None) -> None:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)  # type: ignore[no-untyped-call]
        super().__init__(channel, stub, timeout)

    def create_client(self, request: cat.ClientRequest) -> common.ClientInfo:
        return self._unary("CreateClient", request)  # type: ignore[no-any-return]

    def get_client(self, request: cat.ClientRequest) -> common.ClientInfo:
        return self._unary("GetClient", request)  # type: ignore[no-any-return]

    def begin_set(self, request: cat.BeginSetRequest) -> cat.BeginSetReply:
        return self._unary("BeginSet", request)  # type: ignore[no-any-return]

    def lookup_entries(self, request: cat.LookupEntriesRequest) -> cat.LookupEntriesReply:
        return self._unary("LookupEntries", request)  # type: ignore[no-any-return]

    def record_entries(self, request: cat.RecordEntriesRequest) -> cat.RecordEntriesReply:
        return self._unary("RecordEntries", request)  # type: ignore[no-any-return]

    def complete_set(self, request: cat.CompleteSetRequest) -> common.BackupSet:
        return self._unary("CompleteSet", request)  # type: ignore[no-any-return]

    def list_sets(self, request: cat.ClientRequest) -> cat.ListSetsReply:
        return self._unary("ListSets", request)  # type: ignore[no-any-return]

    def lookup_path(self, request: cat.LookupPathRequest) -> cat.LookupPathReply:
        return self._unary("LookupPath", request)  # type: ignore[no-any-return]

    def read_tree(self, request: cat.ReadTreeRequest) -> Iterator[common.StoredEntries]:
        return self._stream_out("ReadTree", request)

    def get_object_info(self, request: cat.ObjectIdsRequest) -> cat.ObjectInfoReply:
        return self._unary("GetObjectInfo", request)  # type: ignore[no-any-return]

    def get_client_config(self, request: cat.ClientRequest) -> cat.ClientConfig:
        return self._unary("GetClientConfig", request)  # type: ignore[no-any-return]

    def set_client_config(self, request: cat.ClientConfig) -> cat.ClientConfig:
        return self._unary("SetClientConfig", request)  # type: ignore[no-any-return]

    def update_set(self, request: cat.UpdateSetRequest) -> common.BackupSet:
        return self._unary("UpdateSet", request)  # type: ignore[no-any-return]

    def expire_sets(self, request: cat.ExpireSetsRequest) -> cat.ExpireSetsReply:
        return self._unary("ExpireSets", request)  # type: ignore[no-any-return]

    def remove_sets(self, request: cat.RemoveSetsRequest) -> cat.ExpireSetsReply:
        return self._unary("RemoveSets", request)  # type: ignore[no-any-return]

    def list_objects(self, request: cat.ClientRequest) -> Iterator[cat.ObjectInfoReply]:
        return self._stream_out("ListObjects", request)
