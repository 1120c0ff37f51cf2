"""Reading stored file contents back: many objects at once into temporary files, or one as bytes.

Full objects of a batch come in one ``ReadObjects`` stream; objects stored as deltas are
rebuilt one at a time through their chain (chain.py). Every result is checked against its
address.
"""

from __future__ import annotations

import os
import tempfile
from typing import BinaryIO

from tardis.v1 import blobstore_pb2 as bs

from tardis_common.cipher import Cipher
from tardis_common.errors import Corrupt
from tardis_common.interfaces import Ingest
from tardis_common.objectformat import ObjectDecoder

from .chain import ChainReader


def _show(object_id: bytes) -> str:
    return object_id.decode("ascii", "replace")


class ContentFetcher:
    """Writes the full plaintext of stored objects into files under ``directory``."""

    def __init__(self, ingest: Ingest, client: str, cipher: Cipher, directory: str) -> None:
        self.ingest = ingest
        self.client = client
        self.cipher = cipher
        self.directory = directory
        self._chains = ChainReader(ingest, client, cipher)

    def _new_file(self) -> tuple[BinaryIO, str]:
        fd, path = tempfile.mkstemp(dir=self.directory, prefix="content-")
        return os.fdopen(fd, "wb"), path

    def fetch(self, object_ids: list[bytes]) -> dict[bytes, str]:
        """The path of a file holding the full content of each object in ``object_ids``."""
        wanted = list(dict.fromkeys(i for i in object_ids if i))
        if not wanted:
            return {}
        infos = self._chains.infos(wanted)
        for object_id in wanted:
            if object_id not in infos:
                raise Corrupt(f"object {_show(object_id)} is not in the catalog")
        paths: dict[bytes, str] = {}
        full = [i for i in wanted if not infos[i].basis_id]
        for object_id in wanted:
            if infos[object_id].basis_id:
                out, path = self._new_file()
                with out:
                    self._chains.materialize(object_id, out)
                paths[object_id] = path
        if full:
            paths.update(self._fetch_full(full))
        return paths

    def _fetch_full(self, object_ids: list[bytes]) -> dict[bytes, str]:
        paths: dict[bytes, str] = {}
        current: bytes | None = None
        decoder: ObjectDecoder | None = None
        out: BinaryIO | None = None
        try:
            for reply in self.ingest.read_objects(bs.GetObjectsRequest(client=self.client, object_ids=object_ids)):
                for piece in reply.pieces:
                    if piece.missing:
                        raise Corrupt(f"object {_show(piece.object_id)} is missing from the store")
                    if piece.object_id != current:
                        current = piece.object_id
                        decoder = ObjectDecoder(self.cipher, current)
                        out, paths[current] = self._new_file()
                    assert decoder is not None and out is not None
                    for plain in decoder.feed(piece.data):
                        out.write(plain)
                    if piece.last:
                        out.close()
                        decoder.finish()
                        current, decoder, out = None, None, None
        finally:
            if out is not None:
                out.close()
        missing = [i for i in object_ids if i not in paths]
        if missing:
            raise Corrupt(f"{len(missing)} objects did not arrive from the store")
        return paths


def read_content(ingest: Ingest, client: str, cipher: Cipher, object_id: bytes) -> bytes:
    """The whole content of one stored object, in memory (for small files)."""
    if not object_id:
        return b""
    with tempfile.TemporaryFile() as out:
        ChainReader(ingest, client, cipher).materialize(object_id, out)  # type: ignore[arg-type]
        out.seek(0)
        return out.read()
