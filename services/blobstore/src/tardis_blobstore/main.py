"""tardis-blobstore: serve BlobStoreService over gRPC until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# gRPC's C core would log its own line for a failed bind; this program reports errors itself.
# Must be set before grpc is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from tardis_common.errors import TardisError
from tardis_common.logsetup import add_logging_options, setup_logging
from tardis_common.metrics import add_metrics_options, serve_metrics
from tardis_common.rpc import core_handler, make_server, stop_server
from tardis_common.service_auth import add_internal_server_options, internal_server_security
from tardis_common.serving import display_address, serve_until_signalled

from .core import BlobStoreCore
from .grpc_service import SERVICE
from .observed import ObservedBlobStore

PROG = "tardis-blobstore"
DEFAULT_LISTEN = "127.0.0.1:7422"
STOP_GRACE = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Serve the Tardis blob store over gRPC.")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR", help="host:port or unix:/path")
    parser.add_argument("--basedir", required=True, type=Path, metavar="DIR", help="where object trees live")
    add_internal_server_options(parser)
    parser.add_argument(
        "--client-quota",
        type=int,
        default=int(os.environ.get("TARDIS_CLIENT_QUOTA") or 0),
        metavar="BYTES",
        help="bytes of objects each client may store (ClientQuota, $TARDIS_CLIENT_QUOTA; 0: no quota)",
    )
    add_metrics_options(parser)
    add_logging_options(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log events (-vv: debug messages)")
    return parser


def _prepare_basedir(basedir: Path) -> None:
    try:
        basedir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TardisError(f"cannot create basedir {basedir}: {exc.strerror or exc}") from None
    if not basedir.is_dir():
        raise TardisError(f"basedir {basedir} is not a directory")
    if not os.access(basedir, os.W_OK | os.X_OK):
        raise TardisError(f"basedir {basedir} is not writable")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(PROG, verbose=args.verbose, log_format=args.log_format)
    try:
        guard, tls, notice = internal_server_security(
            args.listen,
            secret_file=args.service_secret_file,
            cert_file=args.tls_cert,
            key_file=args.tls_key,
            client_ca_file=args.tls_client_ca,
        )
        _prepare_basedir(args.basedir)
        core = ObservedBlobStore(BlobStoreCore(args.basedir, quota=args.client_quota))
        server, port = make_server(args.listen, [core_handler(SERVICE, core, guard)], tls=tls)
    except TardisError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except RuntimeError:  # grpc reports a failed bind this way
        print(f"{PROG}: cannot listen on {args.listen}: address in use or not valid", file=sys.stderr)
        return 1
    try:
        metrics_notice = serve_metrics(PROG, args.metrics_port, args.metrics_address, args.listen)
    except OSError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        stop_server(server, 0)
        return 1
    if metrics_notice:
        print(metrics_notice, file=sys.stderr, flush=True)
    if notice:
        print(f"{PROG}: {notice}", file=sys.stderr, flush=True)
    return serve_until_signalled(server, f"{PROG} listening on {display_address(args.listen, port)}", STOP_GRACE)


if __name__ == "__main__":
    sys.exit(main())
