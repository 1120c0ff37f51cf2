"""tardis: back up directories into a repository (embedded path or tardis:// server)."""

from __future__ import annotations

import argparse
import os
import sys

from tardis_common.argparsing import add_common_options, make_parser
from tardis_common.cipher import NullCipher
from tardis_common.codecs import codec_named

from .backup_run import BackupOptions, BackupRun
from .connect import open_repository
from .tool import run, settings_and_url, setup_logging
from .upload import UploadOptions


def parser() -> argparse.ArgumentParser:
    p = make_parser("tardis", "Back up directories into a Tardis repository.")
    add_common_options(p)
    S = argparse.SUPPRESS
    p.add_argument("directories", nargs="*", default=S, help="directories to back up (default: Directories setting)")
    p.add_argument("--create", action="store_true", default=S, help="create the client's repository (first backup)")
    p.add_argument("--name", "-n", default=S, help="name the backup set explicitly")
    p.add_argument("--force", action="store_true", default=S, help="take over a backup another run still holds")
    p.add_argument("--full", action="store_true", default=S, help="send full copies, no deltas")
    p.add_argument(
        "--compress-data",
        "-Z",
        nargs="?",
        const="zstd",
        default=S,
        dest="compress_data",
        help="compress stored data: none, zlib, zstd, bzip, lzma (bare flag: zstd)",
    )
    p.add_argument("--compress-min", type=int, default=S, dest="compress_min", help="smallest file to compress")
    p.add_argument("--crossdevice", action="store_true", default=S, help="descend into other filesystems")
    p.add_argument("--stats", action="store_true", default=S, help="print statistics when done")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(getattr(args, "verbose", 0))
    return run("tardis", lambda: _backup(args), exceptions=getattr(args, "exceptions", False))


def _backup(args: argparse.Namespace) -> int:
    settings, url = settings_and_url(args)
    roots = [os.path.abspath(d) for d in (settings.directories or ["."])]
    create = bool(getattr(args, "create", False))
    if url.is_local and create:
        os.makedirs(url.base_dir, exist_ok=True)
    exclude = [str(url.client_dir)] if url.is_local else []
    options = BackupOptions(
        create=create,
        force=settings.force,
        name=getattr(args, "name", ""),
        upload=UploadOptions(codec_named(settings.compress_data), settings.compress_min),
        exclude_dirs=exclude,
        cross_devices=bool(getattr(args, "crossdevice", False)),
    )
    with open_repository(url, timeout=settings.timeout) as repo:
        result = BackupRun(repo.ingest, repo.client, NullCipher(), options).run(roots)
    verb = "resumed and completed" if result.resumed else "completed"
    print(f"backup set {result.set.name} {verb} ({result.entries} entries, {result.files_sent} files sent)")
    if getattr(args, "stats", False) or settings.stats:
        print(f"batches: {result.batches}  bytes sent: {result.bytes_sent}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
