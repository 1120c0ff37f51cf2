"""tardisfs: mount a Tardis client's backup sets as a read-only FUSE filesystem.

The repository is opened and unlocked before anything is mounted, so a wrong password or a
missing repository is one line on stderr, a non-zero exit and no mount. Without ``-f`` the
program forks first (after asking for a password, before opening any connection) and the
parent waits until the child has mounted, or has failed and said why.
Once mounted, ``tardisfs: mounted ... on MOUNTPOINT`` is printed on stderr.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from tardis_cli.connect import open_repository
from tardis_cli.passwords import get_password
from tardis_cli.tool import run, setup_logging
from tardis_common.errors import ConfigError, InvalidArgument, TardisError
from tardis_common.settings import ClientSettings, load_client_settings
from tardis_common.urls import RepoURL

from .options import PROG, MountOptions, parse

log = logging.getLogger(__name__)


def _password(options: MountOptions, settings: ClientSettings) -> bytes | None:
    if not options.password_prompt:
        return get_password(settings)
    if sys.stdin.isatty():
        typed = getpass.getpass(f"Password for {settings.client}: ")
    else:
        typed = sys.stdin.readline().rstrip("\r\n")
    if not typed:
        raise ConfigError("an empty password was given")
    return typed.encode()


@dataclass
class Prepared:
    """What is settled before any fork: the settings, the repository URL and the password."""

    settings: ClientSettings
    url: RepoURL
    password: bytes | None


def prepare(options: MountOptions) -> Prepared:
    config, job = options.settings.pop("config", None), options.settings.pop("job", None)
    settings = load_client_settings(options.settings, config, job)
    url = settings.repo_url()
    if not os.path.isdir(options.mountpoint):
        raise InvalidArgument(f"mount point {options.mountpoint} is not a directory")
    return Prepared(settings, url, _password(options, settings))


def mount(options: MountOptions, prepared: Prepared, ready: Callable[[str], None]) -> int:
    """Open the repository, then serve the mount until it is unmounted."""
    settings, url, password = prepared.settings, prepared.url, prepared.password
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    try:
        import mfusepy  # noqa: F401  (finds libfuse at import)
    except OSError as exc:
        raise ConfigError(f"FUSE is not available: {exc} (install fuse3)") from None
    from .content import ContentStore
    from .fastfuse import FastFUSE
    from .fs import TardisFS
    from .view import TreeView

    repo = open_repository(url, settings, timeout=settings.timeout, unlock=True, password=password)
    with repo:
        view = TreeView(repo.ingest, repo.client, repo.cipher)
        view.sets(refresh=True)  # fails now, not at the first ls, if the catalog is unreadable
        contents = ContentStore(repo.ingest, repo.client, repo.cipher, options.cache_dir, options.cache_mib << 20)
        mountpoint = os.path.abspath(options.mountpoint)
        operations = TardisFS(view, contents, ready=lambda: ready(f"{PROG}: mounted {url} on {mountpoint}"))
        fuse_options = {
            "fsname": f"tardisfs:{repo.client}",
            "subtype": "tardisfs",
            "ro": True,
            "use_ino": True,
            "kernel_cache": True,
            "attr_timeout": 60,
            "entry_timeout": 60,
            **options.fuse,
        }
        try:
            FastFUSE(
                operations,
                mountpoint,
                foreground=True,
                debug=options.debug,
                nothreads=options.single_thread,
                **fuse_options,
            )
        except RuntimeError as exc:
            raise ConfigError(f"cannot mount on {mountpoint} (FUSE status {exc})") from None
        finally:
            contents.close()
    return 0


def _foreground(options: MountOptions) -> int:
    def ready(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return run(PROG, lambda: mount(options, prepare(options), ready), exceptions=options.exceptions)


def _background(options: MountOptions) -> int:
    """Fork; the child mounts and reports through a pipe: "ok" once mounted, else its error."""
    prepared: Prepared | None = None

    def settle() -> int:
        nonlocal prepared
        prepared = prepare(options)
        return 0

    code = run(PROG, settle, exceptions=options.exceptions)
    if code or prepared is None:
        return code or 1
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            said = pipe.read().decode("utf-8", "replace")
        if said.startswith("ok"):
            return 0
        os.waitpid(pid, 0)
        print(said.strip() or f"{PROG}: error: the mount failed", file=sys.stderr)
        return 1
    os.close(read_end)
    os.setsid()
    report = os.fdopen(write_end, "wb")

    def ready(_line: str) -> None:
        report.write(b"ok\n")
        report.close()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.chdir("/")

    try:
        mount(options, prepared, ready)
        code = 0
    except TardisError as exc:
        code = exc.exit_code
        _tell(report, f"{PROG}: error: {exc}")
    except OSError as exc:
        code = 1
        _tell(report, f"{PROG}: error: {exc.strerror or exc}")
    except BaseException as exc:  # the parent must hear something in every case
        code = 1
        _tell(report, f"{PROG}: error: {exc}")
    os._exit(code)


def _tell(report: object, line: str) -> None:
    try:
        report.write(line.encode() + b"\n")  # type: ignore[attr-defined]
        report.close()  # type: ignore[attr-defined]
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    options: MountOptions | None = None

    def parse_args() -> int:
        nonlocal options
        options = parse(argv)
        return 0

    code = run(PROG, parse_args)
    if code or options is None:
        return code or 2
    setup_logging(options.verbosity)
    if options.foreground:
        return _foreground(options)
    return _background(options)


if __name__ == "__main__":
    sys.exit(main())
