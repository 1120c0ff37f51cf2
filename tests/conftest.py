"""Fixtures shared by the suites: generated trees, embedded and distributed repositories."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
# The documented test-only KDF setting (docs/operations.md): scrypt at n=2**10 instead of
# 2**17, so the suite's many logins stay fast. Stored parameters still record the real cost.
os.environ.setdefault("TARDIS_TEST_KDF", "1")

from helpers.services import Cluster, start_cluster, write_secret

_names = itertools.count(1)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """catalog, blobstore and ingest as separate processes on loopback, for the session;
    catalog and blobstore demand a service secret (a temporary file), which ingest sends."""
    secret_file = write_secret(tmp_path_factory.mktemp("cluster-secret") / "service.secret")
    running = start_cluster(tmp_path_factory.mktemp("cluster-base"), secret_file)
    yield running
    running.stop()


@pytest.fixture(params=["embedded", "distributed"])
def repository(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A repository URL for a fresh client, in each deployment mode."""
    client = f"client{next(_names)}"
    if request.param == "embedded":
        return str(tmp_path / "repo" / client)
    cluster: Cluster = request.getfixturevalue("cluster")
    return f"tardis://{cluster.ingest.address}/{client}"
