"""tardisd: ingest, catalog and blobstore in one process, configured by the seed's file."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.services import start
from helpers.trees import assert_same_tree, make_tree
from tardis_cli import backup, regenerate


def test_tardisd_serves_a_backup_and_restore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base"
    base.mkdir()
    config = tmp_path / "tardisd.cfg"
    config.write_text(
        f"[Tardis]\nBaseDir = {base}\n\n[Daemon]\nPort = 0\nAllowNewHosts = True\nAllowAnonymous = True\n"
    )
    daemon = start("tardis_ingest.tardisd", "--config", str(config))
    try:
        source = make_tree(tmp_path / "src", files=200)
        url = f"tardis://{daemon.address}/laptop"
        assert backup.main(["--repository", url, "--create", str(source)]) == 0
        assert (base / "laptop" / "tardis.db").is_file()
        out = tmp_path / "out"
        assert regenerate.main(["--repository", url, "-o", str(out), str(source)]) == 0
        assert_same_tree(source, out / "src")
    finally:
        assert daemon.stop() == 0


def test_tardisd_refuses_new_hosts_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base"
    base.mkdir()
    daemon = start("tardis_ingest.tardisd", "--basedir", str(base), "--port", "0")
    try:
        source = make_tree(tmp_path / "src", files=3)
        code = backup.main(["--repository", f"tardis://{daemon.address}/stranger", "--create", str(source)])
        assert code == 1
        assert "does not allow new clients" in capsys.readouterr().err
        assert not (base / "stranger").exists()
    finally:
        daemon.stop()


def test_tardisd_bad_basedir_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tardis_ingest.tardisd", "--basedir", str(tmp_path / "missing"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "missing" in done.stderr


def test_tardisremote_beside_tardisd_reads_through_its_internal_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The seed's pair on one host: tardisd holds the catalog and blobstore, tardisremote (with
    no addresses configured) reaches them over tardisd's owner-only Unix socket."""
    base = tmp_path / "b"
    base.mkdir()
    config = tmp_path / "tardis.cfg"
    config.write_text(
        f"[Tardis]\nBaseDir = {base}\n\n[Daemon]\nPort = 0\nAllowNewHosts = True\nAllowAnonymous = True\n\n"
        "[Remote]\nPort = 0\nAllowAnonymous = True\nWorkers = 1\n"
    )
    daemon = start("tardis_ingest.tardisd", "--config", str(config))
    try:
        socket_path = base / ".tardis-internal.sock"
        assert stat.S_ISSOCK(socket_path.lstat().st_mode)
        assert stat.S_IMODE(socket_path.lstat().st_mode) == 0o600
        source = make_tree(tmp_path / "src", files=50)
        assert backup.main(["--repository", f"tardis://{daemon.address}/laptop", "--create", str(source)]) == 0
        remote = start("tardis_remote.main", "--config", str(config))
        try:
            out = tmp_path / "out"
            assert (
                regenerate.main(["--repository", f"http://{remote.address}/laptop", "-o", str(out), str(source)]) == 0
            )
            assert_same_tree(source, out / "src")
        finally:
            assert remote.stop() == 0
    finally:
        assert daemon.stop() == 0
    assert not socket_path.exists() or stat.S_ISSOCK(socket_path.lstat().st_mode)
