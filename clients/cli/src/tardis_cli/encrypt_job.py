"""Encrypting an existing client in place: the steps of sonic encrypt (the seed's encryptDB).

Runs beside the repository (embedded cores), because it holds the keys. Steps:

- names: path components, owner and group names (AES-SIV), link targets and xattrs, tags
  and recorded command lines of the sets backed up before the password; then a VACUUM.
- dirs: directories are keyed by path (decision 0003), so they follow their names; this
  step drops directory and name rows nothing uses any more and reports.
- objects: each object (and its .sig) re-sealed with the cipher under its keyed address,
  with a new .meta; the catalog row takes the new address (or, when a backup since the
  password stored the same content, the entries move to that row); old files deleted.
- meta: a sealed manifest for each converted set, and every .meta written afresh.

Progress is durable in the catalog (tardis_catalog.conversion): each batch is one catalog
transaction under the client's writer lease, taken per batch and released between batches
so backups keep running. New object files are stored before the commit that points at
them; old ones are deleted after it (listed in the same commit, so a crash in between
only delays their deletion to the next run). ``TARDIS_FAULT`` points (test only):
encrypt-names, encrypt-names-vacuum, encrypt-dirs, encrypt-objects-written,
encrypt-objects-committed, encrypt-objects, encrypt-manifest-written, encrypt-meta.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common

from tardis_common import rdiff
from tardis_common.cipher import Cipher, NullCipher
from tardis_common.codecs import Codec, codec_by_id, codec_named
from tardis_common.crypto.keys import KeySet
from tardis_common.errors import Conflict, Corrupt, InvalidArgument
from tardis_common.faults import fault_point
from tardis_common.objectformat import KIND_DELTA, KIND_FULL, ObjectDecoder, ObjectEncoder
from tardis_common.processes import pid_alive

from .manifest import build_manifest
from .upload import signature_identity

log = logging.getLogger(__name__)
COPY = 1024 * 1024
MAX_CHAIN = 64
STEPS = ("names", "dirs", "objects", "meta")
HOLDER = "sonic encrypt on "
VACUUMED = "encrypt_vacuumed"  # meta key: the VACUUM after the last names converted has run


def _show(address: bytes) -> str:
    return address.decode("ascii", "replace")


class EncryptJob:
    def __init__(
        self,
        catalog: Any,
        blobstore: Any,
        client: str,
        cipher: Cipher,
        keys: KeySet,
        *,
        batch: int = 500,
        wait_s: float = 600.0,
        say: Callable[[str], None] = print,
    ) -> None:
        self.catalog = catalog
        self.blobstore = blobstore
        self.client = client
        self.cipher = cipher
        self.keys = keys
        self.batch = max(1, batch)
        self.wait_s = wait_s
        self.say = say
        self.conv = catalog.conversion(client)
        self.tree = blobstore.tree(client)
        self.null = NullCipher()
        self.holder = f"{HOLDER}{socket.gethostname()}:{os.getpid()}"

    # -- the lease, one batch at a time -----------------------------------------------------

    @contextmanager
    def lease(self) -> Iterator[int]:
        fence = self._acquire()
        try:
            yield fence
        finally:
            self.conv.release_lease(fence)

    def _acquire(self) -> int:
        deadline = time.monotonic() + self.wait_s
        told = False
        while True:
            try:
                return int(self.conv.take_lease(self.holder, take_over=self._dead_job()))
            except Conflict as exc:
                if time.monotonic() >= deadline:
                    raise Conflict(
                        f"{exc}; gave up waiting after {self.wait_s:.0f} s (run sonic encrypt again)"
                    ) from None
                if not told:
                    self.say(f"waiting for the lease: {exc}")
                    told = True
                time.sleep(0.5)  # a backup holds the lease; it is released when the backup ends

    def _dead_job(self) -> str:
        """The lease holder's name when it is a writer on this host that died: an earlier sonic
        encrypt, or a backup or purge (``host:pid``)."""
        holder = self.conv.lease_holder()
        host = f"{socket.gethostname()}:"
        mine = next((p for p in (HOLDER + host, host) if holder and holder.startswith(p)), "")
        if not holder or not mine or holder == self.holder:
            return ""
        pid = holder[len(mine) :]
        return holder if pid.isdigit() and not pid_alive(int(pid)) else ""

    def plan(self) -> None:
        with self.lease() as fence:
            if self.conv.plan(fence):
                progress = self.conv.progress()
                self.say(
                    f"planned: {progress.names} names, {progress.entries} link targets or xattrs,"
                    f" {progress.set_texts} sets and {progress.objects} objects in the clear"
                )

    def run(self, steps: list[str]) -> None:
        self.plan()
        for step in STEPS:
            if step in steps:
                getattr(self, step)()
        self.destroy_copies()

    # -- names ------------------------------------------------------------------------------

    def names(self) -> None:
        names = merged = entries = sets = 0
        while True:
            with self.lease() as fence:
                texts = self.conv.pending_set_texts(self.batch)
                if not texts:
                    break
                self.conv.convert_set_texts(
                    fence,
                    [
                        (s, self.cipher.encrypt_text(line), {t: self.cipher.encrypt_text(t) for t in tags})
                        for s, line, tags in texts
                    ],
                )
            sets += len(texts)
            fault_point("encrypt-names")
        while True:
            with self.lease() as fence:
                rows = self.conv.pending_names(self.batch)
                if not rows:
                    break
                merged += self.conv.convert_names(fence, {i: self.cipher.encrypt_name(n) for i, n in rows})
            names += len(rows)
            fault_point("encrypt-names")
        while True:
            with self.lease() as fence:
                found = self.conv.pending_entries(self.batch)
                if not found:
                    break
                self.conv.convert_entries(
                    fence, [(i, self.cipher.encrypt_name(link), self.cipher.encrypt_name(x)) for i, link, x in found]
                )
            entries += len(found)
            fault_point("encrypt-names")
        vacuumed = bool(names or entries or sets or not self.conv.flag(VACUUMED))
        if vacuumed:  # also when an earlier run stopped before its VACUUM
            fault_point("encrypt-names-vacuum")
            self.conv.set_flag(VACUUMED, False)
            self.conv.vacuum()
            self.conv.set_flag(VACUUMED, True)
        done = "; catalog vacuumed" if vacuumed else ""
        if names or entries or sets:
            self.say(
                f"names: sealed {names} names ({merged} already held sealed), {entries} link targets or xattrs,"
                f" the tags and command lines of {sets} sets{done}"
            )
        else:
            self.say(f"names: all sealed already{done}")

    # -- dirs -------------------------------------------------------------------------------

    def dirs(self) -> None:
        if not self.conv.progress().names_done:
            raise InvalidArgument("encrypt the names first (sonic encrypt --names)")
        with self.lease() as fence:
            kept, dropped = self.conv.tidy_dirs(fence)
        fault_point("encrypt-dirs")
        self.say(
            f"dirs: {kept} directories, keyed by their sealed names (nothing to rebuild);"
            f" {dropped} unused directory and name rows dropped"
        )

    # -- objects ----------------------------------------------------------------------------

    def objects(self) -> None:
        with self.lease():  # no backup may store an object again while its file is deleted
            self._empty_trash()
        failed: dict[int, str] = {}
        converted = merged = 0
        while True:
            with self.lease() as fence:
                rows = self.conv.pending_objects(self.batch, list(failed))
                if not rows:
                    break
                changes = []
                moved: dict[int, bytes] = {}  # row id -> new address, within this batch
                for row in rows:
                    try:
                        change = self._convert(row, moved, failed)
                    except Corrupt as exc:
                        failed[row.row_id] = str(exc)
                        log.warning("cannot convert object %s: %s", _show(row.address), exc)
                        continue
                    moved[row.row_id] = change.new_address
                    changes.append(change)
                fault_point("encrypt-objects-written")
                merged += self.conv.convert_objects(fence, changes)
                converted += len(changes)
                fault_point("encrypt-objects-committed")
                self._empty_trash()
            fault_point("encrypt-objects")
        if converted:
            self.conv.vacuum()  # the old (unkeyed) addresses out of free pages and the WAL
        self.say(
            f"objects: re-sealed {converted - merged} objects under keyed addresses"
            + (f", {merged} already held under theirs" if merged else "")
            + ("" if converted else " (none left in the clear)")
        )
        if failed:
            first = next(iter(failed.values()))
            raise Corrupt(f"{len(failed)} objects could not be converted (damaged?); the first: {first}")

    def _empty_trash(self) -> None:
        old = self.conv.trash()
        if old:
            self.blobstore.delete_objects(bs.DeleteObjectsRequest(client=self.client, object_ids=old))
            self.conv.clear_trash(old)

    def _convert(self, row: Any, moved: dict[int, bytes], failed: dict[int, str]) -> Any:
        from tardis_catalog.conversion import ObjectChange

        if row.basis_row is not None and row.basis_row in failed:
            raise Corrupt(f"object {_show(row.address)}: its basis could not be converted")
        with tempfile.TemporaryFile() as full:
            self._materialize(row.address, full, 0)
            full.seek(0)
            hasher = self.cipher.content_hasher()
            while data := full.read(COPY):
                hasher.update(data)
            new_address = hasher.hexdigest().encode("ascii")
            if self.conv.holds(new_address):
                return ObjectChange(row.row_id, row.address, new_address, 0, False)
            codec, payload = self._payload(row)
            with payload:
                if row.basis_row is None:
                    full.seek(0)
                    encoder = ObjectEncoder(self.cipher, codec, identity=new_address)
                    chunks = list(encoder.encode(full))  # type: ignore[arg-type]
                    basis = b""
                else:
                    basis = row.basis_address if row.basis_encrypted else moved[row.basis_row]
                    encoder = ObjectEncoder(self.cipher, codec, kind=KIND_DELTA, basis=basis, identity=new_address)
                    chunks = list(encoder.encode(payload))
        info = common.ObjectInfo(
            object_id=new_address,
            size=row.size,
            stored_size=encoder.stored_size,
            compression=codec.name,
            encrypted=True,
            basis_id=basis,
            chain_length=row.chain_length,
            has_signature=row.has_signature,
        )
        pieces = _pieces(1, chunks, info)
        if row.has_signature:
            signature = self._read_plain(row.address, signature=True)
            sig_encoder = ObjectEncoder(self.cipher, codec_named("none"), identity=signature_identity(new_address))
            pieces += _pieces(
                2, list(sig_encoder.encode(io.BytesIO(signature))), common.ObjectInfo(object_id=new_address)
            )
            pieces[-1].signature = True
        self.blobstore.put_objects(iter([bs.PutObjectsRequest(client=self.client, pieces=pieces)]))
        return ObjectChange(row.row_id, row.address, new_address, encoder.stored_size, row.has_signature)

    def _payload(self, row: Any) -> tuple[Codec, BinaryIO]:
        """The codec of the stored object, and (for a delta) its delta payload in a temporary file."""
        out = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it
        if row.basis_row is None:
            decoder = ObjectDecoder(self.null, None, kind=KIND_FULL, identity=row.address)
            source = self.tree.open(row.address)
            if source is None:
                raise Corrupt(f"object {_show(row.address)} is missing from the store")
            with source:
                decoder.feed(source.read(4096))  # enough for the header
        else:
            decoder = ObjectDecoder(self.null, None, kind=KIND_DELTA, identity=row.address)
            self._feed(row.address, decoder, out)
        if decoder.header is None:
            raise Corrupt(f"object {_show(row.address)} is truncated")
        out.seek(0)
        return codec_by_id(decoder.header.codec_id), out  # type: ignore[return-value]

    def _feed(self, address: bytes, decoder: ObjectDecoder, out: BinaryIO | None, signature: bool = False) -> None:
        source = self.tree.open(address, signature=signature)
        if source is None:
            raise Corrupt(f"object {_show(address)}{'.sig' if signature else ''} is missing from the store")
        with source:
            while data := source.read(COPY):
                for plain in decoder.feed(data):
                    if out is not None:
                        out.write(plain)
        decoder.finish()

    def _read_plain(self, address: bytes, signature: bool) -> bytes:
        out = io.BytesIO()
        decoder = ObjectDecoder(self.null, identity=signature_identity(address))
        self._feed(address, decoder, out, signature=True)  # type: ignore[arg-type]
        return out.getvalue()

    def _materialize(self, address: bytes, out: BinaryIO, depth: int) -> None:
        """The full content of a stored object, read with the cipher its row says it has."""
        if depth > MAX_CHAIN:
            raise Corrupt(f"object {_show(address)} has a delta chain longer than {MAX_CHAIN}")
        state = self.conv.object_state(address)
        if state is None:
            raise Corrupt(f"object {_show(address)} is not in the catalog")
        cipher = self.cipher if state.encrypted else self.null
        if not state.basis_address:
            self._feed(address, ObjectDecoder(cipher, address, kind=KIND_FULL), out)
            return
        with tempfile.TemporaryFile() as basis, tempfile.TemporaryFile() as delta, tempfile.TemporaryFile() as result:
            self._materialize(state.basis_address, basis, depth + 1)
            self._feed(address, ObjectDecoder(cipher, None, kind=KIND_DELTA, identity=address), delta)
            basis.seek(0)
            delta.seek(0)
            rdiff.patch(basis, delta, result)
            result.seek(0)
            hasher = cipher.content_hasher()
            while data := result.read(COPY):
                hasher.update(data)
                out.write(data)
            if hasher.hexdigest().encode("ascii") != address:
                raise Corrupt(f"object {_show(address)}: patched content does not match its address")

    # -- meta -------------------------------------------------------------------------------

    def meta(self) -> None:
        progress = self.conv.progress()
        if not progress.names_done or progress.objects:
            raise InvalidArgument("encrypt the names and the objects first (sonic encrypt --names --objects)")
        sealed = 0
        for set_id in self.conv.pending_manifests():
            with self.lease() as fence:
                tree = self.catalog.read_tree(cat.ReadTreeRequest(client=self.client, set_id=set_id, dir_id=0))
                data = build_manifest(self.keys.manifest_key, self.client, set_id, tree)
                encoder = ObjectEncoder(self.cipher, codec_named("zstd"))
                chunks = list(encoder.encode(io.BytesIO(data)))
                info = common.ObjectInfo(
                    object_id=encoder.object_id,
                    size=encoder.size,
                    stored_size=encoder.stored_size,
                    compression=encoder.codec.name,
                    encrypted=True,
                )
                self.blobstore.put_objects(
                    iter([bs.PutObjectsRequest(client=self.client, pieces=_pieces(1, chunks, info))])
                )
                fault_point("encrypt-manifest-written")
                self.conv.attach_manifest(fence, set_id, info)
            sealed += 1
            fault_point("encrypt-meta")
        after = written = 0
        while rows := self.conv.object_infos(after, self.batch):
            written += self.blobstore.rewrite_meta(self.client, [info for _, info in rows])
            after = rows[-1][0]
            fault_point("encrypt-meta")
        self.say(f"meta: sealed the manifests of {sealed} sets; wrote {written} .meta files afresh")

    # -- copies of the catalog taken in the clear --------------------------------------------

    def destroy_copies(self) -> None:
        """Overwrite and remove what holds plaintext outside the catalog and the objects:
        copies of the catalog taken before the encryption (schema upgrade copies, DBBackups), objects
        in the clear moved to quarantine/, and pieces of objects left in tmp/ by a backup
        that died (only while this job holds the lease, and only old ones)."""
        directory: Path = self.tree.dir
        doomed = sorted(directory.glob("tardis.db.schema-v*.bak*"))
        doomed += sorted(directory.glob("tardis.db.[0-9]*"))  # DBBackups copies: they hold the clear names
        for path in sorted((directory / "quarantine").glob("*")):
            if path.is_file() and not path.suffix and _in_the_clear(path):
                doomed += [path, *(path.with_name(path.name + s) for s in (".meta", ".sig"))]
        with self.lease():
            old = time.time() - 600
            doomed += [p for p in sorted((directory / "tmp").glob("*")) if p.is_file() and p.stat().st_mtime < old]
            for path in doomed:
                if _shred(path):
                    self.say(f"destroyed {path.relative_to(directory)}, written in the clear")


def _pieces(token: int, chunks: list[bytes], info: common.ObjectInfo) -> list[bs.PutPiece]:
    pieces = [bs.PutPiece(token=token, data=data) for data in chunks] or [bs.PutPiece(token=token)]
    pieces[-1].last = True
    pieces[-1].info.CopyFrom(info)
    return pieces


def _in_the_clear(path: Path) -> bool:
    """Whether an object file's header names cipher 0 (none)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    return len(head) == 8 and head[:4] == b"TDOB" and head[7] == 0


def _shred(path: Path) -> bool:
    """Overwrite a file with zeros, flush it, and remove it; False if it did not exist. (What
    the filesystem keeps in freed blocks or older copies is beyond reach: docs/security.md.)"""
    try:
        size = path.stat().st_size
        with open(path, "r+b") as handle:
            while handle.tell() < size:
                handle.write(b"\0" * min(COPY, size - handle.tell()))
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()
    except FileNotFoundError:
        return False
    return True
