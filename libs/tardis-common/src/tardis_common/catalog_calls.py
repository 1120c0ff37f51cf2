"""gRPC client methods that the catalog and ingest services share, by RPC name.

Ingest passes the read and administration calls of the command-line tools through to the
catalog under the same names and message types, so both clients inherit them from here.
"""

from __future__ import annotations

from collections.abc import Iterator

from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from .rpc import RpcClient


class CatalogCalls(RpcClient):
    def list_sets(self, request: cat.ClientRequest) -> cat.ListSetsReply:
        return self._unary("ListSets", request)  # type: ignore[no-any-return]

    def lookup_path(self, request: cat.LookupPathRequest) -> cat.LookupPathReply:
        return self._unary("LookupPath", request)  # type: ignore[no-any-return]

    def read_tree(self, request: cat.ReadTreeRequest) -> Iterator[common.StoredEntries]:
        return self._stream_out("ReadTree", request)

    def get_object_info(self, request: cat.ObjectIdsRequest) -> cat.ObjectInfoReply:
        return self._unary("GetObjectInfo", request)  # type: ignore[no-any-return]

    def mark_objects_bad(self, request: cat.ObjectIdsRequest) -> cat.MarkObjectsBadReply:
        return self._unary("MarkObjectsBad", request)  # type: ignore[no-any-return]

    def list_objects(self, request: cat.ClientRequest) -> Iterator[cat.ObjectInfoReply]:
        return self._stream_out("ListObjects", request)

    def find_entries(self, request: cat.ObjectIdsRequest) -> Iterator[cat.FoundEntries]:
        return self._stream_out("FindEntries", request)

    def get_client_config(self, request: cat.ClientRequest) -> cat.ClientConfig:
        return self._unary("GetClientConfig", request)  # type: ignore[no-any-return]

    def set_client_config(self, request: cat.ClientConfig) -> cat.ClientConfig:
        return self._unary("SetClientConfig", request)  # type: ignore[no-any-return]

    def update_set(self, request: cat.UpdateSetRequest) -> common.BackupSet:
        return self._unary("UpdateSet", request)  # type: ignore[no-any-return]

    def remove_sets(self, request: cat.RemoveSetsRequest) -> cat.ExpireSetsReply:
        return self._unary("RemoveSets", request)  # type: ignore[no-any-return]
