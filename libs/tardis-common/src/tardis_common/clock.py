"""An injectable clock: cores read time only through one of these."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int: ...


class SystemClock:
    def now_ns(self) -> int:
        return time.time_ns()


class FixedClock:
    """A clock for tests: starts at ``start_ns`` and moves only when told to."""

    def __init__(self, start_ns: int) -> None:
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += int(seconds * 1_000_000_000)

    def set_ns(self, value: int) -> None:
        self._now = value
