"""Starting real service processes on loopback and stopping them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BANNER = re.compile(r"listening on (\S+)")


@dataclass
class Service:
    process: subprocess.Popen[str]
    address: str

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
            return Service(process, match.group(1))
    process.wait()
    raise RuntimeError(f"{module} exited with {process.returncode} before listening: {''.join(seen)}")


@dataclass
class Cluster:
    """catalog, blobstore and ingest as three processes."""

    catalog: Service
    blobstore: Service
    ingest: Service

    def stop(self) -> None:
        for service in (self.ingest, self.catalog, self.blobstore):
            service.stop()


def start_cluster(base: Path) -> Cluster:
    base.mkdir(parents=True, exist_ok=True)
    catalog = start("tardis_catalog.main", "--listen", "127.0.0.1:0", "--basedir", str(base))
    blobstore = start("tardis_blobstore.main", "--listen", "127.0.0.1:0", "--basedir", str(base))
    ingest = start(
        "tardis_ingest.main",
        "--listen",
        "127.0.0.1:0",
        "--catalog",
        catalog.address,
        "--blobstore",
        blobstore.address,
        "--allow-new-hosts",
    )
    return Cluster(catalog, blobstore, ingest)
