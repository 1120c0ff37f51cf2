"""Whether a path lies on a network filesystem (NFS, SMB/CIFS, ...), where SQLite's WAL mode
and its locking cannot be trusted: a repository there is opened read-only.

Linux answers from /proc/self/mounts (the longest mount point containing the path wins);
elsewhere the answer is "no" unless the caller says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

NETWORK_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "afs", "ceph", "glusterfs", "9p", "fuse.sshfs", "davfs", "fuse.rclone"}
)
MOUNTS = "/proc/self/mounts"


def _unescape(field: str) -> str:
    """Mount points in /proc/mounts escape space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def filesystem_type(path: str | os.PathLike[str], mounts: str | None = None) -> str | None:
    """The type of the filesystem holding ``path`` (from ``mounts``, the text of a mounts table;
    read from /proc when None), or None where that cannot be told."""
    if mounts is None:
        try:
            mounts = Path(MOUNTS).read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, kind = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def network_filesystem(path: str | os.PathLike[str], mounts: str | None = None) -> str | None:
    """The network filesystem type holding ``path`` (e.g. "nfs4"), or None for a local one."""
    kind = filesystem_type(path, mounts)
    return kind if kind is not None and kind in NETWORK_TYPES else None
