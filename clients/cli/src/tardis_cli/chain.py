"""Rebuilding objects stored as rdiff deltas: fetch the basis chain, patch, verify.

A delta object's id is the hash of the file's full content; its bytes are an rdiff delta
against ``basis_id``, which may itself be a delta (at most MaxDeltaChain deep). The chain
is rebuilt from its full object upward through temporary files, and the result is checked
against the object's address.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import BinaryIO

from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_common import rdiff
from tardis_common.cipher import Cipher
from tardis_common.errors import Corrupt
from tardis_common.interfaces import Ingest
from tardis_common.objectformat import KIND_DELTA, KIND_FULL, ObjectDecoder

COPY = 1024 * 1024
MAX_CHAIN = 64


def _show(object_id: bytes) -> str:
    return object_id.decode("ascii", "replace")


class ChainReader:
    def __init__(self, ingest: Ingest, client: str, cipher: Cipher) -> None:
        self.ingest = ingest
        self.client = client
        self.cipher = cipher

    def infos(self, object_ids: list[bytes]) -> dict[bytes, common.ObjectInfo]:
        reply = self.ingest.get_object_info(cat.ObjectIdsRequest(client=self.client, object_ids=object_ids))
        return {o.object_id: o for o in reply.objects}

    def _decode(self, object_id: bytes, out: BinaryIO, verify: bool) -> None:
        """Write the decoded bytes of one stored object (a full file or a delta) to ``out``."""
        # A delta's identity record names the address of the full content it rebuilds.
        decoder = ObjectDecoder(
            self.cipher, object_id if verify else None, kind=KIND_FULL if verify else KIND_DELTA, identity=object_id
        )
        request = bs.GetObjectsRequest(client=self.client, object_ids=[object_id])
        for reply in self.ingest.read_objects(request):
            for piece in reply.pieces:
                if piece.missing:
                    raise Corrupt(f"object {_show(object_id)} is missing from the store")
                for plain in decoder.feed(piece.data):
                    out.write(plain)
        decoder.finish()

    def materialize(self, object_id: bytes, out: BinaryIO, depth: int = 0) -> None:
        """Write the full content of ``object_id`` to ``out``, checked against its address."""
        if depth > MAX_CHAIN:
            raise Corrupt(f"object {_show(object_id)} has a delta chain longer than {MAX_CHAIN}")
        info = self.infos([object_id]).get(object_id)
        if info is None:
            raise Corrupt(f"object {_show(object_id)} is not in the catalog")
        if not info.basis_id:
            self._decode(object_id, out, verify=True)
            return
        with tempfile.TemporaryFile() as basis, tempfile.TemporaryFile() as delta, tempfile.TemporaryFile() as result:
            self.materialize(info.basis_id, basis, depth + 1)
            self._decode(object_id, delta, verify=False)
            basis.seek(0)
            delta.seek(0)
            rdiff.patch(basis, delta, result)
            result.seek(0)
            hasher = self.cipher.content_hasher()
            while data := result.read(COPY):
                hasher.update(data)
            if hasher.hexdigest().encode("ascii") != object_id:
                raise Corrupt(f"object {_show(object_id)}: patched content does not match its address")
            result.seek(0)
            shutil.copyfileobj(result, out, COPY)
