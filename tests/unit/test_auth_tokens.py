"""Session tokens: issue, check, renew, expiry, forgeries, sealing for the client, renewal thread."""

from __future__ import annotations

import base64
import logging
import os
import threading

import pytest

from tardis_common import errors
from tardis_common.auth import (
    Caller,
    TokenAuthority,
    TokenRenewer,
    open_token_from_server,
    seal_token_for_client,
    session_binding,
)
from tardis_common.clock import FixedClock

START_NS = 1_700_000_000 * 1_000_000_000
CLIENT = Caller("client", "host", frozenset({"backup", "read", "purge"}))
WAIT_S = 10.0  # generous bound for a thread to do what it was told; never reached when things work


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START_NS)


@pytest.fixture
def server_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def authority(server_key: bytes, clock: FixedClock) -> TokenAuthority:
    return TokenAuthority(server_key, clock, lifetime_s=900)


def _flip(token: str, index: int) -> str:
    blob = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    blob[index] ^= 1
    return base64.urlsafe_b64encode(bytes(blob)).rstrip(b"=").decode()


def test_issue_and_check(authority: TokenAuthority) -> None:
    binding = session_binding(os.urandom(32))
    token = authority.issue(CLIENT, binding)
    assert isinstance(token, str)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert authority.check(token) == CLIENT
    body = authority.inspect(token)
    assert body.binding == binding
    assert body.issued_ns == START_NS
    assert body.expires_ns == START_NS + 900 * 1_000_000_000


@pytest.mark.parametrize(
    "caller",
    [
        Caller("admin", "", frozenset({"admin"})),
        Caller("anonymous"),
        Caller("local"),
        Caller("client", "é-ü", frozenset()),
    ],
)
def test_every_caller_kind_survives(authority: TokenAuthority, caller: Caller) -> None:
    assert authority.check(authority.issue(caller, b"")) == caller


def test_unknown_kind_not_issued(authority: TokenAuthority) -> None:
    with pytest.raises(errors.InvalidArgument):
        authority.issue(Caller("root"), b"")


def test_tokens_are_distinct(authority: TokenAuthority) -> None:
    assert authority.issue(CLIENT, b"b") != authority.issue(CLIENT, b"b")


def test_any_replica_checks(server_key: bytes, clock: FixedClock, authority: TokenAuthority) -> None:
    token = authority.issue(CLIENT, b"b")
    assert TokenAuthority(server_key, clock).check(token) == CLIENT


def test_expiry(authority: TokenAuthority, clock: FixedClock) -> None:
    token = authority.issue(CLIENT, b"b")
    clock.advance(899.999)
    assert authority.check(token) == CLIENT
    clock.advance(0.001)
    with pytest.raises(errors.Unauthenticated, match=r"^session token expired; log in again$"):
        authority.check(token)
    with pytest.raises(errors.Unauthenticated, match=r"expired"):
        authority.renew(token)


def test_renew_extends_idle_lifetime(authority: TokenAuthority, clock: FixedClock) -> None:
    binding = session_binding(b"k" * 32)
    token = authority.issue(CLIENT, binding)
    clock.advance(800)
    renewed = authority.renew(token)
    assert renewed != token
    body = authority.inspect(renewed)
    assert body.caller == CLIENT
    assert body.binding == binding
    assert body.issued_ns == START_NS
    assert body.expires_ns == clock.now_ns() + 900 * 1_000_000_000
    clock.advance(800)
    with pytest.raises(errors.Unauthenticated, match=r"expired"):
        authority.check(token)
    assert authority.check(renewed) == CLIENT
    clock.advance(100)
    with pytest.raises(errors.Unauthenticated, match=r"expired"):
        authority.check(renewed)


def test_forged_tokens_refused(authority: TokenAuthority, clock: FixedClock) -> None:
    token = authority.issue(CLIENT, b"b")
    other = TokenAuthority(os.urandom(32), clock).issue(Caller("admin"), b"b")
    forged = [
        "",
        "x",
        "not a token!",
        "ünïcode",
        "A" * 100_000,
        base64.urlsafe_b64encode(os.urandom(80)).decode(),
        other,
        token[:-2],
        token + "AA",
        _flip(token, 0),
        _flip(token, 5),
        _flip(token, len(token) * 3 // 8),
        _flip(token, -1),
    ]
    for bad in forged:
        with pytest.raises(errors.Unauthenticated, match=r"^invalid session token$"):
            authority.check(bad)
        with pytest.raises(errors.Unauthenticated, match=r"^invalid session token$"):
            authority.renew(bad)
    assert authority.check(token) == CLIENT


def test_token_sealed_for_client(authority: TokenAuthority) -> None:
    session_key = os.urandom(32)
    token = authority.issue(CLIENT, session_binding(session_key))
    blob = seal_token_for_client(token, session_key)
    assert token.encode() not in blob
    assert open_token_from_server(blob, session_key) == token
    with pytest.raises(errors.Unauthenticated):
        open_token_from_server(blob, os.urandom(32))
    with pytest.raises(errors.Unauthenticated):
        open_token_from_server(blob[:-1] + bytes([blob[-1] ^ 1]), session_key)
    with pytest.raises(errors.Unauthenticated):
        open_token_from_server(b"", session_key)


def test_binding_hides_the_session_key() -> None:
    key = os.urandom(32)
    assert session_binding(key) == session_binding(key)
    assert session_binding(key) != key
    assert session_binding(key) != session_binding(os.urandom(32))


def test_renewer_keeps_the_newest_token() -> None:
    seen: list[str] = []
    done = threading.Event()

    def renew(token: str) -> str:
        seen.append(token)
        if len(seen) == 3:
            done.set()
        return f"token-{len(seen)}"

    renewer = TokenRenewer(renew, "token-0", 0.001)
    assert done.wait(WAIT_S)
    renewer.stop()
    assert seen[:3] == ["token-0", "token-1", "token-2"]
    assert renewer.current() == f"token-{len(seen)}"


def test_renewer_with_real_authority(authority: TokenAuthority, clock: FixedClock) -> None:
    token = authority.issue(CLIENT, b"b")
    renewed = threading.Event()
    count: list[str] = []

    def renew(current: str) -> str:
        clock.advance(600)
        fresh = authority.renew(current)
        count.append(fresh)
        if len(count) == 2:  # 1200 s on: past the first token's 900 s lifetime
            renewed.set()
        return fresh

    with TokenRenewer(renew, token, 0.001) as renewer:
        assert renewed.wait(WAIT_S)
    assert renewer.current() != token
    assert authority.check(renewer.current()) == CLIENT  # alive well past the first token's lifetime
    with pytest.raises(errors.Unauthenticated, match=r"expired"):
        authority.check(token)


def test_renewer_logs_a_failure_once_and_retries(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    done = threading.Event()

    def renew(token: str) -> str:
        calls.append(token)
        if len(calls) <= 3:
            raise errors.Unavailable("catalog is down")
        done.set()
        return "fresh"

    with caplog.at_level(logging.DEBUG, logger="tardis_common.auth.tokens"):
        renewer = TokenRenewer(renew, "old", 0.001)
        assert done.wait(WAIT_S)
        renewer.stop()
    assert calls[:4] == ["old"] * 4
    assert renewer.current() == "fresh"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "catalog is down" in warnings[0].getMessage()


def test_renewer_stops_at_once() -> None:
    calls: list[str] = []

    def renew(token: str) -> str:
        calls.append(token)
        return token

    renewer = TokenRenewer(renew, "t", 3600)
    renewer.stop()  # would hang for an hour if stop had to wait for the interval
    assert calls == []
    assert renewer.current() == "t"
