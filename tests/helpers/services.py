"""Starting real service processes on loopback and stopping them."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
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


def start_cluster(base: Path, secret_file: Path | None = None) -> Cluster:
    """The three services on loopback over ``base``; the secret file defaults to a new one
    next to ``base``."""
    base.mkdir(parents=True, exist_ok=True)
    if secret_file is None:
        secret_file = write_secret(base.with_name(base.name + ".secret"))
    secret = ("--service-secret-file", str(secret_file))
    catalog = start("tardis_catalog.main", "--listen", "127.0.0.1:0", "--basedir", str(base), *secret)
    blobstore = start("tardis_blobstore.main", "--listen", "127.0.0.1:0", "--basedir", str(base), *secret)
    ingest = start(
        "tardis_ingest.main",
        "--listen",
        "127.0.0.1:0",
        "--catalog",
        catalog.address,
        "--blobstore",
        blobstore.address,
        "--allow-new-hosts",
        "--allow-anonymous",
        *secret,
    )
    return Cluster(catalog, blobstore, ingest, secret_file)
