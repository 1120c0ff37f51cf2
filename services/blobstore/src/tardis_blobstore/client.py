"""BlobStoreClient: the BlobStore interface over a gRPC channel."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import grpc
from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import blobstore_pb2_grpc

from tardis_common.rpc import RpcClient


class BlobStoreClient(RpcClient):
    def __init__(self, channel: grpc.Channel, timeout: float | None = None) -> None:
        super().__init__(channel, blobstore_pb2_grpc.BlobStoreServiceStub(channel), timeout)

    def put_objects(self, requests: Iterable[bs.PutObjectsRequest]) -> bs.PutObjectsReply:
        return self._stream_in("PutObjects", iter(requests))  # type: ignore[no-any-return]

    def get_objects(self, request: bs.GetObjectsRequest) -> Iterator[bs.GetObjectsReply]:
        return self._stream_out("GetObjects", request)

    def stat_objects(self, request: bs.StatObjectsRequest) -> bs.StatObjectsReply:
        return self._unary("StatObjects", request)  # type: ignore[no-any-return]

    def delete_objects(self, request: bs.DeleteObjectsRequest) -> bs.DeleteObjectsReply:
        return self._unary("DeleteObjects", request)  # type: ignore[no-any-return]
