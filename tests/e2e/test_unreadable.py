"""Unreadable files: the set still completes, the counts are printed, and the exit code is 3."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tardis_cli import regenerate, sonic

SETPRIV = shutil.which("setpriv")


@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is needed to drop root's read-anything capability")
def test_unreadable_entries_complete_the_set_and_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "src"
    (source / "closed").mkdir(parents=True)
    (source / "closed" / "inside").write_text("hidden\n")
    (source / "ok.txt").write_text("fine\n")
    (source / "secret.txt").write_text("secret\n")
    os.chmod(source / "secret.txt", 0)
    os.chmod(source / "closed", 0)
    repository = tmp_path / "repo" / "host"
    try:
        # As root but without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, mode 000 really is unreadable.
        done = subprocess.run(
            [
                SETPRIV,
                "--bounding-set",
                "-dac_override,-dac_read_search",
                sys.executable,
                "-m",
                "tardis_cli.backup",
                "--repository",
                str(repository),
                "--create",
                "--no-exclude-no-access",
                str(source),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.chmod(source / "closed", 0o755)
        os.chmod(source / "secret.txt", 0o644)
    assert done.returncode == 3, done.stderr
    assert "could not be read" in done.stderr and "Traceback" not in done.stderr
    assert sonic.main(["list", "--repository", str(repository), "--json"]) == 0
    sets = json.loads(capsys.readouterr().out)
    assert [s["completed"] for s in sets] == [True]
    out = tmp_path / "out"
    assert regenerate.main(["--repository", str(repository), "-o", str(out), str(source)]) == 0
    assert (out / "src" / "ok.txt").read_text() == "fine\n"
    assert not (out / "src" / "secret.txt").exists()
