"""Command-line parsing shared by the Tardis tools: @argfiles, one-line usage errors, common options.

Every common option defaults to ``argparse.SUPPRESS``, so :func:`given_options` returns only
what the user typed, keyed by ClientSettings field names: the command-line layer of the
settings (see :mod:`tardis_common.settings`).
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

USAGE_EXIT = 2

# "--password" given without a value: ask for it. A NUL cannot occur in argv or a config
# file, so no real password is mistaken for it (an empty string would be: settings read an
# empty value as "not given").
PASSWORD_PROMPT = "\x00prompt"


class TardisArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose @argfile lines are split on whitespace (``#`` starts a comment)
    and whose usage errors are one line on stderr with exit status 2."""

    def convert_arg_line_to_args(self, arg_line: str) -> list[str]:
        return arg_line.split("#", 1)[0].split()

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(USAGE_EXIT, f"{self.prog}: error: {text}\n")


def make_parser(prog: str, description: str) -> TardisArgumentParser:
    return TardisArgumentParser(prog=prog, description=description, fromfile_prefix_chars="@")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not between 1 and 65535")
    return value


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options every client tool shares; defaults stay unset (see given_options)."""
    quiet: Any = argparse.SUPPRESS
    group = parser.add_argument_group("repository and configuration")
    group.add_argument("--config", dest="config", default=quiet, help="config file (env TARDIS_CONFIG)")
    group.add_argument("--job", dest="job", default=quiet, help="config file section (default Tardis)")
    group.add_argument(
        "--repository",
        "-R",
        dest="repository",
        default=quiet,
        help="path, file://, tardis:// or http(s):// URL",
    )
    group.add_argument("--server", dest="server", default=quiet, help="server host (seed spelling)")
    group.add_argument("--port", dest="port", type=_port, default=quiet, help="server port (default 7420)")
    group.add_argument("--client", "-C", dest="client", default=quiet, help="client name (default: host name)")
    group.add_argument("--database", "-D", dest="database", default=quiet, help="local base directory")

    secrets = parser.add_argument_group("password and keys")
    password = secrets.add_mutually_exclusive_group()
    password.add_argument(
        "--password",
        "-P",
        dest="password",
        nargs="?",
        const=PASSWORD_PROMPT,
        default=quiet,
        help="password (no value: prompt)",
    )
    password.add_argument(
        "--password-file",
        "-F",
        dest="password_file",
        default=quiet,
        help="read the password from a file or URL",
    )
    password.add_argument("--password-prog", dest="password_prog", default=quiet, help="run a program for the password")
    secrets.add_argument("--keys", dest="keyfile", default=quiet, help="file holding the encryption keys")

    parser.add_argument("--verbose", "-v", dest="verbosity", action="count", default=quiet, help="more output")
    parser.add_argument(
        "--exceptions", "-E", dest="exceptions", action="store_true", default=quiet, help="show tracebacks"
    )


def given_options(namespace: argparse.Namespace) -> dict[str, Any]:
    """The options actually given on the command line, keyed by settings field name."""
    return dict(vars(namespace))
