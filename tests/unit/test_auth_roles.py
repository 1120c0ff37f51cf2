"""Who may act for which client."""

from __future__ import annotations

import pytest

from tardis_common.auth import ANONYMOUS, CLIENT_ROLES, LOCAL, Caller, may_act_for


@pytest.mark.parametrize(
    ("caller", "client", "allowed"),
    [
        (LOCAL, "host", True),
        (Caller("admin", "", frozenset({"admin"})), "host", True),
        (Caller("client", "host", CLIENT_ROLES), "host", True),
        (Caller("client", "host", CLIENT_ROLES), "other", False),
        (Caller("client", ""), "", False),
        (ANONYMOUS, "host", False),
        (None, "host", False),
        (Caller("stranger", "host"), "host", False),
    ],
)
def test_may_act_for(caller: Caller | None, client: str, allowed: bool) -> None:
    assert may_act_for(caller, client) is allowed


def test_constants() -> None:
    assert Caller("local", "", frozenset()) == LOCAL
    assert ANONYMOUS.kind == "anonymous"
    reader = frozenset({"read"})
    assert hash(Caller("client", "h", reader)) == hash(Caller("client", "h", reader))
