"""Test-only fault injection: kill this process with SIGKILL at a named point.

``TARDIS_FAULT=<point>`` (or ``<point>:<n>``) with optional ``TARDIS_FAULT_AFTER=<n>``
(default 1): the n-th time the process passes ``fault_point(<point>)`` it dies as from
``kill -9``. ``TARDIS_FAULT_TRACE=<file>`` instead counts every point passed and writes the
counts as JSON to the file when the process exits (the crash suite samples kill points
from them). Used by the crash tests to stop a process at an exact moment without sleeps.

The environment is read once, at import: unset, a point costs one call and one test of a
module constant. Points are named ``<process>.<step>`` (``blobstore.after-link``); see
docs/operations.md ("Crashes and resumes") for the list.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import threading

_spec = os.environ.get("TARDIS_FAULT", "")
_name, _, _count = _spec.partition(":")
_ARMED: str | None = _name or None
_AFTER = int(_count or os.environ.get("TARDIS_FAULT_AFTER", "1") or 1)
_TRACE: str | None = os.environ.get("TARDIS_FAULT_TRACE") or None
_ACTIVE = _ARMED is not None or _TRACE is not None

_passes: dict[str, int] = {}
_lock = threading.Lock()


def fault_point(name: str) -> None:
    """Die here by SIGKILL when armed for ``name`` and this is its n-th pass."""
    if not _ACTIVE:
        return
    with _lock:
        _passes[name] = passes = _passes.get(name, 0) + 1
    if name == _ARMED and passes >= _AFTER:
        os.kill(os.getpid(), signal.SIGKILL)


def _write_trace() -> None:
    if _TRACE is None:
        return
    with _lock:
        counts = dict(_passes)
    with open(f"{_TRACE}.{os.getpid()}", "w", encoding="utf-8") as out:
        json.dump(counts, out, sort_keys=True)


if _TRACE is not None:
    atexit.register(_write_trace)
