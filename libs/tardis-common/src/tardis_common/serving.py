"""Running a gRPC server process until SIGTERM or SIGINT, then stopping it cleanly."""

from __future__ import annotations

import signal
import sys
import threading

import grpc

from .rpc import stop_server


def serve_until_signalled(server: grpc.Server, banner: str, grace: float = 5.0) -> int:
    """Print ``banner`` on stderr, wait for SIGTERM/SIGINT, stop the server (health checks
    turn NOT_SERVING first); returns 0."""
    stop = threading.Event()

    def _handler(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    print(banner, file=sys.stderr, flush=True)
    stop.wait()
    stop_server(server, grace)
    return 0


def display_address(address: str, port: int) -> str:
    """``address`` with a requested port 0 replaced by the port actually bound."""
    if address.startswith("unix:") or port == 0:
        return address
    host, _, _ = address.rpartition(":")
    return f"{host}:{port}"
