"""SRP login over gRPC: wrong passwords, replays, token expiry, renewal and forgery, who may act
for whom, anonymous clients, throttling, and the verifier the catalog stores.

The servers are real gRPC servers on 127.0.0.1 serving an IngestCore built in this process on a
FixedClock, so time moves only when a test says so.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import srp._pysrp
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import ingest_pb2 as ing

from helpers.cli import one_line_error
from helpers.services import Service, start
from tardis_blobstore.core import BlobStoreCore
from tardis_catalog.core import CatalogCore
from tardis_cli import sonic
from tardis_cli.credentials import Unlocked, login, make_credentials
from tardis_cli.known_repos import KnownRepository
from tardis_common import tls
from tardis_common.auth.srp_login import GROUP, ClientLogin
from tardis_common.clock import FixedClock
from tardis_common.crypto.kdf import KdfParams, derive
from tardis_common.errors import PermissionDenied, Throttled, Unauthenticated
from tardis_common.rpc import make_server, open_channel
from tardis_common.version import PROTOCOL_VERSION, __version__
from tardis_ingest import grpc_service
from tardis_ingest.access import AccessPolicy
from tardis_ingest.client import IngestClient
from tardis_ingest.core import IngestCore

PASSWORD = b"correct horse battery staple"
START_NS = 1_700_000_000 * 1_000_000_000
LIFETIME_S = 60.0


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the CLI remembers about repositories stays in this test's directory."""
    monkeypatch.setenv("TARDIS_STATE_DIR", str(tmp_path / "state"))


class Bearer:
    """The metadata of an IngestClient: the session token set last, if any."""

    def __init__(self) -> None:
        self.token = ""

    def __call__(self) -> list[tuple[str, str]]:
        return [(grpc_service.TOKEN_HEADER, f"Bearer {self.token}")] if self.token else []


@dataclass
class Served:
    """An ingest server on 127.0.0.1 over its own catalog and blobstore."""

    core: IngestCore
    address: str
    clock: FixedClock
    known: KnownRepository
    _opened: list[IngestClient] = field(default_factory=list)

    def client(self, bearer: Bearer | None = None) -> IngestClient:
        opened = IngestClient(open_channel(self.address), metadata=bearer)
        self._opened.append(opened)
        return opened

    def url(self, client: str) -> str:
        return f"tardis://{self.address}/{client}"

    def create(self, client: str, password: bytes | None = PASSWORD) -> None:
        credentials = make_credentials(client, password, encrypt=False)[0] if password else None
        self.client().create_client(ing.CreateClientRequest(client=client, credentials=credentials))

    def login(self, client: str, password: bytes = PASSWORD) -> Unlocked:
        return login(self.client(), client, password, self.known)


@contextmanager
def serving(
    base: Path, clock: FixedClock, *, allow_anonymous: bool = False, catalog: CatalogCore | None = None
) -> Iterator[Served]:
    own = catalog is None
    catalog = catalog or CatalogCore(base, clock=clock)
    core = IngestCore(
        catalog,
        BlobStoreCore(base),
        clock=clock,
        access=AccessPolicy(trust_local=False, allow_anonymous=allow_anonymous, allow_new_clients=True),
        token_lifetime_s=LIFETIME_S,
    )
    guard = grpc_service.ingest_guard(core.logins.tokens.check, None)
    server, port = make_server("127.0.0.1:0", [grpc_service.handler(core, guard)])
    served = Served(core, f"127.0.0.1:{port}", clock, KnownRepository("test", base / "known.json"))
    try:
        yield served
    finally:
        for opened in served._opened:
            opened.close()
        server.stop(None)
        if own:
            catalog.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START_NS)


@pytest.fixture
def server(tmp_path: Path, clock: FixedClock) -> Iterator[Served]:
    """A server that allows new clients but not anonymous ones."""
    base = tmp_path / "base"
    base.mkdir()
    with serving(base, clock) as served:
        yield served


def sets_of(served: Served, client: str, token: str = "") -> list[str]:
    bearer = Bearer()
    bearer.token = token
    return [s.name for s in served.client(bearer).list_sets(cat.ClientRequest(client=client)).sets]


# -- passwords and handshakes ------------------------------------------------------------------


def test_wrong_password_is_refused(server: Served) -> None:
    server.create("alice")
    with pytest.raises(Unauthenticated, match=r"^wrong password for client alice$"):
        server.login("alice", b"not the password")
    assert server.login("alice").token


def test_wrong_password_is_one_line_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "server"
    base.mkdir()
    daemon = start("tardis_ingest.tardisd", "--basedir", str(base), "--port", "0", "--allow-new-hosts")
    try:
        url = f"tardis://{daemon.address}/alice"
        assert sonic.main(["create", "--repository", url, "-P", PASSWORD.decode()]) == 0
        capsys.readouterr()
        assert sonic.main(["list", "--repository", url, "-P", "not the password"]) == 1
        assert one_line_error(capsys) == "sonic: error: wrong password for client alice"
        assert sonic.main(["list", "--repository", url, "-P", PASSWORD.decode(), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == []
    finally:
        assert daemon.stop() == 0


def test_a_replayed_login_finish_is_refused(server: Served) -> None:
    server.create("alice")
    ingest = server.client()
    params = KdfParams.from_json(ingest.login_start(ing.LoginStartRequest(client="alice")).kdf_params)
    srp_client = ClientLogin("alice", derive(PASSWORD, params).auth_secret)
    started = ingest.login_start(ing.LoginStartRequest(client="alice", a=srp_client.start()))
    finish = ing.LoginFinishRequest(handshake=started.handshake, m=srp_client.respond(started.srp_salt, started.b))
    finished = ingest.login_finish(finish)
    srp_client.confirm(finished.hamk)
    with pytest.raises(Unauthenticated, match=r"^login handshake already used$"):
        ingest.login_finish(finish)


def test_a_login_handshake_expires(server: Served) -> None:
    server.create("alice")
    ingest = server.client()
    params = KdfParams.from_json(ingest.login_start(ing.LoginStartRequest(client="alice")).kdf_params)
    srp_client = ClientLogin("alice", derive(PASSWORD, params).auth_secret)
    started = ingest.login_start(ing.LoginStartRequest(client="alice", a=srp_client.start()))
    proof = srp_client.respond(started.srp_salt, started.b)
    server.clock.advance(61)  # handshakes live 60 s
    with pytest.raises(Unauthenticated, match=r"^login handshake expired; try again$"):
        ingest.login_finish(ing.LoginFinishRequest(handshake=started.handshake, m=proof))


# -- session tokens ----------------------------------------------------------------------------


def test_an_expired_token_is_refused(server: Served) -> None:
    server.create("alice")
    token = server.login("alice").token
    assert sets_of(server, "alice", token) == []
    server.clock.advance(LIFETIME_S - 1)
    assert sets_of(server, "alice", token) == []
    server.clock.advance(1)
    with pytest.raises(Unauthenticated, match=r"^session token expired; log in again$"):
        sets_of(server, "alice", token)
    with pytest.raises(Unauthenticated, match=r"^session token expired; log in again$"):
        server.client().renew_token(ing.RenewTokenRequest(token=token))


def test_a_renewed_token_outlives_the_first_expiry(server: Served) -> None:
    server.create("alice")
    first = server.login("alice").token
    renew = server.client().renew_token
    token = first
    for _ in range(5):  # renewed every 40 s: 200 s in all, past the first token's 60 s
        server.clock.advance(40)
        token = renew(ing.RenewTokenRequest(token=token)).token
        assert sets_of(server, "alice", token) == []
    with pytest.raises(Unauthenticated, match="expired"):
        sets_of(server, "alice", first)
    server.clock.advance(LIFETIME_S)  # not renewed any more: it expires in turn
    with pytest.raises(Unauthenticated, match="expired"):
        sets_of(server, "alice", token)


def _changed(token: str, position: int) -> str:
    blob = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    blob[position] ^= 0x01
    return base64.urlsafe_b64encode(bytes(blob)).rstrip(b"=").decode()


def test_forged_tokens_are_refused(server: Served, tmp_path: Path) -> None:
    server.create("alice")
    token = server.login("alice").token
    size = len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    forged = [
        secrets.token_urlsafe(96),
        "not a token at all",
        _changed(token, 0),  # the version byte
        _changed(token, 5),  # the nonce
        _changed(token, size // 2),  # the sealed body
        _changed(token, size - 1),  # the tag
    ]
    # A token sealed by another server (another server key) for the same client name.
    other_base = tmp_path / "other"
    other_base.mkdir()
    with serving(other_base, server.clock) as other:
        other.create("alice")
        forged.append(other.login("alice").token)
    for bad in forged:
        assert bad != token
        with pytest.raises(Unauthenticated, match=r"^invalid session token$"):
            sets_of(server, "alice", bad)
        with pytest.raises(Unauthenticated, match=r"^invalid session token$"):
            server.client().renew_token(ing.RenewTokenRequest(token=bad))
    basic = server.client(lambda: [(grpc_service.TOKEN_HEADER, f"Basic {token}")])
    with pytest.raises(Unauthenticated, match="expected a bearer session token"):
        basic.list_sets(cat.ClientRequest(client="alice"))
    assert sets_of(server, "alice", token) == []  # the real one still works


def test_a_token_of_one_client_does_not_act_for_another(server: Served) -> None:
    server.create("alice")
    server.create("bob", b"bob's own password")
    alice = server.login("alice").token
    with pytest.raises(PermissionDenied, match=r"^logged in as client alice; not allowed to act for client bob$"):
        sets_of(server, "bob", alice)
    bearer = Bearer()
    bearer.token = alice
    with pytest.raises(PermissionDenied, match="logged in as client alice"):
        server.client(bearer).get_client_config(cat.ClientRequest(client="bob"))
    assert sets_of(server, "bob", server.login("bob", b"bob's own password").token) == []


# -- anonymous clients ---------------------------------------------------------------------------


def test_a_passwordless_client_needs_allow_anonymous(
    tmp_path: Path, clock: FixedClock, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "base"
    base.mkdir()
    catalog = CatalogCore(base, clock=clock)
    try:
        with (
            serving(base, clock, catalog=catalog) as strict,
            serving(base, clock, catalog=catalog, allow_anonymous=True) as lax,
        ):
            with pytest.raises(Unauthenticated, match="does not allow clients without a password; cannot create open"):
                strict.create("open", None)
            lax.create("open", None)
            assert sets_of(lax, "open") == []
            refusal = "^client open must log in: this server does not allow clients without a password$"
            with pytest.raises(Unauthenticated, match=refusal):
                sets_of(strict, "open")
            capsys.readouterr()
            assert sonic.main(["list", "--repository", strict.url("open")]) == 1
            one_line_error(capsys, "client open must log in")
            assert sonic.main(["list", "--repository", lax.url("open"), "--json"]) == 0
            assert json.loads(capsys.readouterr().out) == []
    finally:
        catalog.close()


def test_a_password_client_needs_a_token_even_where_anonymous_is_allowed(tmp_path: Path, clock: FixedClock) -> None:
    base = tmp_path / "base"
    base.mkdir()
    with serving(base, clock, allow_anonymous=True) as lax:
        lax.create("alice")
        with pytest.raises(Unauthenticated, match=r"^client alice has a password: log in with it$"):
            sets_of(lax, "alice")
        with pytest.raises(Unauthenticated, match="has a password"):
            list(lax.client().read_tree(cat.ReadTreeRequest(client="alice")))
        opening = ing.OpenSessionRequest(client="alice", client_version=__version__, protocol_version=PROTOCOL_VERSION)
        with pytest.raises(Unauthenticated, match="has a password"):
            lax.client().open_session(opening)
        assert sets_of(lax, "alice", lax.login("alice").token) == []


# -- throttling ----------------------------------------------------------------------------------


def _throttled_for(served: Served, password: bytes = b"guess") -> int:
    """The wait in seconds a refused attempt names."""
    with pytest.raises(Throttled) as refused:
        served.login("alice", password)
    message = str(refused.value)
    prefix = "too many failed logins for client alice from 127.0.0.1; try again in "
    assert message.startswith(prefix) and message.endswith(" s"), message
    return int(message[len(prefix) : -2])


def test_failed_logins_are_slowed_never_locked_out(server: Served, capsys: pytest.CaptureFixture[str]) -> None:
    server.create("alice")
    # The throttle's documented policy: three failures in a row from one source cost nothing,
    # each further one makes the next attempt from there wait, doubling up to 30 s.
    for _ in range(4):
        with pytest.raises(Unauthenticated, match=r"^wrong password for client alice$"):
            server.login("alice", b"guess")
    waits = []
    for _ in range(7):
        wait = _throttled_for(server)
        assert _throttled_for(server, PASSWORD) == wait  # the right password waits too
        waits.append(wait)
        server.clock.advance(wait - 0.5)
        assert _throttled_for(server) == 1  # still refused half a second early
        server.clock.advance(0.5)
        with pytest.raises(Unauthenticated, match=r"^wrong password"):
            server.login("alice", b"guess")
    assert waits == [1, 2, 4, 8, 16, 30, 30]
    # From the command line the refusal is one line naming the wait.
    capsys.readouterr()
    assert sonic.main(["list", "--repository", server.url("alice"), "-P", PASSWORD.decode()]) == 1
    one_line_error(capsys, "too many failed logins for client alice", "try again in 30 s")
    server.clock.advance(30)
    token = server.login("alice").token  # the right password works once the delay passed
    assert sets_of(server, "alice", token) == []
    for _ in range(3):  # and the count started again
        with pytest.raises(Unauthenticated, match=r"^wrong password"):
            server.login("alice", b"guess")


# -- the verifier the catalog stores -----------------------------------------------------------


def _verifier_for(client: str, srp_password: str, salt: bytes) -> bytes:
    """The SRP-6a verifier g^x mod N for a given salt, as srp.create_salted_verification_key makes it."""
    n, g = srp._pysrp.get_ng(GROUP, None, None)
    x = srp._pysrp.gen_x(hashlib.sha256, salt, client, srp_password)
    return bytes(srp._pysrp.long_to_bytes(pow(g, x, n)))


def test_the_verifier_comes_from_the_kdf_not_the_password(tmp_path: Path) -> None:
    base = tmp_path / "repo"
    assert sonic.main(["create", "--repository", str(base / "vclient"), "-P", PASSWORD.decode()]) == 0
    catalog = CatalogCore(base)
    try:
        stored = catalog.get_credentials(cat.ClientRequest(client="vclient"))
    finally:
        catalog.close()
    assert stored.present and stored.srp_salt and stored.srp_verifier
    secret = derive(PASSWORD, KdfParams.from_json(stored.kdf_params)).auth_secret
    assert len(secret) == 32
    assert _verifier_for("vclient", secret.hex(), stored.srp_salt) == stored.srp_verifier
    assert _verifier_for("vclient", PASSWORD.decode(), stored.srp_salt) != stored.srp_verifier
    assert _verifier_for("vclient", secret.hex(), stored.srp_salt[::-1]) != stored.srp_verifier


# -- TLS by default beyond loopback ------------------------------------------------------------


def _own_address() -> str | None:
    """This machine's address on a non-loopback interface, if it has one (nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback or address == "0.0.0.0" else address


def _tardisd_on_every_interface(base: Path, port: int = 0) -> Service:
    return start(
        "tardis_ingest.tardisd",
        "--basedir",
        str(base),
        "--listen-address",
        "0.0.0.0",
        "--port",
        str(port),
        "--allow-new-hosts",
        "--allow-anonymous",
    )


def test_tls_by_default_pinned_on_first_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "server"
    base.mkdir()
    known = tmp_path / "known_servers"
    monkeypatch.setenv(tls.KNOWN_SERVERS_ENV, str(known))
    host = _own_address()
    if host is None:  # only loopback here: the client must be told to use TLS
        host = "127.0.0.1"
        monkeypatch.setenv("TARDIS_TLS", "on")
    cert = base / ".tardis-tls" / "server.crt"
    daemon = _tardisd_on_every_interface(base)
    try:
        first = tls.fingerprint(cert.read_bytes())
        assert f"tardisd: created a self-signed TLS certificate {cert}, fingerprint {first}\n" in daemon.preamble
        port = int(daemon.address.rpartition(":")[2])
        url = f"tardis://{host}:{port}/laptop"
        assert sonic.main(["create", "--repository", url]) == 0
        assert capsys.readouterr().out.startswith("created client laptop")
        assert known.read_text() == f"{host}:{port} {first}\n"
        assert sonic.main(["list", "--repository", url, "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == []
        # Without TLS the server cannot be used at all.
        with monkeypatch.context() as plain:
            plain.setenv("TARDIS_TLS", "off")
            assert sonic.main(["list", "--repository", url]) == 1
            one_line_error(capsys, "the connection handshake failed (does the server require TLS?)")
    finally:
        assert daemon.stop() == 0

    # The same address with another certificate: refused, one line naming both fingerprints.
    shutil.rmtree(base / ".tardis-tls")
    daemon = _tardisd_on_every_interface(base, port)
    try:
        second = tls.fingerprint(cert.read_bytes())
        assert second != first
        assert f"tardisd: created a self-signed TLS certificate {cert}, fingerprint {second}\n" in daemon.preamble
        capsys.readouterr()
        assert sonic.main(["list", "--repository", url]) == 1
        err = one_line_error(capsys)
        assert err == (
            f"sonic: error: the TLS certificate of {host}:{port} has changed (pinned {first}, offered {second}); "
            f"if this is expected, delete its line from {known}"
        )
        assert known.read_text() == f"{host}:{port} {first}\n"
    finally:
        assert daemon.stop() == 0
