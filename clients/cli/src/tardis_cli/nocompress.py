"""Which files are not worth compressing, by MIME type (the seed's NoCompress settings).

Types come from the file name (the standard ``mimetypes`` table): a per-file libmagic probe
costs more than it saves on a tree of small files, and data that does not shrink is stored
plain chunk by chunk anyway, so a miss here costs only a compression attempt.
"""

from __future__ import annotations

import fnmatch
import mimetypes
from pathlib import Path

from tardis_common.errors import ConfigError

# Already compressed formats (the original shipped a similar types.ignore).
DEFAULT_TYPES = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/heic",
    "video/*",
    "audio/mpeg",
    "audio/aac",
    "audio/ogg",
    "audio/flac",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/x-bzip2",
    "application/x-xz",
    "application/zstd",
    "application/x-7z-compressed",
    "application/vnd.rar",
    "application/x-rar-compressed",
    "application/java-archive",
    "application/epub+zip",
    "application/vnd.openxmlformats-officedocument.*",
    "application/vnd.oasis.opendocument.*",
)
mimetypes.add_type("application/zstd", ".zst")
mimetypes.add_type("application/x-xz", ".xz")
mimetypes.add_type("image/heic", ".heic")


class NoCompress:
    def __init__(self, types: list[str] | None = None, type_file: str | None = None) -> None:
        patterns = list(DEFAULT_TYPES) + list(types or [])
        if type_file:
            try:
                text = Path(type_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read the no-compress type list {type_file}: {exc.strerror}") from None
            patterns += [line.split("#", 1)[0].strip() for line in text.splitlines()]
        self.patterns = [p.lower() for p in patterns if p]
        self._cache: dict[str, bool] = {}

    def skip(self, path: str) -> bool:
        """True when ``path`` names a type that does not compress."""
        mime, encoding = mimetypes.guess_type(path, strict=False)
        if encoding:  # .gz, .bz2, .xz, ...
            return True
        if not mime:
            return False
        mime = mime.lower()
        found = self._cache.get(mime)
        if found is None:
            found = self._cache[mime] = any(fnmatch.fnmatchcase(mime, p) for p in self.patterns)
        return found
