"""A shared secret that the internal services (catalog, blobstore) demand of their callers.

Every Tardis service process is given the same secret file; callers send the secret in the
``x-tardis-service`` metadata header and the services' guard compares it in constant time.
"""

from __future__ import annotations

import argparse
import hmac
import os
from collections.abc import Callable
from pathlib import Path

import grpc

from . import errors
from .rpc import CONNECT_TIMEOUT, ClientTLS, Guard, ServerTLS, open_channel, with_metadata
from .tls import is_loopback, listener_tls

SERVICE_SECRET_HEADER = "x-tardis-service"
SERVICE_SECRET_ENV = "TARDIS_SERVICE_SECRET_FILE"
SERVICE_CALLER = "tardis-service"
"""What ``callctx.current_caller()`` is inside a call admitted by :func:`service_guard`."""


def read_secret_file(path: str, what: str, min_length: int = 1) -> str:
    """The secret in the first line of ``path`` (``what`` names it in errors: "service secret",
    "admin secret"); a ConfigError with one line if it is unreadable, empty or too short."""
    try:
        with open(path, encoding="utf-8") as handle:
            secret = handle.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise errors.ConfigError(f"cannot read the {what} file {path}: {reason}") from None
    if not secret:
        raise errors.ConfigError(f"the {what} file {path} is empty")
    if len(secret) < min_length:
        raise errors.ConfigError(f"the {what} in {path} is shorter than {min_length} characters")
    return secret


def load_service_secret(path: str | None) -> str | None:
    """The secret in the first line of ``path``; None without a path, ConfigError if unusable."""
    return read_secret_file(path, "service secret") if path is not None else None


def service_guard(secret: str) -> Guard:
    """A guard admitting only calls that carry ``secret`` in the service header."""
    expected = secret.encode()

    def guard(method: str, context: grpc.ServicerContext) -> object:
        given = next((v for k, v in context.invocation_metadata() or () if k == SERVICE_SECRET_HEADER), "")
        if not hmac.compare_digest(str(given).encode(), expected):
            raise errors.Unauthenticated(
                "this service accepts calls only from Tardis services: the service secret is missing or wrong"
            )
        return SERVICE_CALLER

    return guard


def service_metadata(secret: str) -> Callable[[], list[tuple[str, str]]]:
    """Metadata for ``RpcClient(metadata=...)`` or ``rpc.with_metadata``: the service header."""
    header = [(SERVICE_SECRET_HEADER, secret)]
    return lambda: header


def internal_server_security(
    listen: str,
    *,
    secret_file: str | None,
    cert_file: str | None = None,
    key_file: str | None = None,
    client_ca_file: str | None = None,
) -> tuple[Guard | None, ServerTLS | None, str | None]:
    """The guard, TLS and operator notice (certificate fingerprint) of an internal service.

    ConfigError when it would listen beyond loopback with neither a service secret nor a
    TLS client CA: an internal service must not be open to anyone who can reach it.
    """
    secret = load_service_secret(secret_file)
    tls, notice = listener_tls(listen, cert_file=cert_file, key_file=key_file, client_ca_file=client_ca_file)
    if secret is None and (tls is None or tls.client_ca_pem is None) and not is_loopback(listen):
        raise errors.ConfigError(
            f"refusing to listen on {listen} without a service secret or a TLS client CA: internal "
            "services must not be open (give --service-secret-file)"
        )
    return (service_guard(secret) if secret is not None else None), tls, notice


def _read_pem(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise errors.ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def internal_channel(
    address: str,
    *,
    secret: str | None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> grpc.Channel:
    """A channel to an internal service sending the service secret with every call; over
    TLS verified against ``ca_file`` when given (with a client certificate for mutual TLS)."""
    if (cert_file is None) != (key_file is None):
        raise errors.ConfigError("give both the internal client certificate and its key, or neither")
    tls = None
    if ca_file is not None:
        tls = ClientTLS(
            root_pem=_read_pem(ca_file, "internal CA file"),
            client_cert_pem=_read_pem(cert_file, "client certificate") if cert_file else None,
            client_key_pem=_read_pem(key_file, "client key") if key_file else None,
        )
    elif cert_file is not None:
        raise errors.ConfigError("a client certificate for internal services needs --internal-ca")
    channel = open_channel(address, timeout, tls=tls)
    return with_metadata(channel, service_metadata(secret)) if secret is not None else channel


def add_internal_server_options(parser: argparse.ArgumentParser) -> None:
    """--service-secret-file and the TLS options of an internal service's command line."""
    parser.add_argument(
        "--service-secret-file",
        default=os.environ.get(SERVICE_SECRET_ENV),
        metavar="FILE",
        help=f"accept only calls carrying the secret in FILE (default ${SERVICE_SECRET_ENV}); "
        "required beyond loopback unless --tls-client-ca is given",
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate (made if missing)")
    parser.add_argument("--tls-key", metavar="FILE", help="the key of --tls-cert (made if missing)")
    parser.add_argument("--tls-client-ca", metavar="FILE", help="demand client certificates signed by this CA")
