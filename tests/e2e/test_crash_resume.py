"""kill -9 in the middle of a backup: completed sets stay intact, the next run resumes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.trees import assert_same_tree, make_tree
from tardis_cli import backup, regenerate, sonic


def killed_backup(repository: str, source: Path) -> None:
    env = {**os.environ, "TARDIS_FAULT": "after-upload", "TARDIS_FAULT_AFTER": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "tardis_cli.backup", "--repository", repository, str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


def listed(repository: str, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    capsys.readouterr()
    assert sonic.main(["list", "--repository", repository, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_kill_during_backup_then_resume(repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_tree(tmp_path / "src", files=3000)
    assert backup.main(["--repository", repository, "--create", str(source)]) == 0
    first = tmp_path / "first"
    shutil.copytree(source, first, symlinks=True)

    # Change every file, so the second run uploads in many batches; kill it after two.
    for path in source.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.write_bytes(path.read_bytes() + b"+")
    killed_backup(repository, source)

    sets = listed(repository, capsys)
    assert [s["completed"] for s in sets] == [True, False]
    out = tmp_path / "set1"
    assert regenerate.main(["--repository", repository, "-o", str(out), str(source)]) == 0
    assert_same_tree(first, out / "src")  # Current is still the completed set

    # The next run resumes the incomplete set (taking over the dead run's lease) and completes it.
    capsys.readouterr()
    assert backup.main(["--repository", repository, str(source)]) == 0
    assert "resumed" in capsys.readouterr().out
    sets = listed(repository, capsys)
    assert [s["completed"] for s in sets] == [True, True]
    assert sets[1]["id"] == 2
    out = tmp_path / "set2"
    assert regenerate.main(["--repository", repository, "-o", str(out), str(source)]) == 0
    assert_same_tree(source, out / "src")
    out = tmp_path / "set1-again"
    assert regenerate.main(["--repository", repository, "-o", str(out), "-b", "1", str(source)]) == 0
    assert_same_tree(first, out / "src")


def test_a_dead_runs_lease_is_taken_over_by_the_next_run_on_its_host(
    repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lease of a run killed on this host is taken over at once (its pid is gone); a live
    run's lease is refused (tests/reliability/test_concurrency.py)."""
    source = make_tree(tmp_path / "src", files=2500)
    assert backup.main(["--repository", repository, "--create", str(source)]) == 0
    for path in source.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.write_bytes(path.read_bytes() + b"+")
    killed_backup(repository, source)
    capsys.readouterr()
    code = backup.main(["--repository", repository, str(source)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "taking over the backup of run" in captured.err and "resumed" in captured.out
