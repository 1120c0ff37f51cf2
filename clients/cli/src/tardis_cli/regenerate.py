"""regenerate: restore files or whole trees from a backup set."""

from __future__ import annotations

import argparse
import os
import sys

from tardis_common.argparsing import add_common_options, make_parser
from tardis_common.cipher import NullCipher

from .connect import open_repository
from .restore import Restorer, components_of
from .sets import resolve_set
from .tool import run, settings_and_url, setup_logging


def parser() -> argparse.ArgumentParser:
    p = make_parser("regenerate", "Restore files or directories from a Tardis backup set.")
    add_common_options(p)
    S = argparse.SUPPRESS
    p.add_argument("files", nargs="*", default=S, help="paths to restore (default: the whole set)")
    p.add_argument("--output", "-o", default=S, help="directory to restore into (default: the current one)")
    p.add_argument("--backup", "-b", default=S, help="backup set name or id (default: Current)")
    fidelity = p.add_argument_group("what to restore besides contents")
    B = argparse.BooleanOptionalAction
    fidelity.add_argument("--set-times", action=B, default=True, help="modification and access times")
    fidelity.add_argument(
        "--set-perms",
        action=B,
        default=True,
        help="owner and group (by name; effective as root) and mode bits",
    )
    fidelity.add_argument("--set-attrs", action=B, default=True, help="extended attributes")
    fidelity.add_argument("--set-acl", action=B, default=True, help="POSIX ACLs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(getattr(args, "verbosity", 0))
    return run("regenerate", lambda: _regenerate(args), exceptions=getattr(args, "exceptions", False))


def _regenerate(args: argparse.Namespace) -> int:
    settings, url = settings_and_url(args)
    output = os.path.abspath(getattr(args, "output", "."))
    files: list[str] = getattr(args, "files", [])
    with open_repository(url, timeout=settings.timeout) as repo:
        chosen = resolve_set(repo.ingest, repo.client, getattr(args, "backup", None), settings.recent_set)
        restorer = Restorer(
            repo.ingest,
            repo.client,
            NullCipher(),
            chosen.id,
            set_times=args.set_times,
            set_perms=args.set_perms,
            set_attrs=args.set_attrs,
            set_acl=args.set_acl,
        )
        if not files:
            restorer.restore_path([], output)
        for path in files:
            components = components_of(path)
            target = os.path.join(output, os.fsdecode(components[-1])) if components else output
            restorer.restore_path(components, target)
    stats = restorer.stats
    print(
        f"restored {stats.files} files, {stats.dirs} directories, {stats.symlinks} symlinks "
        f"from {chosen.name} into {output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
