"""Who is making the current RPC: set by the gRPC plumbing from a guard's verdict.

Cores stay free of gRPC; when they need the caller (a logged-in client, a peer service)
they read :func:`current_caller`. Outside an RPC, or with no guard, it is None.
"""

from __future__ import annotations

from contextvars import ContextVar

CURRENT_CALLER: ContextVar[object | None] = ContextVar("tardis_current_caller", default=None)


def current_caller() -> object | None:
    """What the guard of the current call returned, or None."""
    return CURRENT_CALLER.get()
