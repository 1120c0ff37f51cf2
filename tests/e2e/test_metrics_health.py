"""Operations: Prometheus metrics, the gRPC health service and structured logs of the real
services (issue 7), checked against real processes, real backups and real scrapes."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from helpers.services import Service, free_port, start, start_cluster, write_secret
from tardis_catalog.client import CatalogClient
from tardis_catalog.core import CatalogCore
from tardis_cli import backup
from tardis_common import errors, health, healthcheck
from tardis_common.logsetup import JsonFormatter, LogfmtFormatter, event
from tardis_common.rpc import make_server, open_channel, stop_server

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# -- helpers ---------------------------------------------------------------------------------


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of http://127.0.0.1:PORT/metrics, keyed by name and label set."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, line
        labels = frozenset(LABEL.findall(match.group(2) or ""))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sample ``name`` whose labels include ``labels`` (exactly one must match)."""
    wanted = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and wanted <= ls]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def healthcheck_cli(*args: str, secret: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m tardis_common.healthcheck ARGS``, without the service secret unless asked."""
    env = dict(os.environ)
    if not secret:
        env.pop("TARDIS_SERVICE_SECRET_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "tardis_common.healthcheck", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def make_files(root: Path, count: int, seed: int) -> Path:
    """``count`` files of distinct random content (so each is one new object)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / f"f{i}.bin").write_bytes(rng.randbytes(rng.randint(100, 40_000)))
    return root


def newest_complete(base: Path, client: str) -> common.BackupSet:
    core = CatalogCore(base)
    try:
        sets = [s for s in core.list_sets(cat.ClientRequest(client=client)).sets if s.completed]
    finally:
        core.close()
    return max(sets, key=lambda s: s.id)


def json_events(lines: list[str]) -> list[dict[str, object]]:
    """Every line parsed as one JSON object (each must be); the ones that are events."""
    records = [json.loads(line) for line in lines if line.strip()]
    for record in records:
        assert {"ts", "level", "logger"} <= record.keys(), record
    return [r for r in records if "event" in r]


# -- the distributed services ----------------------------------------------------------------


@pytest.fixture
def observed_cluster(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Service], dict[str, int]]]:
    """catalog, blobstore and ingest with a metrics port each, events logged as JSON."""
    base = tmp_path / "base"
    ports = {name: free_port() for name in ("catalog", "blobstore", "ingest")}
    extra = {name: ("--metrics-port", str(port), "-v", "--log-format", "json") for name, port in ports.items()}
    cluster = start_cluster(base, write_secret(tmp_path / "service.secret"), extra)
    services = {"catalog": cluster.catalog, "blobstore": cluster.blobstore, "ingest": cluster.ingest}
    try:
        yield base, services, ports
    finally:
        cluster.stop()


def test_metrics_count_a_real_backup(
    observed_cluster: tuple[Path, dict[str, Service], dict[str, int]], tmp_path: Path
) -> None:
    base, services, ports = observed_cluster
    for name, service in services.items():
        assert f"metrics on http://127.0.0.1:{ports[name]}/metrics" in "".join(service.preamble)
    url = f"tardis://{services['ingest'].address}/alice"
    source = make_files(tmp_path / "src", 12, seed=1)

    assert backup.main(["--repository", url, "--create", str(source)]) == 0
    first = newest_complete(base, "alice")
    ingest = scrape(ports["ingest"])
    assert value(ingest, "tardis_ingest_sessions_opened_total", client="alice") == 1
    assert value(ingest, "tardis_ingest_sessions_finished_total", client="alice") == 1
    assert first.files_full + first.files_delta == 12
    assert value(ingest, "tardis_ingest_files_received_total", client="alice") == 12
    assert value(ingest, "tardis_ingest_bytes_received_total", client="alice") == first.bytes_received > 0
    ok = value(ingest, "tardis_rpc_requests_total", service="tardis.v1.IngestService", method="OpenSession", code="OK")
    assert ok == 1
    assert value(ingest, "tardis_rpc_duration_seconds_count", method="UploadContent") >= 1
    assert value(ingest, "tardis_ingest_sessions_failed_total", stage="open") == 0

    blobstore = scrape(ports["blobstore"])
    assert value(blobstore, "tardis_blobstore_objects_stored_total") >= 12
    assert value(blobstore, "tardis_blobstore_bytes_stored_total") >= first.bytes_received
    calls = value(blobstore, "tardis_rpc_requests_total", method="PutObjects", code="OK")
    assert calls >= 1

    catalog = scrape(ports["catalog"])
    when = value(catalog, "tardis_last_complete_backup_timestamp_seconds", client="alice")
    assert when == pytest.approx(first.end_time_ns / 1e9, abs=1e-3)
    assert value(catalog, "tardis_last_backup_bytes", client="alice") == first.bytes_received
    assert value(catalog, "tardis_last_backup_files", client="alice") == 12
    assert value(catalog, "tardis_clients") == 1

    # A second run with one changed file moves the counters and the gauge to the new set.
    (source / "f3.bin").write_bytes(b"changed" * 1000)
    assert backup.main(["--repository", url, str(source)]) == 0
    second = newest_complete(base, "alice")
    assert second.id > first.id
    ingest = scrape(ports["ingest"])
    assert value(ingest, "tardis_ingest_sessions_finished_total", client="alice") == 2
    assert value(ingest, "tardis_ingest_files_received_total", client="alice") == 12 + second.files_full
    catalog = scrape(ports["catalog"])
    when = value(catalog, "tardis_last_complete_backup_timestamp_seconds", client="alice")
    assert when == pytest.approx(second.end_time_ns / 1e9, abs=1e-3)

    # A failing session call is counted as failed, and as an RPC error with its status code.
    assert backup.main(["--repository", f"tardis://{services['ingest'].address}/nobody", str(source)]) == 1
    ingest = scrape(ports["ingest"])
    assert value(ingest, "tardis_ingest_sessions_failed_total", stage="open") == 1
    assert value(ingest, "tardis_rpc_errors_total", method="OpenSession", code="NOT_FOUND") == 1

    # Every log line after the banner is one JSON object; the session events carry the numbers.
    code, lines = services["ingest"].stop_reading()
    assert code == 0
    events = json_events(lines)
    opened = [e for e in events if e["event"] == "session_opened"]
    finished = [e for e in events if e["event"] == "session_finished"]
    assert [e["client"] for e in opened] == ["alice", "alice"]
    assert [e["set_id"] for e in finished] == [first.id, second.id]
    assert finished[0]["files"] == 12 and finished[0]["bytes"] == first.bytes_received
    assert finished[0]["set_name"] == first.name and isinstance(finished[0]["duration_s"], float)
    assert all(e["prog"] == "tardis-ingest" for e in events)
    failed = [e for e in events if e["event"] == "session_failed"]
    assert [(e["client"], e["stage"], e["level"], e["error"]) for e in failed] == [
        ("nobody", "open", "warning", "NotFound")
    ]


def test_health_needs_no_service_secret(
    observed_cluster: tuple[Path, dict[str, Service], dict[str, int]],
) -> None:
    _base, services, ports = observed_cluster
    # The catalog refuses ordinary calls without the service secret...
    client = CatalogClient(open_channel(services["catalog"].address))
    with pytest.raises(errors.Unauthenticated):
        client.list_sets(cat.ClientRequest(client="alice"))
    client.close()
    # ...but its health service, and every other's, answers SERVING to anyone.
    for name, service in services.items():
        done = healthcheck_cli("grpc", service.address)
        assert done.returncode == 0, (name, done.stderr)
        assert done.stderr == ""
    full_names = {"catalog": "CatalogService", "blobstore": "BlobStoreService", "ingest": "IngestService"}
    for name, service in services.items():
        done = healthcheck_cli("grpc", service.address, "--service", f"tardis.v1.{full_names[name]}")
        assert done.returncode == 0, (name, done.stderr)
        assert healthcheck_cli(f"grpc://{service.address}").returncode == 0  # the URL spelling
    unknown = healthcheck_cli("grpc", services["catalog"].address, "--service", "no.such.Service")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1
    assert healthcheck_cli("http", f"http://127.0.0.1:{ports['blobstore']}/metrics").returncode == 0

    # Once a service is gone, the check fails with one line.
    address = services["blobstore"].address
    assert services["blobstore"].stop() == 0
    gone = healthcheck_cli("grpc", address, "--timeout", "2")
    assert gone.returncode == 1
    assert gone.stderr.startswith("healthcheck: ") and gone.stderr.count("\n") == 1


def test_tardisd_metrics_from_its_config_file(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    port = free_port()
    config = tmp_path / "tardisd.cfg"
    config.write_text(
        f"[Tardis]\nBaseDir = {base}\n\n[Daemon]\nPort = 0\nAllowNewHosts = True\nAllowAnonymous = True\n"
        f"MetricsPort = {port}\nLogFormat = json\nVerbose = 1\n"
    )
    daemon = start("tardis_ingest.tardisd", "--config", str(config))
    try:
        assert healthcheck_cli("grpc", daemon.address).returncode == 0
        source = make_files(tmp_path / "src", 5, seed=2)
        assert backup.main(["--repository", f"tardis://{daemon.address}/bob", "--create", str(source)]) == 0
        done = newest_complete(base, "bob")
        samples = scrape(port)
        assert value(samples, "tardis_ingest_files_received_total", client="bob") == 5
        assert value(samples, "tardis_blobstore_objects_stored_total") >= 5
        stamp = value(samples, "tardis_last_complete_backup_timestamp_seconds", client="bob")
        assert stamp == pytest.approx(done.end_time_ns / 1e9, abs=1e-3)
        assert value(samples, "tardis_last_backup_bytes", client="bob") == done.bytes_received
        # The example alert rules name metrics that exist (tardisd serves all of them).
        alerts = (Path(__file__).parents[2] / "deploy" / "prometheus" / "alerts.yaml").read_text()
        named = set(re.findall(r"\btardis_[a-z_]+", alerts))
        assert "tardis_last_complete_backup_timestamp_seconds" in named
        assert named <= {name for name, _ in samples}, named - {name for name, _ in samples}
    finally:
        code, lines = daemon.stop_reading()
    assert code == 0
    assert [e["client"] for e in json_events(lines) if e["event"] == "session_finished"] == ["bob"]


def test_metrics_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        program = [sys.executable, "-m", "tardis_blobstore.main", "--listen", "127.0.0.1:0"]
        done = subprocess.run(
            [*program, "--basedir", str(tmp_path), "--metrics-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr


# -- health service details, in process ------------------------------------------------------


def test_health_turns_not_serving_on_stop() -> None:
    """A Watch stream opened while serving sees NOT_SERVING when the server stops."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server, port = make_server("127.0.0.1:0", [])
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = health_pb2_grpc.HealthStub(channel)
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    stopping = threading.Thread(target=stop_server, args=(server, 30))
    stopping.start()  # waits up to its grace for the open Watch call
    try:
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        watch.cancel()  # the last call gone, the server stops at once
        stopping.join()
        channel.close()


def test_minimal_health_without_the_library() -> None:
    """The Check-only fallback (for runtimes grpcio-health-checking refuses) answers the same."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    state = health.add_health(server, library=False)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        health.set_serving(state, ["tardis.v1.Example"])
        assert healthcheck.check_grpc(f"grpc://127.0.0.1:{port}") is None
        assert healthcheck.check_grpc(f"grpc://127.0.0.1:{port}", service="tardis.v1.Example") is None
        assert "NOT_FOUND" in (healthcheck.check_grpc(f"grpc://127.0.0.1:{port}", service="other") or "")
        state.enter_graceful_shutdown()
        assert healthcheck.check_grpc(f"grpc://127.0.0.1:{port}") == f"grpc://127.0.0.1:{port}: NOT_SERVING"
    finally:
        server.stop(None)


# -- log line formats ------------------------------------------------------------------------


def _record(logger: logging.Logger, emit: object) -> logging.LogRecord:
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        emit()  # type: ignore[operator]
    finally:
        logger.removeHandler(handler)
    assert len(captured) == 1
    return captured[0]


def test_event_lines_as_logfmt_and_json() -> None:
    log = logging.getLogger("tardis-test-events")
    record = _record(
        log, lambda: event(log, "session_finished", client="alice", set_name="Daily 2025", files=3, sets=["a", "b"])
    )
    text = LogfmtFormatter("tardis-ingest").format(record)
    assert "\n" not in text
    pairs = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', text))
    assert pairs["event"] == "session_finished" and pairs["client"] == "alice"
    assert pairs["set_name"] == '"Daily 2025"' and pairs["files"] == "3" and pairs["sets"] == "a,b"
    assert pairs["level"] == "info" and pairs["prog"] == "tardis-ingest"
    parsed = json.loads(JsonFormatter("tardis-ingest").format(record))
    assert parsed["event"] == "session_finished" and parsed["files"] == 3 and parsed["sets"] == ["a", "b"]
    assert str(record.getMessage()) == 'session_finished client=alice set_name="Daily 2025" files=3 sets=a,b'

    def failing() -> None:
        try:
            raise ValueError("line one\nline two")
        except ValueError:
            log.exception("it broke")

    broken = _record(log, failing)
    for formatter in (LogfmtFormatter(), JsonFormatter()):
        line = formatter.format(broken)
        assert "\n" not in line and "line two" in line
