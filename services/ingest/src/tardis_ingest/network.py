"""An IngestCore as every network server (tardisd, tardis-ingest) builds it: callers must log
in (no trusted local caller), with the server's access settings, and behind the login guard."""

from __future__ import annotations

import grpc

from tardis_common.interfaces import BlobStore, Catalog
from tardis_common.limits import Limits

from .access import AccessPolicy
from .core import IngestCore
from .decide import Policy
from .grpc_service import handler, ingest_guard
from .limited import LimitedIngest
from .observed import ObservedIngest
from .security import load_admin_secret


def network_ingest(
    catalog: Catalog,
    blobstore: BlobStore,
    *,
    allow_anonymous: bool,
    allow_new_hosts: bool,
    require_password: bool,
    server_key: bytes | None,
    token_lifetime_s: float,
    admin_secret_file: str | None,
    policy: Policy | None = None,
    limits: Limits | None = None,
) -> tuple[IngestCore, grpc.GenericRpcHandler]:
    """The core and its guarded gRPC handler (which counts calls in the metrics and holds
    each client to its limits; the caller passes ``limits.max_message_bytes`` to make_server)."""
    limits = limits or Limits()
    access = AccessPolicy(
        trust_local=False,
        allow_anonymous=allow_anonymous,
        allow_new_clients=allow_new_hosts,
        require_password=require_password,
    )
    core = IngestCore(
        catalog,
        blobstore,
        policy=policy,
        access=access,
        server_key=server_key,
        token_lifetime_s=token_lifetime_s,
        limits=limits,
    )
    guard = ingest_guard(core.logins.tokens.check, load_admin_secret(admin_secret_file))
    served = LimitedIngest(ObservedIngest(core), limits.max_sessions_per_client)
    return core, handler(served, guard)  # type: ignore[arg-type]
