"""gRPC plumbing shared by every service: servers, channels and error translation.

A service core is a plain object whose snake_case methods take and return the tardis.v1
messages (an iterator of messages for a streamed side). ``core_handler`` exposes such a
core as a gRPC service without per-method code; ``RpcClient`` turns calls back into the
same Python interface, mapping status codes to the same TardisError classes.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from typing import Any, TypeVar

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from . import errors

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


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
    if isinstance(exc, errors.TardisError):
        context.set_trailing_metadata(((ERROR_KEY, type(exc).__name__),))
        context.abort(getattr(grpc.StatusCode, exc.grpc_code), str(exc))
    log.exception("internal error")
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


def _method_handler(core: Any, method: MethodDescriptor) -> grpc.RpcMethodHandler:
    impl: Callable[[Any], Any] = getattr(core, snake_case(method.name))
    request_cls = message_factory.GetMessageClass(method.input_type)
    reply_cls = message_factory.GetMessageClass(method.output_type)
    kwargs = {
        "request_deserializer": request_cls.FromString,
        "response_serializer": reply_cls.SerializeToString,
    }
    if method.server_streaming:

        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Message]:
            try:
                yield from impl(request)
            except Exception as exc:
                _abort(context, exc)

        if method.client_streaming:
            return grpc.stream_stream_rpc_method_handler(stream, **kwargs)
        return grpc.unary_stream_rpc_method_handler(stream, **kwargs)

    def unary(request: Any, context: grpc.ServicerContext) -> Message:
        try:
            return impl(request)  # type: ignore[no-any-return]
        except Exception as exc:
            _abort(context, exc)
            raise  # unreachable: abort raises

    if method.client_streaming:
        return grpc.stream_unary_rpc_method_handler(unary, **kwargs)
    return grpc.unary_unary_rpc_method_handler(unary, **kwargs)


def core_handler(service: ServiceDescriptor, core: Any) -> grpc.GenericRpcHandler:
    """A gRPC handler serving every method of ``service`` from ``core``."""
    handlers = {m.name: _method_handler(core, m) for m in service.methods}
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def make_server(address: str, handlers: Iterable[grpc.GenericRpcHandler], workers: int = 16) -> tuple[grpc.Server, int]:
    """Start a server on ``address``; returns it with the bound port (0 for Unix sockets)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers(tuple(handlers))
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        raise errors.Unavailable(f"cannot listen on {address}: address in use or not available") from None
    if port == 0 and not address.startswith("unix:"):
        raise errors.Unavailable(f"cannot listen on {address}")
    server.start()
    return server, port


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


def open_channel(address: str, timeout: float = CONNECT_TIMEOUT) -> grpc.Channel:
    """A channel to ``address`` that is known to be reachable, or Unavailable."""
    _probe(address, timeout)
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        raise errors.Unavailable(f"cannot reach server at {address}: no answer in {timeout:.0f} s") from None
    return channel


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

    def __init__(self, channel: grpc.Channel, stub: Any, timeout: float | None = None, compress: bool = False) -> None:
        self.channel = channel
        self._stub = stub
        self._timeout = timeout
        # Metadata batches compress well; object data is compressed already, so only unary
        # calls are compressed (the seed's CompressMsgs).
        self._compression = grpc.Compression.Gzip if compress else None

    def _unary(self, name: str, request: Any) -> Any:
        try:
            return getattr(self._stub, name)(request, timeout=self._timeout, compression=self._compression)
        except grpc.RpcError as exc:
            raise translate(exc) from None

    def _stream_in(self, name: str, requests: Iterator[Any]) -> Any:
        try:
            return getattr(self._stub, name)(requests)
        except grpc.RpcError as exc:
            raise translate(exc) from None

    def _stream_out(self, name: str, request: Any) -> Iterator[Any]:
        try:
            yield from getattr(self._stub, name)(request)
        except grpc.RpcError as exc:
            raise translate(exc) from None

    def close(self) -> None:
        self.channel.close()
