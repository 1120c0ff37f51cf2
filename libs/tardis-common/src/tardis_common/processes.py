"""Whether a process named by its pid still runs: how a lease or a temporary file left by a
writer on this host is known to be abandoned."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one we may not signal counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    except OverflowError:  # larger than any pid
        return False
    return True
