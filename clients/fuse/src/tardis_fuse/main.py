"""tardisfs: not built yet; the issue "tardisremote and tardisfs" fills this in."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("tardisfs: the FUSE filesystem is not available in this release", file=sys.stderr)
    return 1
