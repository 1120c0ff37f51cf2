"""Assertions on what a command-line tool printed."""

from __future__ import annotations

import pytest


def one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """The tool's stderr: exactly one line, no traceback, holding every one of ``words``."""
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err
    return err
