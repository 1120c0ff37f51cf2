"""Dates as users type them: ISO 8601, or natural language through parsedatetime.

"2026-11-26", "2026-11-26 14:00", "2026-11-26T14:00:05.5+01:00", "3 days ago",
"yesterday 14:00", "03/15/2014", "now". Local time unless the text names an offset; a
date with no time of day keeps the current time of day (the original's behaviour, which
called ``time.mktime`` on parsedatetime's result). Times are nanoseconds since the epoch,
like the catalog's set start times.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime

import parsedatetime
from tardis.v1 import common_pb2 as common

from tardis_common.errors import InvalidArgument, NotFound


def parse_date(text: str, now: float | None = None) -> int:
    """``text`` as nanoseconds since the epoch; InvalidArgument when it is not a date."""
    stripped = text.strip()
    if not stripped:
        raise InvalidArgument("an empty date")
    try:
        return int(datetime.fromisoformat(stripped).timestamp() * 1e9)
    except ValueError:
        pass
    calendar = parsedatetime.Calendar(version=parsedatetime.VERSION_CONTEXT_STYLE)
    now = time.time() if now is None else now
    source = time.localtime(now)
    parsed, context = calendar.parse(stripped, sourceTime=source)
    if not context.hasDateOrTime:
        raise InvalidArgument(f"cannot understand the date {text!r}")
    ns = int(time.mktime(parsed)) * 1_000_000_000
    if parsed[3:6] == source[3:6]:
        # The time of day is now's ("now", "3 days ago"): keep now's fraction of a second too.
        ns += int((now % 1) * 1e9)
    return ns


def date_arg(text: str) -> int:
    """An argparse ``type``: a bad date is a usage error (exit 2)."""
    try:
        return parse_date(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def format_ns(ns: int) -> str:
    """``YYYY-MM-DD HH:MM:SS`` local time, ``-`` for 0."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9)) if ns else "-"


def set_at(sets: list[common.BackupSet], when_ns: int, text: str = "") -> common.BackupSet:
    """The newest complete set started at or before ``when_ns``."""
    found = [s for s in sets if s.completed and s.start_time_ns <= when_ns]
    if not found:
        shown = f"{text} ({format_ns(when_ns)})" if text else format_ns(when_ns)
        raise NotFound(f"no complete backup set started at or before {shown}")
    return max(found, key=lambda s: (s.start_time_ns, s.id))
