"""The Ingest interface with a client's texts sealed: tags and the recorded command line.

Names, owners and contents pass through the cipher where they are made (walker, uploader);
the few free texts a set carries are sealed here, in one place, so every tool sees them in
the clear and the server never does.
"""

from __future__ import annotations

from typing import Any

from tardis.v1 import catalog_pb2 as cat
from tardis.v1 import common_pb2 as common
from tardis.v1 import ingest_pb2 as ing

from tardis_common.cipher import Cipher
from tardis_common.errors import Corrupt


class SealedIngest:
    def __init__(self, inner: Any, cipher: Cipher) -> None:
        self._inner = inner
        self._cipher = cipher

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _open_set(self, backup_set: common.BackupSet) -> common.BackupSet:
        shown = common.BackupSet()
        shown.CopyFrom(backup_set)
        del shown.tags[:]
        shown.tags.extend(sorted(self._open_text(backup_set, t) for t in backup_set.tags))
        if backup_set.command_line:
            shown.command_line = self._open_text(backup_set, backup_set.command_line)
        return shown

    def _open_text(self, backup_set: common.BackupSet, text: str) -> str:
        try:
            return self._cipher.decrypt_text(text)
        except Corrupt:
            if backup_set.completed and not backup_set.manifest_id:
                return text  # a set from before the password, not yet sealed by sonic encrypt
            raise

    def _seal(self, texts: Any) -> list[str]:
        return [self._cipher.encrypt_text(t) for t in texts]

    def open_session(self, request: ing.OpenSessionRequest) -> ing.OpenSessionReply:
        sealed = ing.OpenSessionRequest()
        sealed.CopyFrom(request)
        del sealed.tags[:]
        sealed.tags.extend(self._seal(request.tags))
        if request.command_line:
            sealed.command_line = self._cipher.encrypt_text(request.command_line)
        reply = self._inner.open_session(sealed)
        reply.set.CopyFrom(self._open_set(reply.set))
        return reply  # type: ignore[no-any-return]

    def finish_session(self, request: ing.FinishSessionRequest) -> ing.FinishSessionReply:
        reply = self._inner.finish_session(request)
        reply.set.CopyFrom(self._open_set(reply.set))
        return reply  # type: ignore[no-any-return]

    def list_sets(self, request: cat.ClientRequest) -> cat.ListSetsReply:
        reply = self._inner.list_sets(request)
        return cat.ListSetsReply(sets=[self._open_set(s) for s in reply.sets])

    def update_set(self, request: cat.UpdateSetRequest) -> common.BackupSet:
        sealed = cat.UpdateSetRequest()
        sealed.CopyFrom(request)
        del sealed.add_tags[:]
        del sealed.remove_tags[:]
        sealed.add_tags.extend(self._seal(request.add_tags))
        sealed.remove_tags.extend(self._seal(request.remove_tags))
        return self._open_set(self._inner.update_set(sealed))

    def remove_sets(self, request: cat.RemoveSetsRequest) -> cat.ExpireSetsReply:
        reply = self._inner.remove_sets(request)
        opened = [self._open_set(s) for s in reply.removed]
        del reply.removed[:]
        reply.removed.extend(opened)
        return reply  # type: ignore[no-any-return]
