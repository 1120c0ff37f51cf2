"""Starting real service processes on loopback and stopping them."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BANNER = re.compile(r"listening on (\S+)")


@dataclass
class Service:
    process: subprocess.Popen[str]
    address: str
    preamble: list[str] = field(default_factory=list)  # stderr lines before the banner

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        assert self.process.stderr is not None
        self.process.stderr.close()
        return self.process.returncode

    def stop_reading(self) -> tuple[int, list[str]]:
        """SIGTERM, then every stderr line written after the banner (read to EOF) and the exit status."""
        assert self.process.stderr is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        lines = self.process.stderr.readlines()  # EOF when the process has exited
        return self.stop(), lines


def _ephemeral_ports() -> range:
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_port() -> int:
    """A TCP port free on loopback right now (for options that take no 0, like --metrics-port),
    chosen outside the kernel's ephemeral range: a port the kernel hands out (a server
    listening on port 0, a client's outgoing connection) can then never take it between this
    probe and the server that binds it."""
    ephemeral = _ephemeral_ports()
    for port in secrets.SystemRandom().sample(range(20000, 32768), 200):
        if port in ephemeral:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port on loopback between 20000 and 32767")


def start(module: str, *args: str, env: dict[str, str] | None = None) -> Service:
    """Run ``python -m module args`` and wait for its "listening on ADDRESS" line."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        match = BANNER.search(line)
        if match:
            return Service(process, match.group(1), seen[:-1])
    process.wait()
    raise RuntimeError(f"{module} exited with {process.returncode} before listening: {''.join(seen)}")


@dataclass
class Cluster:
    """catalog, blobstore and ingest as three processes; catalog and blobstore accept only
    calls carrying the service secret (ingest sends it)."""

    catalog: Service
    blobstore: Service
    ingest: Service
    secret_file: Path

    def stop(self) -> None:
        for service in (self.ingest, self.catalog, self.blobstore):
            service.stop()


def write_secret(path: Path) -> Path:
    """A fresh service secret file at ``path`` (owner-only)."""
    path.write_text(secrets.token_urlsafe(32) + "\n")
    path.chmod(0o600)
    return path


def start_cluster(
    base: Path,
    secret_file: Path | None = None,
    extra: Mapping[str, Sequence[str]] | None = None,
    allow_anonymous: bool = True,
) -> Cluster:
    """The three services on loopback over ``base``; the secret file defaults to a new one
    next to ``base``. ``extra`` adds arguments per service ("catalog", "blobstore", "ingest");
    ``allow_anonymous`` lets clients without a password in (--allow-anonymous)."""
    more = extra or {}
    base.mkdir(parents=True, exist_ok=True)
    if secret_file is None:
        secret_file = write_secret(base.with_name(base.name + ".secret"))
    secret = ("--service-secret-file", str(secret_file))
    listen = ("--listen", "127.0.0.1:0", "--basedir", str(base))
    catalog = start("tardis_catalog.main", *listen, *secret, *more.get("catalog", ()))
    blobstore = start("tardis_blobstore.main", *listen, *secret, *more.get("blobstore", ()))
    ingest = start(
        "tardis_ingest.main",
        "--listen",
        "127.0.0.1:0",
        "--catalog",
        catalog.address,
        "--blobstore",
        blobstore.address,
        "--allow-new-hosts",
        *(("--allow-anonymous",) if allow_anonymous else ()),
        *secret,
        *more.get("ingest", ()),
    )
    return Cluster(catalog, blobstore, ingest, secret_file)


def start_remote(cluster: Cluster, workdir: Path, **settings: object) -> Service:
    """tardisremote (real gunicorn) on a free loopback port over ``cluster``'s catalog and
    blobstore; ``settings`` are extra [Remote] keys (AllowAnonymous=True, AdminSecretFile=...)."""
    workdir.mkdir(parents=True, exist_ok=True)
    keys = {
        "Port": 0,
        "BaseDir": workdir,
        "CatalogAddress": cluster.catalog.address,
        "BlobstoreAddress": cluster.blobstore.address,
        "ServiceSecretFile": cluster.secret_file,
        "Workers": 2,
        **settings,
    }
    config = workdir / "tardisremote.cfg"
    config.write_text("[Remote]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items()))
    return start("tardis_remote.main", "--config", str(config))
