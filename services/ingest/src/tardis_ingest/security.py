"""Where the ingest service's secrets come from: the server key and the admin credential."""

from __future__ import annotations

import os
from pathlib import Path

from tardis_common.auth.server_key import load_or_create_server_key
from tardis_common.errors import ConfigError
from tardis_common.service_auth import read_secret_file

SERVER_KEY_NAME = ".tardis-server.key"


def server_key_for(path: str | None, base_dir: Path | None = None) -> bytes:
    """The key sealing login handshakes and session tokens: from ``path``, or made on first
    start under ``base_dir``. Every replica serving the same clients must share it."""
    if path:
        return load_or_create_server_key(path)
    if base_dir is not None:
        return load_or_create_server_key(os.path.join(base_dir, SERVER_KEY_NAME))
    raise ConfigError("a server key file is needed (--server-key-file or ServerKeyFile)")


def load_admin_secret(path: str | None) -> str | None:
    """The admin credential (first line of ``path``), or None when the server has none."""
    return read_secret_file(path, "admin secret", min_length=16) if path else None
