"""Storing and checking set manifests through the Ingest interface.

The manifest (manifest.py) is stored as an ordinary object, sealed by the client's cipher
and addressed by its (keyed) content hash, uploaded as a standalone token in the set's
session; FinishSession records its id on the set.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from tardis.v1 import blobstore_pb2 as bs
from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing

from tardis_common.cipher import Cipher
from tardis_common.codecs import codec_named
from tardis_common.errors import Corrupt, NotFound
from tardis_common.interfaces import Ingest
from tardis_common.objectformat import KIND_FULL, ObjectDecoder, ObjectEncoder

from .manifest import ADDED, CHANGED, MISSING, Manifest, Path, build_manifest, verify_tree

MESSAGE_BYTES = 1024 * 1024
_TOKEN = 1


def upload_manifest(ingest: Ingest, session: str, cipher: Cipher, data: bytes, codec: str = "zstd") -> bytes:
    """Store ``data`` as one object in ``session`` (one UploadContent call); its object id."""
    encoder = ObjectEncoder(cipher, codec_named(codec))
    pieces = [ing.ContentPiece(token=_TOKEN, data=chunk) for chunk in encoder.encode(io.BytesIO(data))]
    last = pieces[-1]
    last.last = True
    last.info.CopyFrom(
        common.ObjectInfo(
            object_id=encoder.object_id,
            size=encoder.size,
            stored_size=encoder.stored_size,
            compression=encoder.codec.name,
            encrypted=cipher.encrypted,
        )
    )
    messages: list[ing.UploadContentRequest] = []
    message = ing.UploadContentRequest(session=session)
    size = 0
    for piece in pieces:
        message.pieces.append(piece)
        size += len(piece.data)
        if size >= MESSAGE_BYTES:
            messages.append(message)
            message, size = ing.UploadContentRequest(session=session), 0
    if message.pieces:
        messages.append(message)
    ingest.upload_content(iter(messages))
    return encoder.object_id


def fetch_manifest(ingest: Ingest, client: str, cipher: Cipher, backup_set: common.BackupSet) -> Manifest | None:
    """The set's parsed manifest; None when the set has none."""
    manifest_id = backup_set.manifest_id
    if not manifest_id:
        return None
    damaged = f"the manifest of backup set {backup_set.name} is missing or damaged"
    decoder = ObjectDecoder(cipher, expected_id=manifest_id, kind=KIND_FULL)
    plain: list[bytes] = []
    try:
        for reply in ingest.read_objects(bs.GetObjectsRequest(client=client, object_ids=[manifest_id])):
            for piece in reply.pieces:
                if piece.missing or piece.object_id != manifest_id:
                    raise Corrupt(damaged)
                plain.extend(decoder.feed(piece.data))
        decoder.finish()
    except (Corrupt, NotFound):
        raise Corrupt(damaged) from None
    return Manifest.parse(b"".join(plain), client, backup_set.id, label=f"backup set {backup_set.name}")


def seal_set(ingest: Ingest, client: str, session: str, set_id: int, cipher: Cipher, key: bytes) -> bytes:
    """Build the manifest of the running set from the catalog and upload it; the object id
    to pass as FinishSessionRequest.manifest_id."""
    tree = ingest.read_tree(cat.ReadTreeRequest(client=client, set_id=set_id, dir_id=0))
    return upload_manifest(ingest, session, cipher, build_manifest(key, client, set_id, tree))


def show_path(cipher: Cipher, path: Path) -> str:
    """A path of encrypted components, decrypted for a message."""
    shown = []
    for component in path:
        try:
            shown.append(cipher.decrypt_name(component).decode("utf-8", "replace"))
        except Exception:
            shown.append(f"<undecryptable {component[:16].hex()}>")
    return "/" + "/".join(shown)


_WORDS = {
    CHANGED: "changed since the set was sealed",
    MISSING: "is missing from the catalog",
    ADDED: "is not in the manifest",
}


@dataclass
class SetCheck:
    """A set's catalog checked against its manifest: one line per problem, and the
    (encrypted) paths of the entries the manifest does not vouch for (changed or added);
    when the set cannot be checked at all, the root counts as added (nothing is vouched for)."""

    lines: list[str] = field(default_factory=list)
    suspect: dict[Path, str] = field(default_factory=dict)  # path -> CHANGED or ADDED


def check_set(ingest: Ingest, client: str, cipher: Cipher, key: bytes, backup_set: common.BackupSet) -> SetCheck:
    """The set's catalog against its manifest; no lines when it matches."""
    name = backup_set.name
    try:
        manifest = fetch_manifest(ingest, client, cipher, backup_set)
        if manifest is None:
            return SetCheck([f"set {name} has no manifest"], {(): ADDED})
        manifest.authenticate(key)
    except Corrupt as exc:
        return SetCheck([str(exc)], {(): ADDED})  # "the manifest of backup set NAME ..."
    try:
        tree = ingest.read_tree(cat.ReadTreeRequest(client=client, set_id=backup_set.id, dir_id=0))
        problems = verify_tree(key, manifest, tree)
    except Corrupt as exc:
        return SetCheck([f"set {name}: {exc}"], {(): ADDED})
    return SetCheck(
        sorted(f"set {name}: {show_path(cipher, p.path)} {_WORDS[p.what]}" for p in problems),
        {p.path: p.what for p in problems if p.what != MISSING},
    )


def verify_set(ingest: Ingest, client: str, cipher: Cipher, key: bytes, backup_set: common.BackupSet) -> list[str]:
    """One line per problem of the set's catalog against its manifest; [] when it matches."""
    return check_set(ingest, client, cipher, key, backup_set).lines
