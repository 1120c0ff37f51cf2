"""The shared route table: what the client sends is what the server rebuilds."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_common import errors, http_api


def _roundtrip(method: str, message: object) -> object:
    route = http_api.BY_METHOD[method]
    call = http_api.split_request(route, message)  # type: ignore[arg-type]
    template = route.template.split("/")
    given_parts = urlsplit(call.path).path.split("/")
    values = {t[1:-1]: unquote(v) for t, v in zip(template, given_parts, strict=True) if t.startswith("{")}
    query: dict[str, list[str]] = {}
    for key, value in call.query:
        query.setdefault(key, []).append(value)
    return http_api.build_request(route, values, query, call.body)


@settings(max_examples=50, deadline=None)
@given(
    components=st.lists(st.binary(min_size=1, max_size=40), max_size=5),
    set_id=st.integers(0, 2**32 - 1),
    client=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
)
def test_lookup_path_roundtrip(components: list[bytes], set_id: int, client: str) -> None:
    message = cat.LookupPathRequest(client=client, set_id=set_id, path=common.DirPath(components=components))
    assert _roundtrip("lookup_path", message) == message


def test_every_route_roundtrips() -> None:
    samples = [
        ("list_sets", cat.ClientRequest(client="c")),
        ("read_tree", cat.ReadTreeRequest(client="c", set_id=3, dir_id=2**40, shallow=True)),
        ("read_objects", bs.GetObjectsRequest(client="c", object_ids=[b"ab" * 32, b"cd"], offset=5, length=9)),
        ("get_object_info", cat.ObjectIdsRequest(client="c", object_ids=[b"\x00\xff"])),
        ("update_set", cat.UpdateSetRequest(client="c", set_id=4, name="n", add_tags=["t"], set_locked=True)),
        ("remove_sets", cat.RemoveSetsRequest(client="c", purge=True, max_priority=-1, before_ns=-(2**62))),
        ("set_client_config", cat.ClientConfig(client="c", values={"KeepPeriods": "1 2 3"})),
        ("stat_objects", bs.StatObjectsRequest(client="c", object_ids=[b"x"])),
    ]
    for method, message in samples:
        assert _roundtrip(method, message) == message, method
    assert {r.method for r in http_api.ROUTES} >= {m for m, _ in samples}


def test_bad_values_are_invalid_argument() -> None:
    route = http_api.BY_METHOD["read_tree"]
    for values, query, body in [
        ({"client": "c", "set_id": "x"}, {}, None),
        ({"client": "c", "set_id": str(2**32)}, {}, None),
        ({"client": "c", "set_id": "1"}, {"dir_id": ["1e3"]}, None),
        ({"client": "c", "set_id": "1"}, {"other": ["1"]}, None),
        ({"client": "c", "set_id": "1"}, {"shallow": ["maybe"]}, None),
    ]:
        with pytest.raises(errors.InvalidArgument):
            http_api.build_request(route, values, query, body)
    info = http_api.BY_METHOD["get_object_info"]
    for body in (b"{", b"[1]", b'{"object_ids": "!!"}', b'{"client": {"a": 1}}', b"\xff"):
        with pytest.raises(errors.InvalidArgument):
            http_api.build_request(info, {"client": "c"}, {}, body)


def test_errors_map_both_ways() -> None:
    for cls, status in http_api.STATUS.items():
        exc = cls("message")
        assert http_api.status_of(exc) == status
        back = http_api.error_from(status, http_api.error_body(cls.__name__, "message"))
        assert type(back) is cls and str(back) == "message"
    assert type(http_api.error_from(413, None)) is errors.InvalidArgument
    assert http_api.status_of(errors.TardisError("x")) == 500


def test_frames_roundtrip() -> None:
    data = http_api.frame(b"M", b"abc") + http_api.frame(b"E", b"{}")
    chunks = iter([data[i : i + 2] for i in range(0, len(data), 2)])
    buffer = bytearray()

    def read(n: int) -> bytes:
        while len(buffer) < n:
            chunk = next(chunks, b"")
            if not chunk:
                break
            buffer.extend(chunk)
        out = bytes(buffer[:n])
        del buffer[:n]
        return out

    assert list(http_api.read_frames(read)) == [(b"M", b"abc"), (b"E", b"{}")]


def test_openapi_lists_every_route() -> None:
    spec = http_api.openapi("test")
    for route in http_api.ROUTES:
        assert route.http.lower() in spec["paths"][route.template]
