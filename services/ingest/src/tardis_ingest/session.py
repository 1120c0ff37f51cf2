"""Session ids: ingest keeps no state, so a session id carries what each call needs.

Format: ``v1/<set_id>/<fence>/<nonce>/<client>``. The catalog checks the fence on every
write, so a forged or stale id cannot write to a set it does not hold; the encryption
issue adds a session token bound to the login on top.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from tardis_common.errors import InvalidArgument
from tardis_common.names import check_client_name


@dataclass(frozen=True)
class Session:
    client: str
    set_id: int
    fence: int
    nonce: str

    def encode(self) -> str:
        return f"v1/{self.set_id}/{self.fence}/{self.nonce}/{self.client}"

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_hex(16)

    @classmethod
    def decode(cls, text: str) -> Session:
        parts = text.split("/", 4)
        if len(parts) != 5 or parts[0] != "v1":
            raise InvalidArgument("malformed session id")
        try:
            set_id, fence = int(parts[1]), int(parts[2])
        except ValueError:
            raise InvalidArgument("malformed session id") from None
        if not (0 < set_id < 2**32 and 0 <= fence < 2**64):
            raise InvalidArgument("malformed session id")
        return cls(check_client_name(parts[4]), set_id, fence, parts[3])
