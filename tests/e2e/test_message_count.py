"""Batching: a tree of 10,000 small files costs a handful of messages, not one per file."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from helpers.services import Cluster
from tardis_cli.backup_run import BackupOptions, BackupRun
from tardis_cli.upload import UploadOptions
from tardis_common.cipher import NullCipher
from tardis_common.codecs import codec_named
from tardis_common.rpc import open_channel
from tardis_ingest.client import IngestClient

FILES = 10_000


class Counter(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):
    """Counts calls and the messages sent on them, per method."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.messages: collections.Counter[str] = collections.Counter()

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.calls[details.method] += 1
        self.messages[details.method] += 1
        return continuation(details, request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Iterator[Any]) -> Any:
        self.calls[details.method] += 1

        def counted() -> Iterator[Any]:
            for request in requests:
                self.messages[details.method] += 1
                yield request

        return continuation(details, counted())


def small_files(root: Path) -> Path:
    for d in range(100):
        directory = root / f"d{d:03}"
        directory.mkdir(parents=True)
        for f in range(FILES // 100):
            (directory / f"f{f:03}").write_bytes(f"file {d}/{f}\n".encode() * 3)
    return root


def test_ten_thousand_files_are_batched(cluster: Cluster, tmp_path: Path) -> None:
    source = small_files(tmp_path / "src")
    counter = Counter()
    channel = grpc.intercept_channel(open_channel(cluster.ingest.address), counter)
    client = IngestClient(channel)
    options = BackupOptions(create=True, upload=UploadOptions(codec_named("zstd")))
    result = BackupRun(client, "count-client", NullCipher(), options).run([str(source)])
    channel.close()

    assert result.files_sent == FILES
    calls, messages = sum(counter.calls.values()), sum(counter.messages.values())
    print(f"{FILES} files: {calls} calls, {messages} messages: {dict(counter.messages)}")
    # One round trip per file would be >= 10,000; batching must stay two orders below.
    assert calls <= FILES / 200, counter.calls
    assert messages <= FILES / 100, counter.messages
    assert counter.calls["/tardis.v1.IngestService/OpenSession"] == 1
    assert counter.calls["/tardis.v1.IngestService/FinishSession"] == 1
