"""tardis-catalog: serve the catalog of every client under a base directory over gRPC."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from tardis_common.errors import TardisError
from tardis_common.logsetup import add_logging_options, setup_logging
from tardis_common.metrics import add_metrics_options, serve_metrics
from tardis_common.rpc import core_handler, make_server, stop_server
from tardis_common.service_auth import add_internal_server_options, internal_server_security

from .core import CatalogCore
from .grpc_service import SERVICE
from .observed import register_catalog_metrics

DEFAULT_LISTEN = "127.0.0.1:7421"
PROG = "tardis-catalog"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Serve Tardis catalogs (per-client SQLite) over gRPC.")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help="host:port or unix:/path (default %(default)s)")
    parser.add_argument("--basedir", required=True, type=Path, help="directory holding one folder per client")
    parser.add_argument(
        "--no-schema-upgrades",
        dest="upgrades",
        action="store_false",
        help="refuse catalogs with an older schema instead of converting them",
    )
    parser.add_argument(
        "--db-backups",
        type=int,
        default=5,
        metavar="N",
        help="rotated copies of each catalog kept, one per completed set (DBBackups; default %(default)s, 0: none)",
    )
    add_internal_server_options(parser)
    add_metrics_options(parser)
    add_logging_options(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    return parser.parse_args(argv)


def check_listen(listen: str) -> str | None:
    """A one-line complaint about a malformed listen address, or None when it looks right."""
    if listen.startswith("unix:"):
        return None if len(listen) > 5 else "a unix: address needs a path"
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return f"listen address {listen} is not host:port (port 0-65535) or unix:/path"
    return None


def shown_address(listen: str, port: int) -> str:
    """The address actually bound (the real port when port 0 was asked)."""
    if listen.startswith("unix:"):
        return listen
    host = listen.rpartition(":")[0]
    return f"{host}:{port}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(PROG, verbose=args.verbose, log_format=args.log_format)
    if not args.basedir.is_dir():
        print(f"{PROG}: base directory {args.basedir} does not exist or is not a directory", file=sys.stderr)
        return 1
    problem = check_listen(args.listen)
    if problem:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        guard, tls, notice = internal_server_security(
            args.listen,
            secret_file=args.service_secret_file,
            cert_file=args.tls_cert,
            key_file=args.tls_key,
            client_ca_file=args.tls_client_ca,
        )
    except TardisError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    core = CatalogCore(args.basedir, allow_upgrades=args.upgrades, db_backups=max(0, args.db_backups))
    try:
        server, port = make_server(args.listen, [core_handler(SERVICE, core, guard)], tls=tls)
    except TardisError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        core.close()
        return 1
    except RuntimeError as exc:  # grpc refuses some malformed addresses this way
        print(f"{PROG}: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    try:
        metrics_notice = serve_metrics(PROG, args.metrics_port, args.metrics_address, args.listen)
    except OSError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        stop_server(server, 0)
        core.close()
        return 1
    if metrics_notice:
        register_catalog_metrics(core, args.basedir)
        print(metrics_notice, file=sys.stderr, flush=True)
    if notice:
        print(f"{PROG}: {notice}", file=sys.stderr, flush=True)
    print(f"{PROG} listening on {shown_address(args.listen, port)}", file=sys.stderr, flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        stop_server(server, 5)
        core.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
