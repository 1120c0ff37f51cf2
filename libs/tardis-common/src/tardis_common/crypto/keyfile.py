"""The ``--keys FILE`` format and the printable key backup.

Both hold the WRAPPED keys (the password is still needed) and the KDF parameters.

Key file: one JSON object, written atomically with mode 0600:
    {"format": "tardis-keys", "version": 1, "client": ..., "kdf": {...}, "wrapped": base64,
     "check": hex sha256 of the compact, key-sorted JSON of the other five members}

Printable backup: a text page whose payload is
    "TDKB" | version u8 (1) | client_len u8 | client | kdf_len u16 | kdf JSON | wrapped
in numbered base32 lines (48 characters in groups of 8, then a 2-hex-digit checksum: the
first byte of sha256 of "<line number>:<characters>"), followed by the sha256 of the payload.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import struct
import tempfile
from pathlib import Path
from typing import Any

from ..errors import Corrupt, InvalidArgument, NotFound
from .kdf import KdfParams

FORMAT = "tardis-keys"
VERSION = 1
BACKUP_MAGIC = b"TDKB"
BACKUP_VERSION = 1
BEGIN = "-----BEGIN TARDIS KEY BACKUP-----"
END = "-----END TARDIS KEY BACKUP-----"
LINE_CHARS = 48
GROUP = 8


def _canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def write_key_file(path: str | os.PathLike[str], client: str, params: KdfParams, wrapped: bytes) -> None:
    """Write the key file atomically (temporary file, fsync, rename), readable by the owner only."""
    body: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "client": client,
        "kdf": params.to_dict(),
        "wrapped": base64.b64encode(wrapped).decode("ascii"),
    }
    body["check"] = hashlib.sha256(_canonical(body)).hexdigest()
    data = json.dumps(body, sort_keys=True, indent=1).encode("utf-8") + b"\n"
    target = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def read_key_file(path: str | os.PathLike[str], client: str) -> tuple[KdfParams, bytes]:
    """The KDF parameters and wrapped keys of ``client`` in the key file at ``path``."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"key file {path} does not exist") from None
    except OSError as e:
        raise Corrupt(f"key file {path} is damaged: cannot read it ({e.strerror})") from None

    def damaged(why: str) -> Corrupt:
        return Corrupt(f"key file {path} is damaged: {why}")

    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise damaged("not valid JSON (garbled or truncated)") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise damaged("not a Tardis key file")
    if body.get("version") != VERSION:
        raise damaged(f"unsupported version {body.get('version')!r}")
    check = body.pop("check", None)
    if set(body) != {"format", "version", "client", "kdf", "wrapped"}:
        raise damaged("unexpected or missing members")
    if not isinstance(check, str) or check != hashlib.sha256(_canonical(body)).hexdigest():
        raise damaged("its check sum does not match its contents")
    owner = body["client"]
    if not isinstance(owner, str):
        raise damaged("no client name")
    if owner != client:
        raise InvalidArgument(f"key file {path} belongs to client {owner}, not {client}")
    try:
        params = KdfParams.from_dict(body["kdf"])
    except Corrupt as e:
        raise damaged(str(e)) from None
    try:
        wrapped = base64.b64decode(body["wrapped"], validate=True)
    except (ValueError, TypeError, binascii.Error):
        raise damaged("the wrapped keys are not base64") from None
    return params, wrapped


def _line_check(number: int, chars: str) -> str:
    return hashlib.sha256(f"{number}:{chars}".encode("ascii")).hexdigest()[:2]


def _payload(client: str, params: KdfParams, wrapped: bytes) -> bytes:
    name = client.encode("utf-8")
    kdf = params.to_json()
    if len(name) > 255:
        raise InvalidArgument("a client name longer than 255 bytes cannot go in a key backup")
    return BACKUP_MAGIC + bytes([BACKUP_VERSION, len(name)]) + name + struct.pack(">H", len(kdf)) + kdf + wrapped


def printable_backup(client: str, params: KdfParams, wrapped: bytes) -> str:
    """A page to print and keep: restores need it and the password if the server's copy is lost."""
    payload = _payload(client, params, wrapped)
    encoded = base64.b32encode(payload).decode("ascii").rstrip("=")
    lines = [
        "TARDIS KEY BACKUP",
        "",
        f"Client: {client}",
        "",
        "These are the encryption keys of this client, themselves encrypted",
        "with its password. With this page and the password the backups can",
        "be read even if the server's copy of the keys is lost; without the",
        "password the page is useless. Keep it somewhere safe.",
        "To restore, type the lines between the BEGIN and END marks into a",
        "text file (spacing and case do not matter) and import it with",
        "sonic keys. The last two characters of each line check that line.",
        "",
        BEGIN,
    ]
    for number, start in enumerate(range(0, len(encoded), LINE_CHARS), 1):
        chars = encoded[start : start + LINE_CHARS]
        groups = " ".join(chars[i : i + GROUP] for i in range(0, len(chars), GROUP))
        lines.append(f"{number:02d}: {groups} {_line_check(number, chars)}")
    lines += [END, "", f"SHA256: {hashlib.sha256(payload).hexdigest()}", ""]
    return "\n".join(lines)


_DATA_LINE = re.compile(r"^(\d+)\s*[:.]?\s*([A-Z2-7 ]+?)\s+([0-9A-F]{2})$")


def parse_printable_backup(text: str, client: str) -> tuple[KdfParams, bytes]:
    """The KDF parameters and wrapped keys of a printed (and retyped) key backup."""
    rows = [" ".join(line.split()).upper() for line in text.splitlines()]
    try:
        begin, end = rows.index(BEGIN), rows.index(END)
    except ValueError:
        raise Corrupt("key backup is damaged: its BEGIN or END line is missing") from None
    data = [row for row in rows[begin + 1 : end] if row]
    if not data:
        raise Corrupt("key backup is damaged: it has no data lines")
    encoded = []
    for expected, row in enumerate(data, 1):
        match = _DATA_LINE.match(row)
        if match is None:
            raise Corrupt(f"key backup is damaged: line {expected} is not a data line")
        number, chars = int(match.group(1)), match.group(2).replace(" ", "")
        if number != expected:
            raise Corrupt(f"key backup is damaged: line {expected} is missing or out of order (found {number})")
        if _line_check(number, chars) != match.group(3).lower():
            raise Corrupt(f"key backup is damaged: line {number} does not match its checksum")
        encoded.append(chars)
    joined = "".join(encoded)
    try:
        payload = base64.b32decode(joined + "=" * (-len(joined) % 8))
    except (ValueError, binascii.Error):
        raise Corrupt("key backup is damaged: the data lines do not decode") from None
    sums = [row for row in rows if row.startswith("SHA256:")]
    if not sums:
        raise Corrupt("key backup is damaged: its SHA256 line is missing")
    if sums[0].removeprefix("SHA256:").strip().lower() != hashlib.sha256(payload).hexdigest():
        raise Corrupt("key backup is damaged: the data lines do not match the SHA256 line")
    return _parse_payload(payload, client)


def _parse_payload(payload: bytes, client: str) -> tuple[KdfParams, bytes]:
    head = len(BACKUP_MAGIC)
    if payload[:head] != BACKUP_MAGIC or len(payload) < head + 2:
        raise Corrupt("key backup is damaged: not a Tardis key backup")
    if payload[head] != BACKUP_VERSION:
        raise Corrupt(f"key backup has unsupported version {payload[head]}")
    name_end = head + 2 + payload[head + 1]
    if len(payload) < name_end + 2:
        raise Corrupt("key backup is damaged: it is truncated")
    owner = payload[head + 2 : name_end].decode("utf-8", "replace")
    (kdf_len,) = struct.unpack_from(">H", payload, name_end)
    kdf_end = name_end + 2 + kdf_len
    if len(payload) <= kdf_end:
        raise Corrupt("key backup is damaged: it is truncated")
    if owner != client:
        raise InvalidArgument(f"key backup belongs to client {owner}, not {client}")
    try:
        params = KdfParams.from_json(payload[name_end + 2 : kdf_end])
    except Corrupt as e:
        raise Corrupt(f"key backup is damaged: {e}") from None
    return params, payload[kdf_end:]
