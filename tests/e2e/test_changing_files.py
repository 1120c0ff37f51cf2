"""A file that keeps changing while it is read is retried, then reported; never stored torn."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers.trees import make_tree
from tardis_cli import backup, regenerate


def test_a_file_that_never_stops_changing_is_skipped_not_torn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_tree(tmp_path / "src", files=50)
    busy = source / "busy.log"
    busy.write_bytes(b"start\n" * 50_000)
    # Another process appends without pause for as long as the backup runs.
    writer = subprocess.Popen(["sh", "-c", f"while :; do echo more >> '{busy}'; done"])
    try:
        code = backup.main(["--repository", str(tmp_path / "repo" / "c"), "--create", str(source)])
    finally:
        writer.kill()
        writer.wait()
    err = capsys.readouterr().err
    assert code == 3, err
    assert "busy.log" in err and "kept changing" in err
    out = tmp_path / "out"
    assert regenerate.main(["--repository", str(tmp_path / "repo" / "c"), "-o", str(out), str(source)]) == 0
    assert not (out / "src" / "busy.log").exists()  # left out, not stored torn
    assert (out / "src" / "run.sh").read_text() == (source / "run.sh").read_text()
