"""What the crash and disk suites share: running the real tools, the checks a repository
must pass after a failure, and a three-process cluster whose processes can be restarted
on the same ports (so a killed one comes back where ingest expects it)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from helpers.services import Service, free_port, start
from helpers.trees import assert_same_tree
from tardis_cli import backup, regenerate, sonic

BIN = Path(sys.executable).parent
TARDIS = str(BIN / "tardis")
SONIC = str(BIN / "sonic")


def run_tool(
    argv: list[str], fault: str = "", trace: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """One of the real command-line tools as a subprocess; ``fault`` = "<point>:<n>" arms the
    test-only kill point (tardis_common.faults), ``trace`` counts the points passed instead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIS_FAULT")}
    if fault:
        env["TARDIS_FAULT"] = fault
    if trace is not None:
        env["TARDIS_FAULT_TRACE"] = str(trace)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


def read_trace(trace: Path) -> dict[str, int]:
    """The pass counts written by every process traced into ``trace`` (one file per pid)."""
    counts: dict[str, int] = {}
    for part in trace.parent.glob(trace.name + ".*"):
        for point, passes in json.loads(part.read_text()).items():
            counts[point] = counts.get(point, 0) + passes
    return counts


def quiet(main: object, argv: list[str]) -> tuple[int, str]:
    """A tool's ``main`` in this process; its exit code and what it printed on stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)  # type: ignore[operator]
    return code, out.getvalue()


def check_catalog_file(db_path: Path) -> None:
    """SQLite's own integrity check, and no row naming a missing one (entries -> objects, ...)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        dangling = conn.execute(
            "SELECT COUNT(*) FROM entries e WHERE e.object_id IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.object_id = e.object_id)"
        ).fetchone()[0]
        assert dangling == 0, f"{dangling} entries name objects the catalog does not hold"
    finally:
        conn.close()


def sets_of(repository: str) -> list[dict]:
    code, out = quiet(sonic.main, ["list", "--repository", repository, "--json"])
    assert code == 0
    return json.loads(out)  # type: ignore[no-any-return]


def verify(repository: str) -> None:
    """``sonic verify``: every object the catalog holds is stored, with its size."""
    code, out = quiet(sonic.main, ["verify", "--repository", repository])
    assert code == 0, out


def restore_equals(repository: str, set_id: int, source: Path, expected: Path, out: Path) -> None:
    """Restore ``source`` as backed up in ``set_id`` and compare it with ``expected``."""
    shutil.rmtree(out, ignore_errors=True)
    code, _ = quiet(regenerate.main, ["--repository", repository, "-o", str(out), "-b", str(set_id), str(source)])
    assert code == 0, f"restore of set {set_id} failed"
    assert_same_tree(expected, out / source.name)


def backup_in_process(repository: str, source: Path, *extra: str) -> str:
    code, out = quiet(backup.main, ["--repository", repository, *extra, str(source)])
    assert code == 0, out
    return out


def one_line_error(stderr: str, prog: str) -> str:
    """A tool failed the way users should see it: one line, no traceback."""
    text = stderr.strip()
    assert text.count("\n") == 0 and "Traceback" not in text, text
    assert text.startswith(f"{prog}: "), text
    return text


@dataclass
class Cluster:
    """catalog, blobstore and ingest on fixed loopback ports over one BaseDir; ``env`` per
    service (the armed fault point goes to one of them only)."""

    base: Path
    secret: Path
    ports: dict[str, int] = field(default_factory=dict)
    running: dict[str, Service] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ports = {name: free_port() for name in ("catalog", "blobstore", "ingest")}

    def _args(self, name: str) -> tuple[str, list[str]]:
        common = ["--listen", f"127.0.0.1:{self.ports[name]}", "--service-secret-file", str(self.secret)]
        if name == "ingest":
            return "tardis_ingest.main", [
                *common,
                "--catalog",
                f"127.0.0.1:{self.ports['catalog']}",
                "--blobstore",
                f"127.0.0.1:{self.ports['blobstore']}",
                "--allow-new-hosts",
                "--allow-anonymous",
            ]
        return f"tardis_{name}.main", [*common, "--basedir", str(self.base)]

    def start(self, name: str, fault: str = "") -> None:
        module, args = self._args(name)
        env = {"TARDIS_FAULT": fault} if fault else {}
        previous = os.environ.pop("TARDIS_FAULT", None)
        try:
            self.running[name] = start(module, *args, env=env)
        finally:
            if previous is not None:
                os.environ["TARDIS_FAULT"] = previous

    def start_all(self, faults: dict[str, str] | None = None) -> None:
        for name in ("catalog", "blobstore", "ingest"):
            self.start(name, (faults or {}).get(name, ""))

    def killed(self, name: str, timeout: float = 60) -> bool:
        """Whether ``name`` died by SIGKILL (waiting for it up to ``timeout``)."""
        try:
            return self.running[name].process.wait(timeout=timeout) == -signal.SIGKILL
        except subprocess.TimeoutExpired:
            return False

    def restart(self, name: str) -> None:
        self.running[name].stop()
        self.start(name)

    def url(self, client: str) -> str:
        return f"tardis://127.0.0.1:{self.ports['ingest']}/{client}"

    def stop(self) -> None:
        for name in ("ingest", "catalog", "blobstore"):
            if name in self.running:
                self.running[name].stop()
