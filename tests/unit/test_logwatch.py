"""The logwatch service script (deploy/logwatch/scripts/services/tardisd) on real tardisd logs.

The script runs as logwatch runs it: a subprocess reading log lines on stdin, with the
range and detail in its environment.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.services import start
from helpers.trees import make_tree
from tardis_cli import backup, sonic

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "logwatch" / "scripts" / "services" / "tardisd"
PASSWORD = "logwatch test password"


def summarise(text: str, *, date_range: str = "all", detail: int = 5) -> str:
    env = {**os.environ, "LOGWATCH_DATE_RANGE": date_range, "LOGWATCH_DETAIL_LEVEL": str(detail)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], input=text, capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARDIS_STATE_DIR", str(tmp_path / "state"))


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_summary_of_a_real_daemon_log(
    log_format: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "base"
    base.mkdir()
    log = tmp_path / "tardisd.log"
    admin = tmp_path / "admin.secret"
    admin.write_text(secrets.token_urlsafe(24) + "\n")
    admin.chmod(0o600)
    daemon = start(
        "tardis_ingest.tardisd",
        "--basedir",
        str(base),
        "--port",
        "0",
        "--allow-new-hosts",
        "--admin-secret-file",
        str(admin),
        "-v",
        "--logfile",
        str(log),
        "--log-format",
        log_format,
    )
    try:
        source = make_tree(tmp_path / "src", files=12)
        url = f"tardis://{daemon.address}/alice"
        assert backup.main(["--repository", url, "--create", "-P", PASSWORD, "--name", "first", str(source)]) == 0
        (source / "more.txt").write_bytes(os.urandom(50_000))
        assert backup.main(["--repository", url, "-P", PASSWORD, "--name", "second", str(source)]) == 0
        assert backup.main(["--repository", url, "-P", "not the password", str(source)]) == 1
        monkeypatch.setenv("TARDIS_ADMIN_SECRET_FILE", str(admin))
        assert sonic.main(["delete", "--repository", url, "-P", PASSWORD, "first"]) == 0
        other = f"tardis://{daemon.address}/bob"
        assert backup.main(["--repository", other, "--create", "-P", PASSWORD, str(source)]) == 0
    finally:
        assert daemon.stop() == 0
    capsys.readouterr()
    text = log.read_text()
    assert text.count("\n") >= 6, text

    out = summarise(text)
    assert "    alice: 2 completed" in out, out
    assert "    bob: 1 completed" in out, out
    assert "completed first" in out and "completed second" in out, out
    assert "Sets completed: 3" in out and "Sets failed: 0" in out, out
    assert "Failed logins: 1" in out and "alice from " in out, out
    assert "Sets purged: 1" in out and "purged first" in out, out
    received = int(out.split("Bytes received: ")[1].split("(")[1].split(")")[0])
    assert received >= 50_000, out  # more.txt is incompressible
    assert "not finished" not in out, out

    # Low detail: the totals, without each set.
    low = summarise(text, detail=0)
    assert "Sets completed: 3" in low and "completed first" not in low, low


def test_old_plain_format_and_unfinished_sets() -> None:
    """The lines tardisd wrote before its events (asctime level logger: message) still count."""
    lines = [
        "2025-01-02 03:00:00,001 INFO tardis_ingest.login: client carol: logged in from ipv4:10.0.0.9:4000",
        "2025-01-02 03:00:00,002 INFO tardis_ingest.core: client carol: opened set 4",
        "2025-01-02 03:00:09,000 INFO tardis_ingest.core: client carol: completed set 4 as Daily-2025-01-02",
        "2025-01-02 03:00:09,001 INFO tardis_ingest.core: client carol: retention removed"
        " Daily-2024-12-01, Daily-2024-12-02",
        "2025-01-02 04:00:00,000 INFO tardis_ingest.core: client dave: opened set 9",
        "2025-01-02 05:00:00,000 WARNING tardis_ingest.login: client eve: failed login from ipv4:203.0.113.5:999",
        "2025-01-02 05:00:01,000 WARNING tardis_ingest.login: client eve: failed login from ipv4:203.0.113.5:999",
        "2025-01-02 06:00:00,000 ERROR tardis_common.rpc: internal error",
        "2025-01-02 06:00:00,500 INFO something.else: unrelated",
    ]
    out = summarise("\n".join(lines) + "\n")
    assert "    carol: 1 completed, 2 purged" in out, out
    assert "purged Daily-2024-12-01" in out and "purged Daily-2024-12-02" in out, out
    assert "    dave: 0 completed, 1 not finished in this log" in out and "not finished: set 9" in out, out
    assert "Failed logins: 2" in out and "eve from ipv4:203.0.113.5:999: 2 time(s)" in out, out
    assert "Warnings and errors: 1" in out and "internal error" in out, out
    assert "Logins: 1" in out, out


def test_failed_sessions_and_quoted_logfmt_fields() -> None:
    at = "ts=2025-01-02T03:00:00.000Z"
    lines = [
        f"{at} level=info logger=x event=session_opened client=frank set_id=3 resumed=false",
        f'{at} level=warning logger=x event=session_failed client=frank set_id=3 reason="disk full"',
        f'{at} level=info logger=x event=sets_purged client=frank how=purge sets="Old one,Old two"'
        " objects_removed=3 bytes_freed=2048",
        json.dumps({"ts": "2025-01-02T03:30:00.000Z", "level": "info", "event": "sets_purged", "client": "gina",
                    "how": "delete", "sets": ["x"], "bytes_freed": 0}),
    ]  # fmt: skip
    out = summarise("\n".join(lines) + "\n")
    assert "    frank: 0 completed, 1 failed, 2 purged (2.0 KiB freed)" in out, out
    assert "FAILED set 3 (disk full)" in out and "purged Old one" in out, out
    assert "    gina: 0 completed, 1 purged" in out, out
    assert "Sets failed: 1" in out and "not finished" not in out, out


def test_date_range_keeps_only_that_day() -> None:
    now = time.time()
    today_utc = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
    today_local = time.strftime("%Y-%m-%d %H:%M:%S,000", time.localtime(now))
    old_local = time.strftime("%Y-%m-%d %H:%M:%S,000", time.localtime(now - 10 * 86400))
    lines = [
        f"ts={today_utc} level=info logger=x event=session_finished client=today set_id=1 set_name=T bytes=10",
        f"{today_local} INFO tardis_ingest.core: client local: completed set 2 as L",
        f"{old_local} INFO tardis_ingest.core: client old: completed set 3 as O",
        "a line without any time",
    ]
    text = "\n".join(lines) + "\n"
    out = summarise(text, date_range="today")
    assert "today: 1 completed" in out and "local: 1 completed" in out and "old:" not in out, out
    assert summarise(text, date_range="yesterday") == ""
    assert "old: 1 completed" in summarise(text, date_range="all")


def test_nothing_to_report_prints_nothing() -> None:
    assert summarise("") == ""
    assert summarise("2025-01-02 03:00:00,000 INFO x: nothing of note\n") == ""
