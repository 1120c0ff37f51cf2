"""Resource limits a server puts on each client (issue 8), as named settings.

| setting | what it bounds | default |
|---|---|---|
| ``ClientQuota`` (``TARDIS_CLIENT_QUOTA``) | bytes of objects one client may store (0: no quota) | 0 |
| ``MaxSessionsPerClient`` | calls one client may have in progress at ingest at once | 8 |
| ``MaxMessageBytes`` | size of one gRPC message a server accepts | 32 MiB |
| ``MaxEntriesPerBatch`` | entries in one SubmitEntries/CheckContent, files in one UploadContent | 10,000 |

Beyond a limit the server answers RESOURCE_EXHAUSTED (``errors.Throttled``) with one line
naming the setting; the tools print that line. A message over MaxMessageBytes is refused by
gRPC itself before it is read into memory, and with the batch limit this bounds what one
call of one client can make the server hold.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import Throttled

MiB = 1024 * 1024
DEFAULT_MAX_MESSAGE = 32 * MiB
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_SESSIONS = 8


@dataclass(frozen=True)
class Limits:
    client_quota: int = 0  # bytes; 0: none
    max_sessions_per_client: int = DEFAULT_MAX_SESSIONS  # 0: none
    max_message_bytes: int = DEFAULT_MAX_MESSAGE
    max_entries_per_batch: int = DEFAULT_MAX_ENTRIES  # 0: none

    def check_batch(self, count: int, what: str = "entries in one batch") -> None:
        """Throttled when ``count`` exceeds MaxEntriesPerBatch."""
        if self.max_entries_per_batch and count > self.max_entries_per_batch:
            raise Throttled(f"too many {what}: {count} > {self.max_entries_per_batch} (MaxEntriesPerBatch)")


def quota_exceeded(client: str, quota: int) -> Throttled:
    return Throttled(f"client {client} is over its storage quota of {quota} bytes (ClientQuota)")


class CallSlots:
    """Counts the calls each client has in progress; ``hold`` refuses one beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}

    def in_use(self, client: str) -> int:
        with self._lock:
            return self._busy.get(client, 0)

    def acquire(self, client: str) -> None:
        with self._lock:
            busy = self._busy.get(client, 0)
            if self.limit and busy >= self.limit:
                raise Throttled(
                    f"client {client} already has {busy} calls in progress; at most {self.limit} (MaxSessionsPerClient)"
                )
            self._busy[client] = busy + 1

    def release(self, client: str) -> None:
        with self._lock:
            left = self._busy.get(client, 0) - 1
            if left > 0:
                self._busy[client] = left
            else:
                self._busy.pop(client, None)

    @contextmanager
    def hold(self, client: str) -> Iterator[None]:
        self.acquire(client)
        try:
            yield
        finally:
            self.release(client)
