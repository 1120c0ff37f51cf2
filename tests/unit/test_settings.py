"""Settings layering (defaults < system defaults < env < config/job < cli) and the shared parser."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tardis_common.argparsing import (
    PASSWORD_PROMPT,
    TardisArgumentParser,
    add_common_options,
    given_options,
    make_parser,
)
from tardis_common.errors import ConfigError
from tardis_common.settings import DaemonSettings, load_client_settings, load_daemon_settings
from tardis_common.urls import RepoURL, default_client


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TARDIS_* from the host, an empty system defaults file and no host tardisd.cfg."""
    for name in list(os.environ):
        if name.startswith("TARDIS_"):
            monkeypatch.delenv(name)
    defaults = tmp_path / "system.defaults"
    defaults.write_text("")
    monkeypatch.setenv("TARDIS_DEFAULTS", str(defaults))
    monkeypatch.setattr(DaemonSettings, "default_config", str(tmp_path / "absent-tardisd.cfg"))
    return defaults


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def one_line(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    text = str(exc.value)
    assert text and "\n" not in text
    return text


# --- client settings ---------------------------------------------------------------------------


def test_built_in_defaults() -> None:
    s = load_client_settings({})
    assert (s.server, s.port, s.client, s.timeout) == ("localhost", 7420, default_client(), 300.0)
    assert s.compress_data == "zstd"
    assert s.crypt and s.send_client_config and s.exclude_no_access
    assert s.directories == ["."]
    assert s.exclude_file_name == ".tardis-exclude"
    assert s.local_exclude_file_name == ".tardis-local-exclude"
    assert s.skip_file_name == ".tardis-skip"
    assert s.recent_set == "Current"
    assert s.nocompress == [] and s.exclude_patterns == []
    with pytest.raises(ConfigError, match="no repository given: use --repository"):
        s.repo_url()


def test_precedence_at_every_layer(clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_client_settings({}).port == 7420
    clean_env.write_text("[Tardis]\nTARDIS_PORT = 1001\nTARDIS_SERVER = sysdef\n")
    assert load_client_settings({}).port == 1001
    monkeypatch.setenv("TARDIS_PORT", "1002")
    s = load_client_settings({})
    assert (s.port, s.server) == (1002, "sysdef")
    cfg = write(tmp_path / "t.cfg", "[Tardis]\nPort = 1003\n")
    s = load_client_settings({}, config=cfg)
    assert (s.port, s.server) == (1003, "sysdef")
    s = load_client_settings({"port": 1004}, config=cfg)
    assert (s.port, s.server) == (1004, "sysdef")


def test_each_layer_keeps_what_higher_layers_do_not_set(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.write_text("[Tardis]\nTARDIS_TIMEOUT = 11\nTARDIS_SKIP = .sys-skip\nTARDIS_RECENT_SET = Sys\n")
    monkeypatch.setenv("TARDIS_SKIP", ".env-skip")
    monkeypatch.setenv("TARDIS_RECENT_SET", "Env")
    cfg = write(tmp_path / "t.cfg", "[Tardis]\nRecentSet = File\nCompressMin = 10\n")
    s = load_client_settings({"compress_min": 20}, config=cfg)
    assert (s.timeout, s.skip_file_name, s.recent_set, s.compress_min) == (11.0, ".env-skip", "File", 20)


def test_config_file_from_env_and_job_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = write(tmp_path / "t.cfg", "[Tardis]\nServer = a\n[nightly]\nServer = b\n")
    monkeypatch.setenv("TARDIS_CONFIG", cfg)
    assert load_client_settings({}).server == "a"
    monkeypatch.setenv("TARDIS_JOB", "nightly")
    assert load_client_settings({}).server == "b"
    assert load_client_settings({}, job="Tardis").server == "a"


def test_config_and_job_from_system_defaults(clean_env: Path, tmp_path: Path) -> None:
    cfg = write(tmp_path / "t.cfg", "[weekly]\nServer = w\n")
    clean_env.write_text(f"[Tardis]\nTARDIS_CONFIG = {cfg}\nTARDIS_JOB = weekly\n")
    assert load_client_settings({}).server == "w"


def test_job_sections_and_cli_config_keys(tmp_path: Path) -> None:
    cfg = write(tmp_path / "t.cfg", "[Tardis]\nClient = plain\n[laptop]\nClient = lap\nFull = yes\n")
    assert load_client_settings({}, config=cfg).client == "plain"
    s = load_client_settings({"config": cfg, "job": "laptop"})
    assert (s.client, s.full) == ("lap", True)


def test_missing_job_section_is_one_line(tmp_path: Path) -> None:
    cfg = write(tmp_path / "t.cfg", "[Tardis]\nPort = 1\n")
    with pytest.raises(ConfigError) as info:
        load_client_settings({}, config=cfg, job="nosuch")
    assert cfg in one_line(info) and "[nosuch]" in one_line(info)


def test_extended_interpolation_and_case_insensitive_keys(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "t.cfg",
        "[paths]\nroot = /backups\n[Tardis]\nrepository = ${paths:root}/box\nCOMPRESSDATA = LZMA\ncompressmin = 99\n",
    )
    s = load_client_settings({}, config=cfg)
    assert (s.repository, s.compress_data, s.compress_min) == ("/backups/box", "lzma", 99)
    assert s.repo_url() == RepoURL("file", "box", path=Path("/backups"))


def test_lists_split_on_commas_and_whitespace(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "t.cfg",
        "[Tardis]\nExcludePatterns = *.o, *.tmp  core\nDirectories = /home\n  /etc\nNoCompress = image/png,video/mp4\n",
    )
    s = load_client_settings({}, config=cfg)
    assert s.exclude_patterns == ["*.o", "*.tmp", "core"]
    assert s.directories == ["/home", "/etc"]
    assert s.nocompress == ["image/png", "video/mp4"]
    assert load_client_settings({"directories": ["/x y"]}, config=cfg).directories == ["/x y"]


@pytest.mark.parametrize(
    "text, value",
    [
        *[("true", True), ("yes", True), ("1", True), ("on", True), ("Yes", True)],
        *[("false", False), ("no", False), ("0", False), ("off", False), ("OFF", False)],
    ],
)
def test_booleans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, value: bool) -> None:
    cfg = write(tmp_path / "t.cfg", f"[Tardis]\nForce = {text}\n")
    assert load_client_settings({}, config=cfg).force is value
    monkeypatch.setenv("TARDIS_SEND_CONFIG", text)
    assert load_client_settings({}).send_client_config is value


def test_report_accepts_seed_booleans(tmp_path: Path) -> None:
    assert load_client_settings({}, config=write(tmp_path / "a.cfg", "[Tardis]\nReport = True\n")).report == "all"
    assert load_client_settings({"report": "dirs"}).report == "dirs"


def test_unknown_key_warns_but_server_keys_in_jobs_do_not(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = write(tmp_path / "t.cfg", "[Tardis]\nBogusKey = 1\nFormats = Daily-%%Y\nPort = 9\n")
    with caplog.at_level(logging.WARNING, logger="tardis_common.settings"):
        assert load_client_settings({}, config=cfg).port == 9
    messages = [r.getMessage() for r in caplog.records]
    assert any("boguskey" in m for m in messages)
    assert not any("formats" in m for m in messages)


def test_missing_config_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = str(tmp_path / "nope.cfg")
    with pytest.raises(ConfigError) as info:
        load_client_settings({}, config=missing)
    assert missing in one_line(info) and "not found" in one_line(info)
    monkeypatch.setenv("TARDIS_CONFIG", missing)
    with pytest.raises(ConfigError):
        load_client_settings({})


def test_unreadable_and_malformed_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_client_settings({}, config=str(tmp_path))
    assert str(tmp_path) in one_line(info)
    bad = write(tmp_path / "bad.cfg", "Port = 1\n[Tardis\n")
    with pytest.raises(ConfigError) as info:
        load_client_settings({}, config=bad)
    assert bad in one_line(info)
    broken = write(tmp_path / "interp.cfg", "[Tardis]\nServer = ${nowhere:x}\n")
    with pytest.raises(ConfigError) as info:
        load_client_settings({}, config=broken)
    assert "server" in one_line(info).lower()


def test_missing_explicit_system_defaults_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TARDIS_DEFAULTS", str(tmp_path / "none"))
    with pytest.raises(ConfigError) as info:
        load_client_settings({})
    assert "system defaults" in one_line(info)


def test_bad_value_in_config_names_file_key_and_value(tmp_path: Path) -> None:
    cfg = write(tmp_path / "t.cfg", "[Tardis]\nCompressMin = lots\n")
    with pytest.raises(ConfigError) as info:
        load_client_settings({}, config=cfg)
    text = one_line(info)
    assert cfg in text and "CompressMin" in text and "'lots'" in text


def test_bad_values_from_other_layers(clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TARDIS_PORT", "seventy")
    with pytest.raises(ConfigError) as info:
        load_client_settings({})
    assert "TARDIS_PORT" in one_line(info) and "seventy" in one_line(info)
    assert load_client_settings({"port": 5}).port == 5  # a higher layer hides the bad value
    monkeypatch.delenv("TARDIS_PORT")
    clean_env.write_text("[Tardis]\nTARDIS_TIMEOUT = -1\n")
    with pytest.raises(ConfigError) as info:
        load_client_settings({})
    assert str(clean_env) in one_line(info) and "TARDIS_TIMEOUT" in one_line(info)
    clean_env.write_text("")
    with pytest.raises(ConfigError) as info:
        load_client_settings({"compress_data": "gzip9"})
    assert "command line compress_data" in one_line(info)


@pytest.mark.parametrize("client", ["..", "a/b", "x" * 256, ".hidden"])
def test_bad_client_names_are_config_errors(tmp_path: Path, client: str) -> None:
    cfg = write(tmp_path / "t.cfg", f"[Tardis]\nClient = {client}\n")
    with pytest.raises(ConfigError) as info:
        load_client_settings({}, config=cfg)
    assert "Client" in one_line(info)
    with pytest.raises(ConfigError):
        load_client_settings({"client": "a\x00b"})


def test_bad_repository_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARDIS_REPO", "ftp://x/y")
    with pytest.raises(ConfigError) as info:
        load_client_settings({})
    assert "TARDIS_REPO" in one_line(info)


def test_repo_url_from_each_spelling(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_client_settings({"server": "srv", "client": "box"}).repo_url() == RepoURL(
        "tardis", "box", host="srv", port=7420
    )
    s = load_client_settings({"database": str(tmp_path), "client": "box", "server": "srv"})
    assert s.repo_url() == RepoURL("file", "box", path=tmp_path)
    monkeypatch.setenv("TARDIS_REPO", "tardis://r:1/c")
    s = load_client_settings({"server": "srv", "client": "box"})
    assert s.repo_url() == RepoURL("tardis", "c", host="r", port=1)
    monkeypatch.delenv("TARDIS_REPO")
    monkeypatch.setenv("TARDIS_SERVER", "envsrv")
    monkeypatch.setenv("TARDIS_PORT", "7999")
    assert load_client_settings({"client": "box"}).repo_url().address == "envsrv:7999"


def test_password_is_never_dumped() -> None:
    s = load_client_settings({"password": "hunter2-xyzzy"})
    assert s.password == "hunter2-xyzzy"
    assert "password" not in s.model_dump()
    assert "hunter2-xyzzy" not in repr(s)


def test_cli_none_and_foreign_keys_are_ignored() -> None:
    s = load_client_settings({"port": None, "exceptions": True, "tag": ["x"]})
    assert s.port == 7420


# --- daemon settings ---------------------------------------------------------------------------


def test_daemon_defaults() -> None:
    d = load_daemon_settings({})
    assert (d.port, d.listen_address, d.basedir, d.dbname) == (
        7420,
        "127.0.0.1",
        Path("/srv/tardis"),
        "tardis.db",
    )
    assert d.formats == ["Monthly-%Y-%m", "Weekly-%Y-%U", "Daily-%Y-%m-%d", "Hourly-%Y-%m-%d-%H"]
    assert d.priorities == [40, 30, 20, 10] and d.keep_periods == [0, 180, 30, 1]
    assert d.umask == 0o027 and d.db_backups == 5 and d.save_config
    assert not (d.allow_new_hosts or d.require_password or d.allow_anonymous or d.ssl)


def test_daemon_section_over_tardis_section(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "d.cfg",
        "[Tardis]\nPort = 8001\nBaseDir = /base\nDBName = shared.db\n[Daemon]\nPort = 8002\nListenAddress = ::\n",
    )
    d = load_daemon_settings({}, config=cfg)
    assert (d.port, d.basedir, d.dbname, d.listen_address) == (8002, Path("/base"), "shared.db", "::")
    assert load_daemon_settings({"port": 8003}, config=cfg).port == 8003
    only_tardis = write(tmp_path / "t.cfg", "[Tardis]\nPort = 8004\n")
    assert load_daemon_settings({}, config=only_tardis).port == 8004


def test_daemon_config_from_env_and_env_layers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TARDIS_DB", "/from-db")
    assert load_daemon_settings({}).basedir == Path("/from-db")
    monkeypatch.setenv("TARDIS_BASEDIR", "/from-basedir")
    monkeypatch.setenv("TARDIS_PIDFILE", "/run/t.pid")
    d = load_daemon_settings({})
    assert (d.basedir, d.pidfile) == (Path("/from-basedir"), "/run/t.pid")
    cfg = write(tmp_path / "d.cfg", "[Daemon]\nBaseDir = /from-file\n")
    monkeypatch.setenv("TARDIS_DAEMON_CONFIG", cfg)
    assert load_daemon_settings({}).basedir == Path("/from-file")


def test_daemon_formats_with_doubled_percent_signs(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "d.cfg",
        "[Daemon]\nFormats = Monthly-%%Y-%%m, Daily-%%Y-%%m-%%d\nPriorities = 40, 20\nKeepDays = 0 30\n",
    )
    d = load_daemon_settings({}, config=cfg)
    assert d.formats == ["Monthly-%Y-%m", "Daily-%Y-%m-%d"]
    assert (d.priorities, d.keep_periods) == ([40, 20], [0, 30])


def test_daemon_single_percent_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = write(tmp_path / "d.cfg", "[Daemon]\nFormats = Daily-%Y\n")
    with pytest.raises(ConfigError) as info:
        load_daemon_settings({}, config=cfg)
    assert "formats" in one_line(info).lower() and cfg in one_line(info)


def test_daemon_mismatched_periods(tmp_path: Path) -> None:
    cfg = write(tmp_path / "d.cfg", "[Daemon]\nPriorities = 1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_daemon_settings({}, config=cfg)
    assert "Priorities" in one_line(info)


@pytest.mark.parametrize("text, mode", [("027", 0o027), ("0o077", 0o077), ("2", 0o002), ("0", 0)])
def test_umask_is_octal(tmp_path: Path, text: str, mode: int) -> None:
    cfg = write(tmp_path / "d.cfg", f"[Daemon]\nUmask = {text}\n")
    assert load_daemon_settings({}, config=cfg).umask == mode


def test_bad_umask_and_bad_key_values(tmp_path: Path) -> None:
    cfg = write(tmp_path / "d.cfg", "[Daemon]\nUmask = 089\n")
    with pytest.raises(ConfigError) as info:
        load_daemon_settings({}, config=cfg)
    assert "Umask" in one_line(info) and "089" in one_line(info)
    cfg = write(tmp_path / "e.cfg", "[Daemon]\nAllowNewHosts = maybe\n")
    with pytest.raises(ConfigError) as info:
        load_daemon_settings({}, config=cfg)
    assert "AllowNewHosts" in one_line(info) and "maybe" in one_line(info)


def test_daemon_missing_named_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_daemon_settings({}, config=str(tmp_path / "none.cfg"))
    assert "not found" in one_line(info)
    empty = write(tmp_path / "other.cfg", "[Remote]\nPort = 1\n")
    with pytest.raises(ConfigError):
        load_daemon_settings({}, config=empty)


# --- argument parsing --------------------------------------------------------------------------


def parser() -> TardisArgumentParser:
    p = make_parser("tool", "a test tool")
    add_common_options(p)
    p.add_argument("files", nargs="*")
    return p


def test_given_options_holds_only_what_was_typed() -> None:
    ns = parser().parse_args(["-R", "/b/h", "-vv", "--keys", "k", "-F", "pw.txt"])
    assert given_options(ns) == {
        "repository": "/b/h",
        "verbosity": 2,
        "keyfile": "k",
        "password_file": "pw.txt",
        "files": [],
    }
    assert given_options(parser().parse_args([])) == {"files": []}


def test_password_flag_without_value_means_prompt() -> None:
    assert given_options(parser().parse_args(["-P"]))["password"] == PASSWORD_PROMPT
    assert given_options(parser().parse_args(["--password", "pw"]))["password"] == "pw"
    assert given_options(parser().parse_args(["--password-prog", "pass show t"]))["password_prog"] == "pass show t"


def test_argfile_with_comments(tmp_path: Path) -> None:
    args = tmp_path / "args"
    args.write_text("# my backup\n--server srv   --port 7500 # the port\n-C box\n\n/home /etc  # dirs\n")
    ns = parser().parse_args([f"@{args}", "-E"])
    assert given_options(ns) == {
        "server": "srv",
        "port": 7500,
        "client": "box",
        "files": ["/home", "/etc"],
        "exceptions": True,
    }


def test_parsed_options_feed_the_settings(tmp_path: Path) -> None:
    cfg = write(tmp_path / "t.cfg", "[Tardis]\nServer = filesrv\nPort = 7001\n[j]\nServer = jobsrv\n")
    s = load_client_settings(given_options(parser().parse_args(["--config", cfg, "--port", "7002"])))
    assert (s.server, s.port) == ("filesrv", 7002)
    s = load_client_settings(given_options(parser().parse_args(["--config", cfg, "--job", "j", "-v"])))
    assert (s.server, s.port, s.verbosity) == ("jobsrv", 7420, 1)


@pytest.mark.parametrize(
    "argv",
    [
        ["--bogus"],
        ["--port", "http"],
        ["--port", "0"],
        ["-P", "x", "-F", "y"],
        ["--server"],
        ["@/nonexistent/args"],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("tool: error: ") and err.count("\n") == 1
