"""sonic verify: missing and damaged objects are found; a healthy repository passes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from helpers.trees import make_tree
from tardis_cli import backup, sonic


def object_of(repository: str, content: bytes) -> Path:
    """Where the object of a small file's content is stored (its address is its SHA-256)."""
    address = hashlib.sha256(content).hexdigest()
    return Path(repository) / address[:2] / address[2:4] / address


def test_verify_finds_missing_and_damaged_objects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository = str(tmp_path / "repo" / "host")
    source = make_tree(tmp_path / "src", files=60)
    assert backup.main(["--repository", repository, "--create", str(source)]) == 0
    big = source / "big.bin"
    big.write_bytes(os.urandom(300_000))
    assert backup.main(["--repository", repository, str(source)]) == 0
    with open(big, "r+b") as f:
        f.write(b"edit")
    assert backup.main(["--repository", repository, str(source)]) == 0  # a delta on big.bin
    capsys.readouterr()
    assert sonic.main(["verify", "--repository", repository, "--deep"]) == 0
    assert ", 0 problems" in capsys.readouterr().out

    missing = object_of(repository, (source / "run.sh").read_bytes())
    missing.unlink()
    damaged = object_of(repository, (source / "private" / "secret").read_bytes())
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x55
    damaged.write_bytes(bytes(data))
    assert sonic.main(["verify", "--repository", repository]) == 1
    out = capsys.readouterr().out
    assert f"missing: {missing.name}" in out and ", 1 problems" in out  # same size: only --deep sees it
    assert sonic.main(["verify", "--repository", repository, "--deep"]) == 1
    out = capsys.readouterr().out
    assert f"missing: {missing.name}" in out and damaged.name in out and ", 2 problems" in out
