"""tardis_common.healthcheck against real servers: a gRPC health service, TLS, and /healthz."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from tardis_common import healthcheck, tls

SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"


def _health_handler(state: dict[str, bytes]) -> grpc.GenericRpcHandler:
    check = grpc.unary_unary_rpc_method_handler(lambda request, context: state["reply"])
    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": check})


def make_server(
    address: str, handlers: list[grpc.GenericRpcHandler], server_tls: tls.ServerTLS | None = None
) -> tuple[grpc.Server, int]:
    """A bare gRPC server with only ``handlers`` (no built-in health service)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(tuple(handlers))
    if server_tls is None:
        port = server.add_insecure_port(address)
    else:
        creds = grpc.ssl_server_credentials([(server_tls.key_pem, server_tls.cert_pem)])
        port = server.add_secure_port(address, creds)
    server.start()
    return server, port


@pytest.fixture
def health_server() -> Iterator[tuple[int, dict[str, bytes]]]:
    state = {"reply": SERVING}
    server, port = make_server("127.0.0.1:0", [_health_handler(state)])
    yield port, state
    server.stop(0).wait()


def test_grpc_serving_and_not_serving(health_server: tuple[int, dict[str, bytes]]) -> None:
    port, state = health_server
    assert healthcheck.check(f"grpc://127.0.0.1:{port}") is None
    state["reply"] = NOT_SERVING
    assert "NOT_SERVING" in (healthcheck.check(f"grpc://127.0.0.1:{port}") or "")


def test_grpc_nothing_listening() -> None:
    server, port = make_server("127.0.0.1:0", [])
    server.stop(0).wait()
    problem = healthcheck.check(f"grpc://127.0.0.1:{port}", timeout=1.0)
    assert problem is not None and "UNAVAILABLE" in problem


def test_grpcs_with_a_self_signed_certificate(tmp_path: Path) -> None:
    state = {"reply": SERVING}
    server_tls, _ = tls.listener_tls("127.0.0.1:0", tls_dir=tmp_path)
    server, port = make_server("127.0.0.1:0", [_health_handler(state)], server_tls)
    try:
        assert healthcheck.check(f"grpcs://127.0.0.1:{port}") is None
        # plain gRPC against a TLS port does not pass
        assert healthcheck.check(f"grpc://127.0.0.1:{port}", timeout=1.0) is not None
    finally:
        server.stop(0).wait()


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_http_healthz_and_cli_exit_codes() -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        assert healthcheck.check(f"{base}/healthz") is None
        assert "HTTP 503" in (healthcheck.check(f"{base}/other") or "")
        run = [sys.executable, "-m", "tardis_common.healthcheck"]
        assert subprocess.run([*run, f"{base}/healthz"], capture_output=True).returncode == 0
        bad = subprocess.run([*run, f"{base}/other"], capture_output=True, text=True)
        assert bad.returncode == 1 and bad.stderr.startswith("healthcheck: ")
        assert subprocess.run([*run, "ftp://x"], capture_output=True).returncode == 1
    finally:
        httpd.shutdown()
