"""The two librsync backends (python-rsync, ctypes on librsync2) are interchangeable.

A repository written with one must be readable with the other, so: identical signature
arguments and signatures, and a delta made by either patches to the same bytes with either.
"""

from __future__ import annotations

import io
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator

import pyrsync
import pytest

from tardis_common import rdiff, rsync_ctypes
from tardis_common.errors import ConfigError, Corrupt

_MISSING = rsync_ctypes.unavailable_reason()
if _MISSING is not None:
    print(f"test_rsync_backends: skipped, {_MISSING}", file=sys.stderr)
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=f"librsync2 missing: {_MISSING}")

MAGIC = rdiff.BLAKE2_SIG_MAGIC


def _edit(rng: random.Random, data: bytes, kind: str) -> bytes:
    at = rng.randrange(len(data) + 1)
    if kind == "insert":
        return data[:at] + rng.randbytes(rng.randrange(1, 5000)) + data[at:]
    if kind == "delete":
        return data[:at] + data[at + rng.randrange(1, 70000) :]
    if kind == "overwrite":
        patch = rng.randbytes(rng.randrange(1, 3000))
        return data[:at] + patch + data[at + len(patch) :]
    if kind == "append":
        return data + rng.randbytes(rng.randrange(1, 100000))
    if kind == "truncate":
        return data[:at]
    if kind == "scattered":
        out = bytearray(data)
        for _ in range(20):
            if out:
                out[rng.randrange(len(out))] ^= 0xFF
        return bytes(out)
    assert kind == "unrelated"
    return rng.randbytes(len(data))


class Backend:
    def __init__(
        self, name: str, args: Callable[[int], tuple[int, int, int]], sig: Callable, delta: Callable, patch: Callable
    ) -> None:
        self.name, self.args, self._sig, self._delta, self._patch = name, args, sig, delta, patch

    def signature(self, data: bytes) -> bytes:
        magic, block_len, strong_len = self.args(len(data))
        out = io.BytesIO()
        self._sig(io.BytesIO(data), out, strong_len, magic, block_len)
        return out.getvalue()

    def delta(self, new: bytes, sig: bytes) -> bytes:
        out = io.BytesIO()
        self._delta(io.BytesIO(new), io.BytesIO(sig), out)
        return out.getvalue()

    def patch(self, basis: bytes, delta: bytes) -> bytes:
        # A real file as basis, as the CLI's chain code passes (tempfile.TemporaryFile).
        with tempfile.TemporaryFile() as basis_file:
            basis_file.write(basis)
            basis_file.seek(0)
            out = io.BytesIO()
            self._patch(basis_file, io.BytesIO(delta), out)
            return out.getvalue()


PYRSYNC = Backend(
    "pyrsync",
    lambda size: tuple(int(v) for v in pyrsync.get_signature_args(size, MAGIC)),  # type: ignore[misc]
    pyrsync.signature,
    pyrsync.delta,
    pyrsync.patch,
)
CTYPES = Backend(
    "ctypes",
    lambda size: rsync_ctypes.signature_args(size, MAGIC),
    rsync_ctypes.signature,
    rsync_ctypes.delta,
    rsync_ctypes.patch,
)


def test_signature_arguments_are_the_same_for_any_size() -> None:
    rng = random.Random(7)
    sizes = [0, 1, 4095, 65536, 1 << 20, (1 << 30) + 7, 1 << 40]
    sizes += [rng.randrange(1 << 24) for _ in range(300)] + [rng.randrange(1 << 44) for _ in range(300)]
    for size in sizes:
        assert CTYPES.args(size) == PYRSYNC.args(size), size
    magic, block_len, strong_len = CTYPES.args(10 << 20)
    assert magic == MAGIC and block_len > 0 and strong_len == 32


@pytest.mark.parametrize("kind", ["insert", "delete", "overwrite", "append", "truncate", "scattered", "unrelated"])
@pytest.mark.parametrize("size", [0, 1, 2049, 300_000, 2_500_000])
def test_signatures_and_deltas_cross_apply(kind: str, size: int) -> None:
    rng = random.Random(f"{kind}-{size}")
    old = rng.randbytes(size)
    new = _edit(rng, old, kind)
    signatures = {b.name: b.signature(old) for b in (PYRSYNC, CTYPES)}
    assert signatures["pyrsync"] == signatures["ctypes"]
    for maker in (PYRSYNC, CTYPES):
        delta = maker.delta(new, signatures["ctypes"])
        for applier in (PYRSYNC, CTYPES):
            assert applier.patch(old, delta) == new, f"delta by {maker.name}, patched by {applier.name}"
    if kind in ("insert", "overwrite", "scattered") and size >= 300_000:
        assert len(CTYPES.delta(new, signatures["ctypes"])) < len(new) // 2  # it really is a delta


@pytest.fixture
def ctypes_wrapper(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """tardis_common.rdiff with its backend forced to ctypes, as TARDIS_RSYNC_BACKEND does."""
    monkeypatch.setenv("TARDIS_RSYNC_BACKEND", "ctypes")
    rdiff._backend.cache_clear()
    yield
    monkeypatch.delenv("TARDIS_RSYNC_BACKEND")
    rdiff._backend.cache_clear()


def test_wrapper_on_ctypes_with_the_clients_stream_types(ctypes_wrapper: None) -> None:
    assert rdiff.backend_name() == "ctypes"
    rng = random.Random(3)
    old = rng.randbytes(400_000)
    new = _edit(rng, old, "insert")
    # The upload path: a signature computed through SignatureTee while TeeReader reads.
    tee = rdiff.SignatureTee(len(old))
    reader = rdiff.TeeReader(io.BytesIO(old), tee)
    while reader.read(65536):
        pass
    sig = tee.finish()
    assert sig == PYRSYNC.signature(old)
    with tempfile.SpooledTemporaryFile(max_size=1 << 20) as spool:
        rdiff.delta(rdiff.TeeReader(io.BytesIO(new), None), io.BytesIO(sig), spool)
        spool.seek(0)
        delta = spool.read()
    assert PYRSYNC.patch(old, delta) == new
    # The restore path: a basis that is not a regular file is spooled first.
    out = io.BytesIO()
    rdiff.patch(io.BytesIO(old), io.BytesIO(delta), out)
    assert out.getvalue() == new


def test_ctypes_reports_damage_and_source_errors(ctypes_wrapper: None) -> None:
    old = random.Random(5).randbytes(100_000)
    with pytest.raises(Corrupt, match="librsync"):
        rdiff.patch(io.BytesIO(old), io.BytesIO(b"not a delta at all"), io.BytesIO())
    with pytest.raises(Corrupt, match="librsync"):
        rdiff.delta(io.BytesIO(old), io.BytesIO(b"\x72\x73\x01"), io.BytesIO())  # type: ignore[arg-type]

    class Failing(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        rdiff.signature(Failing(), 10_000_000, io.BytesIO())  # type: ignore[arg-type]


def test_backend_choice_from_the_environment() -> None:
    code = "from tardis_common import rdiff; print(rdiff.backend_name())"
    for wanted, expected in (("ctypes", "ctypes"), ("pyrsync", "pyrsync"), ("", "pyrsync")):
        env = {"TARDIS_RSYNC_BACKEND": wanted, "PATH": "/usr/bin:/bin"}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert done.stdout.strip() == expected
    rdiff._backend.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TARDIS_RSYNC_BACKEND", "rdiff-cli")
        with pytest.raises(ConfigError, match="TARDIS_RSYNC_BACKEND"):
            rdiff.backend_name()
    rdiff._backend.cache_clear()
