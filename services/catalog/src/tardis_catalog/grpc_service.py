"""The gRPC adapter of the catalog core."""

from __future__ import annotations

import grpc
from tardis.v1 import catalog_pb2

from tardis_common.interfaces import Catalog
from tardis_common.rpc import core_handler

SERVICE = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"]


def handler(core: Catalog) -> grpc.GenericRpcHandler:
    """A handler serving CatalogService from ``core`` (for ``make_server``)."""
    return core_handler(SERVICE, core)


def add_to_server(server: grpc.Server, core: Catalog) -> None:
    server.add_generic_rpc_handlers((handler(core),))
