"""The gRPC face of IngestCore."""

from __future__ import annotations

import grpc
from tardis.v1 import ingest_pb2

from tardis_common.interfaces import Ingest
from tardis_common.rpc import core_handler

SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"]


def add_to_server(server: grpc.Server, core: Ingest) -> None:
    server.add_generic_rpc_handlers((core_handler(SERVICE, core),))


def handler(core: Ingest) -> grpc.GenericRpcHandler:
    return core_handler(SERVICE, core)
