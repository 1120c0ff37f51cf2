"""Hashing files for CheckContent: the content address without sending the content."""

from __future__ import annotations

import os
import time

from tardis.v1 import common_pb2 as common

from tardis_common.cipher import Cipher

from .upload import mark_racy

READ_SIZE = 1024 * 1024


def hash_file(path: str, entry: common.Entry, cipher: Cipher) -> bool:
    """Put the content hash of ``path`` in ``entry.object_id``; False if it cannot be read."""
    try:
        st = os.lstat(path)
        with open(path, "rb") as source:
            mark_racy(entry, time.time_ns())
            hasher = cipher.content_hasher()
            size = 0
            while data := source.read(READ_SIZE):
                hasher.update(data)
                size += len(data)
            after = os.fstat(source.fileno())
    except OSError:
        return False
    if (st.st_size, st.st_mtime_ns, st.st_ctime_ns) != (after.st_size, after.st_mtime_ns, after.st_ctime_ns):
        return False  # changing under us: let it be sent as content instead
    entry.size, entry.mtime_ns, entry.ctime_ns, entry.inode = size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino
    entry.object_id = hasher.hexdigest().encode("ascii")
    return True
