"""What this client remembers about each repository it has opened, so a lying server is caught.

Per repository (its URL and client name): the strongest KDF cost seen (a server may not hand
out weaker parameters later) and the newest complete backup set seen (a server that shows an
older newest set is rolling the client back). Kept in $TARDIS_STATE_DIR, else
$XDG_STATE_HOME/tardis, else ~/.local/state/tardis, as one small JSON file.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from tardis_common.crypto.kdf import KdfParams
from tardis_common.errors import PermissionDenied

log = logging.getLogger(__name__)
STATE_FILE = "repositories.json"


def state_dir() -> Path:
    explicit = os.environ.get("TARDIS_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "tardis"


class KnownRepository:
    def __init__(self, key: str, path: Path | None = None) -> None:
        self.key = key
        self.path = path or state_dir() / STATE_FILE

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _update(self, **values: Any) -> None:
        try:
            data = self._load()
            data.setdefault(self.key, {}).update(values)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:  # remembering is a safeguard, not a reason to fail a backup
            log.warning("cannot remember repository state in %s: %s", self.path, exc.strerror or exc)

    def _get(self, name: str) -> Any:
        return self._load().get(self.key, {}).get(name)

    def check_kdf(self, params: KdfParams) -> None:
        """Refuse parameters weaker than the ones seen before for this repository."""
        seen = self._get("kdf_cost")
        if seen and (params.n < seen[0] or params.r < seen[1] or params.p < seen[2]):
            raise PermissionDenied(
                f"the server offered weaker key-derivation parameters (scrypt n={params.n}, r={params.r}, "
                f"p={params.p}) than before (n={seen[0]}, r={seen[1]}, p={seen[2]}); refusing to use them"
            )

    def remember_kdf(self, params: KdfParams) -> None:
        seen = self._get("kdf_cost")
        if seen != [params.n, params.r, params.p]:
            self._update(kdf_cost=[params.n, params.r, params.p])

    def forget_kdf(self) -> None:
        """After a password change the new parameters may legitimately be cheaper."""
        self._update(kdf_cost=None)

    def check_newest_set(self, newest_id: int) -> str | None:
        """A warning when the server's newest complete set is older than one seen before."""
        seen = self._get("newest_set") or 0
        if newest_id < seen:
            return (
                f"the server's newest complete backup set is {newest_id or 'none'}, but set {seen} was seen "
                "before: the server may have been rolled back"
            )
        if newest_id > seen:
            self._update(newest_set=newest_id)
        return None

    def remember_newest_set(self, newest_id: int) -> None:
        if newest_id > (self._get("newest_set") or 0):
            self._update(newest_set=newest_id)

    def forget_newest_set(self, newest_id: int) -> None:
        """After this client itself deleted sets, the newest may legitimately be older."""
        self._update(newest_set=newest_id)
