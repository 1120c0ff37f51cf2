"""rdiff through a ctypes binding to the system's librsync (Debian's ``librsync2``).

The fallback of tardis_common.rdiff where the python-rsync wheel does not exist (armv7).
It uses librsync's whole-file API (``rs_sig_file``, ``rs_loadsig_file`` +
``rs_build_hash_table``, ``rs_delta_file``, ``rs_patch_file``) on stdio ``FILE*`` made with
libc's ``fdopen``. Python file objects reach those through pipes, pumped by one thread per
stream while librsync runs without the GIL; a patch basis that is not a regular file is
spooled to a temporary file first (librsync seeks in it). Signature arguments come from
``rs_sig_args``, the call python-rsync's ``get_signature_args`` makes, so signatures,
deltas and patches are byte-identical between the two backends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import functools
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import IO, Any, BinaryIO

from .errors import ConfigError, Corrupt, TardisError

RS_DONE = 0
RS_IO_ERROR = 100
RS_MEM_ERROR = 102
RS_BLAKE2_SIG_MAGIC = 0x72730137
# librsync result codes that mean "the signature or delta is not what it should be".
_DATA_ERRORS = {101, 103, 104, 105, 106}
_CHUNK = 1024 * 1024
_LIBRARY_NAMES = ("librsync.so.2", "librsync.so")


class _Lib:
    """The librsync and libc functions this module calls, with their C signatures."""

    def __init__(self, rsync: ctypes.CDLL, libc: ctypes.CDLL) -> None:
        p, size_t, file_p = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p
        self.fdopen = _fn(libc.fdopen, file_p, ctypes.c_int, ctypes.c_char_p)
        self.fclose = _fn(libc.fclose, ctypes.c_int, file_p)
        self.sig_args = _fn(
            rsync.rs_sig_args,
            ctypes.c_int,
            ctypes.c_longlong,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.POINTER(size_t),
            ctypes.POINTER(size_t),
        )
        self.sig_file = _fn(rsync.rs_sig_file, ctypes.c_int, file_p, file_p, size_t, size_t, ctypes.c_uint, p)
        self.loadsig_file = _fn(rsync.rs_loadsig_file, ctypes.c_int, file_p, ctypes.POINTER(p), p)
        self.build_hash_table = _fn(rsync.rs_build_hash_table, ctypes.c_int, p)
        self.free_sumset = _fn(rsync.rs_free_sumset, None, p)
        self.delta_file = _fn(rsync.rs_delta_file, ctypes.c_int, p, file_p, file_p, p)
        self.patch_file = _fn(rsync.rs_patch_file, ctypes.c_int, file_p, file_p, file_p, p)
        self.strerror = _fn(rsync.rs_strerror, ctypes.c_char_p, ctypes.c_int)


def _fn(func: Any, restype: Any, *argtypes: Any) -> Any:
    func.restype = restype
    func.argtypes = list(argtypes)
    return func


@functools.cache
def _library() -> _Lib:
    names = list(_LIBRARY_NAMES)
    found = ctypes.util.find_library("rsync")
    if found and found not in names:
        names.append(found)
    for name in names:
        try:
            rsync = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        raise ConfigError("librsync is not installed: install python-rsync, or the system's librsync2")
    try:
        return _Lib(rsync, ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"))
    except AttributeError as exc:
        raise ConfigError(f"the system's librsync is too old (need 2.2 or later): {exc}") from exc


def unavailable_reason() -> str | None:
    """Why the binding cannot be used here (None when it can)."""
    try:
        _library()
    except ConfigError as exc:
        return str(exc)
    return None


def _check(result: int, what: str) -> None:
    if result == RS_DONE:
        return
    message = f"librsync {what}: {_library().strerror(result).decode('utf-8', 'replace')}"
    if result in _DATA_ERRORS:
        raise Corrupt(message)
    if result == RS_MEM_ERROR:
        raise MemoryError(message)
    raise TardisError(message)


def signature_args(size: int, magic: int = RS_BLAKE2_SIG_MAGIC) -> tuple[int, int, int]:
    """(magic, block length, strong-sum length) librsync recommends for a ``size``-byte file."""
    c_magic, block_len, strong_len = ctypes.c_uint(magic), ctypes.c_size_t(0), ctypes.c_size_t(0)
    _check(
        _library().sig_args(size, ctypes.byref(c_magic), ctypes.byref(block_len), ctypes.byref(strong_len)),
        "signature arguments",
    )
    return c_magic.value, block_len.value, strong_len.value


def signature(source: IO[bytes], out: IO[bytes], strong_len: int, magic: int, block_len: int) -> None:
    """Write the signature of ``source`` (read to its end) to ``out``."""
    lib = _library()
    with _Streams() as streams:
        old = streams.reader(source)
        sig = streams.writer(out)
        streams.result = lib.sig_file(old, sig, block_len, strong_len, magic, None)
    _check(streams.result, "signature")


def delta(source: IO[bytes], sig: IO[bytes], out: IO[bytes]) -> None:
    """Write the delta turning the basis that ``sig`` describes into ``source`` to ``out``."""
    lib = _library()
    with _loaded_signature(sig) as sumset, _Streams() as streams:
        new = streams.reader(source)
        delta_out = streams.writer(out)
        streams.result = lib.delta_file(sumset, new, delta_out, None)
    _check(streams.result, "delta")


def patch(basis: IO[bytes], delta_stream: IO[bytes], out: IO[bytes]) -> None:
    """Apply ``delta_stream`` to ``basis`` (read from its start, as python-rsync does), writing ``out``."""
    lib = _library()
    with ExitStack() as stack:
        basis_file = stack.enter_context(_seekable_file(basis))
        streams = stack.enter_context(_Streams())
        delta_in = streams.reader(delta_stream)
        new = streams.writer(out)
        streams.result = lib.patch_file(basis_file, delta_in, new, None)
    _check(streams.result, "patch")


@contextmanager
def _loaded_signature(sig: IO[bytes]) -> Iterator[int]:
    """The signature in ``sig`` loaded into librsync, its hash table built."""
    lib = _library()
    sumset = ctypes.c_void_p()
    with _Streams() as streams:
        streams.result = lib.loadsig_file(streams.reader(sig), ctypes.byref(sumset), None)
    try:
        _check(streams.result, "signature load")
        _check(lib.build_hash_table(sumset), "signature hash table")
        yield sumset.value or 0
    finally:
        if sumset.value:
            lib.free_sumset(sumset)


def _fdopen(fd: int, mode: bytes) -> int:
    handle = _library().fdopen(fd, mode)
    if not handle:
        os.close(fd)
        raise OSError(f"fdopen of descriptor {fd} failed")
    return int(handle)


@contextmanager
def _seekable_file(basis: IO[bytes]) -> Iterator[int]:
    """A readable ``FILE*`` on all of ``basis``: its own descriptor when it is a regular file."""
    lib = _library()
    fd = _regular_fileno(basis)
    if fd is not None:
        basis.flush()
        handle = _fdopen(os.dup(fd), b"rb")
        try:
            yield handle
        finally:
            lib.fclose(handle)
        return
    with tempfile.TemporaryFile() as spool:
        basis.seek(0)
        shutil.copyfileobj(basis, spool, _CHUNK)
        spool.flush()
        handle = _fdopen(os.dup(spool.fileno()), b"rb")
        try:
            yield handle
        finally:
            lib.fclose(handle)


def _regular_fileno(stream: IO[bytes]) -> int | None:
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
        access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except (AttributeError, OSError, ValueError):
        return None
    return fd if stat.S_ISREG(mode) and access != os.O_WRONLY else None


class _Streams:
    """Pipes between Python file objects and ``FILE*`` handles, each pumped by a thread.

    On exit every ``FILE*`` is closed (readers first, so a pump still writing sees a broken
    pipe; then writers, which flushes them and ends their pumps) and the pumps joined; a
    failure of a pump (reading the source or writing the output) is raised before
    librsync's result is looked at, since librsync then saw a short stream.
    """

    def __init__(self) -> None:
        self.result = RS_IO_ERROR
        self._readers: list[int] = []
        self._writers: list[int] = []
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def __enter__(self) -> _Streams:
        return self

    def reader(self, source: IO[bytes] | BinaryIO) -> int:
        """A ``FILE*`` librsync reads ``source``'s bytes from (from its current position)."""
        read_fd, write_fd = _pipe()
        self._start(self._feed, source, write_fd)
        handle = _fdopen(read_fd, b"rb")
        self._readers.append(handle)
        return handle

    def writer(self, out: IO[bytes] | BinaryIO) -> int:
        """A ``FILE*`` whose bytes end up written to ``out``."""
        read_fd, write_fd = _pipe()
        self._start(self._drain, read_fd, out)
        handle = _fdopen(write_fd, b"wb")
        self._writers.append(handle)
        return handle

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name="rsync-pump", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _feed(self, source: IO[bytes], write_fd: int) -> None:
        try:
            while data := source.read(_CHUNK):
                view = memoryview(data)
                while view:
                    view = view[os.write(write_fd, view) :]
        except BrokenPipeError:
            pass  # librsync stopped reading: an error (its result says which) or a delta's end
        except BaseException as exc:
            self._errors.append(exc)
        finally:
            os.close(write_fd)

    def _drain(self, read_fd: int, out: IO[bytes]) -> None:
        failed = False
        try:
            while data := os.read(read_fd, _CHUNK):
                if failed:
                    continue  # keep reading so librsync never blocks on a full pipe
                try:
                    out.write(data)
                except BaseException as exc:
                    self._errors.append(exc)
                    failed = True
        finally:
            os.close(read_fd)

    def __exit__(self, *exc_info: object) -> None:
        lib = _library()
        for handle in self._readers + self._writers:
            lib.fclose(handle)
        for thread in self._threads:
            thread.join()
        if self._errors and exc_info[0] is None:
            raise self._errors[0]


def _pipe() -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    try:
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, _CHUNK)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size for this user: the default size works, slower
    return read_fd, write_fd
