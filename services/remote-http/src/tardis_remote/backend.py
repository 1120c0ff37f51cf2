"""The Ingest core a tardisremote worker serves from: catalog and blobstore over gRPC.

Built once per worker process, on its first request (after gunicorn forked); it never
opens a SQLite file. Logins and tokens are sealed with the shared server key, so any worker
(or tardis-ingest replica holding the same key) can finish a login or check a token.
"""

from __future__ import annotations

import logging
from typing import Any

from tardis_blobstore.client import BlobStoreClient
from tardis_catalog.client import CatalogClient
from tardis_common.service_auth import internal_channel, load_service_secret
from tardis_common.settings import RemoteSettings
from tardis_ingest.access import AccessPolicy
from tardis_ingest.core import IngestCore
from tardis_ingest.grpc_service import ingest_guard
from tardis_ingest.security import load_admin_secret

from .app import Guard

log = logging.getLogger(__name__)


def build_backend(settings: RemoteSettings, server_key: bytes) -> tuple[Any, Guard]:
    """The IngestCore (as network servers build it: callers must log in) and its guard."""
    internal = {
        "secret": load_service_secret(settings.service_secret_file),
        "ca_file": settings.internal_ca,
        "cert_file": settings.internal_cert,
        "key_file": settings.internal_key,
    }
    catalog_address, blobstore_address = settings.backend_addresses()
    catalog = CatalogClient(internal_channel(catalog_address, **internal))  # type: ignore[arg-type]
    blobstore = BlobStoreClient(internal_channel(blobstore_address, **internal))  # type: ignore[arg-type]
    access = AccessPolicy(
        trust_local=False,
        allow_anonymous=settings.allow_anonymous,
        allow_new_clients=False,
        require_password=settings.require_password,
    )
    lifetime = settings.token_lifetime
    core = IngestCore(catalog, blobstore, access=access, server_key=server_key, token_lifetime_s=lifetime)
    guard = ingest_guard(core.logins.tokens.check, load_admin_secret(settings.admin_secret_file))
    log.info("serving catalog %s and blobstore %s", catalog_address, blobstore_address)
    return core, guard
