"""Layered settings for the Tardis tools, built with pydantic-settings.

Precedence, lowest to highest: built-in defaults < the system defaults file (path from
``TARDIS_DEFAULTS``, default /etc/tardis/system.defaults; section [Tardis], keys named like
the environment variables) < environment variables (``TARDIS_*``) < the config file (a job
section for client tools, [Daemon] over [Tardis] for tardisd) < the command line.

Use :func:`load_client_settings` and :func:`load_daemon_settings`; they raise ConfigError
with one line naming the file, key or variable and the bad value.
"""

from __future__ import annotations

import configparser
import contextvars
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError, InvalidArgument
from .names import check_client_name
from .urls import RepoURL, build_repository, default_client, parse_repository

log = logging.getLogger(__name__)

SYSTEM_DEFAULTS_FILE = "/etc/tardis/system.defaults"
DAEMON_CONFIG_FILE = "/etc/tardis/tardisd.cfg"
DEFAULT_JOB = "Tardis"
INTERNAL_SOCKET_NAME = ".tardis-internal.sock"  # tardisd's catalog and blobstore for tardisremote


# --- where a field's value may come from ---------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """A field's config-file keys (case-insensitive) and environment variables.

    The environment variable names are also the keys of the system defaults file.
    """

    ini: tuple[str, ...] = ()
    env: tuple[str, ...] = ()


def K(*ini: str, env: str | tuple[str, ...] = ()) -> Keys:
    return Keys(ini=ini, env=(env,) if isinstance(env, str) else env)


def _keys_of(cls: type[BaseSettings]) -> dict[str, Keys]:
    return {
        name: next((m for m in info.metadata if isinstance(m, Keys)), Keys()) for name, info in cls.model_fields.items()
    }


# --- value parsing shared by every layer ---------------------------------------------------


def _split(value: Any) -> Any:
    """Lists in files and the environment are whitespace- or comma-separated."""
    if isinstance(value, str):
        return [item for item in re.split(r"[\s,]+", value.strip()) if item]
    return value


def _empty_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _octal(value: Any) -> Any:
    """A mode mask: text is octal ("027", "0o027"), numbers are taken as they are."""
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        try:
            return int(text, 8)
        except ValueError:
            raise ValueError(f"{value!r} is not an octal mode such as 027") from None
    return value


_REPORT_WORDS = {"true": "all", "yes": "all", "on": "all", "1": "all", "false": "none", "no": "none"}
_REPORT_WORDS |= {"off": "none", "0": "none"}


def _report(value: Any) -> Any:
    if isinstance(value, bool):
        return "all" if value else "none"
    if isinstance(value, str):
        text = value.strip().lower()
        return _REPORT_WORDS.get(text, text)
    return value


StrList = Annotated[list[str], BeforeValidator(_split)]
IntList = Annotated[list[int], BeforeValidator(_split)]
OptStr = Annotated[str | None, BeforeValidator(_empty_is_none)]


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# --- one load: what the sources read and where each value came from -----------------------


@dataclass
class _Load:
    config: str | None  # the config file to read, if any
    explicit: bool  # named by the user: a missing file is an error
    section: str
    defaults_path: str
    defaults: dict[str, str]  # system defaults, keys upper-cased
    origins: dict[str, str] = field(default_factory=dict)  # field -> highest layer that set it


_LOAD: contextvars.ContextVar[_Load | None] = contextvars.ContextVar("tardis_settings_load", default=None)


def _read_system_defaults() -> tuple[str, dict[str, str]]:
    named = os.environ.get("TARDIS_DEFAULTS")
    path = os.path.expanduser(named) if named else SYSTEM_DEFAULTS_FILE
    parser = configparser.ConfigParser(interpolation=None)
    if not _read_ini(parser, path, explicit=bool(named), what="system defaults file"):
        return path, {}
    if not parser.has_section(DEFAULT_JOB):
        return path, {k.upper(): v for k, v in parser.defaults().items()}
    return path, {k.upper(): v for k, v in parser.items(DEFAULT_JOB)}


def _read_ini(parser: configparser.ConfigParser, path: str, explicit: bool, what: str = "config file") -> bool:
    """Read ``path`` into ``parser``; False if it is absent and was not named by the user."""
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle, source=path)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{what} {path} not found") from None
        return False
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: {_one_line(exc)}") from None
    return True


# --- the sources ---------------------------------------------------------------------------


class _LayerSource(PydanticBaseSettingsSource):
    """A layer yielding (field, raw value, origin); raw text is validated by the model."""

    def __init__(self, settings_cls: type[BaseSettings], load: _Load) -> None:
        super().__init__(settings_cls)
        self.load = load
        self.keys = _keys_of(settings_cls)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole layer at once

    def values(self) -> Iterator[tuple[str, Any, str]]:
        raise NotImplementedError

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, value, origin in self.values():
            found[name] = value
            self.load.origins.setdefault(name, origin)  # sources run highest layer first
        return found


class _VariablesSource(_LayerSource):
    """Environment variables, or the system defaults file whose keys are named like them."""

    def __init__(self, settings_cls: type[BaseSettings], load: _Load, system: bool) -> None:
        super().__init__(settings_cls, load)
        self.system = system

    def values(self) -> Iterator[tuple[str, Any, str]]:
        table = self.load.defaults if self.system else os.environ
        for name, keys in self.keys.items():
            for var in keys.env:
                if var in table:
                    where = f"{self.load.defaults_path}: {var}" if self.system else f"environment {var}"
                    yield name, table[var], where
                    break


class _ConfigFileSource(_LayerSource):
    def __init__(self, settings_cls: type[_LayeredSettings], load: _Load) -> None:
        super().__init__(settings_cls, load)
        self.layered = settings_cls

    def values(self) -> Iterator[tuple[str, Any, str]]:
        load = self.load
        if load.config is None:
            return
        items = self.layered.read_config_file(load)
        if items is None:
            return
        for name, keys in self.keys.items():
            key = next((key for key in keys.ini if key.lower() in items), None)
            if key is not None:
                yield name, items[key.lower()], f"{load.config} [{load.section}] {key}"
        known = {key.lower() for keys in self.keys.values() for key in keys.ini}
        for key in items:
            if key not in known and key not in self.layered.ignored_keys:
                log.warning("%s: [%s] unknown key %r ignored", load.config, load.section, key)


def _section_values(parser: configparser.ConfigParser, path: str, section: str) -> dict[str, str]:
    """Every key of ``section`` (the default section included), interpolated; keys lower-case."""
    if not parser.has_section(section):
        section = parser.default_section
    keys = parser.options(section) if parser.has_section(section) else list(parser.defaults())
    values: dict[str, str] = {}
    for key in keys:
        try:
            values[key] = parser.get(section, key)
        except configparser.InterpolationSyntaxError as exc:
            hint = " (write %% for a percent sign)" if "'%'" in str(exc) else ""
            raise ConfigError(f"{path} [{section}] {key}: {_one_line(exc)}{hint}") from None
        except configparser.Error as exc:
            raise ConfigError(f"{path} [{section}] {key}: {_one_line(exc)}") from None
    return values


# --- the settings models -------------------------------------------------------------------


class _LayeredSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", validate_default=True)

    config_env: ClassVar[str] = "TARDIS_CONFIG"
    default_config: ClassVar[str | None] = None
    ignored_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def section_name(cls, job: str | None, defaults: Mapping[str, str]) -> str:
        raise NotImplementedError

    @classmethod
    def read_config_file(cls, load: _Load) -> dict[str, str] | None:
        raise NotImplementedError

    @classmethod
    def _begin_load(cls, cli: Mapping[str, Any], config: str | None, job: str | None) -> _Load:
        defaults_path, defaults = _read_system_defaults()
        named = config or cli.get("config") or os.environ.get(cls.config_env) or defaults.get(cls.config_env)
        path = os.path.expanduser(named) if named else cls.default_config
        section = cls.section_name(job or cli.get("job"), defaults)
        return _Load(path, bool(named), section, defaults_path, defaults)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        load = _LOAD.get() or cls._begin_load({}, None, None)
        return (
            init_settings,  # the command line: only the options actually given
            _ConfigFileSource(cls, load),
            _VariablesSource(settings_cls, load, system=False),
            _VariablesSource(settings_cls, load, system=True),
        )


_SERVER_KEYS_IN_JOBS = frozenset(
    {
        "local",
        "localservercmd",
        "formats",
        "priorities",
        "keepdays",
        "keepperiods",
        "forcefull",
        "umask",
        "ckscontent",
        "autopurge",
        "saveconfig",
        "savefull",
        "maxdeltachain",
        "maxchangepercent",
        "dbbackups",
        "linkbasis",
        "requirepassword",
    }
)


class ClientSettings(_LayeredSettings):
    """Settings of the client-side tools (tardis, regenerate, lstardis, tardiff, sonic, tardisfs)."""

    config_env: ClassVar[str] = "TARDIS_CONFIG"
    # Seed keys read by local mode for the embedded server, and not client settings.
    ignored_keys: ClassVar[frozenset[str]] = _SERVER_KEYS_IN_JOBS

    repository: Annotated[OptStr, K("Repository", env="TARDIS_REPO")] = None
    database: Annotated[OptStr, K("Database")] = None
    server: Annotated[str, K("Server", env="TARDIS_SERVER")] = "localhost"
    port: Annotated[int, K("Port", env="TARDIS_PORT"), Field(ge=1, le=65535)] = 7420
    client: Annotated[str, K("Client", env="TARDIS_CLIENT")] = Field(default_factory=default_client)
    force: Annotated[bool, K("Force")] = False
    full: Annotated[bool, K("Full")] = False
    timeout: Annotated[float, K("Timeout", env="TARDIS_TIMEOUT"), Field(gt=0)] = 300.0
    password: Annotated[OptStr, K("Password"), Field(repr=False, exclude=True)] = None
    password_file: Annotated[OptStr, K("PasswordFile", env="TARDIS_PWFILE")] = None
    password_prog: Annotated[OptStr, K("PasswordProg", "PassswordProg")] = None
    crypt: Annotated[bool, K("Crypt")] = True
    keyfile: Annotated[OptStr, K("KeyFile", env="TARDIS_KEYFILE")] = None
    admin_secret_file: Annotated[OptStr, K("AdminSecretFile", env="TARDIS_ADMIN_SECRET_FILE")] = None
    tls: Annotated[Literal["auto", "on", "off"], K("TLS", env="TARDIS_TLS"), BeforeValidator(_lower)] = "auto"
    ca_file: Annotated[OptStr, K("CAFile", env="TARDIS_CA_FILE")] = None
    compress_data: Annotated[
        Literal["none", "zstd", "zlib", "bzip", "lzma", "lz4"], K("CompressData"), BeforeValidator(_lower)
    ] = "zstd"
    compress_min: Annotated[int, K("CompressMin"), Field(ge=0)] = 4096
    nocompress_file: Annotated[OptStr, K("NoCompressFile", env="TARDIS_NOCOMPRESS")] = None
    nocompress: Annotated[StrList, K("NoCompress")] = []
    send_client_config: Annotated[bool, K("SendClientConfig", env="TARDIS_SEND_CONFIG")] = True
    compress_msgs: Annotated[str, K("CompressMsgs"), BeforeValidator(_lower)] = "none"
    purge: Annotated[bool, K("Purge")] = False
    ignore_cvs: Annotated[bool, K("IgnoreCVS")] = False
    skip_caches: Annotated[bool, K("SkipCaches")] = False
    send_sig: Annotated[bool, K("SendSig")] = False
    exclude_patterns: Annotated[StrList, K("ExcludePatterns")] = []
    exclude_files: Annotated[StrList, K("ExcludeFiles")] = []
    exclude_dirs: Annotated[StrList, K("ExcludeDirs")] = []
    global_exclude_file_name: Annotated[OptStr, K("GlobalExcludeFileName", env="TARDIS_GLOBAL_EXCLUDES")] = (
        "/etc/tardis/excludes"
    )
    exclude_file_name: Annotated[str, K("ExcludeFileName", env="TARDIS_EXCLUDES")] = ".tardis-exclude"
    local_exclude_file_name: Annotated[str, K("LocalExcludeFileName", env="TARDIS_LOCAL_EXCLUDES")] = (
        ".tardis-local-exclude"
    )
    skip_file_name: Annotated[str, K("SkipFileName", env="TARDIS_SKIP")] = ".tardis-skip"
    exclude_no_access: Annotated[bool, K("ExcludeNoAccess")] = True
    max_depth: Annotated[int, K("MaxDepth"), Field(ge=0)] = 0  # 0: no limit
    cross_device: Annotated[bool, K("CrossDevice", "CrossDevices")] = False
    log_files: Annotated[StrList, K("LogFiles")] = []
    verbosity: Annotated[int, K("Verbosity"), Field(ge=0)] = 0
    stats: Annotated[bool, K("Stats")] = False
    report: Annotated[Literal["none", "all", "dirs"], K("Report"), BeforeValidator(_report)] = "none"
    directories: Annotated[StrList, K("Directories")] = ["."]
    recent_set: Annotated[str, K("RecentSet", env="TARDIS_RECENT_SET")] = "Current"
    ls_colors: Annotated[OptStr, K("LsColors", env="TARDIS_LS_COLORS")] = None

    @classmethod
    def section_name(cls, job: str | None, defaults: Mapping[str, str]) -> str:
        return job or os.environ.get("TARDIS_JOB") or defaults.get("TARDIS_JOB") or DEFAULT_JOB

    @classmethod
    def read_config_file(cls, load: _Load) -> dict[str, str] | None:
        assert load.config is not None
        parser = configparser.ConfigParser(interpolation=configparser.ExtendedInterpolation())
        if not _read_ini(parser, load.config, load.explicit):
            return None
        if not parser.has_section(load.section):
            raise ConfigError(f"config file {load.config} has no [{load.section}] section for job {load.section!r}")
        return _section_values(parser, load.config, load.section)

    @field_validator("client")
    @classmethod
    def _check_client(cls, value: str) -> str:
        try:
            return check_client_name(value)
        except InvalidArgument as exc:
            raise ValueError(str(exc)) from None

    @field_validator("repository")
    @classmethod
    def _check_repository(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_repository(value)
            except InvalidArgument as exc:
                raise ValueError(str(exc)) from None
        return value

    def repo_url(self) -> RepoURL:
        """The repository from --repository, else --database/--client, else --server/--port/--client.

        The server counts only when some layer set it, so with nothing given this raises
        ConfigError("no repository given: use --repository").
        """
        given = self.model_fields_set
        return build_repository(
            repository=self.repository,
            server=self.server if "server" in given else None,
            port=self.port,
            client=self.client,
            database=self.database,
        )


class DaemonSettings(_LayeredSettings):
    """Settings of tardisd: config section [Daemon], with [Tardis] as its default section."""

    config_env: ClassVar[str] = "TARDIS_DAEMON_CONFIG"
    default_config: ClassVar[str | None] = DAEMON_CONFIG_FILE
    config_section: ClassVar[str] = "Daemon"

    port: Annotated[int, K("Port", env="TARDIS_PORT"), Field(ge=0, le=65535)] = 7420
    listen_address: Annotated[str, K("ListenAddress")] = "127.0.0.1"
    basedir: Annotated[Path, K("BaseDir", env=("TARDIS_BASEDIR", "TARDIS_DB"))] = Path("/srv/tardis")
    dbname: Annotated[str, K("DBName", env="TARDIS_DBNAME")] = "tardis.db"
    logfile: Annotated[OptStr, K("LogFile")] = None
    log_exceptions: Annotated[bool, K("LogExceptions")] = False
    allow_new_hosts: Annotated[bool, K("AllowNewHosts")] = False
    require_password: Annotated[bool, K("RequirePassword")] = False
    save_config: Annotated[bool, K("SaveConfig")] = True
    max_delta_chain: Annotated[int, K("MaxDeltaChain"), Field(ge=0)] = 5
    max_change_percent: Annotated[int, K("MaxChangePercent"), Field(ge=0)] = 50
    save_full: Annotated[bool, K("SaveFull")] = False
    allow_schema_upgrades: Annotated[bool, K("AllowSchemaUpgrades")] = False
    single: Annotated[bool, K("Single")] = False
    local: Annotated[OptStr, K("Local")] = None
    verbose: Annotated[int, K("Verbose"), Field(ge=0)] = 0
    daemon: Annotated[bool, K("Daemon")] = False
    umask: Annotated[int, K("Umask"), BeforeValidator(_octal), Field(ge=0, le=0o777)] = 0o027
    user: Annotated[OptStr, K("User")] = None
    group: Annotated[OptStr, K("Group")] = None
    pidfile: Annotated[OptStr, K("PidFile", env="TARDIS_PIDFILE")] = None
    ssl: Annotated[bool, K("SSL")] = False
    certfile: Annotated[OptStr, K("CertFile")] = None
    keyfile: Annotated[OptStr, K("KeyFile")] = None
    skip_file_name: Annotated[str, K("SkipFileName", env="TARDIS_SKIP")] = ".tardis-skip"
    formats: Annotated[StrList, K("Formats")] = [
        "Monthly-%Y-%m",
        "Weekly-%Y-%U",
        "Daily-%Y-%m-%d",
        "Hourly-%Y-%m-%d-%H",
    ]
    priorities: Annotated[IntList, K("Priorities")] = [40, 30, 20, 10]
    keep_periods: Annotated[IntList, K("KeepPeriods", "KeepDays")] = [0, 180, 30, 1]
    db_backups: Annotated[int, K("DBBackups"), Field(ge=0)] = 5
    link_basis: Annotated[bool, K("LinkBasis")] = False
    allow_anonymous: Annotated[bool, K("AllowAnonymous")] = False
    admin_secret_file: Annotated[OptStr, K("AdminSecretFile", env="TARDIS_ADMIN_SECRET_FILE")] = None
    server_key_file: Annotated[OptStr, K("ServerKeyFile", env="TARDIS_SERVER_KEY_FILE")] = None
    token_lifetime: Annotated[float, K("TokenLifetime"), Field(gt=0)] = 900.0
    # Operations: Prometheus metrics on their own port (0: off) and the log line format.
    metrics_port: Annotated[int, K("MetricsPort", env="TARDIS_METRICS_PORT"), Field(ge=0, le=65535)] = 0
    metrics_address: Annotated[OptStr, K("MetricsAddress", env="TARDIS_METRICS_ADDRESS")] = None
    log_format: Annotated[Literal["text", "json"], K("LogFormat", env="TARDIS_LOG_FORMAT"), BeforeValidator(_lower)] = (
        "text"
    )
    # Resource limits per client (issue 8; tardis_common.limits): beyond them RESOURCE_EXHAUSTED.
    client_quota: Annotated[int, K("ClientQuota", env="TARDIS_CLIENT_QUOTA"), Field(ge=0)] = 0
    max_sessions_per_client: Annotated[int, K("MaxSessionsPerClient"), Field(ge=0)] = 8
    max_message_bytes: Annotated[int, K("MaxMessageBytes"), Field(ge=64 * 1024)] = 32 * 1024 * 1024
    max_entries_per_batch: Annotated[int, K("MaxEntriesPerBatch"), Field(ge=0)] = 10_000
    # tardisd serves its catalog and blobstore to tardisremote on this host through a Unix
    # socket only its own user may open; empty: BaseDir/.tardis-internal.sock, "none": off.
    internal_socket: Annotated[str, K("InternalSocket", env="TARDIS_INTERNAL_SOCKET")] = ""

    def internal_socket_path(self) -> str | None:
        """Where tardisd's internal socket is (None when it is turned off)."""
        if self.internal_socket.lower() == "none":
            return None
        return self.internal_socket or os.path.join(self.basedir, INTERNAL_SOCKET_NAME)

    @classmethod
    def section_name(cls, job: str | None, defaults: Mapping[str, str]) -> str:
        return cls.config_section

    @classmethod
    def read_config_file(cls, load: _Load) -> dict[str, str] | None:
        assert load.config is not None
        # Basic interpolation, as the seed: percent signs are doubled (%%Y).
        parser = configparser.ConfigParser(default_section=DEFAULT_JOB)
        if not _read_ini(parser, load.config, load.explicit):
            return None
        if not parser.has_section(load.section) and not parser.defaults():
            raise ConfigError(f"config file {load.config} has no [{load.section}] or [{DEFAULT_JOB}] section")
        return _section_values(parser, load.config, load.section)

    @model_validator(mode="after")
    def _check_periods(self) -> DaemonSettings:
        counts = (len(self.formats), len(self.priorities), len(self.keep_periods))
        if len(set(counts)) != 1:
            raise ValueError(
                "Formats, Priorities and KeepPeriods must have as many entries each "
                f"(they have {counts[0]}, {counts[1]} and {counts[2]})"
            )
        return self


# --- entry points --------------------------------------------------------------------------

_S = TypeVar("_S", bound=_LayeredSettings)


def _load(cls: type[_S], cli: Mapping[str, Any], config: str | None, job: str | None) -> _S:
    given = {k: v for k, v in cli.items() if k in cls.model_fields and v is not None}
    load = cls._begin_load(cli, config, job)
    token = _LOAD.set(load)
    try:
        return cls(**given)
    except ValidationError as exc:
        raise _config_error(exc, given, load) from None
    finally:
        _LOAD.reset(token)


def _config_error(exc: ValidationError, cli: Mapping[str, Any], load: _Load) -> ConfigError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = first.get("loc") or ()
    name = str(loc[0]) if loc else ""
    message = _one_line(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if not name:
        return ConfigError(f"{load.config or 'settings'}: {message}{more}")
    where = f"command line {name}" if name in cli else load.origins.get(name, f"default {name}")
    value = _one_line(repr(first.get("input")))
    value = value if len(value) <= 80 else value[:77] + "..."
    return ConfigError(f"{where}: bad value {value}: {message}{more}")


def load_client_settings(cli: Mapping[str, Any], config: str | None = None, job: str | None = None) -> ClientSettings:
    """Client settings from every layer. ``cli`` holds only the options given (field names);
    keys that are not fields are ignored, and ``cli["config"]``/``cli["job"]`` are used when
    ``config``/``job`` are not passed."""
    return _load(ClientSettings, cli, config, job)


def load_daemon_settings(cli: Mapping[str, Any], config: str | None = None) -> DaemonSettings:
    """tardisd settings; the config file is ``config``, ``cli["config"]``, $TARDIS_DAEMON_CONFIG
    or /etc/tardis/tardisd.cfg (only that last one may be absent)."""
    return _load(DaemonSettings, cli, config, None)


# --- tardisremote (remote-http) ------------------------------------------------------------

REMOTE_CONFIG_FILE = "/etc/tardis/tardisremote.cfg"


class RemoteSettings(DaemonSettings):
    """Settings of tardisremote: config section [Remote], with [Tardis] as its default section.

    It shares tardisd's keys (BaseDir, Port, LogFile, Verbose, Daemon/User/Group/PidFile, SSL,
    AllowAnonymous, AdminSecretFile, ServerKeyFile, ...) with its own defaults, and adds the
    gunicorn workers and the gRPC addresses of the catalog and blobstore it serves from."""

    config_env: ClassVar[str] = "TARDIS_REMOTE_CONFIG"
    default_config: ClassVar[str | None] = REMOTE_CONFIG_FILE
    config_section: ClassVar[str] = "Remote"

    port: Annotated[int, K("Port", env="TARDIS_REMOTE_PORT"), Field(ge=0, le=65535)] = 7430
    pidfile: Annotated[OptStr, K("PidFile", env="TARDIS_REMOTE_PIDFILE")] = None
    compress: Annotated[bool, K("Compress")] = False
    allow_cache: Annotated[bool, K("AllowCache")] = False
    log_exceptions: Annotated[bool, K("Exceptions", "LogExceptions")] = False
    workers: Annotated[int, K("Workers", env="TARDIS_REMOTE_WORKERS"), Field(ge=1, le=256)] = 2
    threads: Annotated[int, K("Threads"), Field(ge=1, le=256)] = 8
    # Empty: tardisd's internal socket on this host (unix:BaseDir/.tardis-internal.sock).
    catalog_address: Annotated[str, K("CatalogAddress", env="TARDIS_CATALOG_ADDRESS")] = ""
    blobstore_address: Annotated[str, K("BlobstoreAddress", env="TARDIS_BLOBSTORE_ADDRESS")] = ""

    def backend_addresses(self) -> tuple[str, str]:
        """The catalog's and blobstore's gRPC addresses: as configured, else tardisd's internal socket."""
        local = f"unix:{self.internal_socket_path() or os.path.join(self.basedir, INTERNAL_SOCKET_NAME)}"
        return self.catalog_address or local, self.blobstore_address or local

    service_secret_file: Annotated[OptStr, K("ServiceSecretFile", env="TARDIS_SERVICE_SECRET_FILE")] = None
    internal_ca: Annotated[OptStr, K("InternalCA")] = None
    internal_cert: Annotated[OptStr, K("InternalCert")] = None
    internal_key: Annotated[OptStr, K("InternalKey")] = None
    max_request: Annotated[int, K("MaxRequestBytes"), Field(ge=1024)] = 32 * 1024 * 1024


def load_remote_settings(cli: Mapping[str, Any], config: str | None = None) -> RemoteSettings:
    """tardisremote settings; the config file is ``config``, ``cli["config"]``,
    $TARDIS_REMOTE_CONFIG or /etc/tardis/tardisremote.cfg (only that last one may be absent)."""
    return _load(RemoteSettings, cli, config, None)
