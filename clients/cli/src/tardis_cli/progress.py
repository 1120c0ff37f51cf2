"""A one-line progress display for backups on a terminal: entries, files, bytes, rate."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


class Estimate:
    """Counts what a backup will look at, on a thread of its own, for the time-left figure.

    It walks the same roots with ``os.scandir`` (no excludes: an upper bound) and warms the
    page cache for the real walk as it goes.
    """

    def __init__(self, roots: list[str]) -> None:
        self.entries = 0
        self.bytes = 0
        self.done = False
        self._thread = threading.Thread(target=self._count, args=(roots,), name="estimate", daemon=True)
        self._thread.start()

    def _count(self, roots: list[str]) -> None:
        stack = list(roots)
        while stack:
            try:
                with os.scandir(stack.pop()) as listing:
                    for entry in listing:
                        self.entries += 1
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                stack.append(entry.path)
                            elif entry.is_file(follow_symlinks=False):
                                self.bytes += entry.stat(follow_symlinks=False).st_size
                        except OSError:
                            continue
            except OSError:
                continue
        self.done = True


def time_left(done: float, total: float, elapsed: float) -> str:
    if done <= 0 or total <= 0:
        return ""
    share = min(done / total, 1.0)
    remaining = elapsed * (1 - share) / share
    return f"  {100 * share:.0f}%  {int(remaining // 60)}:{int(remaining % 60):02d} left"


class Progress:
    """Redraws ``line()`` on ``stream`` twice a second until stopped."""

    def __init__(self, line: Callable[[float], str], stream: TextIO = sys.stderr, interval: float = 0.5) -> None:
        self._line = line
        self._stream = stream
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._draw, name="progress", daemon=True)
        self._start = time.monotonic()

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._stream.write("\r\033[K")
        self._stream.flush()

    def _draw(self) -> None:
        while not self._stop.wait(self._interval):
            elapsed = max(time.monotonic() - self._start, 1e-3)
            self._stream.write("\r\033[K" + self._line(elapsed)[:200])
            self._stream.flush()
