"""tardis: back up directories into a repository (embedded path or tardis:// server)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from tardis.v1 import catalog_pb2 as cat

from tardis_common.argparsing import add_common_options, make_parser
from tardis_common.codecs import codec_named
from tardis_common.settings import ClientSettings

from .backup_run import BackupOptions, BackupRun
from .connect import open_repository
from .create import create_client
from .dates import date_arg
from .excludes import Selection, expand_path, global_patterns
from .nocompress import NoCompress
from .passwords import get_password
from .progress import Estimate, Progress, human
from .sonic_purge import cutoff_ns, remove_sets
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
    p.add_argument("--priority", type=int, default=S, help="priority of the new set (default: from its name)")
    g = p.add_argument_group("purge (after the backup)")
    g.add_argument("--purge", action="store_true", default=S, help="purge old sets after the backup")
    g.add_argument("--purge-priority", type=int, default=0, metavar="N", help="purge sets of priority N or lower")
    keep = g.add_mutually_exclusive_group()
    keep.add_argument("--keep-days", type=float, metavar="DAYS", help="with --purge: keep sets newer than DAYS")
    keep.add_argument("--keep-hours", type=float, metavar="HOURS", help="with --purge: keep sets newer than HOURS")
    keep.add_argument(
        "--keep-time", type=date_arg, dest="before", metavar="DATE", help="with --purge: keep sets after DATE"
    )
    p.add_argument("--tag", "-t", action="append", default=S, dest="tags", metavar="TAG", help="tag the new set")
    p.add_argument(
        "--compress-data",
        "-Z",
        nargs="?",
        const="zstd",
        default=S,
        dest="compress_data",
        help="compress stored data: none, zlib, zstd, bzip, lzma, lz4 (bare flag: zstd)",
    )
    p.add_argument("--compress-min", type=int, default=S, dest="compress_min", help="smallest file to compress")
    p.add_argument(
        "--nocompress-types",
        default=S,
        dest="nocompress_file",
        metavar="FILE",
        help="file of MIME types not to compress",
    )
    p.add_argument(
        "--nocompress",
        "-z",
        action="append",
        default=S,
        dest="nocompress",
        metavar="TYPE",
        help="MIME type not to compress",
    )
    add_selection_options(p)
    p.add_argument(
        "--compress-msgs",
        "-Y",
        nargs="?",
        const="zlib",
        default=S,
        dest="compress_msgs",
        help="compress metadata messages to the server: none or zlib (bare flag: zlib)",
    )
    p.add_argument("--stats", action="store_true", default=S, help="print statistics when done")
    p.add_argument(
        "--report",
        nargs="?",
        const="all",
        choices=["all", "dirs", "none"],
        default=S,
        help="list the files sent when done (dirs: per directory)",
    )
    p.add_argument("--progress", action="store_true", default=S, help="show progress on a terminal")
    p.add_argument(
        "--log",
        "-l",
        action="append",
        default=S,
        dest="log_files",
        metavar="FILE",
        help="log to FILE (:STDERR: and :STDOUT: allowed; repeatable)",
    )
    p.add_argument("--logtime", action="store_true", default=S, help="time-stamp log lines")
    return p


# Lists given on the command line add to those of the config file (as the seed's did).
_ADDED_LISTS = ("exclude_patterns", "exclude_files", "exclude_dirs")


def add_selection_options(p: argparse.ArgumentParser) -> None:
    """What to leave out of a backup (docs/selection.md); dests are the settings' field names."""
    S = argparse.SUPPRESS
    g = p.add_argument_group("selection")
    g.add_argument(
        "--exclude",
        "-x",
        action="append",
        default=S,
        dest="exclude_patterns",
        metavar="PATTERN",
        help="leave out what matches this glob (repeatable; leading / anchors it)",
    )
    g.add_argument(
        "--exclude-file",
        "-X",
        action="append",
        default=S,
        dest="exclude_files",
        metavar="FILE",
        help="read exclude patterns from FILE, one per line (repeatable)",
    )
    g.add_argument(
        "--exclude-dir",
        action="append",
        default=S,
        dest="exclude_dirs",
        metavar="DIR",
        help="leave out this directory (repeatable)",
    )
    g.add_argument(
        "--exclude-file-name",
        default=S,
        dest="exclude_file_name",
        metavar="NAME",
        help="per-directory exclude file, for that directory and below (default .tardis-exclude)",
    )
    g.add_argument(
        "--local-exclude-file-name",
        default=S,
        dest="local_exclude_file_name",
        metavar="NAME",
        help="per-directory exclude file for that directory only (default .tardis-local-exclude)",
    )
    g.add_argument(
        "--skip-file-name",
        default=S,
        dest="skip_file_name",
        metavar="NAME",
        help="a directory holding this file is left out (default .tardis-skip)",
    )
    g.add_argument(
        "--ignore-global-excludes",
        action="store_true",
        default=S,
        dest="ignore_global_excludes",
        help="do not read the global exclude file (TARDIS_GLOBAL_EXCLUDES)",
    )
    g.add_argument(
        "--cvs-ignore",
        action="store_true",
        default=S,
        dest="ignore_cvs",
        help="leave out version-control and build droppings",
    )
    g.add_argument(
        "--skip-caches",
        action="store_true",
        default=S,
        dest="skip_caches",
        help="leave out directories tagged with CACHEDIR.TAG",
    )
    g.add_argument(
        "--exclude-no-access",
        action=argparse.BooleanOptionalAction,
        default=S,
        dest="exclude_no_access",
        help="leave out what you cannot read (default: on)",
    )
    g.add_argument(
        "--maxdepth",
        "-d",
        type=int,
        default=S,
        dest="max_depth",
        metavar="N",
        help="descend at most N directory levels (1: the directories' own entries; 0: no limit)",
    )
    g.add_argument(
        "--crossdevice", action="store_true", default=S, dest="cross_device", help="descend into other filesystems"
    )


def selection_of(settings: ClientSettings, args: argparse.Namespace) -> Selection:
    """The selection of a run: the settings, plus the lists given on the command line."""

    def listed(name: str) -> list[str]:
        return [*getattr(settings, name), *getattr(args, name, [])]

    patterns = global_patterns(
        patterns=listed("exclude_patterns"),
        files=listed("exclude_files"),
        global_file=None if getattr(args, "ignore_global_excludes", False) else settings.global_exclude_file_name,
        global_file_default=ClientSettings.model_fields["global_exclude_file_name"].default,
        ignore_cvs=settings.ignore_cvs,
    )
    return Selection(
        patterns=patterns,
        exclude_dirs=tuple(expand_path(d) for d in listed("exclude_dirs")),
        exclude_file_name=settings.exclude_file_name or None,
        local_exclude_file_name=settings.local_exclude_file_name or None,
        skip_file_name=settings.skip_file_name or None,
        skip_caches=settings.skip_caches,
        exclude_no_access=settings.exclude_no_access,
        max_depth=settings.max_depth,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(getattr(args, "verbosity", 0), getattr(args, "log_files", None), getattr(args, "logtime", False))
    return run("tardis", lambda: _backup(args), exceptions=getattr(args, "exceptions", False))


def _backup(args: argparse.Namespace) -> int:
    settings, url = settings_and_url(args, drop=_ADDED_LISTS)
    roots = [os.path.abspath(d) for d in (settings.directories or ["."])]
    create = bool(getattr(args, "create", False))
    if url.is_local and create:
        os.makedirs(url.base_dir, exist_ok=True)
    exclude = [str(url.client_dir)] if url.is_local else []
    options = BackupOptions(
        create=create,
        force=settings.force,
        name=getattr(args, "name", ""),
        upload=UploadOptions(
            codec_named(settings.compress_data),
            settings.compress_min,
            NoCompress(settings.nocompress, settings.nocompress_file),
        ),
        exclude_dirs=exclude,
        cross_devices=settings.cross_device,
        selection=selection_of(settings, args),
        full=settings.full,
        priority=getattr(args, "priority", 0),
        tags=list(getattr(args, "tags", [])),
    )
    compress = settings.compress_msgs not in ("none", "", "false")
    options.report = settings.report != "none"
    options.command_line = recorded_command_line(sys.argv)
    password = get_password(settings, confirm=create)
    if create and password is not None:
        with open_repository(url, settings, timeout=settings.timeout, unlock=False) as repo:
            create_client(repo, settings, password)
        options.create = False
    with open_repository(
        url, settings, timeout=settings.timeout, compress_messages=compress, password=password
    ) as repo:
        keys = repo.unlocked.keys if repo.unlocked is not None else None
        options.manifest_key = keys.manifest_key if keys is not None else None
        backup_run = BackupRun(repo.ingest, repo.client, repo.cipher, options)
        if getattr(args, "progress", False) and sys.stderr.isatty():
            backup_run.estimate = Estimate(roots)
            with Progress(backup_run.progress_line):
                result = backup_run.run(roots)
        else:
            result = backup_run.run(roots)
        if repo.unlocked is not None:
            repo.known.remember_newest_set(result.set.id)
    verb = "resumed and completed" if result.resumed else "completed"
    print(f"backup set {result.set.name} {verb} ({result.entries} entries, {result.files_sent} files sent)")
    if getattr(args, "stats", False) or settings.stats:
        print(
            f"entries {result.entries}  batches {result.batches}  files sent {result.files_sent}"
            f" (deltas {result.deltas}, hard links {result.linked})  hashed {result.checked}"
            f"  file bytes {result.bytes_sent}  bytes on the wire {result.wire_bytes}",
            file=sys.stderr,
        )
    if settings.purge:
        with open_repository(url, settings, timeout=settings.timeout, password=password) as repo:
            request = cat.RemoveSetsRequest(
                client=repo.client,
                purge=True,
                max_priority=args.purge_priority,
                before_ns=cutoff_ns(args, time.time_ns()),
            )
            purged = remove_sets(repo.ingest, request)  # as sonic purge: this process holds the lease
        result.purged += [s.name for s in purged.removed]
        result.bytes_freed += purged.orphan_bytes
    if result.purged:
        names = ", ".join(result.purged)
        print(f"removed {len(result.purged)} old sets ({names}), freed {human(result.bytes_freed)}")
    if settings.report != "none":
        print_report(result.report, by_dir=settings.report == "dirs")
    if result.skipped:
        print(f"tardis: {result.skipped} files or directories could not be read; see the log", file=sys.stderr)
        return 3
    return 0


_SECRET_OPTIONS = ("--password", "-P")


def recorded_command_line(argv: list[str]) -> str:
    """The command line as recorded with the set, any password value replaced by "***"."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("-"):
            out.append("***")
            hide_next = False
            continue
        hide_next = False
        if arg in _SECRET_OPTIONS:
            hide_next = True
            out.append(arg)
        elif arg.startswith("--password="):
            out.append("--password=***")
        elif arg.startswith("-P") and len(arg) > 2 and not arg.startswith("--"):
            out.append("-P***")
        else:
            out.append(arg)
    return " ".join([os.path.basename(out[0]), *out[1:]] if out else [])


def print_report(sent: list[tuple[str, str, int]], *, by_dir: bool) -> None:
    """The files sent by this run: one line each, or a count and size per directory."""
    if by_dir:
        totals: dict[str, list[int]] = {}
        for path, _how, size in sent:
            total = totals.setdefault(os.path.dirname(path), [0, 0])
            total[0] += 1
            total[1] += size
        for directory in sorted(totals):
            count, size = totals[directory]
            print(f"{directory}: {count} files, {human(size)}")
        return
    for path, how, size in sorted(sent):
        print(f"{how:<6} {human(size):>10}  {path}")


if __name__ == "__main__":
    sys.exit(main())
