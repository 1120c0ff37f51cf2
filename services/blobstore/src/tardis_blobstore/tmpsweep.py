"""Removing the temporary files of dead writers from a client's ``tmp/``.

A writer names its incoming files ``<pid>-<thread>-<n>.part`` (``ObjectTree._temp``) and
removes them itself when a stream ends or fails; only a killed process leaves them. A file
is a dead writer's when no process has the pid in its name and it has not been written for
``DEAD_WRITER_AGE``; any file untouched for ``ANY_WRITER_AGE`` goes whatever its name says
(pids are reused, and a file another program left has no pid to go by).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from tardis_common.processes import pid_alive

DEAD_WRITER_AGE_NS = 15 * 60 * 1_000_000_000
ANY_WRITER_AGE_NS = 24 * 3600 * 1_000_000_000
_TEMP_NAME = re.compile(r"(\d+)-\d+-\d+\.[a-z]+")


def writer_pid(name: str) -> int | None:
    """The pid in a temporary file's name, or None when the name is not one of ours."""
    match = _TEMP_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def sweep_tmp(tmp: Path, now_ns: int, alive: Callable[[int], bool] = pid_alive) -> int:
    """Remove the files in ``tmp`` whose writer is gone (see the module); how many went."""
    try:
        items = list(os.scandir(tmp))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = 0
    for item in items:
        try:
            if not item.is_file(follow_symlinks=False):
                continue
            age = now_ns - item.stat(follow_symlinks=False).st_mtime_ns
        except FileNotFoundError:  # its writer finished meanwhile
            continue
        if age <= DEAD_WRITER_AGE_NS:
            continue
        pid = writer_pid(item.name)
        if age > ANY_WRITER_AGE_NS or (pid is not None and not alive(pid)):
            try:
                os.unlink(item.path)
            except FileNotFoundError:
                continue
            removed += 1
    return removed
