"""tardis-ingest: the ingest service alone, talking to catalog and blobstore over gRPC."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from tardis_blobstore.client import BlobStoreClient
from tardis_catalog.client import CatalogClient
from tardis_common.errors import TardisError
from tardis_common.limits import DEFAULT_MAX_ENTRIES, DEFAULT_MAX_MESSAGE, DEFAULT_MAX_SESSIONS, Limits
from tardis_common.logsetup import add_logging_options, setup_logging
from tardis_common.metrics import add_metrics_options, serve_metrics
from tardis_common.rpc import make_server, stop_server
from tardis_common.service_auth import SERVICE_SECRET_ENV, internal_channel, load_service_secret
from tardis_common.serving import display_address, serve_until_signalled
from tardis_common.tls import is_loopback, listener_tls

from .network import network_ingest
from .security import server_key_for

PROG = "tardis-ingest"
TLS_DIR_ENV = "TARDIS_TLS_DIR"
DEFAULT_TLS_DIR = "~/.config/tardis/tls"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Run the Tardis ingest service.")
    p.add_argument("--listen", default="127.0.0.1:7420", help="address to serve on (host:port or unix:PATH)")
    p.add_argument("--catalog", required=True, help="address of the catalog service")
    p.add_argument("--blobstore", required=True, help="address of the blobstore service")
    p.add_argument("--allow-new-hosts", action="store_true", help="let unknown clients create their repository")
    p.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="let clients without a password use this server over TCP",
    )
    p.add_argument("--require-password", action="store_true", help="refuse clients that do not encrypt")
    p.add_argument("--admin-secret-file", metavar="FILE", help="file holding the admin credential")
    p.add_argument(
        "--server-key-file",
        metavar="FILE",
        help="key sealing logins and tokens, shared by every ingest replica (default: random per process)",
    )
    p.add_argument("--token-lifetime", type=float, default=900.0, metavar="SECONDS", help="session token lifetime")
    p.add_argument(
        "--service-secret-file",
        default=os.environ.get(SERVICE_SECRET_ENV),
        metavar="FILE",
        help=f"send the secret in FILE to catalog and blobstore (default ${SERVICE_SECRET_ENV})",
    )
    p.add_argument("--internal-ca", metavar="FILE", help="reach catalog and blobstore over TLS verified by FILE")
    p.add_argument("--internal-cert", metavar="FILE", help="client certificate for mutual TLS with them")
    p.add_argument("--internal-key", metavar="FILE", help="the key of --internal-cert")
    p.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate (made if missing)")
    p.add_argument("--tls-key", metavar="FILE", help="the key of --tls-cert (made if missing)")
    p.add_argument(
        "--tls-dir",
        default=os.environ.get(TLS_DIR_ENV) or DEFAULT_TLS_DIR,
        metavar="DIR",
        help="where the self-signed certificate used beyond loopback lives (default %(default)s)",
    )
    p.add_argument(
        "--max-sessions-per-client",
        type=int,
        default=DEFAULT_MAX_SESSIONS,
        metavar="N",
        help="calls one client may have in progress at once (MaxSessionsPerClient; 0: no limit)",
    )
    p.add_argument(
        "--max-message-bytes",
        type=int,
        default=DEFAULT_MAX_MESSAGE,
        metavar="BYTES",
        help="largest gRPC message accepted (MaxMessageBytes)",
    )
    p.add_argument(
        "--max-entries-per-batch",
        type=int,
        default=DEFAULT_MAX_ENTRIES,
        metavar="N",
        help="entries in one SubmitEntries, files in one upload (MaxEntriesPerBatch; 0: no limit)",
    )
    add_metrics_options(p)
    add_logging_options(p)
    p.add_argument("-v", "--verbose", action="count", default=0, help="log events (-vv: debug messages)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(PROG, verbose=args.verbose, log_format=args.log_format)
    try:
        # TLS whenever clients may come from the network; plain on loopback unless asked.
        tls, notice = listener_tls(
            args.listen,
            cert_file=args.tls_cert,
            key_file=args.tls_key,
            tls_dir=None if is_loopback(args.listen) else os.path.expanduser(args.tls_dir),
        )
        limits = Limits(
            max_sessions_per_client=args.max_sessions_per_client,
            max_message_bytes=args.max_message_bytes,
            max_entries_per_batch=args.max_entries_per_batch,
        )
        secret = load_service_secret(args.service_secret_file)
        internal = {
            "secret": secret,
            "ca_file": args.internal_ca,
            "cert_file": args.internal_cert,
            "key_file": args.internal_key,
        }
        catalog = CatalogClient(internal_channel(args.catalog, **internal))
        blobstore = BlobStoreClient(internal_channel(args.blobstore, **internal))
        _core, served = network_ingest(
            catalog,
            blobstore,
            allow_anonymous=args.allow_anonymous,
            allow_new_hosts=args.allow_new_hosts,
            require_password=args.require_password,
            server_key=server_key_for(args.server_key_file) if args.server_key_file else None,
            token_lifetime_s=args.token_lifetime,
            admin_secret_file=args.admin_secret_file,
            limits=limits,
        )
        server, port = make_server(args.listen, [served], tls=tls, max_message=limits.max_message_bytes)
    except (TardisError, RuntimeError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    try:
        metrics_notice = serve_metrics(PROG, args.metrics_port, args.metrics_address, args.listen)
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        stop_server(server, 0)
        return 1
    if metrics_notice:
        print(metrics_notice, file=sys.stderr, flush=True)
    if notice:
        print(f"{PROG}: {notice}", file=sys.stderr, flush=True)
    return serve_until_signalled(server, f"{PROG} listening on {display_address(args.listen, port)}")


if __name__ == "__main__":
    sys.exit(main())
