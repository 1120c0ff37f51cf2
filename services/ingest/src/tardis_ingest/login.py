"""SRP-6a login for the ingest service: three calls, no server-side session state.

1. LoginStart without ``a``: the client's public KDF parameters (so it can derive the
   authentication secret from its password);
2. LoginStart with ``a``: the SRP salt, B and a sealed handshake any replica can finish;
3. LoginFinish: checks the client's proof M; replies with the server's proof and a session
   token encrypted under the SRP session key, plus the client's wrapped keys.

Failed proofs slow further attempts per client and source (LoginThrottle), never lock out.
"""

from __future__ import annotations

import hashlib
import logging

from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import ingest_pb2 as ing

from tardis_common.auth.roles import Caller
from tardis_common.auth.srp_login import ReplayCache, ServerLogin
from tardis_common.auth.throttle import LoginThrottle
from tardis_common.auth.tokens import TokenAuthority, seal_token_for_client
from tardis_common.clock import Clock
from tardis_common.errors import InvalidArgument, NotFound, Unauthenticated
from tardis_common.interfaces import Catalog
from tardis_common.logsetup import event
from tardis_common.names import check_client_name

from .access import Access

log = logging.getLogger(__name__)


class Logins:
    def __init__(
        self, catalog: Catalog, access: Access, server_key: bytes, clock: Clock, token_lifetime_s: float = 900.0
    ) -> None:
        self.catalog = catalog
        self.access = access
        self.srp = ServerLogin(server_key, clock, replay_cache=ReplayCache(clock))
        self.throttle = LoginThrottle(clock)
        self.tokens = TokenAuthority(server_key, clock, lifetime_s=token_lifetime_s)

    def _credentials(self, client: str) -> object:
        try:
            found = self.catalog.get_credentials(cat.ClientRequest(client=client))
        except NotFound:
            raise NotFound(f"client {client} does not exist") from None
        if not found.present:
            raise InvalidArgument(
                f"client {client} has no password: use it without one (locally, or where the server allows it)"
            )
        return found

    def start(self, request: ing.LoginStartRequest) -> ing.LoginStartReply:
        client = check_client_name(request.client)
        source = self.access.identity().source
        self.throttle.check(client, source)
        if not request.a:
            try:
                probe = self.catalog.get_credentials(cat.ClientRequest(client=client))
            except NotFound:
                raise NotFound(f"client {client} does not exist") from None
            if not probe.present:
                return ing.LoginStartReply()  # no password: nothing to log in with
        found = self._credentials(client)
        reply = ing.LoginStartReply(
            kdf_params=found.kdf_params,  # type: ignore[attr-defined]
            srp_salt=found.srp_salt,  # type: ignore[attr-defined]
            encrypted=found.encrypted,  # type: ignore[attr-defined]
        )
        if request.a:
            b_public, handshake = self.srp.start(client, found.srp_salt, found.srp_verifier, request.a)  # type: ignore[attr-defined]
            reply.b, reply.handshake = b_public, handshake
        return reply

    def finish(self, request: ing.LoginFinishRequest) -> ing.LoginFinishReply:
        source = self.access.identity().source
        client = self.srp.client_of(request.handshake)
        if client:
            self.throttle.check(client, source)
        try:
            client, hamk, session_key, _handshake_id = self.srp.finish(request.handshake, request.m)
        except Unauthenticated:
            if client:
                self.throttle.failed(client, source)
            level = logging.INFO if source == "local" else logging.WARNING
            event(log, "login_failed", level, client=client or "?", source=source)
            raise
        self.throttle.succeeded(client, source)
        found = self._credentials(client)
        token = self.tokens.issue(Caller("client", client), hashlib.sha256(session_key).digest())
        event(log, "login_succeeded", client=client, source=source)
        return ing.LoginFinishReply(
            hamk=hamk,
            sealed_token=seal_token_for_client(token, session_key),
            wrapped_keys=found.wrapped_keys,  # type: ignore[attr-defined]
            encrypted=found.encrypted,  # type: ignore[attr-defined]
            token_lifetime_s=self.tokens.lifetime_s,
        )

    def renew(self, request: ing.RenewTokenRequest) -> ing.RenewTokenReply:
        return ing.RenewTokenReply(token=self.tokens.renew(request.token))
