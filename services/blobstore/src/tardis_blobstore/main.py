"""tardis-blobstore: serve BlobStoreService over gRPC until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# gRPC's C core would log its own line for a failed bind; this program reports errors itself.
# Must be set before grpc is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from tardis_common.errors import TardisError
from tardis_common.rpc import core_handler, make_server
from tardis_common.service_auth import add_internal_server_options, internal_server_security
from tardis_common.serving import display_address, serve_until_signalled

from .core import BlobStoreCore
from .grpc_service import SERVICE

PROG = "tardis-blobstore"
DEFAULT_LISTEN = "127.0.0.1:7422"
STOP_GRACE = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Serve the Tardis blob store over gRPC.")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR", help="host:port or unix:/path")
    parser.add_argument("--basedir", required=True, type=Path, metavar="DIR", help="where object trees live")
    add_internal_server_options(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
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
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format=f"{PROG}: %(levelname)s %(name)s: %(message)s",
    )
    try:
        guard, tls, notice = internal_server_security(
            args.listen,
            secret_file=args.service_secret_file,
            cert_file=args.tls_cert,
            key_file=args.tls_key,
            client_ca_file=args.tls_client_ca,
        )
        _prepare_basedir(args.basedir)
        server, port = make_server(args.listen, [core_handler(SERVICE, BlobStoreCore(args.basedir), guard)], tls=tls)
    except TardisError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except RuntimeError:  # grpc reports a failed bind this way
        print(f"{PROG}: cannot listen on {args.listen}: address in use or not valid", file=sys.stderr)
        return 1
    if notice:
        print(f"{PROG}: {notice}", file=sys.stderr, flush=True)
    return serve_until_signalled(server, f"{PROG} listening on {display_address(args.listen, port)}", STOP_GRACE)


if __name__ == "__main__":
    sys.exit(main())
