"""Concurrency (issue 8): eight clients backing up to one distributed cluster at once while a
purge runs for one of them (and, in one test, remote-http serves reads); two runs for the same
client.

Real processes throughout: catalog, blobstore and ingest on loopback, and the real `tardis`,
`sonic` and `regenerate` tools as subprocesses, one client each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tardis.v1 import ingest_pb2 as ing

from helpers.mutations import Snapshot, differences, take_snapshot
from helpers.services import Cluster, start_cluster, start_remote, write_secret
from helpers.trees import assert_same_tree, make_tree
from tardis_common.rpc import open_channel
from tardis_common.version import PROTOCOL_VERSION, __version__
from tardis_ingest.client import IngestClient

pytestmark = pytest.mark.reliability_suite(
    "concurrency",
    "eight clients backing up to one distributed cluster at once while one of them is purged "
    "and remote-http serves reads; two runs for the same client at once",
)

BIN = Path(sys.executable).parent
CLIENTS = 8
LOCKED = "database is locked"


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[tuple[Cluster, dict[str, str]]]:
    """A cluster whose ingest accepts an admin credential (for the purge), and the environment
    the tools run with (their own state directory, the admin secret file)."""
    admin = write_secret(tmp_path / "admin.secret")
    running = start_cluster(tmp_path / "base", extra={"ingest": ["--admin-secret-file", str(admin)]})
    env = {**os.environ, "TARDIS_STATE_DIR": str(tmp_path / "state"), "TARDIS_ADMIN_SECRET_FILE": str(admin)}
    try:
        yield running, env
    finally:
        running.stop()


def run(env: dict[str, str], tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=300, env=env)


def sets_of(env: dict[str, str], url: str) -> list[str]:
    done = run(env, "sonic", "list", "--repository", url, "--json")
    assert done.returncode == 0, done.stderr
    return [s["name"] for s in json.loads(done.stdout)]


def test_eight_clients_at_once_while_one_is_purged(
    busy: tuple[Cluster, dict[str, str]], tmp_path: Path, reliability: object
) -> None:
    cluster, env = busy
    url = {i: f"tardis://{cluster.ingest.address}/conc{i}" for i in range(CLIENTS)}
    trees = {i: make_tree(tmp_path / f"src{i}", files=150, seed=100 + i) for i in range(CLIENTS)}
    purged = CLIENTS - 1
    for n in range(3):  # the purged client has older sets to lose
        (trees[purged] / "round.txt").write_text(f"round {n}\n")
        done = run(env, "tardis", "--repository", url[purged], *(["--create"] if n == 0 else []), str(trees[purged]))
        assert done.returncode == 0, done.stderr
    before_purge = sets_of(env, url[purged])
    assert len(before_purge) == 3

    def client_work(i: int) -> list[subprocess.CompletedProcess[str]]:
        if i == purged:
            purge = run(
                env, "sonic", "purge", "--repository", url[i], "--priority", "100", "--keep-hours", "0", "--confirm"
            )
            return [purge, run(env, "tardis", "--repository", url[i], str(trees[i]))]
        return [run(env, "tardis", "--repository", url[i], "--create", str(trees[i]))]

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        outcomes = dict(zip(range(CLIENTS), pool.map(client_work, range(CLIENTS)), strict=True))

    for i, runs in outcomes.items():
        for done in runs:
            assert done.returncode == 0, f"client {i}: {done.args[:2]}: {done.stderr}"
            assert LOCKED not in (done.stderr + done.stdout).lower(), done.stderr
    # The purge removed every older set but the newest; the new run added one (which may take
    # a freed name: Monthly-... again).
    remaining = sets_of(env, url[purged])
    assert len(remaining) == 2 and remaining[0] == before_purge[-1], (before_purge, remaining)
    # Every set of every client restores exactly (the trees did not change since).
    restored = 0
    for i in range(CLIENTS):
        for name in sets_of(env, url[i]):
            out = tmp_path / "out" / f"{i}-{name}"
            done = run(env, "regenerate", "--repository", url[i], "-b", name, "-o", str(out), str(trees[i]))
            assert done.returncode == 0 and LOCKED not in done.stderr.lower(), done.stderr
            assert_same_tree(trees[i], out / trees[i].name)
            shutil.rmtree(out)
            restored += 1
    assert restored == CLIENTS + 1
    reliability.add(CLIENTS + 1 + restored)  # type: ignore[attr-defined]


def test_two_runs_for_the_same_client(busy: tuple[Cluster, dict[str, str]], tmp_path: Path) -> None:
    """While one run holds the client's writer lease, a second refuses in one line naming the
    holder; started together, one proceeds and any other refuses the same way."""
    cluster, env = busy
    url = f"tardis://{cluster.ingest.address}/twice"
    source = make_tree(tmp_path / "src", files=300)
    ingest = IngestClient(open_channel(cluster.ingest.address))
    try:
        held = ingest.open_session(
            ing.OpenSessionRequest(
                client="twice",
                create=True,
                host="first-run",
                pid=4242,
                client_version=__version__,
                protocol_version=PROTOCOL_VERSION,
            )
        )
        refused = run(env, "tardis", "--repository", url, str(source))
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode != 0 and len(lines) == 1, refused.stderr
        assert lines[0].startswith("tardis: error: client twice is being backed up by first-run:4242"), lines[0]
        ingest.finish_session(ing.FinishSessionRequest(session=held.session))
    finally:
        ingest.close()

    # Two real runs started together: one proceeds; one that finds the lease held refuses.
    procs = [
        subprocess.Popen(
            [str(BIN / "tardis"), "--repository", url, str(source)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    assert any(code == 0 for code, _ in results), results
    for code, err in results:
        assert LOCKED not in err.lower(), err
        if code != 0:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and "is being backed up by" in lines[0], err
    out = tmp_path / "out"
    done = run(env, "regenerate", "--repository", url, "-o", str(out), str(source))
    assert done.returncode == 0, done.stderr
    assert_same_tree(source, out / source.name)


def test_remote_http_reads_during_backups(
    busy: tuple[Cluster, dict[str, str]], tmp_path: Path, reliability: object
) -> None:
    """Eight clients back up new trees at once while one of them is purged and tardisremote
    (two workers) serves reads of the sets completed before: regenerate and lstardis over
    http://, in a loop until the backups finish. Everything succeeds, no "database is locked"
    reaches a user or the server's log, and every set restores exactly."""
    cluster, env = busy
    user = {k: v for k, v in env.items() if k != "TARDIS_ADMIN_SECRET_FILE"}  # readers: no admin rights
    remote = start_remote(cluster, tmp_path / "remote", AllowAnonymous=True)
    url = {i: f"tardis://{cluster.ingest.address}/reads{i}" for i in range(CLIENTS)}
    http = {i: f"http://{remote.address}/reads{i}" for i in range(CLIENTS)}
    first = {i: make_tree(tmp_path / f"first{i}", files=100, seed=200 + i) for i in range(CLIENTS)}
    second = {i: make_tree(tmp_path / f"second{i}", files=100, seed=300 + i) for i in range(CLIENTS)}
    purged = CLIENTS - 1
    outputs: list[subprocess.CompletedProcess[str]] = []

    def checked(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
        outputs.append(done)
        assert done.returncode == 0, f"{done.args[:3]}: {done.stderr}"
        return done

    def first_sets(i: int) -> str:
        """The client's sets of ``first[i]`` (three for the purged one); the newest is read below."""
        for n in range(3 if i == purged else 1):
            (first[i] / "round.txt").write_text(f"round {n}\n")
            checked(run(env, "tardis", "--repository", url[i], *(["--create"] if n == 0 else []), str(first[i])))
        return sets_of(env, url[i])[-1]

    try:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            earlier = dict(zip(range(CLIENTS), pool.map(first_sets, range(CLIENTS)), strict=True))
        before_purge = sets_of(env, url[purged])
        assert len(before_purge) == 3 and before_purge[-1] == earlier[purged]

        backups_done = threading.Event()
        middle: dict[int, Snapshot] = {}
        reads: list[int] = [0, 0]
        during: list[int] = [0, 0]  # reads started while backups were still running

        def reader(worker: int) -> None:
            """Restore and list this reader's half of the earlier sets over http://, pass after
            pass, until the backups are done (at least one whole pass)."""
            mine = [i for i in range(CLIENTS) if i % 2 == worker]
            passes = 0
            while passes == 0 or not backups_done.is_set():
                for i in mine:
                    during[worker] += 0 if backups_done.is_set() else 2
                    out = tmp_path / "http" / f"{i}-{worker}-{passes}"
                    name = earlier[i]
                    checked(run(user, "regenerate", "--repository", http[i], "-b", name, "-o", str(out), str(first[i])))
                    assert_same_tree(first[i], out / first[i].name)
                    shutil.rmtree(out)
                    listing = run(user, "lstardis", "--repository", http[i], "--recurse", "--range", f"{name}:{name}")
                    assert "run.sh" in checked(listing).stdout, listing.stdout
                    reads[worker] += 2
                passes += 1

        def backup_work(i: int) -> None:
            if i == purged:
                purge = ("sonic", "purge", "--repository", url[i], "--priority", "100", "--keep-hours", "0")
                checked(run(env, *purge, "--confirm"))
            checked(run(env, "tardis", "--repository", url[i], str(second[i])))
            middle[i] = take_snapshot(second[i])  # what this set must restore to
            extra = second[i] / "added"  # a second run with new content
            extra.mkdir()
            for n in range(30):
                (extra / f"note{n}.txt").write_text(f"client {i} note {n}\n" * (n + 1))
            checked(run(env, "tardis", "--repository", url[i], str(second[i])))

        with ThreadPoolExecutor(max_workers=CLIENTS + 2) as pool:
            readers = [pool.submit(reader, w) for w in (0, 1)]
            backups = [pool.submit(backup_work, i) for i in range(CLIENTS)]
            try:
                for future in backups:
                    future.result()
            finally:
                backups_done.set()
            for future in readers:
                future.result()
    finally:
        code, log = remote.stop_reading()
    assert code == 0, "".join(log[-20:])
    assert sum(during) > 0, "no read overlapped the backups"
    print(f"reads over http: {sum(reads)}, {sum(during)} of them while the backups ran")
    for done in outputs:
        assert LOCKED not in (done.stderr + done.stdout).lower(), done.stderr
    assert not [line for line in log if LOCKED in line.lower() or "internal error" in line.lower()], log

    # The purge kept the newest earlier set; every set of every client restores exactly (the
    # earlier ones were restored over http:// above).
    remaining = sets_of(env, url[purged])
    assert len(remaining) == 3 and remaining[0] == earlier[purged], (before_purge, remaining)

    def restore_newer(i: int) -> None:
        sets = sets_of(env, url[i])
        assert len(sets) == 3 and sets[0] == earlier[i], sets
        for name in sets[1:]:
            out = tmp_path / "out" / f"{i}-{name}"
            checked(run(env, "regenerate", "--repository", url[i], "-b", name, "-o", str(out), str(second[i])))
            if name == sets[1]:
                assert differences(middle[i], take_snapshot(out / second[i].name)) == []
            else:
                assert_same_tree(second[i], out / second[i].name)
            shutil.rmtree(out)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(restore_newer, range(CLIENTS)))
    assert all(LOCKED not in (d.stderr + d.stdout).lower() for d in outputs)
    reliability.add(2 * CLIENTS + 1 + sum(reads) + 2 * CLIENTS)  # type: ignore[attr-defined]
