"""Hostile input (issue 8): every gRPC method without valid credentials, generated adversarial
messages against a real distributed cluster, and resource limits.

The cluster is real: catalog and blobstore demanding a service secret, ingest requiring a login
for every non-public method (no AllowAnonymous), with small limits (MaxMessageBytes 4 MiB,
MaxEntriesPerBatch 1,000). Client alice logs in; bob is another client with a backup.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from hostile_messages import (
    CLEAR_REFUSALS,
    RAW_CHANNEL_OPTIONS,
    SERVICES,
    Targets,
    addresses,
    message,
    raw_call,
    request_class,
    snapshot,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing

from helpers.services import Cluster, Service, start_cluster, write_secret
from helpers.trees import make_tree
from tardis_blobstore.core import BlobStoreCore
from tardis_catalog.core import CatalogCore
from tardis_cli.backup_run import BackupOptions, BackupRun
from tardis_cli.credentials import login
from tardis_cli.known_repos import KnownRepository
from tardis_cli.restore import Restorer
from tardis_cli.upload import UploadOptions
from tardis_common.cipher import NullCipher
from tardis_common.codecs import codec_named
from tardis_common.service_auth import SERVICE_SECRET_HEADER
from tardis_common.version import PROTOCOL_VERSION, __version__
from tardis_ingest.client import IngestClient
from tardis_ingest.core import IngestCore
from tardis_ingest.grpc_service import ADMIN_HEADER, PUBLIC_METHODS, TOKEN_HEADER

pytestmark = pytest.mark.reliability_suite(
    "hostile-input",
    "calls without valid credentials to every gRPC method; generated malformed and adversarial "
    "messages (out-of-range numbers, huge repeated fields, oversized messages, hostile names, "
    "unknown set ids, another client's ids)",
)

PASSWORD = "hostile input password"
MAX_MESSAGE = 4 * 1024 * 1024
MAX_ENTRIES = 1_000
BIN = Path(sys.executable).parent
PROFILE = settings(
    max_examples=int(os.environ.get("TARDIS_HOSTILE_EXAMPLES", "25")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)


@dataclass
class Hostile:
    base: Path
    secret: str
    admin: str
    catalog: Service
    blobstore: Service
    ingest: Service
    channels: dict[str, grpc.Channel]
    alice_token: str
    alice_session: str
    bob_objects: tuple[bytes, ...]

    def targets(self) -> Targets:
        return Targets(own="alice", other="bob", other_object_ids=self.bob_objects, session=self.alice_session)

    def as_alice(self) -> list[tuple[str, str]]:
        return [(TOKEN_HEADER, f"Bearer {self.alice_token}")]

    def others(self) -> dict[str, tuple[int, int]]:
        """Everything under BaseDir that is not alice's."""
        return snapshot(self.base, skip=("alice",))

    def still_serving(self) -> None:
        """A valid call of alice's, and a Hello, still work."""
        service = SERVICES["ingest"]
        listed = raw_call(
            self.channels["ingest"],
            service,
            service.methods_by_name["ListSets"],
            cat.ClientRequest(client="alice"),
            self.as_alice(),
        )
        assert listed.code == grpc.StatusCode.OK, listed
        hello = ing.HelloRequest(client_version=__version__, protocol_version=PROTOCOL_VERSION)
        said = raw_call(self.channels["ingest"], service, service.methods_by_name["Hello"], hello)
        assert said.code == grpc.StatusCode.OK, said


def cli(tool: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / tool), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    root = tmp_path_factory.mktemp("hostile")
    base = root / "base"
    base.mkdir()
    secret_file = write_secret(root / "service.secret")
    admin_file = write_secret(root / "admin.secret")
    limits = ("--max-message-bytes", str(MAX_MESSAGE), "--max-entries-per-batch", str(MAX_ENTRIES))
    cluster = start_cluster(
        base, secret_file, {"ingest": ("--admin-secret-file", str(admin_file), *limits)}, allow_anonymous=False
    )
    catalog, blobstore, ingest = cluster.catalog, cluster.blobstore, cluster.ingest
    channels = {
        name: grpc.insecure_channel(service.address, options=RAW_CHANNEL_OPTIONS)
        for name, service in (("catalog", catalog), ("blobstore", blobstore), ("ingest", ingest))
    }
    env = {"TARDIS_STATE_DIR": str(root / "state")}
    try:
        for client in ("alice", "bob"):
            source = make_tree(root / f"src-{client}", files=12)
            url = f"tardis://{ingest.address}/{client}"
            done = cli("tardis", "--repository", url, "--create", "--password", PASSWORD, str(source), env=env)
            assert done.returncode == 0, done.stderr
        known = KnownRepository("hostile", root / "known.json")
        from tardis_common.rpc import open_channel

        alice = IngestClient(open_channel(ingest.address))
        token = login(alice, "alice", PASSWORD.encode(), known).token
        alice.close()
        alice = IngestClient(open_channel(ingest.address), metadata=lambda: [(TOKEN_HEADER, f"Bearer {token}")])
        session = alice.open_session(
            ing.OpenSessionRequest(client="alice", client_version=__version__, protocol_version=PROTOCOL_VERSION)
        ).session
        alice.close()
        bob_objects = tuple(
            p.name.encode() for p in (base / "bob").glob("??/??/*") if "." not in p.name and len(p.name) >= 16
        )
        assert bob_objects, "bob's backup stored no objects"
        yield Hostile(
            base,
            secret_file.read_text().strip(),
            admin_file.read_text().strip(),
            catalog,
            blobstore,
            ingest,
            channels,
            token,
            session,
            bob_objects,
        )
    finally:
        for channel in channels.values():
            channel.close()
        cluster.stop()


# -- every method without valid credentials -------------------------------------------------


def plausible(method_input: object) -> object:
    """A well-formed request aimed at bob: his name, a session id naming him, current versions."""
    request = method_input
    for field, value in (
        ("client", "bob"),
        ("session", f"v1/1/1/{'0' * 32}/bob"),
        ("client_version", __version__),
        ("protocol_version", PROTOCOL_VERSION),
        ("token", "forged-token"),
    ):
        if field in request.DESCRIPTOR.fields_by_name:  # type: ignore[attr-defined]
            setattr(request, field, value)
    return request


def unauthenticated_cases() -> list[tuple[str, str]]:
    return [(service, method.name) for service, desc in SERVICES.items() for method in desc.methods]


@pytest.mark.parametrize(("service_name", "method_name"), unauthenticated_cases())
def test_every_method_refuses_callers_without_valid_credentials(
    hostile: Hostile, service_name: str, method_name: str, reliability: object
) -> None:
    service = SERVICES[service_name]
    method = service.methods_by_name[method_name]
    channel = hostile.channels[service_name]
    if service_name == "ingest":
        attempts = {
            "no credentials": [],
            "forged token": [(TOKEN_HEADER, "Bearer forged")],
            "not a bearer token": [(TOKEN_HEADER, "Basic YWxpY2U6eA==")],
            "wrong admin secret": [(ADMIN_HEADER, "not-the-admin-secret")],
        }
    else:
        attempts = {"no service secret": [], "wrong service secret": [(SERVICE_SECRET_HEADER, "wrong")]}
    before = hostile.others()
    for what, metadata in attempts.items():
        request = plausible(request_class(method)())
        outcome = raw_call(channel, service, method, request, metadata)  # type: ignore[arg-type]
        public = service_name == "ingest" and method_name in PUBLIC_METHODS and what != "wrong admin secret"
        if public and method_name in ("Hello", "LoginStart"):
            # Public by design: the version handshake, and a client's public KDF parameters.
            assert outcome.code in (grpc.StatusCode.OK, *CLEAR_REFUSALS), (what, outcome)
            continue
        if public:
            # LoginFinish with no handshake, RenewToken with a forged token, CreateClient of an
            # existing client without credentials: refused, never served.
            assert outcome.code in CLEAR_REFUSALS, (what, outcome)
            continue
        assert outcome.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED), (what, outcome)
    assert hostile.others() == before
    reliability.add(len(attempts))  # type: ignore[attr-defined]


# -- generated adversarial messages -----------------------------------------------------------

INGEST_METHODS = [m.name for m in SERVICES["ingest"].methods]
OUTCOMES: Counter[str] = Counter()  # status codes of every generated call, for the suite's notes


@pytest.fixture(scope="module", autouse=True)
def _outcome_notes(record_suite: Callable[[str, str], Any]) -> Iterator[None]:
    yield
    if OUTCOMES:
        shown = ", ".join(f"{code} {count}" for code, count in OUTCOMES.most_common())
        record_suite("hostile-input", "").note(f"generated calls answered: {shown}")


@pytest.mark.parametrize("method_name", INGEST_METHODS)
def test_generated_hostile_messages_to_ingest_are_refused_clearly(
    hostile: Hostile, method_name: str, reliability: object
) -> None:
    """Logged in as alice: each generated message gets a clear status (never UNKNOWN or
    INTERNAL), one addressing bob is never served, the service stays up, and nothing outside
    alice's directory changes."""
    service = SERVICES["ingest"]
    method = service.methods_by_name[method_name]
    examples = []

    @PROFILE
    @given(request=message(method.input_type, hostile.targets()))
    def check(request: object) -> None:
        before = hostile.others()
        outcome = raw_call(hostile.channels["ingest"], service, method, request, hostile.as_alice())  # type: ignore[arg-type]
        examples.append(outcome.code.name)
        OUTCOMES[outcome.code.name] += 1
        assert outcome.code == grpc.StatusCode.OK or outcome.code in CLEAR_REFUSALS, outcome
        if method_name not in PUBLIC_METHODS and addresses(request, "bob"):  # type: ignore[arg-type]
            assert outcome.code != grpc.StatusCode.OK, "a call naming another client was served"
        assert hostile.others() == before
        hostile.still_serving()

    check()
    reliability.add(len(examples))  # type: ignore[attr-defined]


@pytest.mark.parametrize("service_name", ["catalog", "blobstore"])
def test_generated_messages_to_internal_services_never_fail_internally(
    hostile: Hostile, service_name: str, reliability: object
) -> None:
    """With the service secret (the trusted caller): malformed messages to every method are still
    refused clearly, and nothing is written outside BaseDir or into alice's or bob's directory
    unless the message names them."""
    service = SERVICES[service_name]
    metadata = [(SERVICE_SECRET_HEADER, hostile.secret)]
    targets = Targets(own="scratch", other="scratch2", other_object_ids=hostile.bob_objects)
    strategies = st.sampled_from(list(service.methods)).flatmap(
        lambda m: st.tuples(st.just(m), message(m.input_type, targets))
    )
    outside = hostile.base.parent
    examples = []

    @settings(PROFILE, max_examples=PROFILE.max_examples * 4)
    @given(case=strategies)
    def check(case: tuple[object, object]) -> None:
        method, request = case
        named = getattr(request, "client", "")
        skip = ("scratch", "scratch2", *([named] if named not in ("alice", "bob") else []))
        protected = snapshot(hostile.base, skip=skip)
        around = sorted(os.listdir(outside))
        outcome = raw_call(hostile.channels[service_name], service, method, request, metadata)  # type: ignore[arg-type]
        examples.append(outcome.code.name)
        OUTCOMES[outcome.code.name] += 1
        assert outcome.code == grpc.StatusCode.OK or outcome.code in CLEAR_REFUSALS, (method.name, outcome)  # type: ignore[attr-defined]
        assert sorted(os.listdir(outside)) == around
        assert snapshot(hostile.base, skip=skip) == protected, method.name  # type: ignore[attr-defined]
        hostile.still_serving()

    check()
    reliability.add(len(examples))  # type: ignore[attr-defined]


def test_an_oversized_message_is_refused_unread(hostile: Hostile) -> None:
    service = SERVICES["ingest"]
    huge = cat.ClientRequest(client="alice" + "x" * (MAX_MESSAGE + 1024))
    outcome = raw_call(
        hostile.channels["ingest"], service, service.methods_by_name["ListSets"], huge, hostile.as_alice()
    )
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
    hostile.still_serving()


def test_a_batch_beyond_max_entries_is_refused(hostile: Hostile) -> None:
    service = SERVICES["ingest"]
    entries = [common.Entry(name=f"f{i}".encode(), type=common.ENTRY_TYPE_FILE) for i in range(MAX_ENTRIES + 1)]
    request = ing.SubmitEntriesRequest(session=hostile.alice_session, groups=[common.EntryGroup(entries=entries)])
    method = service.methods_by_name["SubmitEntries"]
    outcome = raw_call(hostile.channels["ingest"], service, method, request, hostile.as_alice())
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
    assert "MaxEntriesPerBatch" in outcome.details
    hostile.still_serving()


# -- restores of hostile catalogs ---------------------------------------------------------------


@dataclass
class Crafted:
    ingest: IngestCore
    catalog: CatalogCore
    repo: Path
    object_id: bytes  # a real stored object, for crafted file entries
    size: int


@pytest.fixture
def crafted(tmp_path: Path) -> Iterator[Crafted]:
    """An embedded repository of client "evil" with one honest backup (for a real object)."""
    repo = tmp_path / "repo"
    catalog = CatalogCore(repo)
    ingest = IngestCore(catalog, BlobStoreCore(repo))
    source = tmp_path / "honest"
    source.mkdir()
    (source / "content").write_bytes(b"restored bytes\n" * 10)
    options = BackupOptions(create=True, upload=UploadOptions(codec_named("zstd")))
    result = BackupRun(ingest, "evil", NullCipher(), options).run([str(source)])
    tree = [e for b in ingest.read_tree(cat.ReadTreeRequest(client="evil", set_id=result.set.id)) for e in b.entries]
    stored = next(e for e in tree if e.object_id)
    try:
        yield Crafted(ingest, catalog, repo, stored.object_id, stored.size)
    finally:
        catalog.close()


def craft_set(crafted: Crafted, groups: list[tuple[list[bytes], list[common.Entry]]]) -> int:
    """A complete set of client evil holding exactly ``groups`` (directory path, entries)."""
    begun = crafted.catalog.begin_set(cat.BeginSetRequest(client="evil", session="crafted", holder="test:1"))
    set_id, fence = begun.set.id, begun.fence
    crafted.catalog.record_entries(
        cat.RecordEntriesRequest(
            client="evil",
            set_id=set_id,
            fence=fence,
            insert=[common.EntryGroup(dir=common.DirPath(components=path), entries=e) for path, e in groups],
        )
    )
    crafted.catalog.complete_set(cat.CompleteSetRequest(client="evil", set_id=set_id, fence=fence))
    return set_id


def file_entry(crafted: Crafted, name: bytes) -> common.Entry:
    return common.Entry(
        name=name, type=common.ENTRY_TYPE_FILE, mode=0o100644, size=crafted.size, object_id=crafted.object_id, nlink=1
    )


def link_entry(name: bytes, target: bytes) -> common.Entry:
    return common.Entry(name=name, type=common.ENTRY_TYPE_SYMLINK, mode=0o120777, link_target=target)


def dir_entry(name: bytes) -> common.Entry:
    return common.Entry(name=name, type=common.ENTRY_TYPE_DIR, mode=0o40755)


def restore_all(crafted: Crafted, set_id: int, target: Path) -> None:
    Restorer(crafted.ingest, "evil", NullCipher(), set_id, report=lambda _line: None).restore_path([], str(target))


def around(tmp_path: Path, target: Path) -> dict[str, tuple[int, int]]:
    """Everything in the test's directory except the restore target and the repository."""
    return snapshot(tmp_path, skip=(target.name, "repo"))


def test_restore_of_hostile_names_and_symlinks_writes_nothing_outside(
    crafted: Crafted, tmp_path: Path, reliability: object
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"must not change\n")
    absolute = str(outside).encode()
    cases: list[tuple[list[bytes], list[common.Entry]]] = [
        (
            [],
            [
                link_entry(b"abs", absolute),  # an absolute link target
                link_entry(b"rel", b"../outside"),  # a relative one climbing out
                link_entry(b"victim-link", absolute + b"/victim"),
                file_entry(crafted, b"../escape"),  # names with "../", "/", NUL, ".."
                file_entry(crafted, b".."),
                file_entry(crafted, b"."),
                file_entry(crafted, b"a/../../escape2"),
                file_entry(crafted, b"/abs-name"),
                file_entry(crafted, b"nul\x00name"),
                dir_entry(b"d"),
                file_entry(crafted, b"ok"),
            ],
        ),
        ([b"abs"], [file_entry(crafted, b"beneath-abs")]),  # files beneath a symlink
        ([b"rel"], [file_entry(crafted, b"beneath-rel")]),
        ([b"victim-link"], [file_entry(crafted, b"beneath-file-link")]),
        ([b".."], [file_entry(crafted, b"up")]),  # directories named ".."
        ([b"..", b".."], [file_entry(crafted, b"up2")]),
        ([b"d"], [link_entry(b"inner", absolute), file_entry(crafted, b"fine")]),
        ([b"d", b"inner"], [file_entry(crafted, b"deep")]),  # beneath a symlink in a subdirectory
    ]
    set_id = craft_set(crafted, cases)
    target = tmp_path / "target"
    before = around(tmp_path, target)
    restore_all(crafted, set_id, target)
    assert around(tmp_path, target) == before
    assert (outside / "victim").read_bytes() == b"must not change\n"
    assert sorted(os.listdir(outside)) == ["victim"]
    # The honest parts were restored; the symlinks are links, never followed.
    assert (target / "ok").read_bytes() == b"restored bytes\n" * 10
    assert (target / "d" / "fine").read_bytes() == b"restored bytes\n" * 10
    assert os.readlink(target / "abs") == str(outside)
    assert os.readlink(target / "d" / "inner") == str(outside)
    assert sorted(os.listdir(target)) == ["abs", "d", "ok", "rel", "victim-link"]
    reliability.add(sum(len(entries) for _, entries in cases))  # type: ignore[attr-defined]


def test_restore_of_a_symlink_replacing_a_restored_directory_writes_nothing_outside(
    crafted: Crafted, tmp_path: Path
) -> None:
    """A damaged or forged catalog holding a directory and a symlink of the same name in one
    set (the symlink read after the directory), then files of that directory: the files must
    not be written through the symlink."""
    outside = tmp_path / "outside"
    outside.mkdir()
    set_id = craft_set(crafted, [([], [dir_entry(b"d")]), ([b"d"], [file_entry(crafted, b"planted")])])
    database = crafted.repo / "evil" / "tardis.db"
    crafted.catalog.close()
    with sqlite3.connect(database) as conn:
        child = conn.execute(
            "SELECT entry_id FROM entries WHERE type = ? AND first_set = ?", (common.ENTRY_TYPE_DIR, set_id)
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO entries (dir_id, name_id, first_set, last_set, type, mode, inode, device, nlink, uid, gid,"
            " size, mtime_ns, ctime_ns, atime_ns, link_target) SELECT dir_id, name_id, first_set, last_set, ?, ?,"
            " 0, 0, 1, 0, 0, 0, 0, 0, 0, ? FROM entries WHERE entry_id = ?",
            (common.ENTRY_TYPE_SYMLINK, 0o120777, str(outside).encode(), child),
        )
    crafted.catalog = CatalogCore(crafted.repo)
    crafted.ingest = IngestCore(crafted.catalog, BlobStoreCore(crafted.repo))
    target = tmp_path / "target"
    before = around(tmp_path, target)
    restore_all(crafted, set_id, target)
    assert os.listdir(outside) == []
    assert around(tmp_path, target) == before


# -- resource limits ------------------------------------------------------------------------------

LIMITS = pytest.mark.reliability_suite(
    "resource-limits",
    "backups beyond ClientQuota and MaxEntriesPerBatch, calls beyond MaxSessionsPerClient, "
    "messages beyond MaxMessageBytes",
)


def rss_peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@LIMITS
def test_an_oversized_message_does_not_grow_the_server(hostile: Hostile) -> None:
    """Messages far beyond MaxMessageBytes are refused without being held in memory."""
    service = SERVICES["ingest"]
    method = service.methods_by_name["SubmitEntries"]
    before = rss_peak_kib(hostile.ingest.process.pid)
    blob = b"\x12" + b"\xff\xff\xff\x1f" + b"\0" * (48 * 1024 * 1024)  # field 2, ~48 MiB: far past the cap
    for _ in range(3):
        outcome = raw_call(hostile.channels["ingest"], service, method, blob, hostile.as_alice())
        assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
    grown = rss_peak_kib(hostile.ingest.process.pid) - before
    assert grown < 24 * 1024, f"ingest's peak memory grew by {grown} KiB"
    hostile.still_serving()


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Cluster]:
    """A distributed cluster with small limits: ClientQuota 256 KiB, MaxEntriesPerBatch 50,
    MaxSessionsPerClient 2 (anonymous clients allowed)."""
    running = start_cluster(
        tmp_path / "base",
        extra={
            "blobstore": ["--client-quota", str(256 * 1024)],
            "ingest": ["--max-entries-per-batch", "50", "--max-sessions-per-client", "2"],
        },
    )
    try:
        yield running
    finally:
        running.stop()


def one_line(done: subprocess.CompletedProcess[str], *words: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@LIMITS
def test_a_backup_beyond_the_client_quota_fails_with_one_line(limited: Cluster, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    for i in range(4):
        (big / f"random{i}").write_bytes(os.urandom(100 * 1024))  # incompressible: 400 KiB > 256 KiB
    url = f"tardis://{limited.ingest.address}/hoarder"
    line = one_line(cli("tardis", "--repository", url, "--create", str(big)), "quota", "ClientQuota")
    assert line.startswith("tardis: error: ")
    # Other clients have their own quota; a small backup of the same client's still fits.
    small = tmp_path / "small"
    small.mkdir()
    for i in range(3):
        (small / f"note{i}").write_text(f"a small note {i}\n")
    other = f"tardis://{limited.ingest.address}/modest"
    assert cli("tardis", "--repository", other, "--create", str(small)).returncode == 0
    # (A failed run keeps its writer lease until it expires: the retry takes it over.)
    assert cli("tardis", "--repository", url, "--force", str(small)).returncode == 0


@LIMITS
def test_a_batch_beyond_max_entries_fails_with_one_line(limited: Cluster, tmp_path: Path) -> None:
    source = make_tree(tmp_path / "many", files=120)
    url = f"tardis://{limited.ingest.address}/batcher"
    one_line(cli("tardis", "--repository", url, "--create", str(source)), "MaxEntriesPerBatch")


@LIMITS
def test_calls_beyond_max_sessions_per_client_are_refused(limited: Cluster) -> None:
    from tardis_common.errors import Throttled
    from tardis_common.rpc import open_channel

    ingest = IngestClient(open_channel(limited.ingest.address))
    hello = {"client_version": __version__, "protocol_version": PROTOCOL_VERSION}
    session = ingest.open_session(ing.OpenSessionRequest(client="busy", create=True, **hello)).session
    ingest.create_client(ing.CreateClientRequest(client="calm"))
    release = threading.Event()
    results: list[object] = []

    def held_upload() -> None:
        def messages() -> Iterator[ing.UploadContentRequest]:
            yield ing.UploadContentRequest(session=session)
            release.wait(60)

        while True:
            try:
                results.append(ingest.upload_content(messages()))
            except Throttled:
                continue  # a polling call held the last slot just then: take it again
            except Exception as exc:
                results.append(exc)
            return

    uploads = [threading.Thread(target=held_upload) for _ in range(2)]
    for thread in uploads:
        thread.start()
    try:
        refused = None
        deadline = time.monotonic() + 30
        while refused is None and time.monotonic() < deadline:  # until both uploads hold their slot
            try:
                ingest.list_sets(cat.ClientRequest(client="busy"))
            except Throttled as exc:
                refused = exc
        assert refused is not None, "a third call of the same client was never refused"
        assert "MaxSessionsPerClient" in str(refused)
        assert ingest.list_sets(cat.ClientRequest(client="calm")).sets is not None  # others are not held up
    finally:
        release.set()
        for thread in uploads:
            thread.join(60)
    assert all(not isinstance(r, Exception) for r in results), results
    assert ingest.list_sets(cat.ClientRequest(client="busy")).sets is not None
    ingest.close()
