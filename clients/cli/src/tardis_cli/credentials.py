"""Client side of passwords and keys: making credentials, logging in, unwrapping the keys.

The password never leaves the client: it goes through the KDF (scrypt) to a key-encryption
key, which unwraps the random content and name keys, and an authentication secret, from
which the SRP verifier is made and with which the client logs in.
"""

from __future__ import annotations

from dataclasses import dataclass

from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing

from tardis_common.auth.srp_login import ClientLogin, make_verifier
from tardis_common.auth.tokens import open_token_from_server
from tardis_common.cipher import Cipher, NullCipher
from tardis_common.crypto.encrypting_cipher import EncryptingCipher
from tardis_common.crypto.kdf import DerivedSecrets, KdfParams, check_params, derive, new_params
from tardis_common.crypto.keyfile import read_key_file
from tardis_common.crypto.keys import KeySet, unwrap_keys, wrap_keys
from tardis_common.errors import ConfigError
from tardis_common.interfaces import Ingest

from .known_repos import KnownRepository

_derived: dict[tuple[bytes, bytes], DerivedSecrets] = {}


def derive_once(password: bytes, params: KdfParams) -> DerivedSecrets:
    """The KDF's output, computed once per process for a password and parameters (creating a
    client and then logging in, or a backup followed by its purge, would pay it twice)."""
    key = (password, params.to_json())
    if key not in _derived:
        _derived[key] = derive(password, params)
    return _derived[key]


@dataclass
class Unlocked:
    """What a successful login gives a tool."""

    cipher: Cipher
    token: str = ""
    token_lifetime_s: float = 0.0
    params: KdfParams | None = None
    secrets: DerivedSecrets | None = None
    keys: KeySet | None = None
    wrapped: bytes = b""
    encrypted: bool = False


def make_credentials(
    client: str,
    password: bytes,
    *,
    encrypt: bool,
    keys: KeySet | None = None,
    params: KdfParams | None = None,
) -> tuple[common.Credentials, KeySet | None, KdfParams]:
    """Fresh credentials for ``client``: new KDF salt, verifier, and (``encrypt``) wrapped keys."""
    params = params or new_params()
    secrets = derive_once(password, params)
    srp_salt, verifier = make_verifier(client, secrets.auth_secret)
    if encrypt:
        keys = keys or KeySet.generate()
    wrapped = wrap_keys(keys, secrets.kek, client) if encrypt and keys is not None else b""
    credentials = common.Credentials(
        client=client,
        present=True,
        kdf_params=params.to_json(),
        srp_salt=srp_salt,
        srp_verifier=verifier,
        wrapped_keys=wrapped,
        encrypted=encrypt,
    )
    return credentials, (keys if encrypt else None), params


def probe(ingest: Ingest, client: str) -> ing.LoginStartReply:
    """The client's public login parameters; empty ``kdf_params`` means it has no password."""
    return ingest.login_start(ing.LoginStartRequest(client=client))


def login(
    ingest: Ingest,
    client: str,
    password: bytes,
    known: KnownRepository,
    *,
    keyfile: str | None = None,
    first: ing.LoginStartReply | None = None,
    need_keys: bool = True,
) -> Unlocked:
    """SRP login with ``password``; the keys come from the catalog or from ``keyfile``
    (``need_keys`` False: a login without keys is fine, as for sonic keys --insert)."""
    first = first or probe(ingest, client)
    if not first.kdf_params:
        raise ConfigError(f"client {client} has no password; run without one, or add one with sonic setpass")
    params = KdfParams.from_json(first.kdf_params)
    check_params(params)
    known.check_kdf(params)
    secrets = derive_once(password, params)
    srp = ClientLogin(client, secrets.auth_secret)
    started = ingest.login_start(ing.LoginStartRequest(client=client, a=srp.start()))
    proof = srp.respond(started.srp_salt, started.b)
    finished = ingest.login_finish(ing.LoginFinishRequest(handshake=started.handshake, m=proof))
    srp.confirm(finished.hamk)
    token = open_token_from_server(finished.sealed_token, srp.session_key)
    known.remember_kdf(params)
    unlocked = Unlocked(
        NullCipher(),
        token=token,
        token_lifetime_s=finished.token_lifetime_s,
        params=params,
        secrets=secrets,
        wrapped=finished.wrapped_keys,
        encrypted=finished.encrypted,
    )
    if not finished.encrypted:
        return unlocked
    kek = secrets.kek
    if keyfile:
        file_params, unlocked.wrapped = read_key_file(keyfile, client)
        if file_params != params:
            kek = derive_once(password, file_params).kek
    if not unlocked.wrapped:
        if not need_keys:
            return unlocked
        raise ConfigError(f"client {client} keeps its keys in a key file: give it with --keys FILE")
    unlocked.keys = unwrap_keys(unlocked.wrapped, kek, client)
    unlocked.cipher = EncryptingCipher(unlocked.keys)
    return unlocked
