"""The Prometheus metrics of the Tardis services, defined in one place, and their HTTP endpoint.

Only server processes import this module (prometheus_client costs ~50 ms to import, which
the client tools do not pay). Hot paths touch counters only, labelled by service, method,
status code or client: never by file or object.

| metric | type | labels |
|---|---|---|
| tardis_rpc_duration_seconds | histogram | service, method |
| tardis_rpc_requests_total | counter | service, method, code |
| tardis_rpc_errors_total | counter | service, method, code (every code but OK) |
| tardis_ingest_sessions_opened_total | counter | client |
| tardis_ingest_sessions_finished_total | counter | client |
| tardis_ingest_sessions_failed_total | counter | stage (open, entries, upload, finish) |
| tardis_ingest_files_received_total | counter | client |
| tardis_ingest_bytes_received_total | counter | client |
| tardis_ingest_logins_total | counter | result (success, failure) |
| tardis_ingest_sets_purged_total | counter | client |
| tardis_ingest_purged_bytes_total | counter | client |
| tardis_blobstore_objects_stored_total | counter | |
| tardis_blobstore_objects_deduplicated_total | counter | |
| tardis_blobstore_bytes_stored_total | counter | |
| tardis_last_complete_backup_timestamp_seconds | gauge | client (catalog: end of the newest complete set) |
| tardis_last_backup_bytes | gauge | client (bytes received by that set) |
| tardis_last_backup_files | gauge | client (files stored in full or as deltas by that set) |
| tardis_http_requests_total | counter | route, method, code (tardisremote) |
| tardis_http_duration_seconds | histogram | route (tardisremote) |

tardisremote runs several gunicorn workers: it sets PROMETHEUS_MULTIPROC_DIR before this
module is imported, and its master serves every worker's counts (``serve_multiprocess``).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

METRICS_PORT_ENV = "TARDIS_METRICS_PORT"
METRICS_ADDRESS_ENV = "TARDIS_METRICS_ADDRESS"

disable_created_metrics()  # no *_created series: they double the output and nothing here reads them

RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

RPC_DURATION = Histogram(
    "tardis_rpc_duration_seconds",
    "Time the server spent on a gRPC call, streams included",
    ["service", "method"],
    buckets=RPC_BUCKETS,
)
RPC_REQUESTS = Counter("tardis_rpc_requests", "gRPC calls handled, by status code", ["service", "method", "code"])
RPC_ERRORS = Counter(
    "tardis_rpc_errors", "gRPC calls that ended with a status other than OK", ["service", "method", "code"]
)

SESSIONS_OPENED = Counter("tardis_ingest_sessions_opened", "Backup sessions opened or resumed", ["client"])
SESSIONS_FINISHED = Counter("tardis_ingest_sessions_finished", "Backup sessions completed (set complete)", ["client"])
SESSIONS_FAILED = Counter("tardis_ingest_sessions_failed", "Backup session calls that failed, by stage", ["stage"])
FILES_RECEIVED = Counter("tardis_ingest_files_received", "Files whose content the ingest service received", ["client"])
BYTES_RECEIVED = Counter("tardis_ingest_bytes_received", "Object bytes the ingest service received", ["client"])
LOGINS = Counter("tardis_ingest_logins", "Password logins (SRP), by result", ["result"])
SETS_PURGED = Counter("tardis_ingest_sets_purged", "Backup sets removed by retention or purge", ["client"])
PURGED_BYTES = Counter("tardis_ingest_purged_bytes", "Object bytes freed by removing sets", ["client"])

OBJECTS_STORED = Counter("tardis_blobstore_objects_stored", "Objects written to the blob store")
OBJECTS_DEDUPLICATED = Counter("tardis_blobstore_objects_deduplicated", "Objects received that were already stored")
BYTES_STORED = Counter("tardis_blobstore_bytes_stored", "Bytes written to the blob store")


HTTP_REQUESTS = Counter("tardis_http_requests", "HTTP requests handled, by status code", ["route", "method", "code"])
HTTP_DURATION = Histogram(
    "tardis_http_duration_seconds",
    "Time tardisremote spent on a request, until the view returned",
    ["route"],
    buckets=RPC_BUCKETS,
)


def serve_multiprocess(port: int, address: str) -> int:
    """Serve /metrics aggregated over the processes that share PROMETHEUS_MULTIPROC_DIR."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server, _thread = start_http_server(port, addr=address, registry=registry)
    return int(server.server_port)


def init_ingest_series() -> None:
    """Create the ingest's labelled series at zero, so alerts on their rate see them from the start."""
    for stage in ("open", "entries", "upload", "finish"):
        SESSIONS_FAILED.labels(stage=stage)
    for result in ("success", "failure"):
        LOGINS.labels(result=result)


class RpcTimer:
    """Counts one call of ``service``/``method``: ``done(code)`` once, with the status code name."""

    __slots__ = ("_duration", "_method", "_service", "_start")

    def __init__(self, service: str, method: str, clock: Callable[[], float]) -> None:
        self._service, self._method, self._start = service, method, clock()
        self._duration = clock

    def done(self, code: str) -> None:
        RPC_DURATION.labels(self._service, self._method).observe(self._duration() - self._start)
        RPC_REQUESTS.labels(self._service, self._method, code).inc()
        if code != "OK":
            RPC_ERRORS.labels(self._service, self._method, code).inc()


# -- per-client freshness, computed from the catalog on each scrape -------------------------


class LastBackupCollector(Collector):
    """``tardis_last_complete_backup_timestamp_seconds`` and friends per client.

    ``clients()`` lists the client names; ``newest(client)`` returns the client's newest
    complete set (a tardis.v1 BackupSet) or None. Both run at scrape time, one cheap catalog
    query per client; a client that fails (being upgraded, unreadable) is left out and
    counted in ``tardis_catalog_scrape_errors``.
    """

    def __init__(self, clients: Callable[[], Iterable[str]], newest: Callable[[str], Any | None]) -> None:
        self._clients = clients
        self._newest = newest

    def describe(self) -> Iterable[Any]:
        return []  # collected lazily: nothing to check at registration

    def collect(self) -> Iterator[Any]:
        when = GaugeMetricFamily(
            "tardis_last_complete_backup_timestamp_seconds",
            "Unix time at which the newest complete backup set of the client was completed",
            labels=["client"],
        )
        size = GaugeMetricFamily(
            "tardis_last_backup_bytes", "Bytes received by the newest complete backup set", labels=["client"]
        )
        files = GaugeMetricFamily(
            "tardis_last_backup_files", "Files stored (full or delta) by the newest complete set", labels=["client"]
        )
        known = GaugeMetricFamily("tardis_clients", "Clients with a catalog on this server")
        errors = GaugeMetricFamily("tardis_catalog_scrape_errors", "Clients whose catalog could not be read")
        count = failed = 0
        for client in self._clients():
            count += 1
            try:
                found = self._newest(client)
            except Exception as exc:  # one bad catalog must not hide the others
                failed += 1
                log.debug("metrics: cannot read the sets of client %s: %s", client, exc)
                continue
            if found is None:
                continue
            when.add_metric([client], (found.end_time_ns or found.start_time_ns) / 1e9)
            size.add_metric([client], float(found.bytes_received))
            files.add_metric([client], float(found.files_full + found.files_delta))
        known.add_metric([], float(count))
        errors.add_metric([], float(failed))
        yield from (when, size, files, known, errors)


def newest_complete(sets: Sequence[Any]) -> Any | None:
    """The complete set with the highest id among ``sets`` (BackupSet messages), or None."""
    complete = [s for s in sets if s.completed]
    return max(complete, key=lambda s: s.id) if complete else None


def register_collector(collector: Collector) -> Collector:
    """Register ``collector`` in the default registry (the one /metrics serves)."""
    REGISTRY.register(collector)
    return collector


# -- the endpoint ----------------------------------------------------------------------------


def metrics_host(listen: str) -> str:
    """The host part of a service's listen address (loopback for a Unix socket)."""
    if listen.startswith("unix:"):
        return "127.0.0.1"
    host = listen.rpartition(":")[0] if ":" in listen else listen
    return host.strip("[]") or "0.0.0.0"


def start_metrics_server(port: int, address: str = "127.0.0.1") -> int:
    """Serve /metrics (the default registry) on ``address``:``port`` from a daemon thread;
    returns the port bound (useful with 0 when called directly). OSError when it cannot bind."""
    server, _thread = start_http_server(port, addr=address)
    return int(server.server_port)


def metrics_port(text: str) -> int:
    """A metrics port from the command line or environment: 0 (off) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid metrics port {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"metrics port {value} is not between 0 and 65535")
    return value


def add_metrics_options(parser: argparse.ArgumentParser) -> None:
    """--metrics-port and --metrics-address for a service's command line."""
    parser.add_argument(
        "--metrics-port",
        type=metrics_port,
        default=os.environ.get(METRICS_PORT_ENV) or "0",
        metavar="PORT",
        help=f"serve Prometheus metrics on PORT at /metrics (default ${METRICS_PORT_ENV}, else 0: off)",
    )
    parser.add_argument(
        "--metrics-address",
        default=os.environ.get(METRICS_ADDRESS_ENV) or None,
        metavar="HOST",
        help=f"address for the metrics port (default ${METRICS_ADDRESS_ENV}, else the host of --listen)",
    )


def serve_metrics(prog: str, port: int, address: str | None, listen: str) -> str | None:
    """Start the metrics endpoint of a service when ``port`` is not 0; returns a one-line
    notice for stderr ("metrics on http://...") or raises OSError with a readable message."""
    if not port:
        return None
    host = address or metrics_host(listen)
    try:
        bound = start_metrics_server(port, host)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    shown = f"[{host}]" if ":" in host else host
    return f"{prog}: metrics on http://{shown}:{bound}/metrics"
