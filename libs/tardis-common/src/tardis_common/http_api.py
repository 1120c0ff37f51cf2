"""The HTTP API of remote-http (tardisremote), as one route table both sides use.

Each :class:`Route` names the Ingest method it serves, its HTTP method and path template
(``/api/v1/...``, OpenAPI style ``{name}``), the request message, and how path parameters,
query parameters and the JSON body fill the message's fields. The server builds its URL map
and ``/openapi.json`` from :data:`ROUTES`; the client (``tardis_cli.http_ingest``) turns a
request message into a URL and body with the same table, so the two cannot drift apart.

Wire rules (docs/protocol.md, "HTTP API"):

- a JSON body and a JSON reply are the messages through ``google.protobuf.json_format``
  with the proto field names (bytes as base64, 64-bit integers as strings);
- in paths and queries: integers in decimal, booleans ``true``/``false``, bytes as
  unpadded base64url, except object ids (hex text) as they are; a directory path
  (``DirPath``) as its components in base64url joined by ``/`` (empty: the root);
- ``ndjson`` replies are one message per line; a failure after the reply has started is a
  last line ``{"error": {...}}``;
- ``frames`` replies (objects:read) are a sequence of frames: one type byte (``M`` a
  serialised GetObjectsReply, ``E`` a JSON error), a 4-byte big-endian length, the payload.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing

from . import errors

API_PREFIX = "/api/v1"
MAX_BODY = 32 * 1024 * 1024  # as the gRPC message cap
NDJSON = "application/x-ndjson"
FRAMES = "application/x-tardis-frames"
FRAME_HEADER = struct.Struct(">cI")
FRAME_MESSAGE = b"M"
FRAME_ERROR = b"E"
TOKEN_HEADER = "Authorization"
ADMIN_HEADER = "X-Tardis-Admin"

Codec = Literal["str", "int", "bool", "bytes", "text", "dirpath"]
Reply = Literal["json", "ndjson", "frames", "raw"]


@dataclass(frozen=True)
class Param:
    """A path or query parameter filling ``field`` (a repeated field gets one value per
    occurrence) with values spelled by ``codec``."""

    name: str
    field: str
    codec: Codec = "str"
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str  # the Ingest method (snake case); "read_object" for the raw object GET
    rpc: str  # the gRPC method name, for the caller guard ("ReadObjects")
    http: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str  # template under API_PREFIX, "{name}" for path parameters
    request: type[Message]
    reply: type[Message] | None
    kind: Reply = "json"
    path_params: tuple[Param, ...] = ()
    query: tuple[Param, ...] = ()
    body: bool = False  # the request's other fields come from a JSON body
    public: bool = False  # needs no session token
    summary: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def template(self) -> str:
        return API_PREFIX + self.path


CLIENT = Param("client", "client", "str", True)
SET_ID = Param("set_id", "set_id", "int", True)

ROUTES: tuple[Route, ...] = (
    Route(
        "hello",
        "Hello",
        "GET",
        "/hello",
        ing.HelloRequest,
        ing.HelloReply,
        query=(Param("client_version", "client_version"), Param("protocol_version", "protocol_version", "int")),
        public=True,
        summary="Version check: the server's version, or 400 VersionMismatch",
    ),
    Route(
        "login_start",
        "LoginStart",
        "POST",
        "/login/start",
        ing.LoginStartRequest,
        ing.LoginStartReply,
        body=True,
        public=True,
        summary="SRP login, first half (without a: the client's public KDF parameters)",
    ),
    Route(
        "login_finish",
        "LoginFinish",
        "POST",
        "/login/finish",
        ing.LoginFinishRequest,
        ing.LoginFinishReply,
        body=True,
        public=True,
        summary="SRP login, second half: the server's proof and the sealed session token",
    ),
    Route(
        "renew_token",
        "RenewToken",
        "POST",
        "/token/renew",
        ing.RenewTokenRequest,
        ing.RenewTokenReply,
        body=True,
        public=True,
        summary="A fresh session token with a new expiry",
    ),
    Route(
        "list_sets",
        "ListSets",
        "GET",
        "/clients/{client}/sets",
        cat.ClientRequest,
        cat.ListSetsReply,
        path_params=(CLIENT,),
        summary="The client's backup sets",
    ),
    Route(
        "lookup_path",
        "LookupPath",
        "GET",
        "/clients/{client}/sets/{set_id}/path",
        cat.LookupPathRequest,
        cat.LookupPathReply,
        path_params=(CLIENT, SET_ID),
        query=(Param("path", "path", "dirpath"),),
        summary="One entry by path (set 0: every version); 404 when absent",
        extra={"not_found_when_absent": True},
    ),
    Route(
        "read_tree",
        "ReadTree",
        "GET",
        "/clients/{client}/sets/{set_id}/tree",
        cat.ReadTreeRequest,
        common.StoredEntries,
        kind="ndjson",
        path_params=(CLIENT, SET_ID),
        query=(Param("dir_id", "dir_id", "int"), Param("shallow", "shallow", "bool")),
        summary="Every entry of a set under a directory, parents first (NDJSON of StoredEntries)",
    ),
    Route(
        "update_set",
        "UpdateSet",
        "PATCH",
        "/clients/{client}/sets/{set_id}",
        cat.UpdateSetRequest,
        common.BackupSet,
        path_params=(CLIENT, SET_ID),
        body=True,
        summary="Rename, re-prioritise, lock or unlock a set; add, remove or move tags",
    ),
    Route(
        "remove_sets",
        "RemoveSets",
        "DELETE",
        "/clients/{client}/sets/{set_id}",
        cat.RemoveSetsRequest,
        cat.ExpireSetsReply,
        path_params=(CLIENT, Param("set_id", "set_ids", "int", True)),
        summary="Delete one set (admin)",
        extra={"alias": True},
    ),
    Route(
        "remove_sets",
        "RemoveSets",
        "POST",
        "/clients/{client}/sets:remove",
        cat.RemoveSetsRequest,
        cat.ExpireSetsReply,
        path_params=(CLIENT,),
        body=True,
        summary="Delete sets by id, or purge by priority and age",
    ),
    Route(
        "get_object_info",
        "GetObjectInfo",
        "POST",
        "/clients/{client}/objects/info",
        cat.ObjectIdsRequest,
        cat.ObjectInfoReply,
        path_params=(CLIENT,),
        body=True,
        summary="Descriptions (size, basis, chain length) of many objects",
    ),
    Route(
        "list_objects",
        "ListObjects",
        "GET",
        "/clients/{client}/objects",
        cat.ClientRequest,
        cat.ObjectInfoReply,
        kind="ndjson",
        path_params=(CLIENT,),
        summary="Every object the catalog holds (NDJSON of ObjectInfoReply)",
    ),
    Route(
        "stat_objects",
        "StatObjects",
        "POST",
        "/clients/{client}/objects:stat",
        bs.StatObjectsRequest,
        bs.StatObjectsReply,
        path_params=(CLIENT,),
        body=True,
        summary="Stored sizes of many objects (-1: missing)",
    ),
    Route(
        "mark_objects_bad",
        "MarkObjectsBad",
        "POST",
        "/clients/{client}/objects:mark-bad",
        cat.ObjectIdsRequest,
        cat.MarkObjectsBadReply,
        path_params=(CLIENT,),
        body=True,
        summary="Objects verification found damaged: marked bad (with their deltas) and quarantined",
    ),
    Route(
        "find_entries",
        "FindEntries",
        "POST",
        "/clients/{client}/objects:entries",
        cat.ObjectIdsRequest,
        cat.FoundEntries,
        kind="ndjson",
        path_params=(CLIENT,),
        body=True,
        summary="The file versions (with directory paths) that need these objects, directly or through"
        " a delta chain (NDJSON of FoundEntries)",
    ),
    Route(
        "read_objects",
        "ReadObjects",
        "POST",
        "/clients/{client}/objects:read",
        bs.GetObjectsRequest,
        bs.GetObjectsReply,
        kind="frames",
        path_params=(CLIENT,),
        body=True,
        summary="Many stored objects on one stream (binary frames of GetObjectsReply)",
    ),
    Route(
        "read_object",
        "ReadObjects",
        "GET",
        "/clients/{client}/objects/{object_id}",
        bs.GetObjectsRequest,
        None,
        kind="raw",
        path_params=(CLIENT, Param("object_id", "object_ids", "text", True)),
        query=(Param("signatures", "signatures", "bool"),),
        summary="One stored object file as raw bytes; honours Range (206)",
    ),
    Route(
        "get_client_config",
        "GetClientConfig",
        "GET",
        "/clients/{client}/config",
        cat.ClientRequest,
        cat.ClientConfig,
        path_params=(CLIENT,),
        summary="The client's own settings",
    ),
    Route(
        "set_client_config",
        "SetClientConfig",
        "PUT",
        "/clients/{client}/config",
        cat.ClientConfig,
        cat.ClientConfig,
        path_params=(CLIENT,),
        body=True,
        summary="Change the client's settings (admin); an empty value removes a key",
    ),
    Route(
        "set_credentials",
        "SetCredentials",
        "PUT",
        "/clients/{client}/credentials",
        common.Credentials,
        common.Credentials,
        path_params=(CLIENT,),
        body=True,
        summary="Add, change or remove the client's password and keys",
    ),
)

BY_METHOD: dict[str, Route] = {}
for _route in ROUTES:
    if not _route.extra.get("alias"):
        BY_METHOD.setdefault(_route.method, _route)

# --- errors and HTTP status ------------------------------------------------------------------

STATUS: dict[type[errors.TardisError], int] = {
    errors.InvalidArgument: 400,
    errors.VersionMismatch: 400,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.Conflict: 409,
    errors.Throttled: 429,
    errors.Corrupt: 502,
    errors.Unavailable: 503,
}
BY_STATUS: dict[int, type[errors.TardisError]] = {
    400: errors.InvalidArgument,
    401: errors.Unauthenticated,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    405: errors.InvalidArgument,
    409: errors.Conflict,
    413: errors.InvalidArgument,
    415: errors.InvalidArgument,
    416: errors.InvalidArgument,
    429: errors.Throttled,
    502: errors.Corrupt,
    503: errors.Unavailable,
}


def status_of(exc: errors.TardisError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def error_body(code: str, message: str, **more: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **more}}


def error_from(status: int, body: Any, fallback: str = "") -> errors.TardisError:
    """The TardisError an error reply stands for: by the class name it carries, else by status."""
    code, message, reason = "", fallback or f"HTTP status {status}", None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code", ""))
        message = str(body["error"].get("message", message))
        reason = body["error"].get("reason")
    cls = errors.BY_NAME.get(code) or BY_STATUS.get(status) or errors.TardisError
    error = cls(message)
    if reason:
        error.reason = str(reason)  # type: ignore[attr-defined]
    return error


# --- values in paths and queries -------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unb64url(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise errors.InvalidArgument(f"bad base64url value {text[:40]!r}")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise errors.InvalidArgument(f"bad base64url value {text[:40]!r}") from None


_INT_RANGES = {
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
}


def _decode(param: Param, descriptor: FieldDescriptor, text: str) -> Any:
    if param.codec == "int":
        if not re.fullmatch(r"-?[0-9]{1,20}", text):
            raise errors.InvalidArgument(f"{param.name}: {text[:40]!r} is not an integer")
        value = int(text)
        low, high = _INT_RANGES.get(descriptor.type, (-(2**63), 2**64 - 1))
        if not low <= value <= high:
            raise errors.InvalidArgument(f"{param.name}: {value} is out of range")
        return value
    if param.codec == "bool":
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0", ""):
            raise errors.InvalidArgument(f"{param.name}: {text[:40]!r} is not true or false")
        return lowered in ("true", "1")
    if param.codec == "bytes":
        return unb64url(text)
    if param.codec == "text":
        return text.encode("utf-8")
    if param.codec == "dirpath":
        return common.DirPath(components=[unb64url(part) for part in text.split("/")] if text else [])
    if "\x00" in text:
        raise errors.InvalidArgument(f"{param.name}: contains a NUL character")
    return text


def _encode(param: Param, value: Any) -> str:
    if param.codec == "bool":
        return "true" if value else "false"
    if param.codec == "bytes":
        return b64url(value)
    if param.codec == "text":
        return bytes(value).decode("utf-8")
    if param.codec == "dirpath":
        return "/".join(b64url(c) for c in value.components)
    return str(value)


def _repeated(descriptor: Any) -> bool:
    """Whether a field is repeated; protobuf before 5 (Debian's, in the armv7 image) has only ``label``."""
    flag = getattr(descriptor, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return bool(descriptor.label == FieldDescriptor.LABEL_REPEATED)  # pragma: no cover - old protobuf


def _set_field(message: Message, param: Param, values: Sequence[str]) -> None:
    descriptor = message.DESCRIPTOR.fields_by_name[param.field]
    decoded = [_decode(param, descriptor, v) for v in values]
    target = getattr(message, param.field)
    if _repeated(descriptor):
        del target[:]
        target.extend(decoded)
    elif descriptor.type == FieldDescriptor.TYPE_MESSAGE:
        target.CopyFrom(decoded[-1])
    else:
        setattr(message, param.field, decoded[-1])


def parse_json(data: bytes) -> Any:
    try:
        return json.loads(data) if data.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.InvalidArgument(f"the request body is not valid JSON: {exc}") from None


def message_from_json(cls: type[Message], value: Any) -> Message:
    """``value`` (parsed JSON) as a ``cls`` message; InvalidArgument naming the bad field."""
    if not isinstance(value, dict):
        raise errors.InvalidArgument(f"the request body must be a JSON object ({cls.DESCRIPTOR.name})")
    message = cls()
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=False)
    except (json_format.ParseError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise errors.InvalidArgument(f"bad {cls.DESCRIPTOR.name}: {' '.join(str(exc).split())[:300]}") from None
    return message


def message_to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def build_request(
    route: Route, path_values: Mapping[str, str], query: Mapping[str, Sequence[str]], body: bytes | None
) -> Message:
    """The request message of one HTTP call (server side)."""
    message = message_from_json(route.request, parse_json(body or b"")) if route.body else route.request()
    for param in route.path_params:
        _set_field(message, param, [path_values[param.name]])
    known = {p.name for p in route.query}
    for name in query:
        if name not in known:
            raise errors.InvalidArgument(f"unknown query parameter {name[:40]!r}")
    for param in route.query:
        values = query.get(param.name)
        if values:
            _set_field(message, param, values)
    return message


@dataclass(frozen=True)
class Call:
    """What the client sends for one request message."""

    path: str  # with API_PREFIX, parameters filled in and quoted
    query: list[tuple[str, str]]
    body: bytes | None


def split_request(route: Route, message: Message) -> Call:
    """The URL and body of ``message`` (client side): the inverse of :func:`build_request`."""
    from urllib.parse import quote

    path = route.template
    for param in route.path_params:
        value = getattr(message, param.field)
        if _repeated(message.DESCRIPTOR.fields_by_name[param.field]):
            if len(value) != 1:
                raise errors.InvalidArgument(f"{route.method} over HTTP takes exactly one {param.name}")
            value = value[0]
        path = path.replace("{" + param.name + "}", quote(_encode(param, value), safe=""))
    query: list[tuple[str, str]] = []
    for param in route.query:
        value = getattr(message, param.field)
        descriptor = message.DESCRIPTOR.fields_by_name[param.field]
        if _repeated(descriptor):
            query.extend((param.name, _encode(param, v)) for v in value)
        elif descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            if message.HasField(param.field):
                query.append((param.name, _encode(param, value)))
        elif value:
            query.append((param.name, _encode(param, value)))
    body = None
    if route.body:
        shown = route.request()
        shown.CopyFrom(message)
        for param in (*route.path_params, *route.query):
            shown.ClearField(param.field)  # type: ignore[arg-type]
        body = json.dumps(message_to_json(shown)).encode()
    return Call(path, query, body)


# --- streamed replies ------------------------------------------------------------------------


def frame(kind: bytes, payload: bytes) -> bytes:
    return FRAME_HEADER.pack(kind, len(payload)) + payload


def read_frames(read: Any) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) of each frame; ``read(n)`` returns up to n bytes, b"" at the end."""

    def exactly(n: int) -> bytes:
        parts: list[bytes] = []
        while n:
            chunk = read(n)
            if not chunk:
                raise errors.Unavailable("the server closed the object stream in the middle of a frame")
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    while True:
        first = read(1)
        if not first:
            return
        kind, length = FRAME_HEADER.unpack(first + exactly(FRAME_HEADER.size - 1))
        if length > MAX_BODY + 1024:
            raise errors.Corrupt(f"object stream frame of {length} bytes is too large")
        yield kind, exactly(length)


# --- OpenAPI ---------------------------------------------------------------------------------


def _schema(codec: Codec) -> dict[str, Any]:
    if codec == "int":
        return {"type": "integer", "minimum": 0}
    if codec == "bool":
        return {"type": "boolean"}
    if codec == "bytes":
        return {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"}
    if codec == "dirpath":
        return {"type": "string", "pattern": "^[A-Za-z0-9_/-]*$"}
    return {"type": "string"}


def _message_schema(cls: type[Message]) -> dict[str, Any]:
    """A loose JSON schema of a message: its field names with JSON types."""
    props: dict[str, Any] = {}
    for f in cls.DESCRIPTOR.fields:
        if f.type == FieldDescriptor.TYPE_BOOL:
            item: dict[str, Any] = {"type": "boolean"}
        elif f.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_INT32):
            item = {"type": "integer"}
        elif f.type in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_INT64):
            item = {"type": ["integer", "string"]}
        elif f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            item = {"type": "number"}
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            item = {"type": "object"}
        elif f.type == FieldDescriptor.TYPE_BYTES:
            item = {"type": "string", "format": "byte"}
        else:
            item = {"type": "string"}
        if _repeated(f) and not (f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry):
            item = {"type": "array", "items": item}
        props[f.name] = item
    return {"type": "object", "properties": props, "title": cls.DESCRIPTOR.full_name}


def openapi(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of :data:`ROUTES`."""
    health = {"operationId": "healthz", "summary": "Liveness (no token)", "responses": {"200": {"description": "ok"}}}
    paths: dict[str, Any] = {"/healthz": {"get": health}}
    error = {"description": "error", "content": {"application/json": {"schema": {"type": "object"}}}}
    for route in ROUTES:
        op: dict[str, Any] = {
            "operationId": f"{route.method}_{route.http.lower()}",
            "summary": route.summary,
            "parameters": [
                {"name": p.name, "in": "path", "required": True, "schema": _schema(p.codec)} for p in route.path_params
            ]
            + [{"name": p.name, "in": "query", "required": False, "schema": _schema(p.codec)} for p in route.query],
            "responses": {"default": error},
            "x-tardis-method": route.method,
            "x-tardis-public": route.public,
        }
        if route.body:
            op["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": _message_schema(route.request)}},
            }
        media = {"json": "application/json", "ndjson": NDJSON, "frames": FRAMES, "raw": "application/octet-stream"}
        ok: dict[str, Any] = {"description": "ok", "content": {media[route.kind]: {}}}
        if route.reply is not None and route.kind in ("json", "ndjson"):
            ok["content"][media[route.kind]] = {"schema": _message_schema(route.reply)}
        op["responses"]["200"] = ok
        if route.kind == "raw":
            op["responses"]["206"] = {"description": "partial content (Range)"}
        if not route.public:
            op["security"] = [{"bearer": []}, {"admin": []}]
        paths.setdefault(route.template, {})[route.http.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tardis remote-http API", "version": version},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "admin": {"type": "apiKey", "in": "header", "name": ADMIN_HEADER},
            }
        },
    }
