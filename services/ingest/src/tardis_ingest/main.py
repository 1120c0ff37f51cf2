"""tardis-ingest: the ingest service alone, talking to catalog and blobstore over gRPC."""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from tardis_blobstore.client import BlobStoreClient
from tardis_catalog.client import CatalogClient
from tardis_common.errors import TardisError
from tardis_common.rpc import make_server, open_channel
from tardis_common.serving import display_address, serve_until_signalled

from .core import IngestCore
from .grpc_service import handler


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tardis-ingest", description="Run the Tardis ingest service.")
    p.add_argument("--listen", default="127.0.0.1:7420", help="address to serve on (host:port or unix:PATH)")
    p.add_argument("--catalog", required=True, help="address of the catalog service")
    p.add_argument("--blobstore", required=True, help="address of the blobstore service")
    p.add_argument("--allow-new-hosts", action="store_true", help="let unknown clients create their repository")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s: %(message)s")
    try:
        catalog = CatalogClient(open_channel(args.catalog))
        blobstore = BlobStoreClient(open_channel(args.blobstore))
        core = IngestCore(catalog, blobstore, allow_new_clients=args.allow_new_hosts)
        server, port = make_server(args.listen, [handler(core)])
    except (TardisError, RuntimeError) as exc:
        print(f"tardis-ingest: error: {exc}", file=sys.stderr)
        return 1
    return serve_until_signalled(server, f"tardis-ingest listening on {display_address(args.listen, port)}")


if __name__ == "__main__":
    sys.exit(main())
