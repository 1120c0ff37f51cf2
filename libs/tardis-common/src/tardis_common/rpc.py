"""gRPC plumbing shared by every service: servers, channels and error translation.

A service core is a plain object whose snake_case methods take and return the tardis.v1
messages (an iterator of messages for a streamed side). ``core_handler`` exposes such a
core as a gRPC service without per-method code; ``RpcClient`` turns calls back into the
same Python interface, mapping status codes to the same TardisError classes.
"""

from __future__ import annotations

import contextvars
import logging
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from . import errors
from .callctx import CURRENT_CALLER

log = logging.getLogger(__name__)

MAX_MESSAGE = 32 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
]
SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.so_reuseport", 0),
]
ERROR_KEY = "tardis-error"
CONNECT_TIMEOUT = 10.0

T = TypeVar("T")

Guard = Callable[[str, grpc.ServicerContext], object]
"""Called at the start of every call with the method name ("OpenSession") and the context;
raises a TardisError to refuse the call, else returns the caller (see callctx)."""

Metadata = Callable[[], Sequence[tuple[str, str]]]
"""Extra metadata for each call, evaluated per call (e.g. an authorization header)."""


@dataclass(frozen=True)
class ServerTLS:
    """A server's certificate and key (PEM); with ``client_ca_pem``, clients must show a
    certificate signed by that CA (mutual TLS)."""

    cert_pem: bytes
    key_pem: bytes
    client_ca_pem: bytes | None = None


@dataclass(frozen=True)
class ClientTLS:
    """Trust ``root_pem``; ``server_name`` is the name checked in the server's certificate
    instead of the host of the address; a client certificate for mutual TLS."""

    root_pem: bytes
    server_name: str | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
    if isinstance(exc, errors.TardisError):
        context.set_trailing_metadata(((ERROR_KEY, type(exc).__name__),))
        context.abort(getattr(grpc.StatusCode, exc.grpc_code), str(exc))
    log.exception("internal error")
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


def _code_of(exc: BaseException) -> str:
    """The status code name a call ending in ``exc`` reports (as ``_abort`` chooses it)."""
    if isinstance(exc, errors.TardisError):
        return str(exc.grpc_code)
    if isinstance(exc, GeneratorExit):
        return "CANCELLED"
    return "INTERNAL"


def _message_class(descriptor: Any) -> Any:
    """The generated class of a message type; protobuf before 4.22 (Debian's armhf package,
    used by the armv7 image) has no ``GetMessageClass``."""
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:
        return get(descriptor)
    return message_factory.MessageFactory().GetPrototype(descriptor)  # pragma: no cover - old protobuf


def _method_handler(
    core: Any, method: MethodDescriptor, guard: Guard | None, service: str = ""
) -> grpc.RpcMethodHandler:
    impl: Callable[[Any], Any] = getattr(core, snake_case(method.name))
    name = method.name
    from .metrics import RpcTimer  # servers only: the client tools never import prometheus_client

    clock = time.perf_counter
    request_cls = _message_class(method.input_type)
    reply_cls = _message_class(method.output_type)
    kwargs = {
        "request_deserializer": request_cls.FromString,
        "response_serializer": reply_cls.SerializeToString,
    }

    def admit(context: grpc.ServicerContext) -> contextvars.Context:
        """A context for the whole call, holding the caller the guard admitted."""
        ctx = contextvars.copy_context()
        if guard is not None:
            ctx.run(CURRENT_CALLER.set, guard(name, context))
        return ctx

    if method.server_streaming:

        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Message]:
            # grpc iterates this generator step by step after the behaviour returned, maybe
            # on several threads: run the core and each step inside the call's context.
            replies: Iterator[Message] | None = None
            timer = RpcTimer(service, name, clock)
            try:
                ctx = admit(context)
                replies = ctx.run(lambda: iter(impl(request)))
                while True:
                    try:
                        reply = ctx.run(next, replies)
                    except StopIteration:
                        timer.done("OK")
                        return
                    yield reply
            except GeneratorExit as exc:
                timer.done(_code_of(exc))
                close = getattr(replies, "close", None)
                if close is not None:
                    ctx.run(close)
                raise
            except Exception as exc:
                timer.done(_code_of(exc))
                _abort(context, exc)

        if method.client_streaming:
            return grpc.stream_stream_rpc_method_handler(stream, **kwargs)
        return grpc.unary_stream_rpc_method_handler(stream, **kwargs)

    def unary(request: Any, context: grpc.ServicerContext) -> Message:
        timer = RpcTimer(service, name, clock)
        try:
            reply = admit(context).run(impl, request)
        except Exception as exc:
            timer.done(_code_of(exc))
            _abort(context, exc)
            raise  # unreachable: abort raises
        timer.done("OK")
        return reply  # type: ignore[no-any-return]

    if method.client_streaming:
        return grpc.stream_unary_rpc_method_handler(unary, **kwargs)
    return grpc.unary_unary_rpc_method_handler(unary, **kwargs)


def core_handler(service: ServiceDescriptor, core: Any, guard: Guard | None = None) -> grpc.GenericRpcHandler:
    """A gRPC handler serving every method of ``service`` from ``core``.

    With a ``guard``, every call is first shown to it; its verdict is the call's
    ``callctx.current_caller()`` and a TardisError it raises refuses the call. Every call
    is counted in the RPC metrics (``tardis_common.metrics``) by method and status code.
    """
    handlers = {m.name: _method_handler(core, m, guard, service.full_name) for m in service.methods}
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


_HEALTH: weakref.WeakKeyDictionary[grpc.Server, Any] = weakref.WeakKeyDictionary()


def make_server(
    address: str,
    handlers: Iterable[grpc.GenericRpcHandler],
    workers: int = 16,
    *,
    tls: ServerTLS | None = None,
    health: bool = True,
    max_message: int | None = None,
) -> tuple[grpc.Server, int]:
    """Start a server on ``address`` (with TLS when given); returns it with the bound port
    (0 for Unix sockets).

    With ``health`` (the default) the server also answers the standard grpc.health.v1
    service, without any guard: SERVING for "" and each handler's service once started,
    NOT_SERVING from :func:`stop_server` on. ``max_message`` caps the size of a received
    message (MaxMessageBytes; gRPC refuses a larger one with RESOURCE_EXHAUSTED unread)."""
    from . import health as health_service

    options = list(SERVER_OPTIONS)
    if max_message is not None:
        options = [o for o in options if o[0] != "grpc.max_receive_message_length"]
        options.append(("grpc.max_receive_message_length", max_message))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=options)
    handlers = tuple(handlers)
    server.add_generic_rpc_handlers(handlers)
    state = health_service.add_health(server) if health else None
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            credentials = grpc.ssl_server_credentials(
                [(tls.key_pem, tls.cert_pem)],
                root_certificates=tls.client_ca_pem,
                require_client_auth=tls.client_ca_pem is not None,
            )
            port = server.add_secure_port(address, credentials)
    except RuntimeError:
        raise errors.Unavailable(f"cannot listen on {address}: address in use or not available") from None
    if port == 0 and not address.startswith("unix:"):
        raise errors.Unavailable(f"cannot listen on {address}")
    server.start()
    if state is not None:
        names = [h.service_name() for h in handlers if callable(getattr(h, "service_name", None))]
        health_service.set_serving(state, [n for n in names if n])
        _HEALTH[server] = state
    return server, port


def stop_server(server: grpc.Server, grace: float | None = 5.0) -> None:
    """Report NOT_SERVING on the health service, then stop ``server`` within ``grace`` seconds."""
    state = _HEALTH.pop(server, None)
    if state is not None:
        state.enter_graceful_shutdown()
    server.stop(grace).wait()


def _probe(address: str, timeout: float) -> None:
    """Fail fast with a clear message when nothing listens at a TCP address."""
    if address.startswith("unix:"):
        path = address[5:].lstrip("/")
        path = "/" + path if address[5:].startswith("/") else path
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: Any = path
    else:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        try:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except (socket.gaierror, ValueError) as exc:
            raise errors.Unavailable(f"cannot reach server at {address}: {exc}") from None
        family, _, _, _, target = infos[0]
        probe = socket.socket(family, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(target)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise errors.Unavailable(f"cannot reach server at {address}: {reason}") from None
    finally:
        probe.close()


def _ready_or_failed(channel: grpc.Channel, timeout: float) -> grpc.ChannelConnectivity | None:
    """The first READY or TRANSIENT_FAILURE state of ``channel`` within ``timeout``, or None."""
    seen: list[grpc.ChannelConnectivity] = []
    event = threading.Event()

    def watch(state: grpc.ChannelConnectivity) -> None:
        if state in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE) and not seen:
            seen.append(state)
            # Unsubscribe here, on grpc's delivery thread, as channel_ready_future does: doing it
            # from the caller's thread can leave a channel that hangs the interpreter's exit.
            channel.unsubscribe(watch)
            event.set()

    channel.subscribe(watch, try_to_connect=True)
    if not event.wait(timeout):
        channel.unsubscribe(watch)
    return seen[0] if seen else None


def open_channel(address: str, timeout: float = CONNECT_TIMEOUT, *, tls: ClientTLS | None = None) -> grpc.Channel:
    """A channel to ``address`` (over TLS when given) that is known to work, or Unavailable.

    The server is known to listen (a TCP probe passed), so a connection that fails at once
    is a failed handshake: TLS against a plain server or the reverse, a certificate that
    does not match, or a server that wants a client certificate.
    """
    _probe(address, timeout)
    if tls is None:
        channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        failure = "the connection handshake failed (does the server require TLS?)"
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.root_pem,
            private_key=tls.client_key_pem,
            certificate_chain=tls.client_cert_pem,
        )
        options: list[tuple[str, Any]] = list(CHANNEL_OPTIONS)
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        channel = grpc.secure_channel(address, credentials, options=options)
        failure = (
            "the TLS handshake failed (the server does not use TLS, its certificate is not trusted, "
            "or it wants a client certificate)"
        )
    state = _ready_or_failed(channel, timeout)
    if state is grpc.ChannelConnectivity.READY:
        return channel
    channel.close()
    if state is None:
        raise errors.Unavailable(f"cannot reach server at {address}: no answer in {timeout:.0f} s")
    raise errors.Unavailable(f"cannot connect to {address}: {failure}")


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Sequence[tuple[str, str]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        extra = [*(details.metadata or ()), *self._metadata()]
        return _CallDetails(  # type: ignore[return-value]
            details.method,
            details.timeout,
            extra,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: grpc.ClientCallDetails, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: grpc.ClientCallDetails, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def with_metadata(channel: grpc.Channel, metadata: Metadata) -> grpc.Channel:
    """``channel`` sending ``metadata()`` with every call, for clients built on a channel alone."""
    return grpc.intercept_channel(channel, _MetadataInterceptor(metadata))


def translate(exc: grpc.RpcError) -> errors.TardisError:
    """The TardisError a failed call stands for."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    name = None
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == ERROR_KEY:
            name = value
    if name and name in errors.BY_NAME:
        return errors.BY_NAME[name](details)
    if code is not None and code.name in errors.BY_CODE:
        cls = errors.BY_CODE[code.name]
        if code == grpc.StatusCode.UNAVAILABLE:
            return cls(f"server unavailable: {details}")
        return cls(details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.Unavailable("the server did not answer in time")
    return errors.TardisError(f"server error: {details}")


class RpcClient:
    """Base of the per-service gRPC clients: calls a stub method and translates errors."""

    def __init__(
        self,
        channel: grpc.Channel,
        stub: Any,
        timeout: float | None = None,
        compress: bool = False,
        metadata: Metadata | None = None,
    ) -> None:
        self.channel = channel
        self._stub = stub
        self._timeout = timeout
        self._metadata = metadata
        # Metadata batches compress well; object data is compressed already, so only unary
        # calls are compressed (the seed's CompressMsgs).
        self._compression = grpc.Compression.Gzip if compress else None

    def _call_metadata(self) -> list[tuple[str, str]] | None:
        return list(self._metadata()) if self._metadata is not None else None

    def _unary(self, name: str, request: Any) -> Any:
        try:
            return getattr(self._stub, name)(
                request, timeout=self._timeout, compression=self._compression, metadata=self._call_metadata()
            )
        except grpc.RpcError as exc:
            raise translate(exc) from None

    def _stream_in(self, name: str, requests: Iterator[Any]) -> Any:
        try:
            return getattr(self._stub, name)(requests, metadata=self._call_metadata())
        except grpc.RpcError as exc:
            raise translate(exc) from None

    def _stream_out(self, name: str, request: Any) -> Iterator[Any]:
        try:
            yield from getattr(self._stub, name)(request, metadata=self._call_metadata())
        except grpc.RpcError as exc:
            raise translate(exc) from None

    def close(self) -> None:
        self.channel.close()
