"""regenerate: restore files or whole trees from a backup set, or stored objects by checksum."""

from __future__ import annotations

import argparse
import os
import re
import sys

from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_common.argparsing import add_common_options, make_parser
from tardis_common.cipher import Cipher
from tardis_common.errors import Corrupt, InvalidArgument, NotFound
from tardis_common.objectformat import KIND_FULL, ObjectDecoder

from .chain import ChainReader
from .connect import Repository, open_repository
from .dates import date_arg, set_at
from .manifest_store import SetCheck, check_set
from .restore import OVERWRITE_MODES, VERIFY_ACTIONS, Restorer, RestoreStats, components_of
from .sets import list_sets, resolve_set
from .tool import run, settings_and_url, setup_logging

PROG = "regenerate"
DEFAULT_VERIFY_ACTION = "rename"  # for damaged content; an altered set needs --verify-action


def parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Restore files or directories from a Tardis backup set.")
    add_common_options(p)
    S = argparse.SUPPRESS
    B = argparse.BooleanOptionalAction
    p.add_argument("files", nargs="*", default=S, help="paths to restore (default: the whole set)")
    p.add_argument(
        "--output",
        "-o",
        default=S,
        help="directory to restore into (default: the current one); with --checksum and one object, a file",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--backup", "-b", default=S, help="backup set name, tag or id (default: Current)")
    which.add_argument(
        "--date",
        "-d",
        type=date_arg,
        default=S,
        metavar="DATE",
        help="the newest complete set started at or before DATE",
    )
    which.add_argument("--last", "-l", action="store_true", help="for each path, the newest complete set holding it")
    p.add_argument("--checksum", "-c", action="store_true", help="the arguments are object ids (checksums), not paths")
    p.add_argument("--recurse", "-r", action=B, default=True, help="restore the contents of directories (default on)")
    p.add_argument(
        "--overwrite",
        "-O",
        choices=OVERWRITE_MODES,
        default="never",
        help="when a file to restore exists already: never (default), always, newer, older, ask",
    )
    p.add_argument(
        "--authenticate",
        action=B,
        default=True,
        help="check each file's content against its address (default on)",
    )
    p.add_argument(
        "--verify-action",
        choices=VERIFY_ACTIONS,
        default=None,
        help="a file that fails the check: keep, rename (to NAME-CORRUPT-ID, default), delete; given"
        " explicitly, a set that does not match its sealed manifest is restored too, each entry the"
        " manifest does not vouch for handled the same way (without it, nothing is restored from such a set)",
    )
    p.add_argument(
        "--reduce-path",
        type=int,
        nargs="?",
        const=SMART_REDUCE,
        default=S,
        metavar="N",
        help="restore under the output directory at the backed-up path minus its first N components;"
        " without N, minus the directories all the given paths share (so several inputs keep their"
        " relative layout)",
    )
    fidelity = p.add_argument_group("what to restore besides contents")
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


def _smart_reduce(argv: list[str]) -> list[str]:
    """``--reduce-path`` followed by a path rather than a number means "without N"."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--reduce-path" and not (i + 1 < len(out) and out[i + 1].lstrip("-").isdigit()):
            out[i] = f"--reduce-path={SMART_REDUCE}"
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(_smart_reduce(sys.argv[1:] if argv is None else argv))
    setup_logging(getattr(args, "verbosity", 0))
    return run(PROG, lambda: _regenerate(args), exceptions=getattr(args, "exceptions", False))


def _report(line: str) -> None:
    print(f"{PROG}: {line}", file=sys.stderr)


def _ask(path: str) -> bool:
    """Ask on a terminal whether to overwrite ``path``; never without one."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    sys.stderr.write(f"{PROG}: overwrite {path}? [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


SMART_REDUCE = -1  # --reduce-path without N


def shared_prefix(paths: list[list[bytes]]) -> int:
    """How many leading directory components every one of ``paths`` shares (never a path's
    own last component, so each keeps at least its name)."""
    if not paths:
        return 0
    limit = min(len(p) for p in paths) - 1
    count = 0
    while count < limit and all(p[count] == paths[0][count] for p in paths):
        count += 1
    return count


def _target(output: str, components: list[bytes], reduce: int | None) -> str:
    if not components:
        return output
    if reduce is None or reduce >= len(components):
        return os.path.join(output, os.fsdecode(components[-1]))
    return os.path.join(output, *(os.fsdecode(c) for c in components[max(reduce, 0) :]))


def _newest_holding(repo: Repository, cipher: Cipher, complete: list[int], components: list[bytes]) -> int:
    """The newest complete set holding the path (--last)."""
    found = repo.ingest.lookup_path(
        cat.LookupPathRequest(
            client=repo.client,
            set_id=0,
            path=common.DirPath(components=[cipher.encrypt_name(c) for c in components]),
        )
    )
    spans = [(v.first_set, v.last_set) for v in found.versions] if found.found else []
    held = [i for i in complete if any(first <= i <= last for first, last in spans)]
    if not held:
        shown = "/" + "/".join(os.fsdecode(c) for c in components)
        raise NotFound(f"{shown} is in no complete backup set")
    return max(held)


def _regenerate(args: argparse.Namespace) -> int:
    settings, url = settings_and_url(args)
    output = os.path.abspath(getattr(args, "output", "."))
    files: list[str] = getattr(args, "files", [])
    with open_repository(url, settings, timeout=settings.timeout) as repo:
        cipher = repo.cipher
        if args.checksum:
            return _by_checksum(repo, cipher, files, output, args)
        sets = list_sets(repo.ingest, repo.client)
        if hasattr(args, "date"):
            chosen = set_at(sets, args.date)
        else:
            chosen = resolve_set(repo.ingest, repo.client, getattr(args, "backup", None), settings.recent_set)
        names = {s.id: s.name for s in sets}
        by_id = {s.id: s for s in sets}
        complete = sorted(s.id for s in sets if s.completed)
        restorers: dict[int, Restorer] = {}
        altered = 0

        def restorer(set_id: int) -> Restorer:
            nonlocal altered
            if set_id not in restorers:
                checked = SetCheck()
                if args.authenticate and set_id in by_id:
                    checked = check_manifest(repo, by_id[set_id], args.verify_action)
                    altered += len(checked.lines)
                restorers[set_id] = Restorer(
                    repo.ingest,
                    repo.client,
                    cipher,
                    set_id,
                    set_times=args.set_times,
                    set_perms=args.set_perms,
                    set_attrs=args.set_attrs,
                    set_acl=args.set_acl,
                    overwrite=args.overwrite,
                    ask=_ask,
                    authenticate=args.authenticate,
                    verify_action=args.verify_action or DEFAULT_VERIFY_ACTION,
                    suspect=checked.suspect,
                    recurse=args.recurse,
                    report=_report,
                )
            return restorers[set_id]

        if not files:
            restorer(chosen.id).restore_path([], output)
        reduce: int | None = getattr(args, "reduce_path", None)
        if reduce == SMART_REDUCE:
            reduce = shared_prefix([components_of(path) for path in files])
        for path in files:
            components = components_of(path)
            set_id = _newest_holding(repo, cipher, complete, components) if args.last else chosen.id
            restorer(set_id).restore_path(components, _target(output, components, reduce))
    total = RestoreStats()
    for r in restorers.values():
        for key, value in vars(r.stats).items():
            setattr(total, key, getattr(total, key) + value)
    used = ", ".join(names.get(i, str(i)) for i in sorted(restorers)) or chosen.name
    extra = ""
    if total.not_overwritten:
        extra += f", {total.not_overwritten} not overwritten"
    if total.corrupt:
        extra += f", {total.corrupt} corrupt"
    if altered:
        extra += f", {altered} entries not matching the sealed manifest"
    print(
        f"restored {total.files} files, {total.dirs} directories, {total.symlinks} symlinks "
        f"from {used} into {output}{extra}"
    )
    return 1 if total.corrupt or altered else 0


def check_manifest(repo: Repository, backup_set: common.BackupSet, verify_action: str | None) -> SetCheck:
    """Check an encrypted client's set against its sealed manifest before restoring from it.

    Every problem is named on stderr; without --verify-action nothing is restored (Corrupt),
    with one the restore goes on (the entries the manifest does not vouch for get the verify
    action, like damaged content) and the run fails at the end."""
    keys = repo.unlocked.keys if repo.unlocked is not None else None
    if keys is None:
        return SetCheck()
    checked = check_set(repo.ingest, repo.client, repo.cipher, keys.manifest_key, backup_set)
    problems = checked.lines
    for problem in problems:
        print(f"regenerate: {problem}", file=sys.stderr)
    if problems and verify_action is None:
        raise Corrupt(
            f"backup set {backup_set.name} does not match its sealed manifest ({len(problems)} problems);"
            " nothing was restored (--verify-action keep|rename|delete restores what can be)"
        )
    return checked


def _decode_unchecked(repo: Repository, cipher: Cipher, object_id: bytes, out: object) -> None:
    """A full object's content without the address check (--no-authenticate)."""
    decoder = ObjectDecoder(cipher, None, kind=KIND_FULL)
    for reply in repo.ingest.read_objects(bs.GetObjectsRequest(client=repo.client, object_ids=[object_id])):
        for piece in reply.pieces:
            if piece.missing:
                raise Corrupt(f"object {object_id.decode('ascii')} is missing from the store")
            for plain in decoder.feed(piece.data):
                out.write(plain)  # type: ignore[attr-defined]
    decoder.finish()


def _by_checksum(repo: Repository, cipher: Cipher, ids: list[str], output: str, args: argparse.Namespace) -> int:
    """--checksum: write each object's content to OUTPUT/ID, or to -o FILE for a single object."""
    if not ids:
        raise InvalidArgument("--checksum needs at least one object id")
    for text in ids:
        if not re.fullmatch(r"[0-9a-fA-F]+", text):
            raise InvalidArgument(f"{text} is not an object id (hex)")
    chains = ChainReader(repo.ingest, repo.client, cipher)
    wanted = [t.lower().encode("ascii") for t in ids]
    infos = chains.infos(wanted)
    for object_id in wanted:
        if object_id not in infos:
            raise NotFound(f"object {object_id.decode('ascii')} is not in the repository")
    single = len(wanted) == 1 and hasattr(args, "output") and not os.path.isdir(output)
    written, corrupt = 0, 0
    for object_id in wanted:
        shown = object_id.decode("ascii")
        path = output if single else os.path.join(output, shown)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if os.path.lexists(path) and not (args.overwrite == "always" or (args.overwrite == "ask" and _ask(path))):
            _report(f"not overwritten: {path}")
            continue
        failure: Corrupt | None = None
        with open(path, "wb") as out:
            try:
                if args.authenticate or infos[object_id].basis_id:
                    chains.materialize(object_id, out)
                else:
                    _decode_unchecked(repo, cipher, object_id, out)
            except Corrupt as exc:
                failure = exc
        if failure is None:
            written += 1
            continue
        corrupt += 1
        action = args.verify_action or DEFAULT_VERIFY_ACTION
        if action == "keep":
            _report(f"corrupt: {path} (object {shown}): {failure}; kept")
        elif action == "rename":
            os.replace(path, f"{path}-CORRUPT-{shown[:8]}")
            _report(f"corrupt: {path} (object {shown}): {failure}; renamed to {path}-CORRUPT-{shown[:8]}")
        else:
            os.unlink(path)
            _report(f"corrupt: {path} (object {shown}): {failure}; deleted")
    print(f"wrote {written} objects into {output}" + (f", {corrupt} corrupt" if corrupt else ""))
    return 1 if corrupt else 0


if __name__ == "__main__":
    sys.exit(main())
