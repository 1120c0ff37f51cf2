"""The Flask application: the routes of ``tardis_common.http_api`` over an Ingest core.

Every request is shown to the same guard the gRPC adapter uses (a session token or the
admin secret becomes the caller), and the core runs inside a context holding that caller,
so IngestCore's own authorisation decides, as it does for tardis://. Data routes refuse
anonymous callers unless the server allows them (AllowAnonymous).
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, request
from google.protobuf.message import Message
from tardis.v1 import blobstore_pb2 as bs
from werkzeug.exceptions import HTTPException

from tardis_common import errors, http_api
from tardis_common.auth.roles import ANONYMOUS
from tardis_common.callctx import CURRENT_CALLER
from tardis_common.http_api import Route
from tardis_common.version import __version__

log = logging.getLogger(__name__)

Guard = Callable[[str, Any], Any]
GZIP_MIN = 1024
CHUNK = 1 << 20


@dataclass(frozen=True)
class Options:
    allow_anonymous: bool = False
    compress: bool = False
    allow_cache: bool = False
    max_request: int = http_api.MAX_BODY
    metrics: bool = False  # count requests (tardis_http_*); tardis_common.metrics is imported only then


class Backend:
    """The Ingest core and guard of this worker process, built on first use: after gunicorn
    forked, so no gRPC channel is ever shared across a fork."""

    def __init__(self, build: Callable[[], tuple[Any, Guard]]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._built: tuple[Any, Guard] | None = None

    def get(self) -> tuple[Any, Guard]:
        if self._built is None:
            with self._lock:
                if self._built is None:
                    self._built = self._build()
        return self._built


class _CallContext:
    """What ``tardis_ingest.grpc_service.ingest_guard`` reads of a gRPC call, from an HTTP request."""

    def __init__(self) -> None:
        self._metadata = [(k.lower(), v) for k, v in request.headers.items()]
        addr = request.remote_addr or ""
        self._peer = f"ipv6:[{addr}]:0" if ":" in addr else f"ipv4:{addr}:0"

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self._metadata

    def peer(self) -> str:
        return self._peer


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status, headers, mimetype="application/json")


def error_response(exc: errors.TardisError, **more: Any) -> Response:
    status = http_api.status_of(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="tardis"'} if status == 401 else None
    return _json(http_api.error_body(type(exc).__name__, str(exc), **more), status, headers)


def _accepts_gzip() -> bool:
    return "gzip" in request.accept_encodings


class _GzipStream:
    """gzip of a stream of chunks, each flushed so a reader sees every message at once."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(6, zlib.DEFLATED, 31)

    def feed(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def end(self) -> bytes:
        return self._z.flush()


def create_app(backend: Backend, options: Options) -> Flask:
    app = Flask("tardis_remote")
    app.config["MAX_CONTENT_LENGTH"] = options.max_request
    routes: dict[str, Route] = {}
    for route in http_api.ROUTES:
        endpoint = f"{route.method}_{route.http.lower()}"
        routes[endpoint] = route
        rule = route.template.replace("{", "<").replace("}", ">")
        app.add_url_rule(rule, endpoint, _view(route, backend, options), methods=[route.http])

    spec = json.dumps(http_api.openapi(__version__))

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok", "version": __version__})

    @app.get("/openapi.json")
    def openapi() -> Response:
        return Response(spec, mimetype="application/json")

    if options.metrics:
        _count_requests(app, routes)

    @app.before_request
    def admit() -> Response | None:
        route = routes.get(request.endpoint or "")
        if route is None:
            return None
        _core, guard = backend.get()
        identity = guard(route.rpc, _CallContext())
        if not route.public and identity.caller == ANONYMOUS and not options.allow_anonymous:
            raise errors.Unauthenticated("this call needs a login: send Authorization: Bearer <session token>")
        g.identity = identity
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        if "Cache-Control" not in response.headers:
            cacheable = options.allow_cache and request.method == "GET" and response.status_code < 300
            response.headers["Cache-Control"] = "private, max-age=300" if cacheable else "no-store"
        if (
            options.compress
            and not response.is_streamed
            and response.mimetype == "application/json"
            and "Content-Encoding" not in response.headers
            and _accepts_gzip()
        ):
            data = response.get_data()
            if len(data) >= GZIP_MIN:
                response.set_data(_gzip(data))
                response.headers["Content-Encoding"] = "gzip"
            response.vary.add("Accept-Encoding")
        return response

    @app.errorhandler(errors.TardisError)
    def tardis_error(exc: errors.TardisError) -> Response:
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        cls = http_api.BY_STATUS.get(status, errors.InvalidArgument if status < 500 else errors.TardisError)
        message = exc.description or exc.name
        if status == 404:
            message = f"no such endpoint: {request.method} {request.path}"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif status == 413:
            message = f"request too large (at most {options.max_request} bytes)"
        body = http_api.error_body(cls.__name__, " ".join(str(message).split()))
        return _json(body, status)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        log.exception("internal error in %s %s", request.method, request.path)
        return _json(http_api.error_body("TardisError", f"internal error: {type(exc).__name__}"), 500)

    return app


def _gzip(data: bytes) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    return z.compress(data) + z.flush()


def _count_requests(app: Flask, routes: dict[str, Route]) -> None:
    """tardis_http_requests_total and tardis_http_duration_seconds, by route template."""
    from tardis_common import metrics

    @app.before_request
    def start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def count(response: Response) -> Response:
        route = routes.get(request.endpoint or "")
        name = route.template if route is not None else (request.url_rule.rule if request.url_rule else "other")
        metrics.HTTP_REQUESTS.labels(name, request.method, str(response.status_code)).inc()
        started = g.get("started")
        if started is not None:
            metrics.HTTP_DURATION.labels(name).observe(time.perf_counter() - started)
        return response


def _view(route: Route, backend: Backend, options: Options) -> Callable[..., Response]:
    def view(**path_values: str) -> Response:
        core, _guard = backend.get()
        message = http_api.build_request(route, path_values, request.args.to_dict(flat=False), request.get_data())
        ctx = contextvars.copy_context()
        ctx.run(CURRENT_CALLER.set, g.identity)
        if route.kind == "raw":
            return _raw_object(core, ctx, message, options)  # type: ignore[arg-type]
        impl = getattr(core, route.method)
        if route.kind == "json":
            reply = ctx.run(impl, message)
            if route.extra.get("not_found_when_absent") and not reply.found:
                return error_response(errors.NotFound("no such path in this set"), reason="path")
            return _json(http_api.message_to_json(reply))
        replies: Iterator[Message] = ctx.run(lambda: iter(impl(message)))
        first = ctx.run(next, replies, None)  # errors before the first message get their status
        if route.kind == "ndjson":
            return _ndjson(ctx, first, replies, options)
        return _frames(ctx, first, replies)

    view.__name__ = f"{route.method}_{route.http.lower()}"
    return view


def _pull(ctx: contextvars.Context, first: Message | None, replies: Iterator[Message]) -> Iterator[Message]:
    """The replies, each produced inside the call's context (the generator runs after the view)."""
    try:
        if first is None:
            return
        yield first
        while True:
            reply = ctx.run(next, replies, None)
            if reply is None:
                return
            yield reply
    finally:
        close = getattr(replies, "close", None)
        if close is not None:
            ctx.run(close)


def _stream_error(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, errors.TardisError):
        return http_api.error_body(type(exc).__name__, str(exc))
    log.exception("internal error while streaming")
    return http_api.error_body("TardisError", f"internal error: {type(exc).__name__}")


def _ndjson(ctx: contextvars.Context, first: Message | None, replies: Iterator[Message], options: Options) -> Response:
    gzip = _GzipStream() if options.compress and _accepts_gzip() else None

    def lines() -> Iterator[bytes]:
        try:
            for reply in _pull(ctx, first, replies):
                line = json.dumps(http_api.message_to_json(reply), separators=(",", ":")).encode() + b"\n"
                yield gzip.feed(line) if gzip else line
        except Exception as exc:
            line = json.dumps(_stream_error(exc)).encode() + b"\n"
            yield gzip.feed(line) if gzip else line
        if gzip:
            yield gzip.end()

    response = Response(lines(), mimetype=http_api.NDJSON)
    if gzip:
        response.headers["Content-Encoding"] = "gzip"
        response.vary.add("Accept-Encoding")
    return response


def _frames(ctx: contextvars.Context, first: Message | None, replies: Iterator[Message]) -> Response:
    def frames() -> Iterator[bytes]:
        try:
            for reply in _pull(ctx, first, replies):
                yield http_api.frame(http_api.FRAME_MESSAGE, reply.SerializeToString())
        except Exception as exc:
            yield http_api.frame(http_api.FRAME_ERROR, json.dumps(_stream_error(exc)).encode())

    return Response(frames(), mimetype=http_api.FRAMES)


def _raw_object(core: Any, ctx: contextvars.Context, message: bs.GetObjectsRequest, options: Options) -> Response:
    """One stored object file; a single byte range of it when asked (206)."""
    object_id = message.object_ids[0]
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{object_id.decode("utf-8", "replace")}"'}
    headers["Cache-Control"] = "private, max-age=31536000, immutable" if options.allow_cache else "no-store"
    status = 200
    if not message.signatures:
        stat = ctx.run(core.stat_objects, bs.StatObjectsRequest(client=message.client, object_ids=[object_id]))
        size = stat.stored_sizes[0]
        if size < 0:
            raise errors.NotFound("no such object")
        wanted = request.range
        if wanted is not None:
            span = wanted.range_for_length(size)
            if span is None and len(wanted.ranges) == 1:
                headers["Content-Range"] = f"bytes */{size}"
                body = http_api.error_body("InvalidArgument", f"range not satisfiable (the object has {size} bytes)")
                return _json(body, 416, headers)
            if span is not None:
                start, stop = span
                message.offset, message.length = start, stop - start
                headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
                status = 206
        headers["Content-Length"] = str(message.length if status == 206 else size)
    if request.method == "HEAD":
        return Response(iter(()), status, headers, mimetype="application/octet-stream")
    replies: Iterator[bs.GetObjectsReply] = ctx.run(lambda: iter(core.read_objects(message)))
    first = ctx.run(next, replies, None)
    if first is not None and any(p.missing for p in first.pieces):
        raise errors.NotFound("no such object")

    def data() -> Iterator[bytes]:
        for reply in _pull(ctx, first, replies):
            for piece in reply.pieces:
                if piece.data:
                    yield piece.data

    return Response(data(), status, headers, mimetype="application/octet-stream")
