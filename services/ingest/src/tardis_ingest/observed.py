"""An IngestCore as the network servers serve it: the same calls, counted in the metrics,
and a ``session_failed`` event (WARNING) for each session call that fails.

Only servers wrap their core (``network_ingest``); embedded tools use the core directly and
never load prometheus_client. Counters only, one update per call, never per file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import ingest_pb2 as ing

from tardis_common import metrics
from tardis_common.errors import Unauthenticated
from tardis_common.logsetup import event

log = logging.getLogger(__name__)


class ObservedIngest:
    """Delegates every call to ``core``; the session, upload, login and purge calls also
    update ``tardis_common.metrics``."""

    def __init__(self, core: Any) -> None:
        self._core = core
        metrics.init_ingest_series()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    def open_session(self, request: ing.OpenSessionRequest) -> ing.OpenSessionReply:
        try:
            reply = self._core.open_session(request)
        except Exception as exc:
            _failed("open", exc, client=request.client)
            raise
        metrics.SESSIONS_OPENED.labels(request.client).inc()
        return reply  # type: ignore[no-any-return]

    def submit_entries(self, request: ing.SubmitEntriesRequest) -> ing.SubmitEntriesReply:
        try:
            return self._core.submit_entries(request)  # type: ignore[no-any-return]
        except Exception as exc:
            _failed("entries", exc, session=request.session)
            raise

    def check_content(self, request: ing.SubmitEntriesRequest) -> ing.SubmitEntriesReply:
        try:
            return self._core.check_content(request)  # type: ignore[no-any-return]
        except Exception as exc:
            _failed("entries", exc, session=request.session)
            raise

    def upload_content(self, requests: Iterable[ing.UploadContentRequest]) -> ing.UploadContentReply:
        seen: list[str] = []

        def first_session(stream: Iterable[ing.UploadContentRequest]) -> Iterator[ing.UploadContentRequest]:
            for request in stream:
                if not seen:
                    seen.append(request.session)
                yield request

        try:
            reply = self._core.upload_content(first_session(requests))
        except Exception as exc:
            _failed("upload", exc, session=seen[0] if seen else "")
            raise
        client = _client_of(seen[0]) if seen else ""
        if client:
            metrics.FILES_RECEIVED.labels(client).inc(reply.files)
            metrics.BYTES_RECEIVED.labels(client).inc(reply.bytes)
        return reply  # type: ignore[no-any-return]

    def finish_session(self, request: ing.FinishSessionRequest) -> ing.FinishSessionReply:
        try:
            reply = self._core.finish_session(request)
        except Exception as exc:
            _failed("finish", exc, session=request.session)
            raise
        client = _client_of(request.session)
        metrics.SESSIONS_FINISHED.labels(client).inc()
        if reply.purged:
            metrics.SETS_PURGED.labels(client).inc(len(reply.purged))
            metrics.PURGED_BYTES.labels(client).inc(reply.bytes_freed)
        return reply  # type: ignore[no-any-return]

    def remove_sets(self, request: cat.RemoveSetsRequest) -> cat.ExpireSetsReply:
        reply = self._core.remove_sets(request)
        if reply.removed:
            metrics.SETS_PURGED.labels(request.client).inc(len(reply.removed))
            metrics.PURGED_BYTES.labels(request.client).inc(reply.orphan_bytes)
        return reply  # type: ignore[no-any-return]

    def login_finish(self, request: ing.LoginFinishRequest) -> ing.LoginFinishReply:
        try:
            reply = self._core.login_finish(request)
        except Unauthenticated:
            metrics.LOGINS.labels("failure").inc()
            raise
        metrics.LOGINS.labels("success").inc()
        return reply  # type: ignore[no-any-return]


def _failed(stage: str, exc: Exception, *, client: str = "", session: str = "") -> None:
    """Count a failed session call and log it; the client named by an unchecked request goes
    in the log line only, never in a metric label (a caller could invent any number of them)."""
    metrics.SESSIONS_FAILED.labels(stage).inc()
    parts = session.split("/", 4)
    fields: dict[str, Any] = {"client": client or _client_of(session) or "?", "stage": stage}
    if len(parts) == 5 and parts[1].isdigit():
        fields["set_id"] = int(parts[1])
    event(log, "session_failed", logging.WARNING, **fields, error=type(exc).__name__, reason=str(exc))


def _client_of(session: str) -> str:
    """The client named by a session id the core has accepted (see session.py), else ""."""
    parts = session.split("/", 4)
    return parts[4] if len(parts) == 5 else ""
