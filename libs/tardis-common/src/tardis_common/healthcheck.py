"""Health check for containers and probes: ``python3 -m tardis_common.healthcheck URL``.

Exits 0 when the server at URL answers as healthy, else prints one line and exits 1.
The same checks are also spelt ``healthcheck grpc HOST:PORT [--tls] [--service NAME]
[--timeout S]`` (or ``grpc unix:/PATH``) and ``healthcheck http URL [--timeout S]``.

- ``grpc://HOST:PORT`` or ``unix:/PATH``: the standard gRPC health service
  (``grpc.health.v1.Health/Check`` for the whole server) must answer SERVING.
- ``grpcs://HOST:PORT``: the same over TLS. The server's certificate is fetched and trusted
  for this one call: the check is about liveness on this host, not the server's identity.
- ``http://HOST:PORT/PATH`` or ``https://...``: a GET must answer 200 (certificate not checked).

A gRPC server without the health service (UNIMPLEMENTED) counts as alive: it accepted the
call. The service secret from ``$TARDIS_SERVICE_SECRET_FILE`` is sent when readable, so the
check also passes on services that guard every method.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # before grpc's first import: no C-core log lines

import grpc

from .health import decode_status, encode_request

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = 1
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
DEFAULT_TIMEOUT = 3.0


def _metadata() -> list[tuple[str, str]]:
    from .service_auth import SERVICE_SECRET_ENV, SERVICE_SECRET_HEADER

    path = os.environ.get(SERVICE_SECRET_ENV)
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as handle:
            secret = handle.readline().strip()
    except OSError:
        return []
    return [(SERVICE_SECRET_HEADER, secret)] if secret else []


def _channel(url: str, timeout: float) -> grpc.Channel:
    if url.startswith("unix:"):
        return grpc.insecure_channel(url)
    scheme, _, address = url.partition("://")
    if scheme == "grpc":
        return grpc.insecure_channel(address)
    from .tls import dns_names, fetch_server_certificate, split_address

    host, port = split_address(address)
    cert = fetch_server_certificate(host, port, timeout)
    names = dns_names(cert)
    options = [("grpc.ssl_target_name_override", names[0])] if names and host not in names else []
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=cert), options=options)


def check_grpc(url: str, timeout: float = DEFAULT_TIMEOUT, service: str = "") -> str | None:
    """None when healthy, else why not (one line); ``service`` "" is the whole server."""
    try:
        channel = _channel(url, timeout)
    except Exception as exc:  # unreachable TLS port, bad certificate: all mean "not healthy"
        return f"cannot reach {url}: {exc}"
    with channel:
        call = channel.unary_unary(HEALTH_CHECK, request_serializer=None, response_deserializer=None)
        try:
            reply = call(encode_request(service), timeout=timeout, metadata=_metadata())
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return None
            return f"{url}: {code.name if code else 'error'}: {exc.details() if hasattr(exc, 'details') else exc}"
    try:
        status = decode_status(reply)
    except ValueError as exc:
        return f"{url}: {exc}"
    where = f"{url} ({service})" if service else url
    return None if status == SERVING else f"{where}: {STATUS_NAMES.get(status, status)}"


def check_http(url: str, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as reply:
            return None if reply.status == 200 else f"{url}: HTTP {reply.status}"
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"cannot reach {url}: {exc}"


def check(url: str, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    if url.startswith(("http://", "https://")):
        return check_http(url, timeout)
    if url.startswith(("grpc://", "grpcs://", "unix:")):
        return check_grpc(url, timeout)
    return f"unsupported health check address {url} (grpc://, grpcs://, unix:, http://, https://)"


USAGE = (
    "usage: python3 -m tardis_common.healthcheck URL [TIMEOUT_SECONDS] | "
    "grpc HOST:PORT|unix:/PATH [--tls] [--service NAME] [--timeout S] | http URL [--timeout S]"
)


def _spelt_out(kind: str, rest: list[str]) -> int:
    """``grpc ADDRESS [options]`` or ``http URL [options]``."""
    import argparse

    from .argparsing import TardisArgumentParser

    parser = TardisArgumentParser(prog="healthcheck", usage=USAGE, add_help=False)
    parser.add_argument("target")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    if kind == "grpc":
        parser.add_argument("--tls", action="store_true", help="the server speaks TLS")
        parser.add_argument("--service", default="", help="a service name instead of the whole server")
    args: argparse.Namespace = parser.parse_args(rest)
    if kind == "http":
        problem = check_http(args.target, args.timeout)
    else:
        target = args.target
        if not target.startswith(("unix:", "grpc://", "grpcs://")):
            target = ("grpcs://" if args.tls else "grpc://") + target
        problem = check_grpc(target, args.timeout, args.service)
    if problem:
        print(f"healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("grpc", "http"):
        return _spelt_out(args[0], args[1:])
    if len(args) not in (1, 2):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        timeout = float(args[1]) if len(args) == 2 else DEFAULT_TIMEOUT
    except ValueError:
        print(f"healthcheck: timeout {args[1]} is not a number", file=sys.stderr)
        return 2
    problem = check(args[0], timeout)
    if problem:
        print(f"healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
