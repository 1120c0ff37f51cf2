"""CatalogService over gRPC, with the same Python interface as the core."""

from __future__ import annotations

import grpc
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import catalog_pb2_grpc
from tardis.v1 import common_pb2 as common

from tardis_common.catalog_calls import CatalogCalls


class CatalogClient(CatalogCalls):
    def __init__(self, channel: grpc.Channel, timeout: float | None = None) -> None:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)  # type: ignore[no-untyped-call]
        super().__init__(channel, stub, timeout)

    def create_client(self, request: cat.ClientRequest) -> common.ClientInfo:
        return self._unary("CreateClient", request)  # type: ignore[no-any-return]

    def get_credentials(self, request: cat.ClientRequest) -> common.Credentials:
        return self._unary("GetCredentials", request)  # type: ignore[no-any-return]

    def set_credentials(self, request: common.Credentials) -> common.Credentials:
        return self._unary("SetCredentials", request)  # type: ignore[no-any-return]

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

    def expire_sets(self, request: cat.ExpireSetsRequest) -> cat.ExpireSetsReply:
        return self._unary("ExpireSets", request)  # type: ignore[no-any-return]

    def forget_deleted(self, request: cat.ForgetDeletedRequest) -> cat.ForgetDeletedReply:
        return self._unary("ForgetDeleted", request)  # type: ignore[no-any-return]
