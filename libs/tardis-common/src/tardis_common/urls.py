"""Repository URLs: where one client's backups live, spelled the same way by every tool.

- a path or ``file:///path/Client``: a local (embedded) repository; the last component is
  the client, its parent the BaseDir;
- ``tardis://host[:port]/Client``: the gRPC front door (default port 7420);
- ``http(s)://host[:port]/Client``: remote-http (default port 7430).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast
from urllib.parse import quote, unquote, urlsplit

from .errors import ConfigError, InvalidArgument
from .names import check_client_name

Scheme = Literal["file", "tardis", "http", "https"]

DEFAULT_PORTS: dict[str, int] = {"tardis": 7420, "http": 7430, "https": 7430}

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_HOST_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")


@dataclass(frozen=True)
class RepoURL:
    """A parsed repository location. ``path`` is the BaseDir (parent of the client dir) for file URLs."""

    scheme: Scheme
    client: str
    path: Path | None = None
    host: str | None = None
    port: int | None = None

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def base_dir(self) -> Path:
        """The directory holding one directory per client (file URLs only)."""
        if self.path is None:
            raise InvalidArgument(f"repository {self} is not a local directory")
        return self.path

    @property
    def client_dir(self) -> Path:
        return self.base_dir / self.client

    @property
    def address(self) -> str:
        """``host:port`` as gRPC and HTTP clients want it, an IPv6 host in brackets."""
        if self.host is None or self.port is None:
            raise InvalidArgument(f"repository {self} has no network address")
        return f"{_bracket(self.host)}:{self.port}"

    def __str__(self) -> str:
        if self.scheme == "file":
            where = self.path / self.client if self.path is not None else Path(self.client)
            return "file://" + quote(str(where))
        host = _bracket(self.host or "")
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{host}{port}/{quote(self.client, safe='')}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def default_client() -> str:
    """The short host name, the seed's default client name."""
    return socket.gethostname().split(".")[0]


def parse_repository(text: str) -> RepoURL:
    """Parse a repository path or URL; raise InvalidArgument with a one-line message if it is bad."""
    if not text or not text.strip():
        raise InvalidArgument("repository is empty")
    match = _SCHEME_RE.match(text)
    if match is None or ("://" not in text and match.group(1).lower() != "file"):
        return _local(os.path.expanduser(text), text)
    scheme = match.group(1).lower()
    if scheme != "file" and scheme not in DEFAULT_PORTS:
        raise InvalidArgument(
            f"unknown repository URL scheme {scheme!r} in {text!r}: use a path, file://, tardis://, http:// or https://"
        )
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise InvalidArgument(f"bad repository URL {text!r}: {exc}") from None
    if parts.query or parts.fragment:
        raise InvalidArgument(f"repository URL {text!r} may not have a query or a fragment")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidArgument(f"file URL {text!r} names a host: use file:///path/Client")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise InvalidArgument(f"file URL {text!r} needs an absolute path: use file:///path/Client")
        return _local(path, text)
    if "@" in parts.netloc:
        raise InvalidArgument(f"repository URL {text!r} may not contain a user name")
    host = _check_host(parts.hostname or "", text)
    try:
        port = parts.port
    except ValueError:
        raise InvalidArgument(f"bad port in repository URL {text!r}") from None
    if port is None:
        port = DEFAULT_PORTS[scheme]
    elif port == 0:
        raise InvalidArgument(f"bad port in repository URL {text!r}")
    client = unquote(parts.path)
    client = client[1:] if client.startswith("/") else client
    client = client[:-1] if client.endswith("/") else client
    if not client:
        raise InvalidArgument(f"repository URL {text!r} names no client: use {scheme}://host[:port]/Client")
    check_client_name(client)
    return RepoURL(cast(Scheme, scheme), client, host=host, port=port)


def _check_host(host: str, text: str) -> str:
    if not host:
        raise InvalidArgument(f"repository URL {text!r} names no host")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise InvalidArgument(f"bad IPv6 address {host!r} in {text!r}") from None
    elif not _HOST_RE.match(host):
        raise InvalidArgument(f"bad host name {host!r} in {text!r}")
    return host


def _local(path: str, text: str) -> RepoURL:
    """A file repository from a path whose last component is the client."""
    trimmed = path.rstrip("/") or path
    head, name = os.path.split(trimmed)
    if not name:
        raise InvalidArgument(f"repository {text!r} names no client directory: use /path/Client")
    check_client_name(name)
    if "\x00" in head:
        raise InvalidArgument("repository path contains a NUL byte")
    return RepoURL("file", name, path=Path(os.path.abspath(head or ".")))


def _port(port: int | str | None, default: int) -> int:
    if port is None:
        return default
    try:
        value = int(port)
    except (TypeError, ValueError):
        raise InvalidArgument(f"bad port {port!r}") from None
    if not 1 <= value <= 65535:
        raise InvalidArgument(f"port {value} is not between 1 and 65535")
    return value


def build_repository(
    repository: str | None = None,
    server: str | None = None,
    port: int | str | None = None,
    client: str | None = None,
    database: str | os.PathLike[str] | None = None,
) -> RepoURL:
    """The repository from the seed's spellings.

    ``--repository`` wins; else ``--database DIR`` with ``--client NAME`` (a local repository
    DIR/NAME); else ``--server HOST [--port P]`` with ``--client NAME`` (``tardis://``). The
    client defaults to the short host name.
    """
    if repository is not None:
        return parse_repository(repository)
    if database is None and server is None:
        raise ConfigError("no repository given: use --repository")
    name = check_client_name(client if client is not None else default_client())
    if database is not None:
        base = os.path.abspath(os.path.expanduser(os.fspath(database)))
        if "\x00" in base:
            raise InvalidArgument("database path contains a NUL byte")
        return RepoURL("file", name, path=Path(base))
    assert server is not None
    host = server[1:-1] if server.startswith("[") and server.endswith("]") else server
    host = _check_host(host, server)
    return RepoURL("tardis", name, host=host, port=_port(port, DEFAULT_PORTS["tardis"]))
