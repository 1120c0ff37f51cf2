"""Names of backup sets: the periodic names of the original Tardis, first free one wins."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

DEFAULT_FORMATS: tuple[str, ...] = ("Monthly-%Y-%m", "Weekly-%Y-%U", "Daily-%Y-%m-%d", "Hourly-%Y-%m-%d-%H")
DEFAULT_PRIORITIES: tuple[int, ...] = (40, 30, 20, 10)
DEFAULT_KEEP_DAYS: tuple[int, ...] = (0, 180, 30, 1)  # KeepPeriods; 0 = forever
FALLBACK_FORMAT = "Backup_%Y-%m-%d_%H:%M:%S"
FALLBACK_PRIORITY = 0
INCOMPLETE_PREFIX = "INCOMPLETE-"


def incomplete_name(session: str) -> str:
    return f"{INCOMPLETE_PREFIX}{session}"


def choose_name(
    time_ns: int,
    is_used: Callable[[str], bool],
    formats: Sequence[str] = DEFAULT_FORMATS,
    priorities: Sequence[int] = DEFAULT_PRIORITIES,
) -> tuple[str, int, int]:
    """The name, priority and format index of a set started at ``time_ns`` (local time).

    The first format whose name is free wins with its priority; when all are taken the
    fallback name (made unique with "_2", "_3", ...) gets priority 0 and index -1.
    """
    if len(formats) != len(priorities):
        raise ValueError("set name formats and priorities differ in length")
    moment = time.localtime(time_ns / 1_000_000_000)
    for index, (fmt, priority) in enumerate(zip(formats, priorities, strict=True)):
        name = time.strftime(fmt, moment)
        if not is_used(name):
            return name, priority, index
    base = time.strftime(FALLBACK_FORMAT, moment)
    name, n = base, 1
    while is_used(name):
        n += 1
        name = f"{base}_{n}"
    return name, FALLBACK_PRIORITY, -1
