"""The standard gRPC health service (grpc.health.v1.Health) in every Tardis gRPC server.

It is served beside the service's own handler, outside ``core_handler``, so no guard sees
it: a probe needs no service secret, token or admin credential (with mutual TLS it still
needs a client certificate, as every call does). The overall status ("") and each served
service are SERVING once the server has started and NOT_SERVING from shutdown on.

grpcio-health-checking provides it (Check, Watch, List). Where that package cannot load
(its generated code checks protobuf >= 7.35, so Debian's armhf protobuf refuses it), a
Check-only servicer speaking the same two-field wire format takes its place.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, Protocol

import grpc

log = logging.getLogger(__name__)

SERVICE_NAME = "grpc.health.v1.Health"
SERVING, NOT_SERVING = 1, 2


class HealthState(Protocol):
    def set(self, service: str, status: Any) -> None: ...

    def enter_graceful_shutdown(self) -> None: ...


def encode_request(service: str) -> bytes:
    """A HealthCheckRequest: field 1, the service name."""
    data = service.encode()
    return (b"\x0a" + _varint(len(data)) + data) if data else b""


def decode_status(data: bytes) -> int:
    """The status (field 1, a varint) of a HealthCheckResponse; 0 (UNKNOWN) if absent."""
    status, pos = 0, 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            if field == 1:
                status = value
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError("malformed health response")
    return status


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated health message")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _decode_request(data: bytes) -> str:
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        if key & 7 != 2:
            raise ValueError("malformed health request")
        length, pos = _read_varint(data, pos)
        if key >> 3 == 1:
            return data[pos : pos + length].decode()
        pos += length
    return ""


class MinimalHealth:
    """Check only, without generated code: for when grpcio-health-checking cannot load."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: dict[str, int] = {}
        self._shutdown = False

    def set(self, service: str, status: Any) -> None:
        with self._lock:
            if not self._shutdown:
                self._status[service] = int(status)

    def enter_graceful_shutdown(self) -> None:
        with self._lock:
            self._shutdown = True
            self._status = {name: NOT_SERVING for name in self._status}

    def _check(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            status = self._status.get(_decode_request(request))
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return b"\x08" + _varint(status or 0)

    def handler(self) -> grpc.GenericRpcHandler:
        check = grpc.unary_unary_rpc_method_handler(self._check)  # bytes in, bytes out
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {"Check": check})


def add_health(server: grpc.Server, *, library: bool = True) -> HealthState:
    """Register the health service on ``server`` (before it starts); returns its state."""
    if library:
        try:
            from grpc_health.v1 import health, health_pb2_grpc

            servicer = health.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
            return servicer  # type: ignore[no-any-return]
        except Exception as exc:  # ImportError, or protobuf's VersionError under old runtimes
            log.info("grpcio-health-checking unusable (%s); serving Check only", exc)
    minimal = MinimalHealth()
    server.add_generic_rpc_handlers((minimal.handler(),))
    return minimal


def set_serving(state: HealthState, services: Iterable[str]) -> None:
    """Mark "" and every name in ``services`` as SERVING (the enum's value, 1, in both kinds)."""
    for name in ("", *services):
        state.set(name, SERVING)
