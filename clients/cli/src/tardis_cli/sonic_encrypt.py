"""sonic encrypt (alias encryptDB, the seed's tool): encrypt a client's history in place.

After ``sonic setpass`` new backups are encrypted, but the sets before it are stored in the
clear and the now password-protected client cannot read them. This converts them: names,
then directories, then objects, then meta files and manifests (encrypt_job.py), as separate
steps or all at once (the default). Every step is restartable and may be run again.

It runs where the repository is, on its local path, because it holds the keys: a server
never sees them, so it cannot be asked to do this over the network.
"""

from __future__ import annotations

import argparse
from typing import Any

from tardis_common.argparsing import add_common_options
from tardis_common.errors import InvalidArgument, NotFound

from .encrypt_job import STEPS, EncryptJob
from .sonic_common import Handler, settings


def register(commands: Any) -> dict[str, Handler]:
    encrypt = commands.add_parser(
        "encrypt",
        aliases=["encryptDB"],
        help="encrypt the sets backed up before sonic setpass, in place (local repository only)",
    )
    add_common_options(encrypt)
    for step, text in (
        ("names", "seal names, link targets, xattrs, tags and command lines"),
        ("dirs", "check directories (keyed by their sealed names) and drop unused rows"),
        ("objects", "re-seal objects and signatures under keyed addresses"),
        ("meta", "seal the converted sets' manifests and write every .meta afresh"),
    ):
        encrypt.add_argument(f"--{step}", action="store_true", help=text)
    encrypt.add_argument("--all", action="store_true", help="every step, in order (the default)")
    encrypt.add_argument("--batch", type=int, default=500, metavar="N", help="rows per transaction (default 500)")
    encrypt.add_argument(
        "--wait", type=float, default=600.0, metavar="SECONDS", help="how long to wait for a running backup's lease"
    )
    return {"encrypt": encrypt_client, "encryptDB": encrypt_client}


def encrypt_client(args: argparse.Namespace) -> int:
    from tardis_blobstore.core import BlobStoreCore
    from tardis_catalog import db
    from tardis_catalog.core import CatalogCore
    from tardis_ingest.core import IngestCore

    from .connect import Repository, unlock_repository

    config, url = settings(args)
    if not url.is_local:
        raise InvalidArgument(
            "sonic encrypt needs the keys beside the repository: run it on the server host, on the client's"
            " directory (sonic encrypt --repository /path/to/BaseDir/CLIENT)"
        )
    if not (url.client_dir / db.DB_NAME).is_file():
        raise NotFound(f"client {url.client} does not exist in {url.base_dir}")
    steps = list(STEPS) if args.all else [s for s in STEPS if getattr(args, s)]
    catalog = CatalogCore(url.base_dir)
    blobstore = BlobStoreCore(url.base_dir)
    with Repository(url, IngestCore(catalog, blobstore), [catalog.close]) as repo:
        unlock_repository(repo, config)
        unlocked = repo.unlocked
        if unlocked is None or not unlocked.encrypted or unlocked.keys is None:
            raise InvalidArgument(
                f"client {url.client} has no encryption keys: give it a password with sonic setpass first"
            )
        job = EncryptJob(catalog, blobstore, url.client, repo.cipher, unlocked.keys, batch=args.batch, wait_s=args.wait)
        job.run(steps or list(STEPS))
    progress = job.conv.progress()
    if progress.names_done and not progress.objects and not progress.manifests:
        print(f"client {url.client}: every set is encrypted")
    else:
        print(f"client {url.client}: steps left to run: {', '.join(_left(progress))}")
    return 0


def _left(progress: Any) -> list[str]:
    left = []
    if not progress.names_done:
        left.append("--names")
    if progress.objects:
        left.append("--objects")
    if progress.manifests:
        left.append("--meta")
    return left
