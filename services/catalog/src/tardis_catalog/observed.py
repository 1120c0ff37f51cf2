"""The catalog's per-client metrics: the newest complete set of each client, read on scrape.

``tardis_last_complete_backup_timestamp_seconds{client}`` is what an operator alerts on
("no complete backup of X for 26 hours"); it is computed from the catalogs at scrape time,
one ListSets per client, so it is right after restarts, deletions and purges alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tardis.v1 import catalog_pb2 as cat

from tardis_common import metrics
from tardis_common.interfaces import Catalog

from .db import DB_NAME


def client_names(root: Path) -> Iterator[str]:
    """The clients with a catalog under ``root``, by name."""
    try:
        folders = sorted(root.iterdir())
    except OSError:
        return
    for folder in folders:
        if (folder / DB_NAME).is_file():
            yield folder.name


def register_catalog_metrics(catalog: Catalog, root: Path) -> Any:
    """Register the last-backup collector for the catalogs under ``root`` (once per process)."""

    def newest(client: str) -> Any:
        return metrics.newest_complete(catalog.list_sets(cat.ClientRequest(client=client)).sets)

    return metrics.register_collector(metrics.LastBackupCollector(lambda: client_names(Path(root)), newest))
