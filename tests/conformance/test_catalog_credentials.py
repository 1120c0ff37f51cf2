"""Conformance of the catalog's GetCredentials and SetCredentials: the core and the gRPC client
store and return a client's login material the same way, the verifier byte for byte."""

from __future__ import annotations

import os

import pytest
import test_catalog
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common
from test_catalog import START_NS, Env

from tardis_catalog.core import CatalogCore
from tardis_cli.credentials import make_credentials
from tardis_common.auth.srp_login import ClientLogin, ServerLogin
from tardis_common.clock import FixedClock
from tardis_common.crypto.kdf import KdfParams, derive
from tardis_common.errors import InvalidArgument, NotFound

# The catalog suite's fixtures: each test runs against the core and against the gRPC client.
env = test_catalog.env
cenv = test_catalog.cenv
PASSWORD = b"correct horse battery staple"


def get(env: Env, client: str = "c") -> common.Credentials:
    return env.api.get_credentials(cat.ClientRequest(client=client))


def test_a_new_client_has_no_credentials(cenv: Env) -> None:
    assert get(cenv) == common.Credentials(client="c", present=False)


def test_credentials_round_trip_byte_for_byte(cenv: Env) -> None:
    credentials, keys, _params = make_credentials("c", PASSWORD, encrypt=True)
    assert keys is not None and credentials.wrapped_keys
    stored = cenv.api.set_credentials(credentials)
    assert stored == credentials
    assert get(cenv) == credentials
    assert get(cenv).srp_verifier == credentials.srp_verifier
    # The stored verifier still logs the client in, and only with its password.
    params = KdfParams.from_json(get(cenv).kdf_params)
    server = ServerLogin(os.urandom(32), FixedClock(START_NS))
    client = ClientLogin("c", derive(PASSWORD, params).auth_secret)
    found = get(cenv)
    b_public, handshake = server.start("c", found.srp_salt, found.srp_verifier, client.start())
    name, hamk, key, _ = server.finish(handshake, client.respond(found.srp_salt, b_public))
    client.confirm(hamk)
    assert name == "c" and key == client.session_key


def test_an_unencrypted_client_and_one_with_a_key_file(cenv: Env) -> None:
    credentials, keys, _ = make_credentials("c", PASSWORD, encrypt=False)
    assert keys is None and not credentials.wrapped_keys
    assert cenv.api.set_credentials(credentials) == credentials
    assert get(cenv).encrypted is False and get(cenv).wrapped_keys == b""
    keyed, _, _ = make_credentials("c", PASSWORD, encrypt=True)
    keyed.wrapped_keys = b""  # the keys live in a key file: the catalog holds none
    assert cenv.api.set_credentials(keyed) == keyed
    assert get(cenv).encrypted is True and get(cenv).wrapped_keys == b""


def test_new_credentials_replace_the_old_and_absent_removes_them(cenv: Env) -> None:
    first, _, _ = make_credentials("c", PASSWORD, encrypt=True)
    second, _, _ = make_credentials("c", b"a new password", encrypt=True)
    cenv.api.set_credentials(first)
    assert cenv.api.set_credentials(second) == second
    assert get(cenv) == second and get(cenv).srp_verifier != first.srp_verifier
    removed = cenv.api.set_credentials(common.Credentials(client="c", present=False))
    assert removed == common.Credentials(client="c", present=False)
    assert get(cenv) == common.Credentials(client="c", present=False)
    assert cenv.api.set_credentials(first) == first  # and a password can come back


def test_credentials_survive_a_reopened_catalog(cenv: Env) -> None:
    credentials, _, _ = make_credentials("c", PASSWORD, encrypt=True)
    cenv.api.set_credentials(credentials)
    reopened = CatalogCore(cenv.root)
    try:
        assert reopened.get_credentials(cat.ClientRequest(client="c")) == credentials
    finally:
        reopened.close()


def test_credentials_are_per_client(env: Env) -> None:
    for name in ("c", "d"):
        env.api.create_client(cat.ClientRequest(client=name))
    credentials, _, _ = make_credentials("c", PASSWORD, encrypt=True)
    env.api.set_credentials(credentials)
    assert get(env, "c") == credentials
    assert get(env, "d") == common.Credentials(client="d", present=False)


@pytest.mark.parametrize("missing", ["kdf_params", "srp_salt", "srp_verifier"])
def test_present_credentials_need_every_login_field(cenv: Env, missing: str) -> None:
    credentials, _, _ = make_credentials("c", PASSWORD, encrypt=True)
    credentials.ClearField(missing)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"^credentials need KDF parameters, an SRP salt and a verifier$"):
        cenv.api.set_credentials(credentials)
    assert get(cenv).present is False


def test_credentials_of_a_missing_client(env: Env) -> None:
    credentials, _, _ = make_credentials("nobody", PASSWORD, encrypt=True)
    with pytest.raises(NotFound, match=r"^client nobody does not exist$"):
        env.api.get_credentials(cat.ClientRequest(client="nobody"))
    with pytest.raises(NotFound, match=r"^client nobody does not exist$"):
        env.api.set_credentials(credentials)
    assert not (env.root / "nobody").exists()
