"""The Ingest interface over remote-http (``http(s)://host[:port]/Client``).

Each call is one HTTP request built from the shared route table (``tardis_common.http_api``)
on a pool of keep-alive connections (urllib3). Errors come back as the same TardisError
classes the core raised, so tools print the same one-line messages as on a local path.
Backups go to tardis://; over HTTP the write calls are refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlencode

import urllib3
from google.protobuf import json_format
from google.protobuf.message import Message
from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing

from tardis_common import errors, http_api
from tardis_common.rpc import ClientTLS
from tardis_common.urls import RepoURL
from tardis_common.version import __version__

Metadata = Callable[[], Sequence[tuple[str, str]]]
READ_ONLY = "backups go to tardis://host[:port]/Client; http:// repositories are read-only"


class HttpIngest:
    def __init__(
        self,
        url: RepoURL,
        *,
        metadata: Metadata | None = None,
        timeout: float = 300.0,
        connect_timeout: float = 10.0,
        tls: ClientTLS | None = None,
        pool_size: int = 8,
    ) -> None:
        self.url = url
        self._metadata = metadata
        host = (url.host or "").split("%", 1)[0]
        common_args: dict[str, Any] = {
            "maxsize": pool_size,
            "block": False,
            "timeout": urllib3.Timeout(connect=connect_timeout, read=timeout),
            "retries": False,
        }
        if url.scheme == "https":
            if tls is None:
                raise errors.ConfigError("an https:// repository needs TLS settings")
            self._pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
                host,
                url.port,
                cert_reqs="CERT_REQUIRED",
                ca_cert_data=tls.root_pem.decode("ascii"),
                assert_hostname=tls.server_name or host,
                server_hostname=tls.server_name or host,
                **common_args,
            )
        else:
            self._pool = urllib3.HTTPConnectionPool(host, url.port, **common_args)

    def close(self) -> None:
        self._pool.close()

    # -- plumbing --------------------------------------------------------------------------

    def _headers(self, body: bool) -> dict[str, str]:
        headers = {"Accept-Encoding": "gzip", "User-Agent": f"tardis/{__version__}"}
        if body:
            headers["Content-Type"] = "application/json"
        for key, value in self._metadata() if self._metadata is not None else ():
            headers[key] = value
        return headers

    def _send(self, route: http_api.Route, request: Message) -> urllib3.BaseHTTPResponse:
        call = http_api.split_request(route, request)
        target = call.path + ("?" + urlencode(call.query) if call.query else "")
        try:
            response = self._pool.urlopen(
                route.http,
                target,
                body=call.body,
                headers=self._headers(call.body is not None),
                preload_content=False,
                decode_content=True,
                redirect=False,
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise errors.Unavailable(f"cannot reach server at {self.url.address}: {_one_line(reason)}") from None
        if response.status >= 400:
            try:
                data = response.read()
            finally:
                response.release_conn()
            raise self._error(response.status, data, route)
        return response

    def _error(self, status: int, data: bytes, route: http_api.Route) -> errors.TardisError:
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            body = None
        return http_api.error_from(status, body, f"{route.http} {route.path}: HTTP status {status}")

    def _unary(self, method: str, request: Message) -> Any:
        route = http_api.BY_METHOD[method]
        response = self._send(route, request)
        try:
            data = response.read()
        except urllib3.exceptions.HTTPError as exc:
            raise errors.Unavailable(f"the server at {self.url.address} broke off: {_one_line(exc)}") from None
        finally:
            response.release_conn()
        assert route.reply is not None
        return _parse(route.reply, data)

    def _ndjson(self, method: str, request: Message) -> Iterator[Any]:
        route = http_api.BY_METHOD[method]
        assert route.reply is not None
        response = self._send(route, request)
        finished = False
        try:
            for line in _lines(response, self.url.address):
                if not line.strip():
                    continue
                value = _json(line)
                if isinstance(value, dict) and isinstance(value.get("error"), dict) and len(value) == 1:
                    raise http_api.error_from(500, value)
                yield _from_dict(route.reply, value)
            finished = True
        finally:
            _done(response, finished)

    def _frames(self, method: str, request: Message) -> Iterator[Any]:
        route = http_api.BY_METHOD[method]
        assert route.reply is not None
        response = self._send(route, request)
        finished = False
        try:
            for kind, payload in http_api.read_frames(_reader(response, self.url.address)):
                if kind == http_api.FRAME_ERROR:
                    raise http_api.error_from(500, _json(payload))
                if kind != http_api.FRAME_MESSAGE:
                    raise errors.Corrupt(f"unknown frame type {kind!r} from the server")
                yield route.reply.FromString(payload)
            finished = True
        finally:
            _done(response, finished)

    # -- the Ingest interface --------------------------------------------------------------

    def hello(self, request: ing.HelloRequest) -> ing.HelloReply:
        return self._unary("hello", request)  # type: ignore[no-any-return]

    def login_start(self, request: ing.LoginStartRequest) -> ing.LoginStartReply:
        return self._unary("login_start", request)  # type: ignore[no-any-return]

    def login_finish(self, request: ing.LoginFinishRequest) -> ing.LoginFinishReply:
        return self._unary("login_finish", request)  # type: ignore[no-any-return]

    def renew_token(self, request: ing.RenewTokenRequest) -> ing.RenewTokenReply:
        return self._unary("renew_token", request)  # type: ignore[no-any-return]

    def set_credentials(self, request: common.Credentials) -> common.Credentials:
        return self._unary("set_credentials", request)  # type: ignore[no-any-return]

    def list_sets(self, request: cat.ClientRequest) -> cat.ListSetsReply:
        return self._unary("list_sets", request)  # type: ignore[no-any-return]

    def lookup_path(self, request: cat.LookupPathRequest) -> cat.LookupPathReply:
        try:
            return self._unary("lookup_path", request)  # type: ignore[no-any-return]
        except errors.NotFound as exc:
            if getattr(exc, "reason", None) == "path":
                return cat.LookupPathReply(found=False)
            raise

    def read_tree(self, request: cat.ReadTreeRequest) -> Iterator[common.StoredEntries]:
        return self._ndjson("read_tree", request)

    def read_objects(self, request: bs.GetObjectsRequest) -> Iterator[bs.GetObjectsReply]:
        return self._frames("read_objects", request)

    def get_object_info(self, request: cat.ObjectIdsRequest) -> cat.ObjectInfoReply:
        return self._unary("get_object_info", request)  # type: ignore[no-any-return]

    def list_objects(self, request: cat.ClientRequest) -> Iterator[cat.ObjectInfoReply]:
        return self._ndjson("list_objects", request)

    def stat_objects(self, request: bs.StatObjectsRequest) -> bs.StatObjectsReply:
        return self._unary("stat_objects", request)  # type: ignore[no-any-return]

    def get_client_config(self, request: cat.ClientRequest) -> cat.ClientConfig:
        return self._unary("get_client_config", request)  # type: ignore[no-any-return]

    def set_client_config(self, request: cat.ClientConfig) -> cat.ClientConfig:
        return self._unary("set_client_config", request)  # type: ignore[no-any-return]

    def update_set(self, request: cat.UpdateSetRequest) -> common.BackupSet:
        return self._unary("update_set", request)  # type: ignore[no-any-return]

    def remove_sets(self, request: cat.RemoveSetsRequest) -> cat.ExpireSetsReply:
        return self._unary("remove_sets", request)  # type: ignore[no-any-return]

    def mark_objects_bad(self, request: cat.ObjectIdsRequest) -> cat.MarkObjectsBadReply:
        return self._unary("mark_objects_bad", request)  # type: ignore[no-any-return]

    def find_entries(self, request: cat.ObjectIdsRequest) -> Iterator[cat.FoundEntries]:
        return self._ndjson("find_entries", request)

    # -- the write side lives on tardis:// -------------------------------------------------

    def create_client(self, request: ing.CreateClientRequest) -> common.ClientInfo:
        raise errors.InvalidArgument(READ_ONLY)

    def open_session(self, request: ing.OpenSessionRequest) -> ing.OpenSessionReply:
        raise errors.InvalidArgument(READ_ONLY)

    def submit_entries(self, request: ing.SubmitEntriesRequest) -> ing.SubmitEntriesReply:
        raise errors.InvalidArgument(READ_ONLY)

    def upload_content(self, requests: Iterable[ing.UploadContentRequest]) -> ing.UploadContentReply:
        raise errors.InvalidArgument(READ_ONLY)

    def check_content(self, request: ing.SubmitEntriesRequest) -> ing.SubmitEntriesReply:
        raise errors.InvalidArgument(READ_ONLY)

    def finish_session(self, request: ing.FinishSessionRequest) -> ing.FinishSessionReply:
        raise errors.InvalidArgument(READ_ONLY)


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise errors.Corrupt("the server sent a reply that is not JSON") from None


def _from_dict(cls: type[Message], value: Any) -> Message:
    message = cls()
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError, AttributeError) as exc:
        raise errors.Corrupt(f"the server sent a bad {cls.DESCRIPTOR.name}: {_one_line(exc)[:200]}") from None
    return message


def _parse(cls: type[Message], data: bytes) -> Message:
    return _from_dict(cls, _json(data))


def _lines(response: urllib3.BaseHTTPResponse, address: str) -> Iterator[bytes]:
    try:
        yield from response
    except urllib3.exceptions.HTTPError as exc:
        raise errors.Unavailable(f"the server at {address} broke off a stream: {_one_line(exc)}") from None


def _reader(response: urllib3.BaseHTTPResponse, address: str) -> Callable[[int], bytes]:
    def read(n: int) -> bytes:
        try:
            return response.read(n)
        except urllib3.exceptions.HTTPError as exc:
            raise errors.Unavailable(f"the server at {address} broke off a stream: {_one_line(exc)}") from None

    return read


def _done(response: urllib3.BaseHTTPResponse, finished: bool) -> None:
    """Give the connection back to the pool; one left in the middle of a reply is closed first."""
    if not finished:
        response.close()
    response.release_conn()
