"""Logging of the server processes: one line per record, as logfmt (``text``) or JSON.

Events are records with a name and fields, written with :func:`event`::

    event(log, "session_finished", client="alice", set_id=3, files=120, bytes=5_000_000)

    text: ts=2025-01-02T03:04:05.678Z level=info logger=tardis_ingest.core event=session_finished client=alice ...
    json: {"ts": "2025-01-02T03:04:05.678Z", "level": "info", "logger": "...", "event": "session_finished", ...}

Ordinary records get ``msg=...`` instead of event fields; a traceback goes into ``exc`` with
its line breaks escaped, so every record stays one line. Under another formatter (the
client tools' plain one) an event reads ``session_finished client=alice ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_FORMAT_ENV = "TARDIS_LOG_FORMAT"
_EVENT = "tardis_event"
_FIELDS = "tardis_fields"


def _plain(value: Any) -> Any:
    """A field value as JSON can carry it (bytes as hex, sequences as lists)."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


def _logfmt_value(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, float):
        value = f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "nan"
    text = "" if value is None else str(value)
    if text and not any(c in text for c in ' "=\\') and text.isprintable():
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    escaped = escaped.replace("\t", "\\t")
    return f'"{escaped}"'


def logfmt(fields: Mapping[str, Any]) -> str:
    """``key=value`` pairs, values quoted when they hold spaces, quotes or ``=``."""
    return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())


def event(logger: logging.Logger, name: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """Log the event ``name`` with ``fields`` (never secrets) as one record."""
    if logger.isEnabledFor(level):
        logger.log(level, "%s", _Rendered(name, fields), extra={_EVENT: name, _FIELDS: fields})


class _Rendered:
    """The message of an event record under a plain formatter, rendered only when shown."""

    def __init__(self, name: str, fields: Mapping[str, Any]) -> None:
        self.name, self.fields = name, fields

    def __str__(self) -> str:
        return f"{self.name} {logfmt(self.fields)}".rstrip()


def _timestamp(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


def record_fields(record: logging.LogRecord, prog: str | None = None) -> dict[str, Any]:
    """The fields of one record: time, level, program, logger, then the event's or the message."""
    fields: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname.lower()}
    if prog:
        fields["prog"] = prog
    fields["logger"] = record.name
    name = getattr(record, _EVENT, None)
    if name is not None:
        fields["event"] = name
        for key, value in getattr(record, _FIELDS, {}).items():
            fields[key if key not in fields else f"field_{key}"] = value
    else:
        fields["msg"] = record.getMessage()
    if record.exc_info:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    return fields


class LogfmtFormatter(logging.Formatter):
    def __init__(self, prog: str | None = None) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        return logfmt(record_fields(record, self.prog))


class JsonFormatter(logging.Formatter):
    def __init__(self, prog: str | None = None) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        fields = {key: _plain(value) for key, value in record_fields(record, self.prog).items()}
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def setup_logging(
    prog: str,
    *,
    verbose: int = 0,
    log_format: str = "text",
    filename: str | None = None,
) -> None:
    """Configure the root logger of a server process: WARNING, INFO with one ``-v`` (events
    are INFO), DEBUG with two; to ``filename`` or stderr; one line per record."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    handler: logging.Handler = logging.FileHandler(filename) if filename else logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(prog) if log_format == "json" else LogfmtFormatter(prog))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    """--log-format for a service's command line (default $TARDIS_LOG_FORMAT, else text)."""
    default = os.environ.get(LOG_FORMAT_ENV, "text").strip().lower() or "text"
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=default if default in LOG_FORMATS else "text",
        help=f"log lines as logfmt key=value (text) or JSON (default ${LOG_FORMAT_ENV} or text)",
    )
