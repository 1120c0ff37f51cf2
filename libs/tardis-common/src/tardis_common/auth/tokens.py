"""Session tokens: what a login hands the client, carried by every later call.

A token is an AES-GCM blob sealed under a key derived from the server key, so any worker or
replica can check it without shared state. It names the caller, when it was issued, when it
expires and a hash of the SRP session key (its binding). The login reply carries the token
sealed again under a key from the SRP session key, so only the party that completed SRP with
the right password can read it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tardis_common import errors
from tardis_common.auth.roles import KINDS, Caller
from tardis_common.auth.server_key import derive_subkey, pack_fields, seal, unpack_fields, unseal
from tardis_common.clock import Clock

log = logging.getLogger(__name__)

_VERSION = b"\x01"
_TOKEN_AAD = b"tardis session token v1"
_TOKEN_LABEL = b"tardis session token key v1"
_CLIENT_SEAL_INFO = b"tardis token v1"
_CLIENT_SEAL_AAD = b"tardis sealed token v1"
_MAX_TOKEN_CHARS = 8192
TOKEN_ID_BYTES = 16


def session_binding(session_key: bytes) -> bytes:
    """The binding a token records for an SRP session key (a hash, never the key itself)."""
    return hashlib.sha256(b"tardis token binding v1\0" + session_key).digest()


@dataclass(frozen=True)
class TokenBody:
    caller: Caller
    issued_ns: int
    expires_ns: int
    token_id: bytes
    binding: bytes


class TokenAuthority:
    """Issues, checks and renews session tokens; idle tokens expire after ``lifetime_s``."""

    def __init__(self, server_key: bytes, clock: Clock, lifetime_s: float = 900) -> None:
        self._key = derive_subkey(server_key, _TOKEN_LABEL)
        self._clock = clock
        self._lifetime_ns = int(lifetime_s * 1_000_000_000)
        self.lifetime_s = lifetime_s

    def issue(self, caller: Caller, binding: bytes) -> str:
        """A fresh token for ``caller``; ``binding`` is :func:`session_binding` of the SRP key."""
        if caller.kind not in KINDS:
            raise errors.InvalidArgument(f"unknown caller kind {caller.kind!r}")
        now = self._clock.now_ns()
        expires_ns = now + self._lifetime_ns
        return self._seal(TokenBody(caller, now, expires_ns, os.urandom(TOKEN_ID_BYTES), binding))

    def check(self, token: str) -> Caller:
        """The caller a valid, unexpired token names."""
        return self.inspect(token).caller

    def inspect(self, token: str) -> TokenBody:
        """Everything a valid, unexpired token holds."""
        body = self._open(token)
        if body is None:
            raise errors.Unauthenticated("invalid session token")
        if self._clock.now_ns() >= body.expires_ns:
            raise errors.Unauthenticated("session token expired; log in again")
        return body

    def renew(self, token: str) -> str:
        """A new token for the same caller and binding, expiring ``lifetime_s`` from now.

        ``issued_ns`` keeps the time of the original login.
        """
        body = self.inspect(token)
        now = self._clock.now_ns()
        fresh = TokenBody(
            body.caller, body.issued_ns, now + self._lifetime_ns, os.urandom(TOKEN_ID_BYTES), body.binding
        )
        return self._seal(fresh)

    def _seal(self, body: TokenBody) -> str:
        caller = body.caller
        plain = pack_fields(
            caller.kind.encode(),
            caller.client.encode(),
            pack_fields(*(r.encode() for r in sorted(caller.roles))),
            struct.pack(">qq", body.issued_ns, body.expires_ns),
            body.token_id,
            body.binding,
        )
        blob = _VERSION + seal(self._key, _TOKEN_AAD, plain)
        return base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")

    def _open(self, token: str) -> TokenBody | None:
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            return None
        try:
            blob = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None
        if not blob.startswith(_VERSION):
            return None
        plain = unseal(self._key, _TOKEN_AAD, blob[len(_VERSION) :])
        if plain is None:
            return None
        fields = unpack_fields(plain, 6)
        if fields is None or len(fields[3]) != 16:
            return None
        kind_b, client_b, roles_b, times, token_id, binding = fields
        roles = unpack_fields(roles_b, None)
        if roles is None:
            return None
        try:
            caller = Caller(kind_b.decode(), client_b.decode(), frozenset(r.decode() for r in roles))
        except UnicodeDecodeError:
            return None
        if caller.kind not in KINDS:
            return None
        issued_ns, expires_ns = struct.unpack(">qq", times)
        return TokenBody(caller, issued_ns, expires_ns, token_id, binding)


def _client_seal_key(session_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_CLIENT_SEAL_INFO).derive(session_key)


def seal_token_for_client(token: str, session_key: bytes) -> bytes:
    """The token encrypted for the login reply, readable only with the SRP session key."""
    return seal(_client_seal_key(session_key), _CLIENT_SEAL_AAD, token.encode("ascii"))


def open_token_from_server(blob: bytes, session_key: bytes) -> str:
    """The token from a login reply; Unauthenticated unless sealed under this session key."""
    plain = unseal(_client_seal_key(session_key), _CLIENT_SEAL_AAD, blob)
    if plain is None:
        raise errors.Unauthenticated("the session token in the login reply was not sealed for this login")
    try:
        return plain.decode("ascii")
    except UnicodeDecodeError:
        raise errors.Unauthenticated("the session token in the login reply is malformed") from None


class TokenRenewer:
    """Keeps a token alive (for a multi-hour upload) by renewing it every interval.

    A daemon thread calls ``renew`` every ``clock_interval_s`` seconds until :meth:`stop`. A failed
    renewal is logged once at WARNING (further failures in a row at DEBUG) and retried next interval.
    """

    def __init__(self, renew: Callable[[str], str], token: str, clock_interval_s: float) -> None:
        self._renew = renew
        self._token = token
        self._interval = clock_interval_s
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="tardis-token-renewer", daemon=True)
        self._thread.start()

    def current(self) -> str:
        """The newest token."""
        with self._lock:
            return self._token

    def stop(self) -> None:
        """Stop renewing; returns once the thread has ended (at once unless a renewal is running)."""
        self._stopping.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def __enter__(self) -> TokenRenewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                fresh = self._renew(self.current())
            except Exception as exc:
                if not self._failing:
                    log.warning("could not renew the session token (will retry): %s", exc)
                else:
                    log.debug("token renewal failed again: %s", exc)
                self._failing = True
                continue
            if self._failing:
                log.info("session token renewed again")
            self._failing = False
            with self._lock:
                self._token = fresh
