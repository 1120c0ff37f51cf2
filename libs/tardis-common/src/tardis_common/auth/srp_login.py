"""SRP-6a login (SHA-256, 2048-bit group) with a stateless server side.

The SRP "password" is the client's 32-byte authentication secret derived from the KDF output,
never the raw password, so a stolen verifier is no cheaper to attack than the KDF.

The server keeps nothing between the two login round trips: ``ServerLogin.start`` seals its
ephemeral secret with the rest of the handshake into an opaque blob the client sends back, so
any worker or replica holding the same server key can finish the login.

``srp.Verifier`` (the OpenSSL ctypes implementation when it loads, else the pure-Python one)
accepts ``bytes_b``; the two want different lengths, so the secret ``b`` is always 32 random
bytes and is left-padded for the pure-Python one. Replicas with either implementation agree.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import OrderedDict
from typing import Any

import srp
import srp._pysrp

from tardis_common import errors
from tardis_common.auth.server_key import derive_subkey, pack_fields, seal, unpack_fields, unseal
from tardis_common.clock import Clock

HASH = srp.SHA256
GROUP = srp.NG_2048
SALT_BYTES = 16
_N, _G = srp._pysrp.get_ng(GROUP, None, None)
_N_BYTES = (_N.bit_length() + 7) // 8
_B_SECRET_BYTES = 32
# The pure-Python Verifier insists on a 256-byte b, the ctypes one on 32 bytes.
_B_WIDTH = 256 if srp.Verifier.__module__.endswith("_pysrp") else _B_SECRET_BYTES

_HANDSHAKE_VERSION = b"\x01"
_HANDSHAKE_AAD = b"tardis srp handshake v1"
_HANDSHAKE_LABEL = b"tardis srp handshake key v1"
HANDSHAKE_ID_BYTES = 16


def _password(auth_secret: bytes) -> str:
    if not auth_secret:
        raise errors.InvalidArgument("the authentication secret is empty")
    return auth_secret.hex()


def make_verifier(client: str, auth_secret: bytes) -> tuple[bytes, bytes]:
    """A fresh (srp salt, verifier) pair for ``client``, for the server to store."""
    salt, verifier = srp.create_salted_verification_key(
        client, _password(auth_secret), hash_alg=HASH, ng_type=GROUP, salt_len=SALT_BYTES
    )
    return bytes(salt), bytes(verifier)


def _public_value_ok(value: bytes) -> bool:
    """The SRP-6a safety check on A or B, done here so both implementations agree."""
    return 0 < len(value) <= _N_BYTES and int.from_bytes(value, "big") % _N != 0


class ClientLogin:
    """The client's side of one login: ``start`` -> A, ``respond`` -> M, ``confirm`` the server."""

    def __init__(self, client: str, auth_secret: bytes) -> None:
        self.client = client
        self._user: Any = srp.User(client, _password(auth_secret), hash_alg=HASH, ng_type=GROUP)
        self._m: bytes | None = None

    def start(self) -> bytes:
        """A, the client's public ephemeral value."""
        _, a_public = self._user.start_authentication()
        return bytes(a_public)

    def respond(self, srp_salt: bytes, b_public: bytes) -> bytes:
        """M, the proof that this client knows the password behind the server's verifier."""
        if not _public_value_ok(b_public):
            raise errors.Unauthenticated("the server's login challenge failed the SRP safety check")
        try:
            m = self._user.process_challenge(srp_salt, b_public)
        except (ValueError, TypeError):
            m = None
        if m is None:
            raise errors.Unauthenticated("the server's login challenge failed the SRP safety check")
        self._m = bytes(m)
        return self._m

    def confirm(self, hamk: bytes) -> None:
        """Check the server's proof (H(A, M, K)) that it holds this client's verifier."""
        if self._m is None:
            raise RuntimeError("ClientLogin.respond must come before confirm")
        self._user.verify_session(hamk)
        if not self._user.authenticated():
            raise errors.Unauthenticated("the server could not prove it knows this client's verifier")

    @property
    def session_key(self) -> bytes:
        """K, the shared SRP session key (available after ``respond``)."""
        if self._m is None:
            raise RuntimeError("ClientLogin.respond must come before session_key")
        return bytes(self._user.K)


def _verifier(client: str, salt: bytes, verifier: bytes, a_public: bytes, b_secret: bytes) -> Any:
    b = b_secret.rjust(_B_WIDTH, b"\0")
    return srp.Verifier(client, salt, verifier, a_public, hash_alg=HASH, ng_type=GROUP, bytes_b=b)


class ServerLogin:
    """The server's side of a login, holding no state between ``start`` and ``finish``.

    If a ``replay_cache`` is given, ``finish`` marks each handshake used (whether the password
    was right or not), so one handshake finishes at most once on this process; otherwise the
    caller should pass the returned handshake id to its own :class:`ReplayCache`.
    """

    def __init__(
        self,
        server_key: bytes,
        clock: Clock,
        handshake_lifetime_s: float = 60,
        replay_cache: ReplayCache | None = None,
    ) -> None:
        self._key = derive_subkey(server_key, _HANDSHAKE_LABEL)
        self._clock = clock
        self.handshake_lifetime_ns = int(handshake_lifetime_s * 1_000_000_000)
        self._replay = replay_cache

    def start(self, client: str, srp_salt: bytes, verifier: bytes, a_public: bytes) -> tuple[bytes, bytes]:
        """(B, handshake): B for the client, and the sealed state it must send back with M."""
        if not _public_value_ok(a_public):
            raise errors.Unauthenticated("the client's login value failed the SRP safety check")
        b_secret = os.urandom(_B_SECRET_BYTES)
        ver = _verifier(client, srp_salt, verifier, a_public, b_secret)
        _, b_public = ver.get_challenge()
        if b_public is None:
            raise errors.Unauthenticated("the client's login value failed the SRP safety check")
        handshake_id = os.urandom(HANDSHAKE_ID_BYTES)
        expires_ns = self._clock.now_ns() + self.handshake_lifetime_ns
        body = pack_fields(
            handshake_id,
            struct.pack(">q", expires_ns),
            client.encode(),
            a_public,
            b_secret,
            srp_salt,
            verifier,
        )
        return bytes(b_public), _HANDSHAKE_VERSION + seal(self._key, _HANDSHAKE_AAD, body)

    def finish(self, handshake: bytes, m: bytes) -> tuple[str, bytes, bytes, bytes]:
        """(client, H_AMK, session key, handshake id) if ``m`` proves the client's password."""
        fields = self._open(handshake)
        if fields is None:
            raise errors.Unauthenticated("invalid login handshake")
        handshake_id, expires, client_bytes, a_public, b_secret, salt, verifier = fields
        (expires_ns,) = struct.unpack(">q", expires)
        if self._clock.now_ns() >= expires_ns:
            raise errors.Unauthenticated("login handshake expired; try again")
        client = client_bytes.decode()
        if self._replay is not None:
            self._replay.use(handshake_id, expires_ns)
        ver = _verifier(client, salt, verifier, a_public, b_secret)
        try:
            hamk = ver.verify_session(m)
        except (ValueError, TypeError):
            hamk = None
        if hamk is None or not ver.authenticated():
            raise errors.Unauthenticated(f"wrong password for client {client}")
        return client, bytes(hamk), bytes(ver.get_session_key()), handshake_id

    def client_of(self, handshake: bytes) -> str:
        """The client a handshake was made for ("" if it is not one of ours), for throttling."""
        fields = self._open(handshake)
        return fields[2].decode() if fields is not None else ""

    def _open(self, handshake: bytes) -> list[bytes] | None:
        if not handshake.startswith(_HANDSHAKE_VERSION):
            return None
        body = unseal(self._key, _HANDSHAKE_AAD, handshake[len(_HANDSHAKE_VERSION) :])
        if body is None:
            return None
        fields = unpack_fields(body, 7)
        if fields is None or len(fields[1]) != 8 or len(fields[4]) != _B_SECRET_BYTES:
            return None
        try:
            fields[2].decode()
        except UnicodeDecodeError:
            return None
        return fields


class ReplayCache:
    """Handshake ids already finished on this process, each kept until its handshake expires.

    Memory is bounded by ``capacity``: past it the oldest ids are forgotten early. The cache is
    per process; a replay sent to another replica is not caught, but the replayer learns nothing,
    since the session token in the reply is sealed under the SRP session key.
    """

    def __init__(self, clock: Clock, capacity: int = 100_000) -> None:
        self._clock = clock
        self._capacity = capacity
        self._seen: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()

    def use(self, handshake_id: bytes, expires_ns: int) -> None:
        """Record ``handshake_id``; Unauthenticated if it was already used."""
        now = self._clock.now_ns()
        with self._lock:
            self._forget_expired(now)
            if handshake_id in self._seen:
                raise errors.Unauthenticated("login handshake already used")
            self._seen[handshake_id] = expires_ns
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def _forget_expired(self, now: int) -> None:
        # Ids arrive in roughly expiry order (one lifetime), so expired ones gather at the front.
        while self._seen:
            oldest, expires_ns = next(iter(self._seen.items()))
            if expires_ns > now:
                break
            del self._seen[oldest]
