"""MaxSessionsPerClient at the network ingest: each client may have at most so many calls in
progress at once, so one client cannot hold every server thread (tardis_common.limits)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tardis_common.errors import TardisError
from tardis_common.limits import CallSlots

from .session import Session

# Streams whose reply is produced after the method returns: the slot is held until they end.
_STREAMING_OUT = frozenset({"read_tree", "read_objects", "list_objects", "find_entries"})
_UNLIMITED = frozenset({"hello", "login_start", "login_finish", "renew_token"})


def client_of(request: Any) -> str | None:
    """The client a request acts for: its ``client`` field, or its session's; None if neither."""
    client = getattr(request, "client", "")
    if client:
        return str(client)
    session = getattr(request, "session", "")
    if session:
        try:
            return Session.decode(session).client
        except TardisError:
            return None
    return None


class LimitedIngest:
    """Delegates every call to ``core``, holding one of the client's call slots meanwhile."""

    def __init__(self, core: Any, max_calls: int) -> None:
        self._core = core
        self.slots = CallSlots(max_calls)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._core, name)
        if name.startswith("_") or name in _UNLIMITED or not callable(target) or not self.slots.limit:
            return target
        if name == "upload_content":
            return self._upload(target)
        if name in _STREAMING_OUT:
            return self._stream(target)
        return self._unary(target)

    def _unary(self, call: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def limited(request: Any) -> Any:
            client = client_of(request)
            if client is None:
                return call(request)
            with self.slots.hold(client):
                return call(request)

        return limited

    def _stream(self, call: Callable[[Any], Iterator[Any]]) -> Callable[[Any], Iterator[Any]]:
        def limited(request: Any) -> Iterator[Any]:
            client = client_of(request)
            if client is None:
                return call(request)
            self.slots.acquire(client)
            try:
                replies = iter(call(request))
            except BaseException:
                self.slots.release(client)
                raise
            return self._released(replies, client)

        return limited

    def _released(self, replies: Iterator[Any], client: str) -> Iterator[Any]:
        try:
            yield from replies
        finally:
            self.slots.release(client)

    def _upload(self, call: Callable[[Iterable[Any]], Any]) -> Callable[[Iterable[Any]], Any]:
        def limited(requests: Iterable[Any]) -> Any:
            iterator = iter(requests)
            first = next(iterator, None)
            if first is None:
                return call(iter(()))
            client = client_of(first)

            def again() -> Iterator[Any]:
                yield first
                yield from iterator

            if client is None:
                return call(again())
            with self.slots.hold(client):
                return call(again())

        return limited
