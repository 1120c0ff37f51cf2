"""tardisremote: the HTTP API (remote-http) served by gunicorn.

``tardisremote --config FILE`` reads the [Remote] section (with [Tardis] as defaults) and
runs gunicorn in this process: a master that binds the port and forks ``Workers`` workers
(threaded), each of which builds its own gRPC channels to the catalog and blobstore on its
first request. It prints ``tardisremote listening on HOST:PORT`` on stderr once ready.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from tardis_common import tls
from tardis_common.argparsing import given_options, make_parser
from tardis_common.errors import ConfigError, TardisError
from tardis_common.logsetup import setup_logging
from tardis_common.settings import RemoteSettings, load_remote_settings

PROG = "tardisremote"
log = logging.getLogger(PROG)


def parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Serve the Tardis HTTP API (remote-http) with gunicorn.")
    S = argparse.SUPPRESS
    p.add_argument("--config", "-c", default=S, help="configuration file ([Remote] section, [Tardis] as defaults)")
    p.add_argument("--port", "-p", type=int, default=S, help="port to listen on (default 7430; 0: any free port)")
    p.add_argument("--listen-address", default=S, dest="listen_address", help="address to bind (default 127.0.0.1)")
    p.add_argument("--basedir", "-b", default=S, help="directory of the server key and TLS files (BaseDir)")
    p.add_argument("--workers", "-w", type=int, default=S, help="gunicorn worker processes (default 2)")
    p.add_argument("--threads", type=int, default=S, help="threads per worker (default 8)")
    p.add_argument("--catalog", default=S, dest="catalog_address", help="catalog address (host:port or unix:PATH)")
    p.add_argument("--blobstore", default=S, dest="blobstore_address", help="blobstore address")
    p.add_argument("--service-secret-file", default=S, dest="service_secret_file", help="secret for those services")
    p.add_argument("--allow-anonymous", action="store_true", default=S, dest="allow_anonymous")
    p.add_argument("--admin-secret-file", default=S, dest="admin_secret_file", help="file holding the admin credential")
    p.add_argument("--server-key-file", default=S, dest="server_key_file", help="key sealing logins and tokens")
    p.add_argument("--ssl", action="store_true", default=S, help="serve HTTPS")
    p.add_argument("--certfile", default=S)
    p.add_argument("--keyfile", default=S)
    p.add_argument("--compress", action="store_true", default=S, help="gzip JSON replies when the client accepts it")
    p.add_argument("--cache", action="store_true", default=S, dest="allow_cache", help="send cache headers")
    p.add_argument("--daemon", "-D", action="store_true", default=S)
    p.add_argument("--user", default=S)
    p.add_argument("--group", default=S)
    p.add_argument("--pidfile", default=S)
    p.add_argument("--logfile", "-l", default=S)
    p.add_argument("-v", "--verbose", action="count", default=S)
    return p


def bind_address(settings: RemoteSettings) -> str:
    if settings.local:
        return f"unix:{settings.local}"
    host = settings.listen_address
    return f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"


def server_key(settings: RemoteSettings) -> bytes:
    from tardis_ingest.security import server_key_for

    if settings.server_key_file:
        return server_key_for(settings.server_key_file)
    if not settings.basedir.is_dir():
        raise ConfigError(f"BaseDir {settings.basedir} does not exist: give ServerKeyFile (shared with tardisd)")
    return server_key_for(None, settings.basedir)


def tls_files(settings: RemoteSettings, address: str) -> tuple[str | None, str | None, str | None]:
    """Certificate and key for HTTPS (made self-signed when missing), and a line for the operator.

    HTTPS when SSL is set or the address is not loopback, as every Tardis listener."""
    if address.startswith("unix:") or not (settings.ssl or not tls.is_loopback(address)):
        return None, None, None
    cert, key = settings.certfile, settings.keyfile
    if (cert is None) != (key is None):
        raise ConfigError("give both CertFile and KeyFile, or neither")
    if cert is None or key is None:
        where = settings.basedir / ".tardis-tls" if settings.basedir.is_dir() else Path("~/.config/tardis/tls")
        where = where.expanduser()
        cert, key = str(where / "remote.crt"), str(where / "remote.key")
    cert_pem, _key_pem, created = tls.ensure_server_certificate(cert, key, tls.host_names(address))
    how = "created a self-signed TLS certificate" if created else "TLS certificate"
    return cert, key, f"{how} {cert}, fingerprint {tls.fingerprint(cert_pem)}"


def _banner(server: Any) -> None:
    for listener in server.LISTENERS:
        name = listener.sock.getsockname()
        if isinstance(name, tuple):
            host, port = name[0], name[1]
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        else:
            shown = f"unix:{name}"
        print(f"{PROG} listening on {shown}", file=sys.stderr, flush=True)


def gunicorn_options(settings: RemoteSettings, address: str, cert: str | None, key: str | None) -> dict[str, Any]:
    level = ("warning", "info", "debug")[min(settings.verbose, 2)]
    options: dict[str, Any] = {
        "bind": [address],
        "workers": settings.workers,
        "worker_class": "gthread",
        "threads": settings.threads,
        "preload_app": False,
        "proc_name": PROG,
        "timeout": 300,
        "graceful_timeout": 10,
        "keepalive": 30,
        "loglevel": level,
        "errorlog": settings.logfile or "-",
        "daemon": settings.daemon,
        "when_ready": _banner,
        "umask": settings.umask,
        "limit_request_line": 8190,
    }
    if settings.verbose >= 2:
        options["accesslog"] = settings.logfile or "-"
    for name in ("user", "group", "pidfile"):
        if getattr(settings, name):
            options[name] = getattr(settings, name)
    if cert and key:
        options["certfile"], options["keyfile"] = cert, key
    return options


def _serve_metrics(settings: RemoteSettings, address: str, options: dict[str, Any]) -> str:
    """/metrics from the gunicorn master, summing every worker's counts (prometheus_client's
    multiprocess mode: a private directory set before any worker imports the metrics)."""
    directory = tempfile.mkdtemp(prefix="tardisremote-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from prometheus_client import multiprocess

    from tardis_common import metrics

    host = settings.metrics_address or metrics.metrics_host(address)
    try:
        port = metrics.serve_multiprocess(settings.metrics_port, host)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {host}:{settings.metrics_port}: {exc.strerror or exc}") from None

    def child_exit(_server: Any, worker: Any) -> None:
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

    options["child_exit"] = child_exit
    options["on_exit"] = lambda _server: shutil.rmtree(directory, ignore_errors=True)
    shown = f"[{host}]" if ":" in host else host
    return f"{PROG}: metrics on http://{shown}:{port}/metrics"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    given = given_options(args)
    config = given.pop("config", None)
    try:
        settings = load_remote_settings(given, config)
        setup_logging(PROG, verbose=settings.verbose, log_format=settings.log_format, filename=settings.logfile)
        key = server_key(settings)
        address = bind_address(settings)
        cert, keyfile, notice = tls_files(settings, address)
        secrets = {"AdminSecretFile": settings.admin_secret_file, "ServiceSecretFile": settings.service_secret_file}
        for name, path in secrets.items():
            if path and not os.path.isfile(path):
                raise ConfigError(f"{name} {path} does not exist")
    except (TardisError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    if notice:
        print(f"{PROG}: {notice}", file=sys.stderr, flush=True)
    for ignored in ("dbname", "allow_schema_upgrades"):
        if ignored in settings.model_fields_set:
            log.info("%s is the catalog service's setting; tardisremote does not open databases", ignored)
    options = gunicorn_options(settings, address, cert, keyfile)
    if settings.metrics_port:
        try:
            print(_serve_metrics(settings, address, options), file=sys.stderr, flush=True)
        except OSError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
    from .server import RemoteServer

    RemoteServer(settings, key, options).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
