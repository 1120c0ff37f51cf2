"""Who is calling: the identity a login or a local connection gives a request."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = frozenset({"local", "client", "admin", "anonymous"})

# What a client's own password grants (design section 6); admin-only operations need kind "admin".
CLIENT_ROLES = frozenset({"backup", "read", "purge"})


@dataclass(frozen=True)
class Caller:
    """The authenticated party behind a request.

    ``kind`` is "local" (same machine, no login), "client" (logged in with a client's password),
    "admin" (logged in with the server's admin credential) or "anonymous" (allowed without login).
    """

    kind: str
    client: str = ""
    roles: frozenset[str] = frozenset()


LOCAL = Caller("local")
ANONYMOUS = Caller("anonymous")


def may_act_for(caller: Caller | None, client: str) -> bool:
    """True if ``caller`` may touch ``client``'s data.

    Local and admin callers may act for any client, a logged-in client only for itself. Anonymous
    access is a server setting, so it is decided by whoever calls this: here it is refused.
    """
    if caller is None:
        return False
    if caller.kind in ("local", "admin"):
        return True
    if caller.kind == "client":
        return bool(client) and caller.client == client
    return False
