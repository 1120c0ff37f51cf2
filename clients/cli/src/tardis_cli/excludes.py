"""What a backup leaves out: exclude patterns, exclude files, skip files, caches, access.

Patterns are globs: ``*`` and ``?`` never cross a ``/`` but do match a leading dot, ``[...]``
is a character class (``[!...]`` negated), and a whole ``**`` component matches any number
of directories. A pattern without a leading ``/`` matches at any depth (it gets ``**/`` in
front); one with a leading ``/`` is anchored to the absolute path. A trailing ``/`` makes
a pattern match directories only. Every pattern is matched against an entry's full path.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from tardis_common.errors import ConfigError

log = logging.getLogger(__name__)

# The patterns of --cvs-ignore (IgnoreCVS): rsync's --cvs-exclude list plus the newer VCSs.
CVS_PATTERNS: tuple[str, ...] = (
    "RCS", "SCCS", "CVS", "CVS.adm", "RCSLOG", "cvslog.*", "tags", "TAGS", ".make.state",
    ".nse_depinfo", "*~", "#*", ".#*", ",*", "_$*", "*$", "*.old", "*.bak", "*.BAK", "*.orig",
    "*.rej", ".del-*", "*.a", "*.olb", "*.o", "*.obj", "*.so", "*.exe", "*.Z", "*.elc", "*.ln",
    "core", ".svn/", ".git/", ".hg/", ".bzr/",
)  # fmt: skip

CACHEDIR_TAG = "CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


# --- patterns ------------------------------------------------------------------------------


def _component(part: str) -> str:
    """The regex of one path component of a glob (no ``/`` inside)."""
    if part == "*":
        return "[^/]+"
    out: list[str] = []
    i, n = 0, len(part)
    while i < n:
        c = part[i]
        i += 1
        if c == "*":
            while i < n and part[i] == "*":
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i
            if j < n and part[j] == "!":
                j += 1
            if j < n and part[j] == "]":
                j += 1
            while j < n and part[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))  # no closing bracket: a literal "["
                continue
            body, i = part[i:j], j + 1
            negate = body.startswith("!")
            body = body[1:] if negate else body
            chars = "".join("-" if ch == "-" else re.escape(ch) for ch in body)
            out.append(f"[^/{chars}]" if negate else f"[{chars}]")
        else:
            out.append(re.escape(c))
    return "".join(out)


def translate(pattern: str) -> tuple[str, bool]:
    """The regex (unanchored fragment) of an exclude pattern and whether it names directories only."""
    dir_only = len(pattern) > 1 and pattern.endswith("/")
    text = pattern.rstrip("/") if dir_only else pattern
    anchored = text.startswith("/")
    parts = re.split("/+", text.lstrip("/"))
    results = ["/" if anchored else "(?:.*/)?"]
    last = len(parts) - 1
    for idx, part in enumerate(parts):
        if part == "**":
            if idx < last:
                if parts[idx + 1] != "**":
                    results.append("(?:.+/)?")
            else:
                results.append(".*")
            continue
        results.append(_component(part))
        if idx < last:
            results.append("/")
    return "".join(results), dir_only


class Matcher:
    """All the patterns active in one directory, compiled into one regex (two: any entry, dirs only)."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        any_entry: list[str] = []
        dirs_only: list[str] = []
        for pattern in patterns:
            regex, dir_only = translate(pattern)
            (dirs_only if dir_only else any_entry).append(regex)
        self.patterns = patterns
        self._any = _compile(any_entry, patterns)
        self._dirs = _compile(dirs_only, patterns)

    def excludes(self, path: str, is_dir: bool) -> bool:
        """Whether the entry at the absolute ``path`` is left out."""
        if self._any is not None and self._any.fullmatch(path):
            return True
        return is_dir and self._dirs is not None and self._dirs.fullmatch(path) is not None


def _compile(regexes: list[str], patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not regexes:
        return None
    try:
        return re.compile("|".join(f"(?:{r})" for r in regexes), re.DOTALL)
    except re.error:
        for pattern in patterns:  # name the culprit
            try:
                re.compile(translate(pattern)[0])
            except re.error as exc:
                raise ConfigError(f"bad exclude pattern {pattern!r}: {exc}") from None
        raise


@lru_cache(maxsize=512)
def matcher(patterns: tuple[str, ...]) -> Matcher:
    """The (cached) matcher of a set of patterns; directories with the same set share one."""
    return Matcher(patterns)


def parse_patterns(text: str) -> list[str]:
    """The patterns of an exclude file: one per line, surrounding blanks dropped, and blank lines
    and lines starting with ``#`` ignored (write ``[#]`` for a pattern that starts with ``#``)."""
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line)
    return patterns


def read_pattern_file(path: str) -> list[str]:
    """The patterns of an exclude file named by the user; ConfigError if it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return parse_patterns(handle.read())
    except FileNotFoundError:
        raise ConfigError(f"exclude file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read exclude file {path}: {exc.strerror or exc}") from None


def read_directory_patterns(path: str) -> list[str]:
    """The patterns of a per-directory exclude file; an unreadable one is logged and ignored."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return parse_patterns(handle.read())
    except OSError as exc:
        log.warning("cannot read exclude file %s: %s", path, exc.strerror or exc)
        return []


def expand_path(path: str) -> str:
    """``~`` and ``$VAR`` expanded, made absolute."""
    return os.path.abspath(os.path.expandvars(os.path.expanduser(path)))


# --- the rest of the selection -------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Everything that decides what a walk leaves out (the repository itself aside)."""

    patterns: tuple[str, ...] = ()  # exclude patterns active everywhere
    exclude_dirs: tuple[str, ...] = ()  # exact directories, already expanded
    exclude_file_name: str | None = ".tardis-exclude"  # patterns for this directory and below
    local_exclude_file_name: str | None = ".tardis-local-exclude"  # patterns for this directory only
    skip_file_name: str | None = ".tardis-skip"  # a directory holding it is left out entirely
    skip_caches: bool = False  # leave out directories tagged with a valid CACHEDIR.TAG
    exclude_no_access: bool = True  # leave out what this user cannot read (or traverse)
    max_depth: int = 0  # 0: no limit; N: list directories down to N levels (the root is level 1)


def global_patterns(
    *,
    patterns: Iterable[str] = (),
    files: Iterable[str] = (),
    global_file: str | None = None,
    global_file_default: str | None = None,
    ignore_cvs: bool = False,
) -> tuple[str, ...]:
    """The patterns active everywhere: the global exclude file, the CVS list, --exclude, --exclude-file."""
    found: list[str] = []
    if global_file:
        path = expand_path(global_file)
        if os.path.exists(path):
            found += read_pattern_file(path)
        elif global_file != global_file_default:
            log.warning("global exclude file %s not found", path)
    if ignore_cvs:
        found += CVS_PATTERNS
    found += [p for p in patterns if p]
    for name in files:
        found += read_pattern_file(expand_path(name))
    return tuple(dict.fromkeys(found))


def is_cache_dir(path: str) -> bool:
    """Whether ``path`` holds a CACHEDIR.TAG whose first line is the standard signature."""
    try:
        with open(os.path.join(path, CACHEDIR_TAG), "rb") as handle:
            return handle.read(len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    except OSError:
        return False


class Access:
    """Whether this user may read an entry (and, for a directory, traverse it); root may do anything."""

    def __init__(self, uid: int | None = None, groups: Iterable[int] | None = None) -> None:
        self.uid = os.geteuid() if uid is None else uid
        self.groups = set(os.getgroups()) | {os.getegid()} if groups is None else set(groups)
        self.real = uid is None and groups is None

    def allows(self, path: str, st: os.stat_result) -> bool:
        if self.uid == 0:
            return True
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            need = os.R_OK | os.X_OK
        elif stat.S_ISREG(mode):
            need = os.R_OK
        else:
            return True  # symlinks are read without permission; special files are skipped anyway
        if st.st_uid == self.uid:
            bits = (mode >> 6) & 7
        elif st.st_gid in self.groups:
            bits = (mode >> 3) & 7
        else:
            bits = mode & 7
        if bits & need == need:
            return True
        if not self.real:
            return False
        # The mode bits say no, but an ACL may still say yes.
        return os.access(path, need, effective_ids=os.access in os.supports_effective_ids, follow_symlinks=False)
