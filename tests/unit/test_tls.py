"""Transport security plumbing: per-call guards, TLS servers and channels, pinning, service secrets.

Everything runs real gRPC servers on 127.0.0.1 with real certificates.
"""

from __future__ import annotations

import ipaddress
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import blobstore_pb2_grpc

from tardis_blobstore.client import BlobStoreClient
from tardis_blobstore.grpc_service import SERVICE
from tardis_common import errors, tls
from tardis_common.callctx import current_caller
from tardis_common.rpc import (
    ClientTLS,
    Guard,
    Metadata,
    RpcClient,
    ServerTLS,
    core_handler,
    make_server,
    open_channel,
    with_metadata,
)
from tardis_common.service_auth import (
    SERVICE_CALLER,
    SERVICE_SECRET_HEADER,
    internal_channel,
    internal_server_security,
    load_service_secret,
    service_guard,
    service_metadata,
)

WHO = "x-test-who"


@dataclass
class ProbeCore:
    """A BlobStoreService core that records who it sees as the caller at every step."""

    seen: list[tuple[str, object]] = field(default_factory=list)

    def stat_objects(self, request: bs.StatObjectsRequest) -> bs.StatObjectsReply:
        self.seen.append(("StatObjects", current_caller()))
        if request.client == "fail":
            raise errors.NotFound("no such thing")
        return bs.StatObjectsReply(stored_sizes=[len(request.object_ids)])

    def put_objects(self, requests: Iterator[bs.PutObjectsRequest]) -> bs.PutObjectsReply:
        count = sum(1 for _ in requests)
        self.seen.append(("PutObjects", current_caller()))
        return bs.PutObjectsReply(stored=count)

    def get_objects(self, request: bs.GetObjectsRequest) -> Iterator[bs.GetObjectsReply]:
        for object_id in request.object_ids:
            self.seen.append(("GetObjects", current_caller()))
            yield bs.GetObjectsReply(pieces=[bs.GetPiece(object_id=object_id, last=True)])
        self.seen.append(("GetObjects", current_caller()))

    def delete_objects(self, request: bs.DeleteObjectsRequest) -> bs.DeleteObjectsReply:
        raise RuntimeError("boom")


@dataclass
class Guarded:
    core: ProbeCore
    address: str
    methods: list[str]
    peers: list[str]


def who_guard(methods: list[str], peers: list[str]) -> Guard:
    def guard(method: str, context: grpc.ServicerContext) -> object:
        methods.append(method)
        peers.append(context.peer())
        who = dict(context.invocation_metadata()).get(WHO)
        if who is None:
            raise errors.Unauthenticated("who are you?")
        if who == "crash":
            raise ValueError("guard crashed")
        return f"caller:{who}"

    return guard


@pytest.fixture
def guarded() -> Iterator[Guarded]:
    core, methods, peers = ProbeCore(), list[str](), list[str]()
    server, port = make_server("127.0.0.1:0", [core_handler(SERVICE, core, who_guard(methods, peers))])
    try:
        yield Guarded(core, f"127.0.0.1:{port}", methods, peers)
    finally:
        server.stop(None).wait()


class MetadataClient(BlobStoreClient):
    """BlobStoreClient sending ``metadata()`` with every call (RpcClient's metadata hook)."""

    def __init__(self, channel: grpc.Channel, metadata: Metadata | None) -> None:
        stub = blobstore_pb2_grpc.BlobStoreServiceStub(channel)  # type: ignore[no-untyped-call]
        RpcClient.__init__(self, channel, stub, None, False, metadata)


def client_as(address: str, who: str | None) -> BlobStoreClient:
    return MetadataClient(open_channel(address), None if who is None else lambda: [(WHO, who)])


# --- guards ------------------------------------------------------------------------------------


def test_guard_caller_is_visible_in_unary_stream_in_and_every_stream_out_step(guarded: Guarded) -> None:
    client = client_as(guarded.address, "alice")
    try:
        assert list(client.stat_objects(bs.StatObjectsRequest(client="c", object_ids=[b"a"])).stored_sizes) == [1]
        assert client.put_objects([bs.PutObjectsRequest(client="c")] * 3).stored == 3
        replies = list(client.get_objects(bs.GetObjectsRequest(client="c", object_ids=[b"1", b"2", b"3"])))
        assert [r.pieces[0].object_id for r in replies] == [b"1", b"2", b"3"]
    finally:
        client.close()
    assert guarded.core.seen == [
        ("StatObjects", "caller:alice"),
        ("PutObjects", "caller:alice"),
        *[("GetObjects", "caller:alice")] * 4,
    ]
    assert guarded.methods == ["StatObjects", "PutObjects", "GetObjects"]
    assert all(peer.startswith("ipv4:127.0.0.1:") for peer in guarded.peers)
    assert current_caller() is None


def test_metadata_is_evaluated_per_call(guarded: Guarded) -> None:
    names = iter(["first", "second", "third"])
    client = MetadataClient(open_channel(guarded.address), lambda: [(WHO, next(names))])
    try:
        client.stat_objects(bs.StatObjectsRequest(client="c"))
        client.put_objects([bs.PutObjectsRequest(client="c")])
        list(client.get_objects(bs.GetObjectsRequest(client="c", object_ids=[b"1"])))
    finally:
        client.close()
    assert [caller for _, caller in guarded.core.seen] == [
        "caller:first",
        "caller:second",
        "caller:third",
        "caller:third",
    ]


def test_metadata_through_an_intercepted_channel(guarded: Guarded) -> None:
    client = BlobStoreClient(with_metadata(open_channel(guarded.address), lambda: [(WHO, "bob")]))
    try:
        client.stat_objects(bs.StatObjectsRequest(client="c"))
        client.put_objects([bs.PutObjectsRequest(client="c")])
        list(client.get_objects(bs.GetObjectsRequest(client="c", object_ids=[b"1"])))
    finally:
        client.close()
    assert {caller for _, caller in guarded.core.seen} == {"caller:bob"}


def test_guard_refusal_reaches_the_client_as_its_error_for_every_kind_of_call(guarded: Guarded) -> None:
    client = client_as(guarded.address, None)
    try:
        with pytest.raises(errors.Unauthenticated, match=r"^who are you\?$"):
            client.stat_objects(bs.StatObjectsRequest(client="c"))
        with pytest.raises(errors.Unauthenticated, match=r"^who are you\?$"):
            client.put_objects([bs.PutObjectsRequest(client="c")])
        with pytest.raises(errors.Unauthenticated, match=r"^who are you\?$"):
            list(client.get_objects(bs.GetObjectsRequest(client="c", object_ids=[b"1"])))
    finally:
        client.close()
    assert guarded.core.seen == []


def test_guard_crash_and_core_errors_keep_their_mapping(guarded: Guarded) -> None:
    crash = client_as(guarded.address, "crash")
    alice = client_as(guarded.address, "alice")
    try:
        with pytest.raises(errors.TardisError, match="internal error: ValueError: guard crashed"):
            crash.stat_objects(bs.StatObjectsRequest(client="c"))
        with pytest.raises(errors.NotFound, match=r"^no such thing$"):
            alice.stat_objects(bs.StatObjectsRequest(client="fail"))
        with pytest.raises(errors.TardisError, match="internal error: RuntimeError: boom"):
            alice.delete_objects(bs.DeleteObjectsRequest(client="c"))
    finally:
        crash.close()
        alice.close()


def test_no_guard_means_no_caller() -> None:
    core = ProbeCore()
    server, port = make_server("127.0.0.1:0", [core_handler(SERVICE, core)])
    client = BlobStoreClient(open_channel(f"127.0.0.1:{port}"))
    try:
        client.stat_objects(bs.StatObjectsRequest(client="c"))
        list(client.get_objects(bs.GetObjectsRequest(client="c", object_ids=[b"1"])))
    finally:
        client.close()
        server.stop(None).wait()
    assert [caller for _, caller in core.seen] == [None, None, None]


# --- certificates --------------------------------------------------------------------------------


def test_self_signed_certificate_is_made_once_with_the_names(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "tls" / "server.crt", tmp_path / "tls" / "server.key"
    cert_pem, key_pem, created = tls.ensure_server_certificate(
        str(cert_path), str(key_path), ["backup.example", "10.1.2.3"]
    )
    assert created
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"backup.example", "localhost"}
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 3650
    assert tls.ensure_server_certificate(str(cert_path), str(key_path), ["other"]) == (
        cert_pem,
        key_pem,
        False,
    )
    assert re.fullmatch(r"SHA256:[0-9a-f]{64}", tls.fingerprint(cert_pem))
    assert [p.name for p in cert_path.parent.iterdir() if p.name.startswith(".")] == []


def test_half_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "server.crt").write_text("x")
    with pytest.raises(errors.ConfigError, match=r"server.key is missing but .*server.crt exists"):
        tls.ensure_server_certificate(str(tmp_path / "server.crt"), str(tmp_path / "server.key"), ["h"])


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1:7420", True),
        ("[::1]:7420", True),
        ("localhost:7420", True),
        ("unix:/run/tardis.sock", True),
        ("0.0.0.0:7420", False),
        ("[::]:7420", False),
        ("10.0.0.1:7420", False),
        ("backup.example:7420", False),
    ],
)
def test_is_loopback(address: str, local: bool) -> None:
    assert tls.is_loopback(address) is local


# --- TLS servers and channels --------------------------------------------------------------------


@dataclass
class TLSServer:
    core: ProbeCore
    port: int
    cert_pem: bytes
    key_pem: bytes
    cert_file: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def serve_tls(tmp_path: Path, name: str, client_ca: bytes | None = None) -> tuple[grpc.Server, TLSServer]:
    cert_file = tmp_path / f"{name}.crt"
    cert_pem, key_pem, _ = tls.ensure_server_certificate(str(cert_file), str(tmp_path / f"{name}.key"), ["127.0.0.1"])
    core = ProbeCore()
    server, port = make_server(
        "127.0.0.1:0", [core_handler(SERVICE, core)], tls=ServerTLS(cert_pem, key_pem, client_ca)
    )
    return server, TLSServer(core, port, cert_pem, key_pem, cert_file)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TLSServer]:
    server, running = serve_tls(tmp_path, "server")
    try:
        yield running
    finally:
        server.stop(None).wait()


def stat_over(address: str, client_tls: ClientTLS | None) -> list[int]:
    client = BlobStoreClient(open_channel(address, tls=client_tls))
    try:
        return list(client.stat_objects(bs.StatObjectsRequest(client="c", object_ids=[b"a", b"b"])).stored_sizes)
    finally:
        client.close()


def test_fetch_offers_the_servers_certificate(tls_server: TLSServer) -> None:
    fetched = tls.fetch_server_certificate("127.0.0.1", tls_server.port, 5)
    assert tls.fingerprint(fetched) == tls.fingerprint(tls_server.cert_pem)


def test_trust_on_first_use_pins_then_matches(
    tls_server: TLSServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pins = tls.PinStore(tmp_path / "known_servers")
    with caplog.at_level("WARNING", logger="tardis_common.tls"):
        first = tls.client_tls_for("127.0.0.1", tls_server.port, ca_file=None, pins=pins, timeout=5)
    fp = tls.fingerprint(tls_server.cert_pem)
    assert f"pinned certificate of {tls_server.address}: {fp}" in caplog.text
    assert (tmp_path / "known_servers").read_text() == f"{tls_server.address} {fp}\n"
    assert stat.S_IMODE((tmp_path / "known_servers").stat().st_mode) == 0o600
    assert first.root_pem == tls_server.cert_pem and first.server_name == "localhost"
    assert stat_over(tls_server.address, first) == [2]
    caplog.clear()
    with caplog.at_level("WARNING", logger="tardis_common.tls"):
        again = tls.client_tls_for("127.0.0.1", tls_server.port, ca_file=None, pins=pins, timeout=5)
    assert "pinned" not in caplog.text
    assert pins.check(tls_server.address, tls_server.cert_pem) is False
    assert stat_over(tls_server.address, again) == [2]


def test_a_changed_certificate_is_refused_in_one_line(tls_server: TLSServer, tmp_path: Path) -> None:
    pins = tls.PinStore(tmp_path / "known_servers")
    old_pem, _ = tls.make_self_signed(["127.0.0.1"])
    assert pins.check(tls_server.address, old_pem) is True  # the address was known with another certificate
    old, new = tls.fingerprint(old_pem), tls.fingerprint(tls_server.cert_pem)
    with pytest.raises(errors.PermissionDenied) as refused:
        tls.client_tls_for("127.0.0.1", tls_server.port, ca_file=None, pins=pins, timeout=5)
    assert str(refused.value) == (
        f"the TLS certificate of {tls_server.address} has changed (pinned {old}, offered {new}); "
        f"if this is expected, delete its line from {tmp_path / 'known_servers'}"
    )


def test_pin_store_path_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARDIS_KNOWN_SERVERS", str(tmp_path / "pins"))
    assert tls.PinStore().path == tmp_path / "pins"
    monkeypatch.delenv("TARDIS_KNOWN_SERVERS")
    assert tls.PinStore().path == Path("~/.config/tardis/known_servers").expanduser()


def test_ca_file_verification(tls_server: TLSServer, tmp_path: Path) -> None:
    trusted = tls.client_tls_for("127.0.0.1", tls_server.port, ca_file=str(tls_server.cert_file), pins=None, timeout=5)
    assert trusted.server_name is None
    assert stat_over(tls_server.address, trusted) == [2]
    stranger_pem, _ = tls.make_self_signed(["127.0.0.1"])
    with pytest.raises(errors.Unavailable, match=f"^cannot connect to {tls_server.address}: the TLS handshake failed"):
        open_channel(tls_server.address, tls=ClientTLS(root_pem=stranger_pem))


def test_plain_client_against_a_tls_server_fails_fast_in_one_line(tls_server: TLSServer) -> None:
    started = time.monotonic()
    with pytest.raises(errors.Unavailable) as failed:
        open_channel(tls_server.address, timeout=20)
    assert time.monotonic() - started < 10
    message = str(failed.value)
    assert "\n" not in message and message.startswith(f"cannot connect to {tls_server.address}: ")
    assert "TLS" in message


def test_tls_client_against_a_plain_server_fails_in_one_line() -> None:
    server, port = make_server("127.0.0.1:0", [core_handler(SERVICE, ProbeCore())])
    try:
        with pytest.raises(errors.Unavailable, match=f"^cannot connect to 127.0.0.1:{port}: TLS handshake failed"):
            tls.fetch_server_certificate("127.0.0.1", port, 5)
        some_pem, _ = tls.make_self_signed(["127.0.0.1"])
        with pytest.raises(errors.Unavailable, match=f"^cannot connect to 127.0.0.1:{port}: the TLS handshake"):
            open_channel(f"127.0.0.1:{port}", timeout=20, tls=ClientTLS(root_pem=some_pem))
    finally:
        server.stop(None).wait()


def test_mutual_tls_refuses_a_client_without_a_certificate(tmp_path: Path) -> None:
    client_cert, client_key = tls.make_self_signed(["ingest"])
    server, running = serve_tls(tmp_path, "mtls", client_ca=client_cert)
    try:
        with pytest.raises(errors.Unavailable):
            stat_over(running.address, ClientTLS(root_pem=running.cert_pem))
        intruder_cert, intruder_key = tls.make_self_signed(["ingest"])
        with pytest.raises(errors.Unavailable):
            stat_over(running.address, ClientTLS(running.cert_pem, None, intruder_cert, intruder_key))
        assert stat_over(running.address, ClientTLS(running.cert_pem, None, client_cert, client_key)) == [2]
    finally:
        server.stop(None).wait()


def test_listener_tls_choices(tmp_path: Path) -> None:
    assert tls.listener_tls("127.0.0.1:0") == (None, None)
    made, line = tls.listener_tls("0.0.0.0:7420", tls_dir=tmp_path / "tls")
    assert made is not None and (tmp_path / "tls" / "server.crt").is_file()
    assert line == f"created a self-signed TLS certificate {tmp_path / 'tls' / 'server.crt'}, fingerprint " + (
        tls.fingerprint(made.cert_pem)
    )
    again, line = tls.listener_tls("0.0.0.0:7420", tls_dir=tmp_path / "tls")
    assert again == made and line is not None and line.startswith("TLS certificate ")
    with pytest.raises(errors.ConfigError, match="both --tls-cert and --tls-key"):
        tls.listener_tls("127.0.0.1:0", cert_file=str(tmp_path / "c"))


# --- the service secret --------------------------------------------------------------------------


def test_load_service_secret(tmp_path: Path) -> None:
    assert load_service_secret(None) is None
    (tmp_path / "secret").write_text("  s3cret  \nignored\n")
    assert load_service_secret(str(tmp_path / "secret")) == "s3cret"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(errors.ConfigError, match=r"service secret file .*empty is empty"):
        load_service_secret(str(tmp_path / "empty"))
    with pytest.raises(errors.ConfigError, match=r"cannot read the service secret file .*missing"):
        load_service_secret(str(tmp_path / "missing"))


def test_service_guard_demands_the_secret() -> None:
    core = ProbeCore()
    server, port = make_server("127.0.0.1:0", [core_handler(SERVICE, core, service_guard("right"))])
    address = f"127.0.0.1:{port}"
    refusal = "^this service accepts calls only from Tardis services: the service secret is missing or wrong$"
    try:
        for metadata in (None, service_metadata("wrong"), lambda: [(SERVICE_SECRET_HEADER, "")]):
            channel = open_channel(address)
            client = BlobStoreClient(with_metadata(channel, metadata) if metadata else channel)
            with pytest.raises(errors.Unauthenticated, match=refusal):
                client.stat_objects(bs.StatObjectsRequest(client="c"))
            client.close()
        client = BlobStoreClient(internal_channel(address, secret="right"))
        assert list(client.stat_objects(bs.StatObjectsRequest(client="c")).stored_sizes) == [0]
        client.close()
    finally:
        server.stop(None).wait()
    assert core.seen == [("StatObjects", SERVICE_CALLER)]


def test_internal_services_refuse_to_be_open_beyond_loopback(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match=r"^refusing to listen on 0.0.0.0:7421 without a service secret"):
        internal_server_security("0.0.0.0:7421", secret_file=None)
    assert internal_server_security("127.0.0.1:7421", secret_file=None) == (None, None, None)
    (tmp_path / "secret").write_text("s\n")
    guard, server_tls, notice = internal_server_security("0.0.0.0:7421", secret_file=str(tmp_path / "secret"))
    assert guard is not None and server_tls is None and notice is None
    ca, _ = tls.make_self_signed(["ingest"])
    (tmp_path / "ca.pem").write_bytes(ca)
    guard, server_tls, notice = internal_server_security(
        "0.0.0.0:7421",
        secret_file=None,
        cert_file=str(tmp_path / "s.crt"),
        key_file=str(tmp_path / "s.key"),
        client_ca_file=str(tmp_path / "ca.pem"),
    )
    assert guard is None and server_tls is not None and server_tls.client_ca_pem == ca and notice
