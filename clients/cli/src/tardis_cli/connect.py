"""Opens a repository URL as an Ingest interface (cores in-process, or a gRPC client) and
logs in: the repository a tool gets carries the cipher its client's data needs."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import ingest_pb2 as ing

from tardis_common.cipher import Cipher, NullCipher
from tardis_common.errors import ConfigError, InvalidArgument, NotFound
from tardis_common.interfaces import Ingest
from tardis_common.rpc import open_channel
from tardis_common.service_auth import read_secret_file
from tardis_common.settings import ClientSettings
from tardis_common.urls import RepoURL
from tardis_common.version import PROTOCOL_VERSION, __version__

from .credentials import Unlocked, login, probe
from .known_repos import KnownRepository
from .passwords import get_password

log = logging.getLogger(__name__)
TOKEN_HEADER = "authorization"
ADMIN_HEADER = "x-tardis-admin"


class CallCredentials:
    """The metadata every gRPC call carries: the session token, and the admin secret if any."""

    def __init__(self, admin_secret: str | None = None) -> None:
        self.admin_secret = admin_secret
        self.token = ""
        self.renewer: Any = None

    def __call__(self) -> list[tuple[str, str]]:
        metadata: list[tuple[str, str]] = []
        token = self.renewer.current() if self.renewer is not None else self.token
        if token:
            metadata.append((TOKEN_HEADER, f"Bearer {token}"))
        if self.admin_secret:
            metadata.append((ADMIN_HEADER, self.admin_secret))
        return metadata


@dataclass
class Repository:
    url: RepoURL
    ingest: Ingest
    _closers: list[Any] = field(default_factory=list)
    cipher: Cipher = field(default_factory=NullCipher)
    unlocked: Unlocked | None = None
    call_credentials: CallCredentials | None = None

    @property
    def client(self) -> str:
        return self.url.client

    @property
    def known(self) -> KnownRepository:
        return KnownRepository(str(self.url))

    def close(self) -> None:
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def embedded(url: RepoURL) -> Repository:
    """All service cores in this process, on the directory ``url`` names."""
    from tardis_blobstore.core import BlobStoreCore
    from tardis_catalog.core import CatalogCore
    from tardis_ingest.core import IngestCore

    catalog = CatalogCore(url.base_dir)
    blobstore = BlobStoreCore(url.base_dir)
    return Repository(url, IngestCore(catalog, blobstore), [catalog.close])


def _admin_secret(settings: ClientSettings | None) -> str | None:
    path = settings.admin_secret_file if settings is not None else None
    path = path or os.environ.get("TARDIS_ADMIN_SECRET_FILE")
    return read_secret_file(path, "admin secret") if path else None


def _remote(url: RepoURL, settings: ClientSettings | None, timeout: float, compress: bool) -> Repository:
    from tardis_ingest.client import IngestClient

    credentials = CallCredentials(_admin_secret(settings))
    channel = open_channel(url.address, timeout=min(timeout, 10.0), tls=_client_tls(url, settings, timeout))
    client = IngestClient(channel, compress=compress, metadata=credentials)
    repo = Repository(url, client, [channel.close], call_credentials=credentials)
    try:
        client.hello(ing.HelloRequest(client_version=__version__, protocol_version=PROTOCOL_VERSION))
    except Exception:
        repo.close()
        raise
    return repo


def _http(url: RepoURL, settings: ClientSettings | None, timeout: float) -> Repository:
    """remote-http: the read side over HTTP(S), logged in like tardis:// (headers, not metadata)."""
    from .http_ingest import HttpIngest

    credentials = CallCredentials(_admin_secret(settings))
    tls = None
    if url.scheme == "https":
        from tardis_common import tls as tls_

        ca_file = settings.ca_file if settings is not None else None
        host = (url.host or "").split("%", 1)[0]
        tls = tls_.client_tls_for(host, url.port or 7430, ca_file=ca_file, pins=tls_.PinStore(), timeout=timeout)
    client = HttpIngest(
        url, metadata=credentials, timeout=max(timeout, 30.0), connect_timeout=min(timeout, 10.0), tls=tls
    )
    repo = Repository(url, client, [client.close], call_credentials=credentials)
    try:
        client.hello(ing.HelloRequest(client_version=__version__, protocol_version=PROTOCOL_VERSION))
    except Exception:
        repo.close()
        raise
    return repo


def _client_tls(url: RepoURL, settings: ClientSettings | None, timeout: float) -> Any:
    """TLS for a tardis:// address: by default on unless the server is on this host (loopback)."""
    from tardis_common import tls

    mode = settings.tls if settings is not None else "auto"
    if mode == "off" or (mode == "auto" and tls.is_loopback(url.address)):
        return None
    host, _, port = url.address.rpartition(":")
    ca_file = settings.ca_file if settings is not None else None
    return tls.client_tls_for(host.strip("[]"), int(port), ca_file=ca_file, pins=tls.PinStore(), timeout=timeout)


def open_repository(
    url: RepoURL,
    settings: ClientSettings | None = None,
    *,
    timeout: float = 10.0,
    compress_messages: bool = False,
    unlock: bool = True,
    password: bytes | None = None,
) -> Repository:
    """Open ``url``; with ``settings`` (and ``unlock``), log in with the password they name.

    ``compress_messages`` gzips the metadata calls over gRPC (CompressMsgs)."""
    if url.scheme == "file":
        repo = embedded(url)
    elif url.scheme == "tardis":
        repo = _remote(url, settings, timeout, compress_messages)
    elif url.scheme in ("http", "https"):
        repo = _http(url, settings, timeout)
    else:
        raise InvalidArgument(f"{url.scheme}:// repositories are not supported by this release yet")
    if settings is not None and unlock:
        try:
            unlock_repository(repo, settings, password=password)
        except BaseException:
            repo.close()
            raise
    return repo


def unlock_repository(
    repo: Repository, settings: ClientSettings, *, password: bytes | None = None, need_keys: bool = True
) -> None:
    """Log in (when the client has a password) and set the repository's cipher."""
    password = password if password is not None else get_password(settings)
    try:
        first = probe(repo.ingest, repo.client)
    except NotFound:
        if password is not None:
            raise NotFound(f"client {repo.client} does not exist; use --create for its first backup") from None
        return  # a client still to be created: the tool reports it
    if password is None:
        if first.kdf_params and repo.call_credentials is not None and repo.call_credentials.admin_secret:
            # An operator with the admin credential manages sets (delete, unlock, purge)
            # without the client's password; names and contents stay sealed to it.
            log.info("client %s has a password; acting with the admin credential only", repo.client)
            return
        if first.kdf_params:
            raise ConfigError(
                f"client {repo.client} is protected by a password: give --password, --password-file or --password-prog"
            )
        return
    unlocked = login(
        repo.ingest, repo.client, password, repo.known, keyfile=settings.keyfile, first=first, need_keys=need_keys
    )
    repo.unlocked = unlocked
    repo.cipher = unlocked.cipher
    if unlocked.cipher.encrypted:
        from .sealed_ingest import SealedIngest

        repo.ingest = SealedIngest(repo.ingest, unlocked.cipher)  # type: ignore[assignment]
    if repo.call_credentials is not None and unlocked.token:
        from tardis_common.auth.tokens import TokenRenewer

        ingest = repo.ingest

        def renew(token: str) -> str:
            return ingest.renew_token(ing.RenewTokenRequest(token=token)).token  # type: ignore[attr-defined]

        interval = max(1.0, (unlocked.token_lifetime_s or 900.0) / 3)
        renewer = TokenRenewer(renew, unlocked.token, interval)
        repo.call_credentials.renewer = renewer
        repo._closers.append(renewer.stop)
    warn_on_rollback(repo)


def warn_on_rollback(repo: Repository) -> None:
    """Warn when the server shows an older newest complete set than this client has seen."""
    sets = repo.ingest.list_sets(cat.ClientRequest(client=repo.client)).sets
    newest = max((s.id for s in sets if s.completed), default=0)
    warning = repo.known.check_newest_set(newest)
    if warning:
        log.warning("%s", warning)
