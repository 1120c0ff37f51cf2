"""Login and authorisation without gRPC: SRP-6a, sealed stateless handshakes, session tokens,
failed-login throttling and the server key they all derive from (design section 6)."""

from __future__ import annotations

from tardis_common.auth.roles import ANONYMOUS, CLIENT_ROLES, LOCAL, Caller, may_act_for
from tardis_common.auth.server_key import derive_subkey, load_or_create_server_key
from tardis_common.auth.srp_login import ClientLogin, ReplayCache, ServerLogin, make_verifier
from tardis_common.auth.throttle import LoginThrottle
from tardis_common.auth.tokens import (
    TokenAuthority,
    TokenRenewer,
    open_token_from_server,
    seal_token_for_client,
    session_binding,
)

__all__ = [
    "ANONYMOUS",
    "CLIENT_ROLES",
    "LOCAL",
    "Caller",
    "ClientLogin",
    "LoginThrottle",
    "ReplayCache",
    "ServerLogin",
    "TokenAuthority",
    "TokenRenewer",
    "derive_subkey",
    "load_or_create_server_key",
    "make_verifier",
    "may_act_for",
    "open_token_from_server",
    "seal_token_for_client",
    "session_binding",
]
