"""Who may do what: the ingest service's authorisation rules (design brief, section 6).

Every call runs with a caller, set by the gRPC guard from the call's token or admin secret
(see guard.py), or absent in embedded mode, where the process owns the repository.

- local (embedded, or a Unix socket the operator trusts): everything;
- admin (the server's admin secret): everything, for every client;
- client (a session token from an SRP login): backup, read and purge within the server's
  retention policy, for its own client only;
- anonymous (no token): only clients without a password, and only where the server's
  AllowAnonymous setting allows it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tardis.v1 import catalog_pb2 as cat

from tardis_common.auth.roles import ANONYMOUS, LOCAL, Caller
from tardis_common.callctx import current_caller
from tardis_common.errors import PermissionDenied, Unauthenticated
from tardis_common.interfaces import Catalog


@dataclass(frozen=True)
class Identity:
    """What the guard learnt about a call: who makes it, and from where (for throttling)."""

    caller: Caller
    source: str = "local"
    local_socket: bool = False  # a Unix socket: only users of this host can connect


@dataclass(frozen=True)
class AccessPolicy:
    trust_local: bool = True  # calls without an identity are the repository's owner (embedded)
    allow_anonymous: bool = False
    allow_new_clients: bool = True
    require_password: bool = False


class Access:
    PASSWORDLESS_CACHE_S = 5.0

    def __init__(self, catalog: Catalog, policy: AccessPolicy) -> None:
        self.catalog = catalog
        self.policy = policy
        self._passwordless: dict[str, float] = {}  # client -> monotonic expiry of "has no password"

    def has_password(self, client: str) -> bool:
        """Whether ``client`` has credentials; "no" is cached a few seconds (anonymous calls)."""
        now = time.monotonic()
        if self._passwordless.get(client, 0.0) > now:
            return False
        present = self.catalog.get_credentials(cat.ClientRequest(client=client)).present
        if not present:
            if len(self._passwordless) > 10_000:
                self._passwordless.clear()
            self._passwordless[client] = now + self.PASSWORDLESS_CACHE_S
        else:
            self._passwordless.pop(client, None)
        return present

    def forget(self, client: str) -> None:
        self._passwordless.pop(client, None)

    def identity(self) -> Identity:
        found = current_caller()
        if isinstance(found, Identity):
            return found
        if found is None and self.policy.trust_local:
            return Identity(LOCAL)
        raise Unauthenticated("this call needs a login")

    def caller(self) -> Caller:
        return self.identity().caller

    def is_privileged(self) -> bool:
        return self.caller().kind in ("local", "admin")

    def require_admin(self, what: str) -> None:
        if not self.is_privileged():
            raise PermissionDenied(f"{what} needs an admin credential on this server")

    def require_client(self, client: str) -> Caller:
        """Allow the call to act for ``client``, or raise naming why not."""
        caller = self.caller()
        if caller.kind in ("local", "admin"):
            return caller
        if caller.kind == "client":
            if caller.client != client:
                raise PermissionDenied(f"logged in as client {caller.client}; not allowed to act for client {client}")
            return caller
        if caller.kind == ANONYMOUS.kind:
            if not (self.policy.allow_anonymous or self.identity().local_socket):
                raise Unauthenticated(
                    f"client {client} must log in: this server does not allow clients without a password"
                )
            if self.has_password(client):
                raise Unauthenticated(f"client {client} has a password: log in with it")
            return caller
        raise Unauthenticated("this call needs a login")
