"""The internal services demand the service secret; TLS between and in front of the services.

Real catalog, blobstore and ingest processes on loopback (and one ingest on every interface).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import catalog_pb2 as cat

from helpers.services import Service, start, write_secret
from helpers.trees import assert_same_tree, make_tree
from tardis_blobstore.client import BlobStoreClient
from tardis_catalog.client import CatalogClient
from tardis_cli import backup, regenerate
from tardis_common import errors, tls
from tardis_common.rpc import open_channel
from tardis_common.service_auth import SERVICE_SECRET_ENV, internal_channel

REFUSAL = "this service accepts calls only from Tardis services: the service secret is missing or wrong"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[Service, Service, str]]:
    """catalog and blobstore demanding a fresh secret; yields them and the secret."""
    secret_file = write_secret(tmp_path / "service.secret")
    base = tmp_path / "base"
    base.mkdir()
    options = ("--listen", "127.0.0.1:0", "--basedir", str(base), "--service-secret-file", str(secret_file))
    catalog = start("tardis_catalog.main", *options)
    blobstore = start("tardis_blobstore.main", *options)
    try:
        yield catalog, blobstore, secret_file.read_text().strip()
    finally:
        assert catalog.stop() == 0
        assert blobstore.stop() == 0


def test_catalog_refuses_calls_without_the_secret(services: tuple[Service, Service, str]) -> None:
    catalog, _, secret = services
    for channel in (open_channel(catalog.address), internal_channel(catalog.address, secret="wrong")):
        client = CatalogClient(channel)
        with pytest.raises(errors.Unauthenticated) as refused:
            client.create_client(cat.ClientRequest(client="intruder"))
        assert str(refused.value) == REFUSAL
        client.close()
    client = CatalogClient(internal_channel(catalog.address, secret=secret))
    try:
        assert client.create_client(cat.ClientRequest(client="friend")).client == "friend"
        assert list(client.read_tree(cat.ReadTreeRequest(client="friend"))) is not None
    finally:
        client.close()


def test_blobstore_refuses_calls_without_the_secret(services: tuple[Service, Service, str]) -> None:
    _, blobstore, secret = services
    anonymous = BlobStoreClient(open_channel(blobstore.address))
    try:
        with pytest.raises(errors.Unauthenticated, match=f"^{REFUSAL}$"):
            anonymous.stat_objects(bs.StatObjectsRequest(client="c", object_ids=[b"0" * 64]))
        with pytest.raises(errors.Unauthenticated, match=f"^{REFUSAL}$"):
            list(anonymous.get_objects(bs.GetObjectsRequest(client="c", object_ids=[b"0" * 64])))
        with pytest.raises(errors.Unauthenticated, match=f"^{REFUSAL}$"):
            anonymous.put_objects([bs.PutObjectsRequest(client="c")])
    finally:
        anonymous.close()
    client = BlobStoreClient(internal_channel(blobstore.address, secret=secret))
    try:
        assert list(client.stat_objects(bs.StatObjectsRequest(client="c", object_ids=[b"0" * 64])).stored_sizes) == [-1]
    finally:
        client.close()


@pytest.mark.parametrize("module", ["tardis_catalog.main", "tardis_blobstore.main"])
def test_internal_services_refuse_to_start_open_to_the_network(module: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != SERVICE_SECRET_ENV}
    done = subprocess.run(
        [sys.executable, "-m", module, "--listen", "0.0.0.0:0", "--basedir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "refusing to listen on 0.0.0.0:0 without a service secret or a TLS client CA" in lines[0]


def test_ingest_reaches_tls_services_with_the_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret_file = write_secret(tmp_path / "service.secret")
    base = tmp_path / "base"
    base.mkdir()
    cert, key = tmp_path / "tls" / "internal.crt", tmp_path / "tls" / "internal.key"
    options = ("--listen", "127.0.0.1:0", "--basedir", str(base), "--service-secret-file", str(secret_file))
    tls_options = ("--tls-cert", str(cert), "--tls-key", str(key))
    catalog = start("tardis_catalog.main", *options, *tls_options)
    blobstore = start("tardis_blobstore.main", *options, *tls_options)  # the same certificate, loaded
    ingest = None
    try:
        fp = tls.fingerprint(cert.read_bytes())
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert catalog.preamble == [f"tardis-catalog: created a self-signed TLS certificate {cert}, fingerprint {fp}\n"]
        assert blobstore.preamble == [f"tardis-blobstore: TLS certificate {cert}, fingerprint {fp}\n"]
        with pytest.raises(errors.Unavailable, match=f"^cannot connect to {catalog.address}: "):
            open_channel(catalog.address)
        ingest = start(
            "tardis_ingest.main",
            "--listen",
            "127.0.0.1:0",
            "--catalog",
            catalog.address,
            "--blobstore",
            blobstore.address,
            "--allow-new-hosts",
            "--allow-anonymous",
            "--service-secret-file",
            str(secret_file),
            "--internal-ca",
            str(cert),
        )
        source = make_tree(tmp_path / "src", files=20)
        url = f"tardis://{ingest.address}/tls-client"
        assert backup.main(["--repository", url, "--create", str(source)]) == 0, capsys.readouterr().err
        out = tmp_path / "out"
        assert regenerate.main(["--repository", url, "-o", str(out), str(source)]) == 0, capsys.readouterr().err
        assert_same_tree(source, out / "src")
    finally:
        for service in (ingest, catalog, blobstore):
            if service is not None:
                service.stop()


def test_ingest_serves_tls_beyond_loopback_by_default(services: tuple[Service, Service, str], tmp_path: Path) -> None:
    catalog, blobstore, secret = services
    (tmp_path / "secret2").write_text(secret + "\n")
    ingest = start(
        "tardis_ingest.main",
        "--listen",
        "0.0.0.0:0",
        "--catalog",
        catalog.address,
        "--blobstore",
        blobstore.address,
        "--service-secret-file",
        str(tmp_path / "secret2"),
        "--tls-dir",
        str(tmp_path / "ingest-tls"),
    )
    try:
        cert_pem = (tmp_path / "ingest-tls" / "server.crt").read_bytes()
        fp = tls.fingerprint(cert_pem)
        assert any(line.endswith(f"fingerprint {fp}\n") for line in ingest.preamble), ingest.preamble
        port = int(ingest.address.rpartition(":")[2])
        with pytest.raises(errors.Unavailable, match=f"^cannot connect to 127.0.0.1:{port}: "):
            open_channel(f"127.0.0.1:{port}")
        pins = tls.PinStore(tmp_path / "known_servers")
        client_tls = tls.client_tls_for("127.0.0.1", port, ca_file=None, pins=pins, timeout=10)
        assert pins.pinned(f"127.0.0.1:{port}") == fp
        open_channel(f"127.0.0.1:{port}", tls=client_tls).close()
    finally:
        assert ingest.stop() == 0


def test_ingest_on_loopback_serves_tls_when_given_a_certificate(
    services: tuple[Service, Service, str], tmp_path: Path
) -> None:
    catalog, blobstore, _ = services
    cert = tmp_path / "ingest.crt"
    ingest = start(
        "tardis_ingest.main",
        "--listen",
        "127.0.0.1:0",
        "--catalog",
        catalog.address,
        "--blobstore",
        blobstore.address,
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(tmp_path / "ingest.key"),
    )
    try:
        trusted = tls.client_tls_for(
            "127.0.0.1", int(ingest.address.rpartition(":")[2]), ca_file=str(cert), pins=None, timeout=10
        )
        open_channel(ingest.address, tls=trusted).close()
    finally:
        assert ingest.stop() == 0
