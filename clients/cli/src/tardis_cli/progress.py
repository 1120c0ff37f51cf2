"""A one-line progress display for backups on a terminal: entries, files, bytes, rate."""

from __future__ import annotations

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
