"""Set manifests on a real embedded repository: sealed at the end of a backup, checked by
verify_set, and every tampering with the catalog's database named."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing

from helpers.trees import make_tree
from tardis_blobstore.core import BlobStoreCore
from tardis_catalog.core import CatalogCore
from tardis_cli.backup_run import BackupOptions, BackupRun
from tardis_cli.manifest_store import fetch_manifest, seal_set, upload_manifest, verify_set
from tardis_cli.upload import UploadOptions
from tardis_common.cipher import Cipher, NullCipher
from tardis_common.codecs import codec_named
from tardis_common.crypto import EncryptingCipher, KeySet
from tardis_common.errors import Corrupt
from tardis_common.version import PROTOCOL_VERSION
from tardis_ingest.core import IngestCore

CLIENT = "sealed"


class SealingIngest:
    """The real ingest core, with each session's set sealed just before FinishSession (what a
    backup run does for a client with a manifest key)."""

    def __init__(self, inner: IngestCore, cipher: Cipher, key: bytes) -> None:
        self.inner = inner
        self.cipher = cipher
        self.key = key
        self.sets: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open_session(self, request: ing.OpenSessionRequest) -> ing.OpenSessionReply:
        reply = self.inner.open_session(request)
        self.sets[reply.session] = reply.set.id
        return reply

    def finish_session(self, request: ing.FinishSessionRequest) -> ing.FinishSessionReply:
        set_id = self.sets.pop(request.session)
        request.manifest_id = seal_set(self.inner, CLIENT, request.session, set_id, self.cipher, self.key)
        return self.inner.finish_session(request)


@pytest.fixture(params=["null", "encrypted"])
def cipher_and_key(request: pytest.FixtureRequest) -> tuple[Cipher, bytes]:
    keys = KeySet.generate()
    return (NullCipher() if request.param == "null" else EncryptingCipher(keys)), keys.manifest_key


class Repo:
    def __init__(self, base: Path, source: Path, cipher: Cipher, key: bytes) -> None:
        self.base = base
        self.source = source
        self.cipher = cipher
        self.key = key
        self.core = IngestCore(CatalogCore(base), BlobStoreCore(base))

    def backup(self, sealed: bool = True, create: bool = False) -> common.BackupSet:
        ingest: Any = SealingIngest(self.core, self.cipher, self.key) if sealed else self.core
        options = BackupOptions(create=create, upload=UploadOptions(codec_named("zstd")))
        return BackupRun(ingest, CLIENT, self.cipher, options).run([str(self.source)]).set

    def current(self, set_id: int) -> common.BackupSet:
        sets = self.core.list_sets(cat.ClientRequest(client=CLIENT)).sets
        return next(s for s in sets if s.id == set_id)

    def verify(self, set_id: int) -> list[str]:
        return verify_set(self.core, CLIENT, self.cipher, self.key, self.current(set_id))

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.base / CLIENT / "tardis.db", isolation_level=None)

    def name_id(self, conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT name_id FROM names WHERE name = ?", (self.cipher.encrypt_name(name.encode()),))
        return int(row.fetchone()[0])

    def shown(self, relative: str) -> str:
        return str(self.source / relative)


@pytest.fixture
def repo(tmp_path: Path, cipher_and_key: tuple[Cipher, bytes]) -> Iterator[Repo]:
    source = make_tree(tmp_path / "src", files=120)
    (source / "private" / "other").write_bytes(b"another file\n")
    yield Repo(tmp_path / "repo", source, *cipher_and_key)


def test_a_sealed_set_verifies_and_an_unsealed_one_says_so(repo: Repo) -> None:
    first = repo.backup(create=True)
    assert first.manifest_id
    assert repo.verify(first.id) == []
    manifest = fetch_manifest(repo.core, CLIENT, repo.cipher, repo.current(first.id))
    assert manifest is not None and manifest.set_id == first.id and len(manifest.dirs) > 3
    second = repo.backup()  # an incremental, mostly unchanged versions spanning both sets
    assert repo.verify(second.id) == [] and repo.verify(first.id) == []
    third = repo.backup(sealed=False)
    assert repo.verify(third.id) == [f"set {third.name} has no manifest"]


@pytest.mark.parametrize(
    ("sql", "relative", "what"),
    [
        (
            "UPDATE entries SET size = size + 1 WHERE name_id = :secret",
            "private/secret",
            "changed since the set",
        ),
        (
            "UPDATE entries SET mode = 33279 WHERE name_id = :secret",
            "private/secret",
            "changed since the set",
        ),
        (
            "UPDATE entries SET object_id = (SELECT object_id FROM entries WHERE name_id = :other)"
            " WHERE name_id = :secret",
            "private/secret",
            "changed since the set",
        ),
        ("DELETE FROM entries WHERE name_id = :secret", "private/secret", "is missing from the catalog"),
        (
            "UPDATE entries SET link_target = x'2f' WHERE name_id = :link",
            "link-to-file",
            "changed since the set",
        ),
    ],
)
def test_tampering_with_the_catalog_is_named(repo: Repo, sql: str, relative: str, what: str) -> None:
    sealed = repo.backup(create=True)
    with repo.db() as conn:
        names = {"secret": "secret", "other": "other", "link": "link-to-file"}
        changed = conn.execute(sql, {k: repo.name_id(conn, v) for k, v in names.items()}).rowcount
    assert changed == 1
    problems = repo.verify(sealed.id)
    assert problems == [
        f"set {sealed.name}: {repo.shown(relative)} {what}" + (" was sealed" if "since" in what else "")
    ]


def test_a_renamed_directory_is_named(repo: Repo) -> None:
    sealed = repo.backup(create=True)
    with repo.db() as conn:
        conn.execute("INSERT INTO names (name) VALUES (?)", (repo.cipher.encrypt_name(b"planted"),))
        new = repo.name_id(conn, "planted")
        conn.execute("UPDATE entries SET name_id = ? WHERE name_id = ?", (new, repo.name_id(conn, "private")))
    assert repo.verify(sealed.id) == sorted(
        [
            f"set {sealed.name}: {repo.shown('planted')} is not in the manifest",
            f"set {sealed.name}: {repo.shown('private')} is missing from the catalog",
        ]
    )


def test_a_swapped_or_lost_manifest_is_refused(repo: Repo) -> None:
    first = repo.backup(create=True)
    second = repo.backup()
    with repo.db() as conn:
        conn.execute("UPDATE sets SET manifest = ? WHERE set_id = ?", (first.manifest_id, second.id))
    (line,) = repo.verify(second.id)
    assert line.startswith(f"the manifest of backup set {second.name} of client {CLIENT} belongs to set {first.id}")
    assert line.endswith("(swapped manifest)")
    stored = list(repo.base.rglob(first.manifest_id.decode()))
    assert len(stored) == 1
    data = bytearray(stored[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored[0].write_bytes(bytes(data))
    expected = f"the manifest of backup set {first.name} is missing or damaged"
    assert repo.verify(first.id) == [expected]
    with pytest.raises(Corrupt, match=expected):
        fetch_manifest(repo.core, CLIENT, repo.cipher, repo.current(first.id))
    stored[0].unlink()
    assert repo.verify(first.id) == [expected]


def test_a_manifest_uploaded_by_hand(repo: Repo) -> None:
    """upload_manifest stores a standalone object the catalog holds, and FinishSession records it."""
    repo.backup(sealed=False, create=True)
    opened = repo.core.open_session(
        ing.OpenSessionRequest(client=CLIENT, host="h", pid=1, name="by-hand", protocol_version=PROTOCOL_VERSION)
    )
    manifest_id = upload_manifest(repo.core, opened.session, repo.cipher, b"not a manifest at all", codec="none")
    info = repo.core.get_object_info(cat.ObjectIdsRequest(client=CLIENT, object_ids=[manifest_id])).objects
    assert [i.object_id for i in info] == [manifest_id] and info[0].encrypted == repo.cipher.encrypted
    finished = repo.core.finish_session(ing.FinishSessionRequest(session=opened.session, manifest_id=manifest_id))
    assert finished.set.manifest_id == manifest_id
    (line,) = repo.verify(finished.set.id)
    assert line == "the manifest of backup set by-hand is not a Tardis manifest (bad magic)"
