"""tardisd: ingest, catalog and blobstore in one server process (the seed's daemon)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import stat
import sys
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from tardis_blobstore.core import BlobStoreCore
from tardis_blobstore.grpc_service import SERVICE as BLOBSTORE_SERVICE
from tardis_blobstore.observed import ObservedBlobStore
from tardis_catalog.core import CatalogCore
from tardis_catalog.grpc_service import SERVICE as CATALOG_SERVICE
from tardis_catalog.observed import register_catalog_metrics
from tardis_common.argparsing import given_options, make_parser
from tardis_common.errors import TardisError
from tardis_common.limits import Limits
from tardis_common.logsetup import LOG_FORMATS, setup_logging
from tardis_common.metrics import metrics_port, serve_metrics
from tardis_common.rpc import core_handler, make_server, stop_server
from tardis_common.serving import display_address, serve_until_signalled
from tardis_common.settings import DaemonSettings, load_daemon_settings
from tardis_common.tls import is_loopback, listener_tls

from .decide import Policy
from .network import network_ingest
from .security import server_key_for

log = logging.getLogger("tardisd")


def parser() -> argparse.ArgumentParser:
    p = make_parser("tardisd", "Run the Tardis backup server (ingest, catalog and blobstore).")
    S = argparse.SUPPRESS
    p.add_argument("--config", "-c", default=S, help="configuration file ([Daemon] section, [Tardis] as defaults)")
    p.add_argument("--port", "-p", type=int, default=S, help="port to listen on (default 7420)")
    p.add_argument("--listen-address", default=S, dest="listen_address", help="address to bind (default 127.0.0.1)")
    p.add_argument("--basedir", "-b", default=S, help="directory holding every client's repository")
    p.add_argument("--local", default=S, help="serve on this Unix socket instead of TCP")
    p.add_argument("--allow-new-hosts", action="store_true", default=S, dest="allow_new_hosts")
    p.add_argument(
        "--allow-anonymous",
        action="store_true",
        default=S,
        dest="allow_anonymous",
        help="let clients without a password use this server over TCP",
    )
    p.add_argument("--require-password", action="store_true", default=S, dest="require_password")
    p.add_argument("--admin-secret-file", default=S, dest="admin_secret_file", help="file holding the admin credential")
    p.add_argument("--server-key-file", default=S, dest="server_key_file", help="key sealing logins and tokens")
    p.add_argument("--allow-schema-upgrades", action="store_true", default=S, dest="allow_schema_upgrades")
    p.add_argument("--logfile", "-l", default=S)
    p.add_argument(
        "--log-format", choices=LOG_FORMATS, default=S, dest="log_format", help="log lines as logfmt (text) or JSON"
    )
    p.add_argument(
        "--metrics-port",
        type=metrics_port,
        default=S,
        dest="metrics_port",
        help="serve Prometheus metrics at /metrics on this port (MetricsPort; default 0: off)",
    )
    p.add_argument(
        "--metrics-address",
        default=S,
        dest="metrics_address",
        help="address for the metrics port (MetricsAddress; default the listen address)",
    )
    p.add_argument("-v", "--verbose", action="count", default=S)
    limits = p.add_argument_group("limits per client (beyond them: RESOURCE_EXHAUSTED)")
    limits.add_argument("--client-quota", type=int, default=S, dest="client_quota", help="ClientQuota: bytes (0: none)")
    limits.add_argument("--max-sessions-per-client", type=int, default=S, dest="max_sessions_per_client")
    limits.add_argument("--max-message-bytes", type=int, default=S, dest="max_message_bytes")
    limits.add_argument("--max-entries-per-batch", type=int, default=S, dest="max_entries_per_batch")
    return p


def listen_address(settings: DaemonSettings) -> str:
    if settings.local:
        return f"unix:{settings.local}"
    host = settings.listen_address
    return f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"


def serve_internal(path: str | None, catalog: Any, blobstore: Any) -> Any:
    """The catalog and blobstore on a Unix socket only this user may open (mode 0600), for
    tardisremote on the same host; None when turned off (InternalSocket = none)."""
    if path is None:
        return None
    if len(path.encode()) > 100:
        log.warning("internal socket path %s is too long for a Unix socket; tardisremote cannot use it", path)
        return None
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # left by a server that did not stop cleanly
    handlers = [core_handler(CATALOG_SERVICE, catalog), core_handler(BLOBSTORE_SERVICE, blobstore)]
    old_umask = os.umask(0o177)  # the socket is born owner-only
    try:
        server, _port = make_server(f"unix:{path}", handlers, health=False)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return server


def limits_of(settings: DaemonSettings) -> Limits:
    return Limits(
        client_quota=settings.client_quota,
        max_sessions_per_client=settings.max_sessions_per_client,
        max_message_bytes=settings.max_message_bytes,
        max_entries_per_batch=settings.max_entries_per_batch,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    given = given_options(args)
    config = given.pop("config", None)
    try:
        settings = load_daemon_settings(given, config)
        setup_logging(
            "tardisd", verbose=settings.verbose, log_format=settings.log_format, filename=settings.logfile or None
        )
        base = settings.basedir
        if not os.path.isdir(base):
            print(f"tardisd: error: BaseDir {base} does not exist", file=sys.stderr)
            return 1
        catalog = CatalogCore(
            base,
            allow_upgrades=settings.allow_schema_upgrades,
            set_formats=settings.formats,
            set_priorities=settings.priorities,
            set_keep_days=settings.keep_periods,
            db_backups=settings.db_backups,
        )
        policy = Policy(
            max_delta_chain=settings.max_delta_chain,
            max_change_percent=settings.max_change_percent,
            save_full=settings.save_full,
        )
        blobstore = ObservedBlobStore(BlobStoreCore(base, quota=settings.client_quota))
        _core, served = network_ingest(
            catalog,
            blobstore,
            allow_anonymous=settings.allow_anonymous,
            allow_new_hosts=settings.allow_new_hosts,
            require_password=settings.require_password,
            server_key=server_key_for(settings.server_key_file, base),
            token_lifetime_s=settings.token_lifetime,
            admin_secret_file=settings.admin_secret_file,
            policy=policy,
            limits=limits_of(settings),
        )
        address = listen_address(settings)
        tls, notice = listener_tls(
            address,
            cert_file=settings.certfile,
            key_file=settings.keyfile,
            tls_dir=None if is_loopback(address) and not settings.ssl else str(base / ".tardis-tls"),
        )
        server, port = make_server(address, [served], tls=tls, max_message=settings.max_message_bytes)
        internal = None
        try:
            internal = serve_internal(settings.internal_socket_path(), catalog, blobstore)
            metrics_notice = serve_metrics("tardisd", settings.metrics_port, settings.metrics_address, address)
        except OSError:
            stop_server(server, 0)
            if internal is not None:
                stop_server(internal, 0)
            raise
        if metrics_notice:
            register_catalog_metrics(catalog, base)
            print(metrics_notice, file=sys.stderr, flush=True)
        if notice:
            print(f"tardisd: {notice}", file=sys.stderr, flush=True)  # before the "listening on" banner
    except (TardisError, RuntimeError, OSError) as exc:
        print(f"tardisd: error: {exc}", file=sys.stderr)
        return 1
    try:
        return serve_until_signalled(server, f"tardisd listening on {display_address(address, port)}")
    finally:
        if internal is not None:
            stop_server(internal, 1)
        catalog.close()


if __name__ == "__main__":
    sys.exit(main())
