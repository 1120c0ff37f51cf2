"""Helpers of the hostile-input suite: raw gRPC calls to any method, and hypothesis strategies
that build adversarial tardis.v1 messages from their descriptors."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st
from tardis.v1 import blobstore_pb2, catalog_pb2, ingest_pb2

SERVICES: dict[str, ServiceDescriptor] = {
    "catalog": catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"],
    "blobstore": blobstore_pb2.DESCRIPTOR.services_by_name["BlobStoreService"],
    "ingest": ingest_pb2.DESCRIPTOR.services_by_name["IngestService"],
}
RAW_CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", 64 * 1024 * 1024)]
# A refusal a user can act on; anything else (UNKNOWN, INTERNAL, UNAVAILABLE, ...) is a bug.
CLEAR_REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
HUGE_REPEAT = 20_000  # elements in a "huge" repeated field of small values
HUGE_MESSAGES = 2_000  # elements in a "huge" repeated field of messages


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details[:200]}"


def request_class(method: MethodDescriptor) -> Any:
    return message_factory.GetMessageClass(method.input_type)


def raw_call(
    channel: grpc.Channel,
    service: ServiceDescriptor,
    method: MethodDescriptor,
    request: Message | bytes,
    metadata: Sequence[tuple[str, str]] = (),
    timeout: float = 60.0,
) -> Outcome:
    """Call ``method`` with ``request`` (a message, or bytes sent as they are); its status."""
    path = f"/{service.full_name}/{method.name}"
    reply_cls = message_factory.GetMessageClass(method.output_type)

    def serialize(value: Message | bytes) -> bytes:
        return value if isinstance(value, bytes) else value.SerializeToString()

    try:
        if method.client_streaming:
            call = channel.stream_unary(path, serialize, reply_cls.FromString)
            call(iter([request]), metadata=list(metadata), timeout=timeout)
        elif method.server_streaming:
            stream = channel.unary_stream(path, serialize, reply_cls.FromString)
            for _ in stream(request, metadata=list(metadata), timeout=timeout):
                pass
        else:
            channel.unary_unary(path, serialize, reply_cls.FromString)(
                request, metadata=list(metadata), timeout=timeout
            )
    except grpc.RpcError as exc:
        return Outcome(exc.code(), exc.details() or "")
    return Outcome(grpc.StatusCode.OK, "")


def snapshot(base: Path, skip: Sequence[str] = ()) -> dict[str, tuple[int, int]]:
    """Every path under ``base`` (except the top-level names in ``skip``) with its size and
    mtime; SQLite's shared-memory index (-shm), which readers also write, by presence only."""
    seen: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        rel_dir = os.path.relpath(dirpath, base)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in skip]
            filenames = [f for f in filenames if f not in skip]
        for name in dirnames + filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(os.path.join(dirpath, name))
            is_dir = os.path.isdir(os.path.join(dirpath, name))
            volatile = is_dir or name.endswith("-shm")
            seen[rel] = (0, 0) if volatile else (st.st_size, st.st_mtime_ns)
    return seen


# -- strategies ------------------------------------------------------------------------------

HOSTILE_TEXT = [
    "",
    ".",
    "..",
    "../bob",
    "bob/../alice",
    "a/b",
    "/etc/passwd",
    "a\x00b",
    "\\..\\x",
    "x" * 10_000,
    "ünï-名前",
    ".hidden",
]
HOSTILE_BYTES = [
    b"",
    b".",
    b"..",
    b"../../etc",
    b"a/b",
    b"/",
    b"\x00",
    b"a\x00b",
    b"x" * 10_000,
    b"0" * 64,
    b"f" * 16,
    b"F" * 64,
    bytes(range(256)),
]
INT_EDGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), -1, 0, 1, 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), -1, 0, 1, 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), -1, 0, 1, 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 1, 2, 2**31, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 1, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), -1, 0, 1, 2**62, 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), -1, 0, 1, 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), -1, 0, 1, 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 1, 2, 2**63, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 1, 2**64 - 1),
}
INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


@dataclass(frozen=True)
class Targets:
    """Names the strategies aim at: our client, another client, their ids and sessions."""

    own: str
    other: str
    other_object_ids: tuple[bytes, ...] = ()
    session: str = ""  # a real, open session of ``own``

    def sessions(self) -> list[str]:
        real = [self.session] * 8 if self.session else []
        return [
            *real,
            f"v1/1/1/{'0' * 32}/{self.own}",
            f"v1/1/1/{'0' * 32}/{self.other}",
            f"v1/4294967295/18446744073709551615/x/{self.own}",
            f"v1/-1/-1/x/{self.own}",
            f"v1/99999999999999999999999/1/x/{self.own}",
            f"v1/1/1/x/../{self.other}",
            f"v1/1/1/x/{self.own}/../{self.other}",
            "v1/1/1/x/",
            "v2/1/1/x/y",
            "garbage",
            "",
        ]


def _text(field: FieldDescriptor, targets: Targets) -> st.SearchStrategy[Any]:
    if field.name == "client":
        return st.sampled_from([targets.own] * 8 + [targets.other] * 2 + HOSTILE_TEXT)
    if field.name in ("session", "token"):
        return st.sampled_from(targets.sessions()) | st.text(max_size=40)
    return st.sampled_from(HOSTILE_TEXT) | st.text(max_size=40)


def _bytes(field: FieldDescriptor, targets: Targets) -> st.SearchStrategy[Any]:
    choices = list(HOSTILE_BYTES)
    if "id" in field.name or field.name in ("object_ids", "manifest_id"):
        choices += list(targets.other_object_ids)
    return st.sampled_from(choices) | st.binary(max_size=64)


def scalar(field: FieldDescriptor, targets: Targets) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        return st.sampled_from(INT_EDGES[kind]) | st.integers(low, high)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.sampled_from([0.0, -1.0, math.inf, -math.inf, math.nan, 1e308]) | st.floats(width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values]) | st.integers(-5, 99)
    if kind == FieldDescriptor.TYPE_STRING:
        return _text(field, targets)
    if kind == FieldDescriptor.TYPE_BYTES:
        return _bytes(field, targets)
    raise AssertionError(f"no strategy for field {field.full_name} of type {kind}")


def _small(field: FieldDescriptor, targets: Targets) -> st.SearchStrategy[Any]:
    """Elements of a huge repeated field: small, so the message stays under the cap."""
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.sampled_from([b"..", b"0" * 64, *targets.other_object_ids[:1]])
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.sampled_from(["..", "a/b", "tag"])
    return scalar(field, targets)


def message(descriptor: Descriptor, targets: Targets, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``: each field left unset or given a hostile value; repeated
    fields usually short, sometimes huge; nesting at most three levels deep."""
    cls = message_factory.GetMessageClass(descriptor)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        built = cls()
        if depth > 3:
            return built
        for field in descriptor.fields:
            if not draw(st.booleans()):
                continue
            nested = field.message_type
            if nested is not None and nested.GetOptions().map_entry:
                pairs = draw(
                    st.dictionaries(st.sampled_from(HOSTILE_TEXT[:8]), st.sampled_from(HOSTILE_TEXT), max_size=3)
                )
                getattr(built, field.name).update(pairs)
                continue
            repeated = field.is_repeated
            if not repeated:
                if nested is not None:
                    getattr(built, field.name).CopyFrom(draw(message(nested, targets, depth + 1)))
                else:
                    setattr(built, field.name, draw(scalar(field, targets)))
                continue
            huge = draw(st.integers(0, 11)) == 0
            if nested is not None:
                if huge:
                    one = draw(message(nested, targets, depth + 3))  # shallow: many copies of it
                    values = [one] * HUGE_MESSAGES
                else:
                    values = draw(st.lists(message(nested, targets, depth + 1), max_size=3))
                target = getattr(built, field.name)
                for value in values:
                    target.add().CopyFrom(value)
            else:
                if huge:
                    values = [draw(_small(field, targets))] * HUGE_REPEAT
                else:
                    values = draw(st.lists(scalar(field, targets), max_size=4))
                getattr(built, field.name).extend(values)
        return built

    return build()


def addresses(message_: Message, client: str) -> bool:
    """Whether a request names ``client`` in its client field or its session id."""
    if getattr(message_, "client", None) == client:
        return True
    session = getattr(message_, "session", "")
    return isinstance(session, str) and session.rsplit("/", 1)[-1] == client and session.count("/") == 4
