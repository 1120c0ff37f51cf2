"""The gRPC face of IngestCore, and the guard that turns a call's credentials into a caller."""

from __future__ import annotations

import hmac
from collections.abc import Callable

import grpc
from tardis.v1 import ingest_pb2

from tardis_common.auth.roles import ANONYMOUS, Caller
from tardis_common.errors import Unauthenticated
from tardis_common.interfaces import Ingest
from tardis_common.rpc import core_handler

from .access import Identity

SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"]
TOKEN_HEADER = "authorization"
ADMIN_HEADER = "x-tardis-admin"
# Calls that need no session token: the handshake, the login itself, and creating a client
# (which the server's AllowNewHosts and AllowAnonymous settings govern).
PUBLIC_METHODS = frozenset({"Hello", "LoginStart", "LoginFinish", "RenewToken", "CreateClient"})


def source_of(peer: str) -> str:
    """The caller's address without its port ("ipv4:1.2.3.4:5678" -> "1.2.3.4")."""
    kind, _, rest = peer.partition(":")
    if kind == "unix":
        return "local socket"
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or rest
    return rest.rpartition(":")[0] or rest


def ingest_guard(check_token: Callable[[str], Caller], admin_secret: str | None) -> Callable[..., Identity]:
    def guard(method: str, context: grpc.ServicerContext) -> Identity:
        metadata = {key: value for key, value in context.invocation_metadata()}
        peer = context.peer()
        source = source_of(peer)
        local = peer.startswith("unix:")
        offered_admin = metadata.get(ADMIN_HEADER)
        if offered_admin is not None:
            if not admin_secret or not hmac.compare_digest(offered_admin.encode(), admin_secret.encode()):
                raise Unauthenticated("the admin credential is wrong or this server has none")
            return Identity(Caller("admin"), source, local)
        if method in PUBLIC_METHODS:
            return Identity(ANONYMOUS, source, local)
        offered = metadata.get(TOKEN_HEADER)
        if offered:
            scheme, _, token = offered.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise Unauthenticated("invalid authorization header: expected a bearer session token")
            return Identity(check_token(token), source, local)
        return Identity(ANONYMOUS, source, local)

    return guard


def handler(core: Ingest, guard: Callable[..., Identity] | None = None) -> grpc.GenericRpcHandler:
    return core_handler(SERVICE, core, guard=guard)  # type: ignore[call-arg]


def add_to_server(server: grpc.Server, core: Ingest, guard: Callable[..., Identity] | None = None) -> None:
    server.add_generic_rpc_handlers((handler(core, guard),))
