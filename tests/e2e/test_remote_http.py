"""remote-http: real gunicorn (tardisremote) over the session cluster's catalog and blobstore.

A history is backed up with the real client over tardis://; the read tools then run with
--repository http://127.0.0.1:PORT/Client and must give what they give over tardis://.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tardis.v1 import ingest_pb2 as ing

from helpers.cli import one_line_error
from helpers.services import Cluster, Service, free_port, start_remote
from helpers.trees import assert_same_tree, make_tree
from tardis_cli import backup, lstardis, regenerate, sonic, tardiff
from tardis_cli.connect import open_repository
from tardis_common import http_api
from tardis_common.settings import load_client_settings
from tardis_common.urls import parse_repository

PASSWORD = "remote http password"
http = urllib3.PoolManager(retries=False, timeout=30)


@dataclass
class Remotes:
    open: Service  # AllowAnonymous, Compress, AllowCache
    strict: Service  # defaults: every data call needs a token
    admin_secret: str


@dataclass
class Client:
    name: str
    grpc: str  # tardis:// URL
    source: Path
    password: tuple[str, ...]

    def http(self, remotes: Remotes, strict: bool = False) -> str:
        server = remotes.strict if strict else remotes.open
        return f"http://{server.address}/{self.name}"


@pytest.fixture(scope="module")
def remotes(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remotes]:
    work = tmp_path_factory.mktemp("remote-http")
    admin = "admin-secret-for-remote-http-tests"
    (work / "admin.secret").write_text(admin + "\n")
    opened = start_remote(
        cluster,
        work / "open",
        AllowAnonymous=True,
        Compress=True,
        AllowCache=True,
        AdminSecretFile=work / "admin.secret",
    )
    strict = start_remote(cluster, work / "strict", AdminSecretFile=work / "admin.secret")
    yield Remotes(opened, strict, admin)
    assert strict.stop() == 0
    assert opened.stop() == 0


def _history(cluster: Cluster, root: Path, name: str, password: tuple[str, ...]) -> Client:
    """Two sets over tardis://: a tree with a large file, then that file changed (a delta)."""
    source = make_tree(root / "src", files=150, seed=len(name))
    rng = random.Random(name)
    big = rng.randbytes(400_000)
    (source / "big.bin").write_bytes(big)
    url = f"tardis://{cluster.ingest.address}/{name}"
    assert backup.main(["--repository", url, "--create", *password, str(source)]) == 0
    (source / "big.bin").write_bytes(big[:200_000] + b"changed" + big[200_007:])
    (source / "added.txt").write_text("the second set\n")
    assert backup.main(["--repository", url, *password, str(source)]) == 0
    return Client(name, url, source, password)


@pytest.fixture(scope="module")
def plain(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Client:
    return _history(cluster, tmp_path_factory.mktemp("plain"), "httpplain", ())


@pytest.fixture(scope="module")
def sealed(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Client:
    return _history(cluster, tmp_path_factory.mktemp("sealed"), "httpsealed", ("-P", PASSWORD))


def _sets(url: str, password: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert sonic.main(["list", "--repository", url, "--json", *password]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


@pytest.mark.parametrize("which", ["plain", "sealed"])
def test_regenerate_over_http_matches_tardis(
    which: str, request: pytest.FixtureRequest, remotes: Remotes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client: Client = request.getfixturevalue(which)
    url = client.http(remotes, strict=bool(client.password))
    sets = _sets(client.grpc, client.password, capsys)
    assert len(sets) == 2
    assert _sets(url, client.password, capsys) == sets
    for backup_set in sets:
        name = str(backup_set["name"])
        local, remote = tmp_path / f"grpc-{name}", tmp_path / f"http-{name}"
        assert regenerate.main(["--repository", client.grpc, *client.password, "-b", name, "-o", str(local)]) == 0
        assert regenerate.main(["--repository", url, *client.password, "-b", name, "-o", str(remote)]) == 0
        inside = str(client.source).lstrip("/")
        assert_same_tree(local / inside, remote / inside)
    newest = tmp_path / f"http-{sets[-1]['name']}"
    assert_same_tree(client.source, newest / str(client.source).lstrip("/"))


def test_lstardis_and_sonic_over_http(
    plain: Client, sealed: Client, remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    for client in (plain, sealed):
        outputs = []
        for url in (client.grpc, client.http(remotes)):
            capsys.readouterr()
            args = ["--repository", url, *client.password, "-l", "-c", "-L", "--recurse", str(client.source)]
            assert lstardis.main(args) == 0
            outputs.append(capsys.readouterr().out)
        assert outputs[0] == outputs[1]
        assert "big.bin" in outputs[1]
        diffs = []
        first, second = (str(s["name"]) for s in _sets(client.grpc, client.password, capsys))
        for url in (client.grpc, client.http(remotes)):
            capsys.readouterr()
            args = ["--repository", url, *client.password, "-b", first, "-b", second, "--recurse", "--list"]
            tardiff.main([*args, str(client.source)])
            diffs.append(capsys.readouterr().out)
        assert diffs[0] == diffs[1] and "added.txt" in diffs[1]
        if client.password:
            assert "added.txt" in outputs[1]  # names decrypted on the client


def test_wrong_password_and_unknown_set_are_one_line(
    sealed: Client, remotes: Remotes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sealed.http(remotes, strict=True)
    capsys.readouterr()
    assert regenerate.main(["--repository", url, "-P", "not it", "-o", str(tmp_path / "x")]) != 0
    one_line_error(capsys, "wrong password")
    assert regenerate.main(["--repository", url, *sealed.password, "-b", "NoSuchSet", "-o", str(tmp_path / "y")]) != 0
    one_line_error(capsys, "NoSuchSet")
    assert not (tmp_path / "x").exists()
    # Backups go to tardis://: over HTTP they are refused in one line.
    assert backup.main(["--repository", url, *sealed.password, str(sealed.source)]) != 0
    one_line_error(capsys, "read-only")


def test_login_token_and_renewal(sealed: Client, remotes: Remotes) -> None:
    url = parse_repository(sealed.http(remotes, strict=True))
    settings = load_client_settings({"password": PASSWORD})
    with open_repository(url, settings) as repo:
        assert repo.unlocked is not None and repo.unlocked.token
        assert repo.call_credentials is not None and repo.call_credentials.renewer is not None
        renewed = repo.ingest.renew_token(ing.RenewTokenRequest(token=repo.unlocked.token)).token
        assert renewed and renewed != repo.unlocked.token
        base = f"http://{remotes.strict.address}/api/v1/clients/{sealed.name}/sets"
        ok = http.request("GET", base, headers={"Authorization": f"Bearer {renewed}"})
        assert ok.status == 200 and len(json.loads(ok.data)["sets"]) == 2
        # A token of one client does not open another's data.
        other = http.request(
            "GET", base.replace(sealed.name, "httpplain"), headers={"Authorization": f"Bearer {renewed}"}
        )
        assert other.status == 403


def _example_url(route: http_api.Route, server: Service, client: str) -> str:
    path = route.template
    values = {"client": client, "set_id": "1", "object_id": "0" * 64}
    for param in route.path_params:
        path = path.replace("{" + param.name + "}", values[param.name])
    return f"http://{server.address}{path}"


def test_every_data_endpoint_needs_a_token(plain: Client, remotes: Remotes) -> None:
    checked = 0
    for route in http_api.ROUTES:
        if route.public:
            continue
        for server in (remotes.strict, remotes.open):
            if server is remotes.open and route.method in ("list_sets", "read_tree", "get_object_info"):
                continue  # the open server lets clients without a password in: checked below
            url = _example_url(route, server, "httpsealed" if server is remotes.open else plain.name)
            for headers in ({}, {"Authorization": "Bearer forged.token"}, {"Authorization": "Basic abc"}):
                reply = http.request(route.http, url, body=b"{}" if route.body else None, headers=headers)
                # Anonymous callers admitted by AllowAnonymous may still lack the admin right (403).
                allowed = (401,) if server is remotes.strict or headers else (401, 403)
                assert reply.status in allowed, (route.http, url, headers, reply.status, reply.data[:200])
                checked += 1
    assert checked >= 3 * len([r for r in http_api.ROUTES if not r.public])
    # Unauthenticated endpoints answer without one.
    assert http.request("GET", f"http://{remotes.strict.address}/healthz").status == 200
    assert http.request("GET", f"http://{remotes.strict.address}/openapi.json").status == 200
    # A wrong admin secret is refused as well.
    wrong = http.request(
        "GET",
        _example_url(http_api.BY_METHOD["list_sets"], remotes.strict, plain.name),
        headers={"X-Tardis-Admin": "x"},
    )
    assert wrong.status == 401
    right = http.request(
        "GET",
        _example_url(http_api.BY_METHOD["list_sets"], remotes.strict, plain.name),
        headers={"X-Tardis-Admin": remotes.admin_secret},
    )
    assert right.status == 200


def test_not_found_is_404(plain: Client, remotes: Remotes) -> None:
    base = f"http://{remotes.open.address}/api/v1/clients"
    components = "/".join(http_api.b64url(c.encode()) for c in str(plain.source).lstrip("/").split("/"))
    found = http.request("GET", f"{base}/{plain.name}/sets/0/path", fields={"path": components})
    assert found.status == 200 and json.loads(found.data)["found"] is True
    missing = http.request("GET", f"{base}/{plain.name}/sets/0/path", fields={"path": components + "/bm9uZQ"})
    assert missing.status == 404 and json.loads(missing.data)["error"]["code"] == "NotFound"
    assert http.request("GET", f"{base}/nosuchclient/sets").status in (401, 404)
    assert http.request("GET", f"http://{remotes.open.address}/api/v1/nothing/here").status == 404


def _big_object(client: Client, remotes: Remotes) -> tuple[str, int]:
    base = f"http://{remotes.open.address}/api/v1/clients/{client.name}"
    listing = http.request("GET", f"{base}/objects")
    assert listing.status == 200
    objects = [o for line in listing.data.splitlines() for o in json.loads(line).get("objects", [])]
    biggest = max(objects, key=lambda o: int(o.get("stored_size", 0)))
    import base64

    return base64.b64decode(biggest["object_id"]).decode(), int(biggest["stored_size"])


def test_range_requests(plain: Client, remotes: Remotes) -> None:
    object_id, size = _big_object(plain, remotes)
    assert size > 10_000
    url = f"http://{remotes.open.address}/api/v1/clients/{plain.name}/objects/{object_id}"
    whole = http.request("GET", url)
    assert whole.status == 200 and len(whole.data) == size
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert "immutable" in whole.headers["Cache-Control"]  # AllowCache
    part = http.request("GET", url, headers={"Range": "bytes=1000-4999"})
    assert part.status == 206
    assert part.data == whole.data[1000:5000]
    assert part.headers["Content-Range"] == f"bytes 1000-4999/{size}"
    tail = http.request("GET", url, headers={"Range": "bytes=-10"})
    assert tail.status == 206 and tail.data == whole.data[-10:]
    beyond = http.request("GET", url, headers={"Range": f"bytes={size + 10}-"})
    assert beyond.status == 416
    absent = http.request("GET", url.replace(object_id, "f" * 64))
    assert absent.status == 404


def test_bad_requests_are_400(plain: Client, remotes: Remotes) -> None:
    base = f"http://{remotes.open.address}/api/v1/clients/{plain.name}"
    json_header = {"Content-Type": "application/json"}
    for body in (b"{not json", b"[]", b'{"object_ids": 5}', b'{"no_such_field": 1}', b"\xff\xfe", b'"text"'):
        reply = http.request("POST", f"{base}/objects/info", body=body, headers=json_header)
        assert reply.status == 400, (body, reply.status, reply.data)
        assert json.loads(reply.data)["error"]["code"] == "InvalidArgument"
    assert http.request("GET", f"{base}/sets/abc/tree").status == 400
    assert http.request("GET", f"{base}/sets/99999999999/tree").status == 400
    assert http.request("GET", f"{base}/sets/1/tree", fields={"dir_id": "-1"}).status == 400
    assert http.request("GET", f"{base}/sets/1/path", fields={"path": "***"}).status == 400
    assert http.request("GET", f"{base}/sets", fields={"surprise": "1"}).status == 400
    too_big = http.request("POST", f"{base}/objects/info", body=b" " * (33 * 1024 * 1024), headers=json_header)
    assert too_big.status == 413


def test_compressed_replies(plain: Client, remotes: Remotes) -> None:
    url = f"http://{remotes.open.address}/api/v1/clients/{plain.name}/sets/0/tree"
    reply = http.request("GET", url, headers={"Accept-Encoding": "gzip"}, decode_content=False, preload_content=True)
    assert reply.status == 200 and reply.headers.get("Content-Encoding") == "gzip"
    import gzip

    lines = gzip.decompress(reply.data).splitlines()
    assert lines and all("entries" in json.loads(line) for line in lines)
    plain_reply = http.request("GET", url, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain_reply.headers
    assert plain_reply.data.splitlines() == lines


def test_metrics_sum_every_worker(plain: Client, cluster: Cluster, tmp_path: Path) -> None:
    """With MetricsPort, the gunicorn master serves the request counts of all its workers."""
    port = free_port()
    remote = start_remote(cluster, tmp_path / "metered", Workers=2, MetricsPort=port, AllowAnonymous=True)
    try:
        assert any(f"metrics on http://127.0.0.1:{port}/metrics" in line for line in remote.preamble)
        fresh = urllib3.PoolManager(maxsize=1, block=False)  # new connections: the requests spread
        url = f"http://{remote.address}/api/v1/clients/{plain.name}/sets"
        for _ in range(12):
            assert fresh.request("GET", url, headers={"Connection": "close"}).status == 200
        assert fresh.request("GET", f"http://{remote.address}/api/v1/clients/nobody/sets").status == 404
        text = fresh.request("GET", f"http://127.0.0.1:{port}/metrics").data.decode()
        route = "/api/v1/clients/{client}/sets"
        counted = [line for line in text.splitlines() if line.startswith("tardis_http_requests_total{")]
        assert any(
            f'route="{route}"' in line and 'code="200"' in line and line.endswith(" 12.0") for line in counted
        ), counted
        assert any('code="404"' in line and line.endswith(" 1.0") for line in counted), counted
        assert f'tardis_http_duration_seconds_count{{route="{route}"}} 13.0' in text
    finally:
        assert remote.stop() == 0


def test_help_and_bad_config(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.cfg"
    bad.write_text("[Remote]\nPort = notaport\n")
    done = subprocess.run(
        [sys.executable, "-m", "tardis_remote.main", "--config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "Port" in done.stderr, done.stderr
    assert os.path.exists(bad)


# --- property-based fuzz of the API, driven by its OpenAPI document ----------------------------


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _operations(server: Service) -> list[tuple[str, str, dict[str, object]]]:
    spec = json.loads(http.request("GET", f"http://{server.address}/openapi.json").data)
    return [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def _value(schema: dict[str, object], clients: list[str]) -> st.SearchStrategy[str]:
    if schema.get("type") == "integer":
        return st.integers(-3, 2**65).map(str) | st.text(max_size=6)
    if schema.get("type") == "boolean":
        return st.sampled_from(["true", "false", "1", "yes", ""])
    return st.sampled_from(clients) | st.text(max_size=24) | st.binary(max_size=12).map(http_api.b64url)


def _body(op: dict[str, object]) -> st.SearchStrategy[bytes | None]:
    content = (op.get("requestBody") or {}).get("content", {})  # type: ignore[union-attr]
    if not content:
        return st.none()
    props = content["application/json"]["schema"]["properties"]
    fields = st.dictionaries(st.sampled_from([*props, "unknown"]), JSON_VALUES, max_size=4)
    return (
        fields.map(lambda d: json.dumps(d).encode())
        | st.binary(max_size=30)
        | JSON_VALUES.map(lambda v: json.dumps(v).encode())
    )


def _request_strategy(
    operations: list[tuple[str, str, dict[str, object]]], clients: list[str], headers: st.SearchStrategy[dict[str, str]]
) -> st.SearchStrategy[tuple[str, str, dict[str, object], str, list[tuple[str, str]], bytes | None, dict[str, str]]]:
    from urllib.parse import quote

    @st.composite
    def one(draw: st.DrawFn) -> tuple[str, str, dict[str, object], str, list[tuple[str, str]], bytes | None, dict]:
        path, method, op = draw(st.sampled_from(operations))
        url = path
        query: list[tuple[str, str]] = []
        for param in op.get("parameters", []):  # type: ignore[attr-defined]
            if param["in"] == "path":
                url = url.replace("{" + param["name"] + "}", quote(draw(_value(param["schema"], clients)), safe=""))
            elif draw(st.booleans()):
                query.append((param["name"], draw(_value(param["schema"], clients))))
        if draw(st.integers(0, 9)) == 0:
            query.append(("junk", "1"))
        return path, method, op, url, query, draw(_body(op)), draw(headers)

    return one()


def _send(
    server: Service, method: str, url: str, query: list[tuple[str, str]], body: bytes | None, headers: dict
) -> int:
    from urllib.parse import urlencode

    target = f"http://{server.address}{url}" + ("?" + urlencode(query) if query else "")
    reply = http.request(method.upper(), target, body=body, headers={"Content-Type": "application/json", **headers})
    return reply.status


@pytest.fixture(scope="module")
def fuzz_token(cluster: Cluster, remotes: Remotes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A client of its own (the fuzz may purge or re-key it) and a session token for it."""
    source = make_tree(tmp_path_factory.mktemp("fuzz") / "src", files=20)
    url = f"tardis://{cluster.ingest.address}/httpfuzz"
    assert backup.main(["--repository", url, "--create", "-P", PASSWORD, str(source)]) == 0
    settings_ = load_client_settings({"password": PASSWORD})
    with open_repository(parse_repository(f"http://{remotes.strict.address}/httpfuzz"), settings_) as repo:
        assert repo.unlocked is not None
        yield repo.unlocked.token


FORGED = st.sampled_from(
    [
        {},
        {"Authorization": "Bearer x"},
        {"Authorization": "bearer "},
        {"Authorization": "Token abc"},
        {"X-Tardis-Admin": ""},
    ]
) | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40).map(
    lambda t: {"Authorization": "Bearer " + t}
)


def test_fuzz_no_answer_without_a_token(plain: Client, sealed: Client, remotes: Remotes) -> None:
    operations = _operations(remotes.strict)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(_request_strategy(operations, [plain.name, sealed.name, "httpfuzz"], FORGED))
    def check(case: tuple) -> None:
        path, method, op, url, query, body, headers = case
        status = _send(remotes.strict, method, url, query, body, headers)
        assert status < 500, (method, url, query, body, headers, status)
        if not op.get("x-tardis-public") and path not in ("/healthz",):
            assert not 200 <= status < 300, (method, url, query, body, headers, status)

    check()


def test_fuzz_no_server_error_with_a_token(fuzz_token: str, remotes: Remotes) -> None:
    operations = _operations(remotes.strict)
    headers = st.just({"Authorization": f"Bearer {fuzz_token}"})

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(_request_strategy(operations, ["httpfuzz"], headers))
    def check(case: tuple) -> None:
        _path, method, _op, url, query, body, hdrs = case
        status = _send(remotes.strict, method, url, query, body, hdrs)
        assert status < 500, (method, url, query, body, status)

    check()


def test_https_pins_the_certificate(
    cluster: Cluster,
    sealed: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = start_remote(cluster, tmp_path / "tls", SSL=True, Workers=1)
    try:
        assert any("fingerprint" in line for line in server.preamble), server.preamble
        monkeypatch.setenv("TARDIS_KNOWN_SERVERS", str(tmp_path / "known_servers"))
        url = f"https://{server.address}/{sealed.name}"
        assert _sets(url, sealed.password, capsys) == _sets(sealed.grpc, sealed.password, capsys)
        assert server.address in (tmp_path / "known_servers").read_text()
        # Plain HTTP to a TLS listener fails in one line.
        assert sonic.main(["list", "--repository", f"http://{server.address}/{sealed.name}", *sealed.password]) != 0
        one_line_error(capsys)
    finally:
        server.stop()
