"""What every command-line tool shares: logging, and turning failures into one line."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable

from tardis_common.argparsing import given_options
from tardis_common.errors import TardisError
from tardis_common.settings import ClientSettings, load_client_settings
from tardis_common.urls import RepoURL


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)


def run(prog: str, body: Callable[[], int], *, exceptions: bool = False) -> int:
    """Run ``body``; an expected failure prints ``prog: error: ...`` and returns its exit code."""
    try:
        return body()
    except TardisError as exc:
        if exceptions:
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exceptions:
            traceback.print_exc()
        where = f" {exc.filename}" if exc.filename else ""
        print(f"{prog}: error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def settings_and_url(args: object, drop: tuple[str, ...] = ()) -> tuple[ClientSettings, RepoURL]:
    """The layered settings of a tool run and the repository they name."""
    given = given_options(args)  # type: ignore[arg-type]
    for key in drop:
        given.pop(key, None)
    settings = load_client_settings(given, getattr(args, "config", None), getattr(args, "job", None))
    return settings, settings.repo_url()
