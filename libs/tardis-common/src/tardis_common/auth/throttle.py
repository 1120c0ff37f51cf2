"""Slowing down password guessing with growing, capped delays (never a lockout).

Failures are counted per (client, source address): the first ``free_attempts`` in a row cost
nothing, then each further failure makes the next attempt wait ``base_delay_s``, doubling per
failure up to ``max_delay_s``. A success resets the count.

Failures are also counted per client across all sources with a higher threshold
(``client_free_attempts``, default 20), delayed the same way, so a guesser spreading its attempts
over many addresses is slowed too. A success from any source resets the client's count.
Counts with no failure for ``forget_after_s`` start afresh. Memory is bounded: past
``capacity`` entries per table the least recently failed are forgotten.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from tardis_common import errors
from tardis_common.clock import Clock

_NS = 1_000_000_000
K = TypeVar("K")


@dataclass
class _Failures:
    count: int
    last_ns: int


class _Table(Generic[K]):
    """Consecutive failures per key with the delay they impose (callers hold the lock)."""

    def __init__(self, free: int, base_ns: int, max_ns: int, forget_ns: int, capacity: int) -> None:
        self._free = free
        self._base_ns = base_ns
        self._max_ns = max_ns
        self._forget_ns = forget_ns
        self._capacity = capacity
        self._entries: OrderedDict[K, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def wait_ns(self, key: K, now: int) -> int:
        """How long ``key`` must still wait before its next attempt (0: go ahead)."""
        entry = self._current(key, now)
        if entry is None:
            return 0
        return max(0, entry.last_ns + self._delay_ns(entry.count) - now)

    def failed(self, key: K, now: int) -> None:
        entry = self._current(key, now)
        count = entry.count + 1 if entry else 1
        self._entries[key] = _Failures(count, now)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def reset(self, key: K) -> None:
        self._entries.pop(key, None)

    def _current(self, key: K, now: int) -> _Failures | None:
        entry = self._entries.get(key)
        if entry is not None and now - entry.last_ns >= self._forget_ns:
            del self._entries[key]
            return None
        return entry

    def _delay_ns(self, count: int) -> int:
        over = count - self._free
        if over <= 0:
            return 0
        if over > 62:
            return self._max_ns
        return min(self._max_ns, self._base_ns << (over - 1))


class LoginThrottle:
    """Failed-login delays keyed by (client, source address), plus per client (see module doc)."""

    def __init__(
        self,
        clock: Clock,
        free_attempts: int = 3,
        base_delay_s: float = 1.0,
        max_delay_s: float = 30.0,
        capacity: int = 10_000,
        client_free_attempts: int = 20,
        forget_after_s: float = 3600.0,
    ) -> None:
        self._clock = clock
        base_ns, max_ns = int(base_delay_s * _NS), int(max_delay_s * _NS)
        forget_ns = int(forget_after_s * _NS)
        self._pairs: _Table[tuple[str, str]] = _Table(free_attempts, base_ns, max_ns, forget_ns, capacity)
        self._clients: _Table[str] = _Table(client_free_attempts, base_ns, max_ns, forget_ns, capacity)
        self._lock = threading.Lock()

    def check(self, client: str, source: str) -> None:
        """Throttled if ``client`` may not try to log in from ``source`` yet."""
        now = self._clock.now_ns()
        with self._lock:
            pair_wait = self._pairs.wait_ns((client, source), now)
            client_wait = self._clients.wait_ns(client, now)
        if pair_wait >= client_wait and pair_wait > 0:
            wait = _seconds(pair_wait)
            raise errors.Throttled(_too_many(client, source, wait))
        if client_wait > 0:
            raise errors.Throttled(_too_many(client, "many addresses", _seconds(client_wait)))

    def failed(self, client: str, source: str) -> None:
        """Record a failed login (wrong password)."""
        now = self._clock.now_ns()
        with self._lock:
            self._pairs.failed((client, source), now)
            self._clients.failed(client, now)

    def succeeded(self, client: str, source: str) -> None:
        """Record a successful login: the counts for this source and this client start again."""
        with self._lock:
            self._pairs.reset((client, source))
            self._clients.reset(client)

    def tracked(self) -> tuple[int, int]:
        """(pairs, clients) currently remembered, for tests and metrics."""
        with self._lock:
            return len(self._pairs), len(self._clients)


def _too_many(client: str, source: str, wait_s: int) -> str:
    return f"too many failed logins for client {client} from {source}; try again in {wait_s} s"


def _seconds(ns: int) -> int:
    return max(1, math.ceil(ns / _NS))
