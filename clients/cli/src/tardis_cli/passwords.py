"""Where a tool gets its password: --password/-P (a value, or a prompt), --password-file/-F
(a path or a file:, http: or https: URL; its first line), or --password-prog (the first line
of a program's output), and the matching config keys and environment variables. At most one.
"""

from __future__ import annotations

import getpass
import subprocess
import sys
import urllib.error
import urllib.request
from urllib.parse import urlparse

from tardis_common.argparsing import PASSWORD_PROMPT
from tardis_common.errors import ConfigError, InvalidArgument
from tardis_common.settings import ClientSettings

PROGRAM_TIMEOUT_S = 60.0


def _first_line(data: bytes, where: str) -> bytes:
    line = data.splitlines()[0] if data else b""
    if not line:
        raise ConfigError(f"{where} gave an empty password")
    return line


def _from_file(location: str) -> bytes:
    parsed = urlparse(location)
    try:
        if parsed.scheme in ("http", "https", "ftp"):
            with urllib.request.urlopen(location, timeout=30) as reply:
                return _first_line(reply.read(64 * 1024), f"password URL {location}")
        path = parsed.path if parsed.scheme == "file" else location
        with open(path, "rb") as handle:
            return _first_line(handle.read(64 * 1024), f"password file {path}")
    except (OSError, urllib.error.URLError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise ConfigError(f"cannot read the password from {location}: {reason}") from None


def _from_program(command: str) -> bytes:
    try:
        done = subprocess.run(command, shell=True, capture_output=True, timeout=PROGRAM_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"password program {command!r} failed: {exc}") from None
    if done.returncode != 0:
        raise ConfigError(f"password program {command!r} exited with status {done.returncode}")
    return _first_line(done.stdout, f"password program {command!r}")


def _prompt(confirm: bool, client: str) -> bytes:
    if not sys.stdin.isatty():
        line = sys.stdin.buffer.readline().rstrip(b"\r\n")
        if not line:
            raise ConfigError("a password was asked for, but none was given on standard input")
        return line
    first = getpass.getpass(f"Password for {client}: ")
    if confirm and getpass.getpass("Confirm password: ") != first:
        raise InvalidArgument("the passwords do not match")
    if not first:
        raise ConfigError("an empty password was given")
    return first.encode()


def sources_given(settings: ClientSettings) -> list[str]:
    return [
        name
        for name, value in (
            ("--password", settings.password),
            ("--password-file", settings.password_file),
            ("--password-prog", settings.password_prog),
        )
        if value is not None
    ]


def has_password(settings: ClientSettings) -> bool:
    return bool(sources_given(settings))


def get_password(settings: ClientSettings, *, confirm: bool = False) -> bytes | None:
    """The password the settings name, or None when none is given. ``confirm``: prompt twice."""
    given = sources_given(settings)
    if not given and settings.keyfile:
        raise ConfigError("a key file (--keys) holds keys wrapped by a password: give the password too")
    if len(given) > 1:
        raise ConfigError(f"give at most one password source, not {' and '.join(given)}")
    if settings.password is not None:
        if settings.password == PASSWORD_PROMPT:
            return _prompt(confirm, settings.client)
        return settings.password.encode()
    if settings.password_file is not None:
        return _from_file(settings.password_file)
    if settings.password_prog is not None:
        return _from_program(settings.password_prog)
    return None


# tardisfs spells the same sources as mount options (the seed: "-o password=" prompts).
MOUNT_OPTIONS = {"password": "password", "pwfile": "password_file", "pwprog": "password_prog", "keys": "keyfile"}


def mount_password_options(options: str | dict[str, str]) -> dict[str, str]:
    """The settings named by tardisfs ``-o`` options: ``password=[PW]`` (empty: prompt),
    ``pwfile=PATH|URL``, ``pwprog=CMD``, ``keys=FILE``; other options are left alone."""
    if isinstance(options, str):
        pairs = [item.partition("=") for item in options.split(",") if item]
        options = {key.strip(): value for key, _, value in pairs}
    return {MOUNT_OPTIONS[key]: value for key, value in options.items() if key in MOUNT_OPTIONS}
