"""Creating a client in a repository: with a password, its credentials go with it."""

from __future__ import annotations

from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing

from tardis_common.settings import ClientSettings

from .connect import Repository
from .credentials import make_credentials


def create_client(repo: Repository, settings: ClientSettings, password: bytes | None) -> common.ClientInfo:
    """Create the client; with ``password`` its keys go to the catalog, or only to --keys FILE."""
    repo.known.forget_newest_set(0)  # a new client at this address: what was seen there is gone
    repo.known.forget_kdf()
    if password is None:
        return repo.ingest.create_client(ing.CreateClientRequest(client=repo.client))
    credentials, _keys, params = make_credentials(repo.client, password, encrypt=settings.crypt)
    if settings.keyfile and credentials.wrapped_keys:
        from tardis_common.crypto.keyfile import write_key_file

        write_key_file(settings.keyfile, repo.client, params, credentials.wrapped_keys)
        credentials.wrapped_keys = b""
    return repo.ingest.create_client(ing.CreateClientRequest(client=repo.client, credentials=credentials))
