"""Validation of client names: a client's name becomes a directory under BaseDir."""

from __future__ import annotations

from .errors import InvalidArgument


def check_client_name(name: str) -> str:
    """Return ``name`` if it is one safe path component, else raise InvalidArgument."""
    if not name:
        raise InvalidArgument("client name is empty")
    if "\x00" in name:
        raise InvalidArgument("client name contains a NUL byte")
    if "/" in name or "\\" in name:
        raise InvalidArgument(f"client name {name!r} contains a path separator")
    if name in (".", ".."):
        raise InvalidArgument(f"client name {name!r} is not allowed")
    if name.startswith("."):
        raise InvalidArgument(f"client name {name!r} may not start with a dot")
    if len(name.encode("utf-8", "surrogateescape")) > 255:
        raise InvalidArgument("client name is longer than 255 bytes")
    return name
