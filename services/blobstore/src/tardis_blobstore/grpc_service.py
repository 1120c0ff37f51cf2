"""The gRPC adapter of the blob store: BlobStoreService served from a BlobStoreCore."""

from __future__ import annotations

import grpc
from tardis.v1 import blobstore_pb2

from tardis_common.rpc import core_handler

from .core import BlobStoreCore

SERVICE = blobstore_pb2.DESCRIPTOR.services_by_name["BlobStoreService"]


def handler(core: BlobStoreCore) -> grpc.GenericRpcHandler:
    return core_handler(SERVICE, core)


def add_to_server(server: grpc.Server, core: BlobStoreCore) -> None:
    server.add_generic_rpc_handlers((handler(core),))
