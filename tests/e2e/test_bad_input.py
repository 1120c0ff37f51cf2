"""Bad input: one clear line on stderr, a non-zero exit, no traceback, nothing changed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.services import free_port
from helpers.trees import make_tree
from tardis_cli import backup, regenerate, sonic


def listing(path: Path) -> list[tuple[str, int, int]]:
    if not path.exists():
        return []
    found = []
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            found.append((os.path.relpath(os.path.join(dirpath, name), path), st.st_size, st.st_mtime_ns))
    return sorted(found)


def fails_cleanly(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture
def made(repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A repository with one complete set."""
    source = make_tree(tmp_path / "src", files=10)
    assert backup.main(["--repository", repository, "--create", str(source)]) == 0
    capsys.readouterr()
    return repository


def test_missing_directory(repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    code = backup.main(["--repository", repository, "--create", str(missing)])
    fails_cleanly(capsys, code, str(missing), "does not exist")
    assert sonic.main(["list", "--repository", repository]) != 0  # the client was not created
    fails_cleanly(capsys, 1, "does not exist")


def test_repository_missing_without_create(repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_tree(tmp_path / "src", files=5)
    code = backup.main(["--repository", repository, str(source)])
    fails_cleanly(capsys, code, "does not exist", "--create")
    if "://" not in repository:
        assert not Path(repository).exists()


def test_create_on_existing(made: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = listing(Path(made)) if "://" not in made else None
    code = backup.main(["--repository", made, "--create", str(tmp_path / "src")])
    fails_cleanly(capsys, code, "already exists")
    if before is not None:
        assert listing(Path(made)) == before
    assert sonic.main(["list", "--repository", made, "--json"]) == 0
    assert capsys.readouterr().out.count('"id"') == 1


def test_unknown_set(made: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = regenerate.main(["--repository", made, "-o", str(out), "--backup", "Nonesuch"])
    fails_cleanly(capsys, code, "Nonesuch", "does not exist")
    assert not out.exists()


def test_path_not_in_set(made: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = regenerate.main(["--repository", made, "-o", str(tmp_path / "out"), "/no/such/path"])
    fails_cleanly(capsys, code, "/no/such/path")


def test_unreadable_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = sonic.main(["list", "--config", str(tmp_path / "missing.cfg"), "--repository", str(tmp_path / "r" / "c")])
    fails_cleanly(capsys, code, "missing.cfg")


@pytest.mark.parametrize("name", ["..", ".", "a\x00b", "x" * 256])
def test_bad_client_names(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_tree(tmp_path / "src", files=3)
    code = backup.main(["--server", "127.0.0.1", "--client", name, "--create", str(source)])
    fails_cleanly(capsys, code, "client name")
    code = backup.main(["--database", str(tmp_path / "base"), "--client", name, "--create", str(source)])
    fails_cleanly(capsys, code, "client name")
    assert not (tmp_path / "base").exists()


def test_bad_repository_url(capsys: pytest.CaptureFixture[str]) -> None:
    code = sonic.main(["list", "--repository", "tardis://127.0.0.1:notaport/c"])
    fails_cleanly(capsys, code, "port")


def test_version_too_far_apart(
    repository: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tardis_cli.backup_run
    import tardis_cli.connect

    monkeypatch.setattr(tardis_cli.connect, "PROTOCOL_VERSION", 99)
    monkeypatch.setattr(tardis_cli.backup_run, "PROTOCOL_VERSION", 99)
    monkeypatch.setattr(tardis_cli.connect, "__version__", "9.9.9")
    monkeypatch.setattr(tardis_cli.backup_run, "__version__", "9.9.9")
    source = make_tree(tmp_path / "src", files=3)
    code = backup.main(["--repository", repository, "--create", str(source)])
    line = fails_cleanly(capsys, code, "9.9.9", "0.1.0")
    assert "version" in line


def test_unreachable_server_fails_fast(tmp_path: Path) -> None:
    port = free_port()  # nobody listens on it
    source = make_tree(tmp_path / "src", files=3)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tardis_cli.backup", "--repository", f"tardis://127.0.0.1:{port}/c", str(source)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "cannot reach server" in done.stderr and str(port) in done.stderr
    assert elapsed < 12, f"took {elapsed:.1f} s to report a refused connection"


def test_a_key_file_without_a_password_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key file asks for encryption: without a password it must not give a clear-text backup."""
    source = make_tree(tmp_path / "src", files=3)
    repository = tmp_path / "repo" / "c"
    code = backup.main(["--repository", str(repository), "--create", "--keys", str(tmp_path / "k"), str(source)])
    fails_cleanly(capsys, code, "--keys")
    assert not (repository / "tardis.db").exists()


def test_two_password_sources_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_tree(tmp_path / "src", files=3)
    config = tmp_path / "tardis.cfg"
    config.write_text("[Tardis]\nPassword = one\n")
    repository = tmp_path / "repo" / "c"
    code = backup.main(
        [
            "--config",
            str(config),
            "--repository",
            str(repository),
            "--create",
            "--password-file",
            "/etc/hostname",
            str(source),
        ]
    )
    fails_cleanly(capsys, code, "at most one password source")
    assert not (repository / "tardis.db").exists()
