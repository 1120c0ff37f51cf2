"""SRP-6a login through ClientLogin and the stateless ServerLogin, and the replay cache."""

from __future__ import annotations

import os

import pytest
import srp._pysrp

from tardis_common import errors
from tardis_common.auth import ClientLogin, ReplayCache, ServerLogin, make_verifier
from tardis_common.clock import FixedClock

N, _ = srp._pysrp.get_ng(srp.NG_2048, None, None)
N_BYTES = N.to_bytes(256, "big")
START_NS = 1_700_000_000 * 1_000_000_000


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START_NS)


@pytest.fixture
def server_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def secret() -> bytes:
    return os.urandom(32)


@pytest.fixture
def stored(secret: bytes) -> tuple[bytes, bytes]:
    return make_verifier("host", secret)


def _begin(
    server: ServerLogin, secret: bytes, stored: tuple[bytes, bytes], client: str = "host"
) -> tuple[ClientLogin, bytes, bytes, bytes]:
    """Run the first round trip: returns the client side, B, the handshake and M."""
    login = ClientLogin(client, secret)
    salt, verifier = stored
    b_public, handshake = server.start(client, salt, verifier, login.start())
    return login, b_public, handshake, login.respond(salt, b_public)


def test_round_trip(server_key: bytes, clock: FixedClock, secret: bytes, stored: tuple[bytes, bytes]) -> None:
    server = ServerLogin(server_key, clock)
    login, _, handshake, m = _begin(server, secret, stored)
    client, hamk, session_key, handshake_id = server.finish(handshake, m)
    login.confirm(hamk)
    assert client == "host"
    assert session_key == login.session_key
    assert len(session_key) == 32
    assert len(handshake_id) == 16


def test_any_server_sharing_the_key_can_finish(
    server_key: bytes, clock: FixedClock, secret: bytes, stored: tuple[bytes, bytes]
) -> None:
    login, _, handshake, m = _begin(ServerLogin(server_key, clock), secret, stored)
    other_replica = ServerLogin(server_key, FixedClock(START_NS + 1_000_000_000))
    _, hamk, session_key, _ = other_replica.finish(handshake, m)
    login.confirm(hamk)
    assert session_key == login.session_key


def test_each_login_gets_its_own_session_key_and_id(
    server_key: bytes, clock: FixedClock, secret: bytes, stored: tuple[bytes, bytes]
) -> None:
    server = ServerLogin(server_key, clock)
    results = [server.finish(*_begin(server, secret, stored)[2:]) for _ in range(2)]
    assert results[0][2] != results[1][2]
    assert results[0][3] != results[1][3]


def test_wrong_auth_secret_refused(server_key: bytes, clock: FixedClock, stored: tuple[bytes, bytes]) -> None:
    server = ServerLogin(server_key, clock)
    _, _, handshake, m = _begin(server, os.urandom(32), stored)
    with pytest.raises(errors.Unauthenticated, match=r"^wrong password for client host$"):
        server.finish(handshake, m)


def test_garbage_proof_refused(
    server_key: bytes, clock: FixedClock, secret: bytes, stored: tuple[bytes, bytes]
) -> None:
    server = ServerLogin(server_key, clock)
    _, _, handshake, _ = _begin(server, secret, stored)
    for m in (b"", b"x" * 32, os.urandom(1000)):
        with pytest.raises(errors.Unauthenticated, match=r"wrong password"):
            server.finish(handshake, m)


def test_client_refuses_impostor_server(server_key: bytes, clock: FixedClock, secret: bytes) -> None:
    """A server holding a verifier for another secret cannot produce the right H(A, M, K)."""
    server = ServerLogin(server_key, clock)
    impostor_store = make_verifier("host", os.urandom(32))
    login = ClientLogin("host", secret)
    b_public, _ = server.start("host", *impostor_store, login.start())
    login.respond(impostor_store[0], b_public)
    with pytest.raises(errors.Unauthenticated, match=r"could not prove it knows this client's verifier"):
        login.confirm(os.urandom(32))


def test_verifier_depends_on_the_secret_not_just_the_client() -> None:
    auth_secret = os.urandom(32)
    raw_password = b"correct horse battery staple"
    salt_a, verifier_a = make_verifier("host", auth_secret)
    salt_b, verifier_b = make_verifier("host", raw_password)
    assert verifier_a != verifier_b
    assert salt_a != salt_b  # a fresh salt every time
    assert make_verifier("host", auth_secret)[1] != verifier_a  # fresh salt, so a fresh verifier


def test_raw_password_verifier_refuses_auth_secret(server_key: bytes, clock: FixedClock) -> None:
    auth_secret = os.urandom(32)
    stored_from_password = make_verifier("host", b"hunter2")
    server = ServerLogin(server_key, clock)
    _, _, handshake, m = _begin(server, auth_secret, stored_from_password)
    with pytest.raises(errors.Unauthenticated, match=r"wrong password"):
        server.finish(handshake, m)


def test_empty_secret_rejected() -> None:
    with pytest.raises(errors.InvalidArgument):
        make_verifier("host", b"")
    with pytest.raises(errors.InvalidArgument):
        ClientLogin("host", b"")


@pytest.mark.parametrize(
    "a_public",
    [b"", b"\0", N_BYTES, (2 * N).to_bytes(257, "big"), b"\xff" * 300],
    ids=["empty", "zero", "N", "2N", "too-long"],
)
def test_unsafe_client_value_refused(
    server_key: bytes, clock: FixedClock, stored: tuple[bytes, bytes], a_public: bytes
) -> None:
    with pytest.raises(errors.Unauthenticated, match=r"SRP safety check"):
        ServerLogin(server_key, clock).start("host", *stored, a_public)


@pytest.mark.parametrize("b_public", [b"", b"\0" * 256, N_BYTES], ids=["empty", "zero", "N"])
def test_unsafe_server_value_refused(secret: bytes, stored: tuple[bytes, bytes], b_public: bytes) -> None:
    login = ClientLogin("host", secret)
    login.start()
    with pytest.raises(errors.Unauthenticated, match=r"SRP safety check"):
        login.respond(stored[0], b_public)


def test_handshake_from_another_server_key_refused(
    clock: FixedClock, secret: bytes, stored: tuple[bytes, bytes]
) -> None:
    _, _, handshake, m = _begin(ServerLogin(os.urandom(32), clock), secret, stored)
    with pytest.raises(errors.Unauthenticated, match=r"^invalid login handshake$"):
        ServerLogin(os.urandom(32), clock).finish(handshake, m)


def test_expired_handshake_refused(
    server_key: bytes, clock: FixedClock, secret: bytes, stored: tuple[bytes, bytes]
) -> None:
    server = ServerLogin(server_key, clock, handshake_lifetime_s=60)
    _, _, handshake, m = _begin(server, secret, stored)
    clock.advance(59.9)
    server.finish(handshake, m)
    clock.advance(0.1)
    with pytest.raises(errors.Unauthenticated, match=r"^login handshake expired; try again$"):
        server.finish(handshake, m)


def test_tampered_handshake_refused(
    server_key: bytes, clock: FixedClock, secret: bytes, stored: tuple[bytes, bytes]
) -> None:
    server = ServerLogin(server_key, clock)
    _, _, handshake, m = _begin(server, secret, stored)
    altered = [
        b"",
        handshake[:-1],
        handshake + b"\0",
        b"\x02" + handshake[1:],
        os.urandom(len(handshake)),
    ]
    for i in (1, 13, len(handshake) // 2, len(handshake) - 1):
        altered.append(handshake[:i] + bytes([handshake[i] ^ 1]) + handshake[i + 1 :])
    for bad in altered:
        with pytest.raises(errors.Unauthenticated, match=r"^invalid login handshake$"):
            server.finish(bad, m)
    server.finish(handshake, m)


def test_replay_refused_with_cache_given_to_server(
    server_key: bytes, clock: FixedClock, secret: bytes, stored: tuple[bytes, bytes]
) -> None:
    server = ServerLogin(server_key, clock, replay_cache=ReplayCache(clock))
    _, _, handshake, m = _begin(server, secret, stored)
    server.finish(handshake, m)
    with pytest.raises(errors.Unauthenticated, match=r"^login handshake already used$"):
        server.finish(handshake, m)


def test_replay_refused_with_cache_used_by_caller(
    server_key: bytes, clock: FixedClock, secret: bytes, stored: tuple[bytes, bytes]
) -> None:
    server = ServerLogin(server_key, clock)
    cache = ReplayCache(clock)
    _, _, handshake, m = _begin(server, secret, stored)
    expires_ns = clock.now_ns() + server.handshake_lifetime_ns
    cache.use(server.finish(handshake, m)[3], expires_ns)
    handshake_id = server.finish(handshake, m)[3]  # the server alone does not remember
    with pytest.raises(errors.Unauthenticated, match=r"already used"):
        cache.use(handshake_id, expires_ns)


def test_replay_cache_forgets_expired_ids(clock: FixedClock) -> None:
    cache = ReplayCache(clock)
    cache.use(b"a", clock.now_ns() + 10 * 1_000_000_000)
    cache.use(b"b", clock.now_ns() + 20 * 1_000_000_000)
    assert len(cache) == 2
    clock.advance(10)
    cache.use(b"c", clock.now_ns() + 10 * 1_000_000_000)
    assert len(cache) == 2  # "a" is gone
    with pytest.raises(errors.Unauthenticated):
        cache.use(b"b", clock.now_ns() + 10 * 1_000_000_000)
    cache.use(b"a", clock.now_ns() + 10 * 1_000_000_000)


def test_replay_cache_is_bounded(clock: FixedClock) -> None:
    cache = ReplayCache(clock, capacity=3)
    expires_ns = clock.now_ns() + 60 * 1_000_000_000
    for i in range(10):
        cache.use(bytes([i]), expires_ns)
    assert len(cache) == 3
    with pytest.raises(errors.Unauthenticated):
        cache.use(bytes([9]), expires_ns)
    cache.use(bytes([0]), expires_ns)  # the oldest were forgotten


def test_session_key_needs_respond(secret: bytes) -> None:
    login = ClientLogin("host", secret)
    login.start()
    with pytest.raises(RuntimeError):
        _ = login.session_key
