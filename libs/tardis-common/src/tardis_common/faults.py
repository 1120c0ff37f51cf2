"""Test-only fault injection: kill this process with SIGKILL at a named point.

Set ``TARDIS_FAULT=<point>`` and optionally ``TARDIS_FAULT_AFTER=<n>`` (default 1): the
n-th time the process passes ``fault_point(<point>)`` it dies as from ``kill -9``. Used by
the crash tests to stop a backup at an exact moment without sleeps. Unset, it costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_passes: dict[str, int] = {}


def fault_point(name: str) -> None:
    if os.environ.get("TARDIS_FAULT") != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= int(os.environ.get("TARDIS_FAULT_AFTER", "1")):
        os.kill(os.getpid(), signal.SIGKILL)
