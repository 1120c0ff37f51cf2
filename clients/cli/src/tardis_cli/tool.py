"""What every command-line tool shares: logging, and turning failures into one line."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable

from tardis_common.argparsing import given_options
from tardis_common.errors import TardisError
from tardis_common.settings import ClientSettings, load_client_settings
from tardis_common.urls import RepoURL


def setup_logging(verbosity: int, files: list[str] | None = None, with_time: bool = False) -> None:
    """Log at WARNING, -v INFO, -vv DEBUG; to stderr, or to ``files`` (":STDERR:", ":STDOUT:", paths)."""
    level = logging.WARNING - 10 * min(verbosity, 2)
    fmt = ("%(asctime)s " if with_time else "") + "%(levelname)s: %(message)s"
    handlers: list[logging.Handler] = []
    for name in files or []:
        if name == ":STDERR:":
            handlers.append(logging.StreamHandler(sys.stderr))
        elif name == ":STDOUT:":
            handlers.append(logging.StreamHandler(sys.stdout))
        else:
            handlers.append(logging.FileHandler(name, encoding="utf-8"))
    if not handlers:
        handlers.append(logging.StreamHandler(sys.stderr))
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(logging.Formatter(fmt))
    root.handlers = handlers
    root.setLevel(level)


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
    except BrokenPipeError:
        # The reader went away (`lstardis | head`): stop quietly, as `ls` does (128 + SIGPIPE).
        _silence_stdout()
        return 141
    except OSError as exc:
        if exceptions:
            traceback.print_exc()
        where = f" {exc.filename}:" if exc.filename else ""
        print(f"{prog}: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so flushing it at exit does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def settings_and_url(args: object, drop: tuple[str, ...] = ()) -> tuple[ClientSettings, RepoURL]:
    """The layered settings of a tool run and the repository they name."""
    given = given_options(args)  # type: ignore[arg-type]
    for key in drop:
        given.pop(key, None)
    settings = load_client_settings(given, getattr(args, "config", None), getattr(args, "job", None))
    return settings, settings.repo_url()
