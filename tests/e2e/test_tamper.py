"""Tampering with an encrypted client's repository: every kind of damage a server (or its disk)
can do to objects and catalog rows is detected by `sonic verify --deep` and by `regenerate`,
named, and never restored as wrong bytes silently (issue 4).

One embedded repository of four sets is built once per module and copied for each tamper:
set 1 holds the tree, set 2 stores an edited big1.bin as a delta, set 3 (--full) replaces
that delta with a full object of the same content, so the delta's files are an "older
version" of an object that still exists; set 4 stores an edited big4.bin as a delta.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.trees import make_tree, snapshot
from tardis_cli import backup, regenerate, sonic

PASSWORD = "tamper-proof passphrase"
CLIENT = "tampered"
MiB = 1 << 20
SUFFIXES = ("", ".meta", ".sig")


@dataclass(frozen=True)
class Base:
    root: Path  # holds repo/CLIENT (the repository) and saved/ (old object files)
    source: Path
    objects: dict[str, str]  # source-relative path -> object id in the newest set


@dataclass
class Tampered:
    repo: Path  # the client's directory: objects and tardis.db
    base: Base
    tmp: Path

    @property
    def url(self) -> str:
        return str(self.repo)

    def object_file(self, rel: str) -> Path:
        address = self.base.objects[rel]
        return self.repo / address[:2] / address[2:4] / address

    def sql(self, statement: str, *params: object) -> int:
        db = sqlite3.connect(self.repo / "tardis.db")
        try:
            with db:
                changed = db.execute(statement, params).rowcount
        finally:
            db.close()
        return changed

    def row_of(self, rel: str) -> bytes:
        return self.base.objects[rel].encode("ascii")


def regen(t: Tampered, out: Path, *args: str) -> int:
    return regenerate.main(["--repository", t.url, "-P", PASSWORD, "-o", str(out), *args])


def tardis(*args: str) -> None:
    assert backup.main(list(args)) == 0


@pytest.fixture(scope="module", autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What the client remembers about repositories stays in this module's temporary space."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TARDIS_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        yield


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, state_dir: None) -> Base:
    root = tmp_path_factory.mktemp("tamper")
    source = make_tree(root / "src", files=40)
    rng = random.Random(4)
    (source / "big1.bin").write_bytes(rng.randbytes(3 * MiB + 11))  # four 1 MiB chunks
    (source / "big2.bin").write_bytes(rng.randbytes(2 * MiB + 5))  # big2 and big3: same size
    (source / "big3.bin").write_bytes(rng.randbytes(2 * MiB + 5))
    (source / "big4.bin").write_bytes(rng.randbytes(2 * MiB + 3))
    (source / "small.txt").write_bytes(b"small, plain and unique\n" * 10)
    url = str(root / "repo" / CLIENT)
    tardis("--repository", url, "--create", "-P", PASSWORD, str(source))
    with open(source / "big1.bin", "r+b") as f:
        f.seek(MiB + 100)
        f.write(b"an edit stored as a delta" * 4)
    tardis("--repository", url, "-P", PASSWORD, str(source))

    # Save the delta's files, then let a --full backup replace the delta with a full object.
    delta_id = _files_json(url, source)["big1.bin"]
    stored = Path(url) / delta_id[:2] / delta_id[2:4] / delta_id
    saved = root / "saved"
    saved.mkdir()
    for suffix in SUFFIXES:
        shutil.copy2(f"{stored}{suffix}", saved / f"big1.bin{suffix}")
    assert json.loads((saved / "big1.bin.meta").read_text())["basis_id"], "set 2 should store big1.bin as a delta"
    tardis("--repository", url, "-P", PASSWORD, "--full", str(source))
    assert not json.loads(Path(f"{stored}.meta").read_text())["basis_id"], "--full should replace the delta"
    assert stored.read_bytes() != (saved / "big1.bin").read_bytes()
    with open(source / "big4.bin", "r+b") as f:
        f.write(b"a change at the start" * 3)
    tardis("--repository", url, "-P", PASSWORD, str(source))
    objects = _files_json(url, source)
    address = objects["big4.bin"]
    meta = Path(url) / address[:2] / address[2:4] / f"{address}.meta"
    assert json.loads(meta.read_text())["basis_id"], "set 4 should store big4.bin as a delta"
    return Base(root, source, objects)


def _files_json(url: str, source: Path) -> dict[str, str]:
    """Source-relative path -> object id of every non-empty file in the newest set."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert sonic.main(["files", "--repository", url, "-P", PASSWORD, "--json"]) == 0
    rows = json.loads(buffer.getvalue())
    prefix = str(source) + "/"
    return {r["path"][len(prefix) :]: r["object_id"] for r in rows if r["path"].startswith(prefix) and r["object_id"]}


# -- the tampers: each damages the copy and returns the source-relative paths it affects ------


def flip_bit(t: Tampered) -> list[str]:
    path = t.object_file("big2.bin")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the second of three chunks
    path.write_bytes(bytes(data))
    return ["big2.bin"]


def flip_bit_in_delta(t: Tampered) -> list[str]:
    path = t.object_file("big4.bin")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return ["big4.bin"]


def swap_objects(t: Tampered) -> list[str]:
    """Two objects of the same stored size trade files: only reading them tells."""
    a, b = t.object_file("big2.bin"), t.object_file("big3.bin")
    assert a.stat().st_size == b.stat().st_size
    parked = a.with_name("parked")
    os.replace(a, parked)
    os.replace(b, a)
    os.replace(parked, b)
    return ["big2.bin", "big3.bin"]


def older_version(t: Tampered) -> list[str]:
    """big1.bin's object, .meta and .sig put back as they were before set 3 rewrote them."""
    path = t.object_file("big1.bin")
    for suffix in SUFFIXES:
        shutil.copy2(t.base.root / "saved" / f"big1.bin{suffix}", f"{path}{suffix}")
    return ["big1.bin"]


def truncate_object(t: Tampered) -> list[str]:
    path = t.object_file("big3.bin")
    os.truncate(path, path.stat().st_size * 2 // 3)
    return ["big3.bin"]


def repoint_row(t: Tampered) -> list[str]:
    """small.txt's catalog row made to name big2.bin's object (a real object of this client)."""
    changed = t.sql(
        "UPDATE entries SET object_id = (SELECT object_id FROM objects WHERE address = ?)"
        " WHERE object_id = (SELECT object_id FROM objects WHERE address = ?)",
        t.row_of("big2.bin"),
        t.row_of("small.txt"),
    )
    assert changed == 1
    return ["small.txt"]


def delete_entry_row(t: Tampered) -> list[str]:
    changed = t.sql(
        "DELETE FROM entries WHERE object_id = (SELECT object_id FROM objects WHERE address = ?)",
        t.row_of("small.txt"),
    )
    assert changed == 1
    return ["small.txt"]


def delete_object_row(t: Tampered) -> list[str]:
    assert t.sql("DELETE FROM objects WHERE address = ?", t.row_of("big2.bin")) == 1
    return ["big2.bin"]


TAMPERS: dict[str, Callable[[Tampered], list[str]]] = {
    "flip-bit": flip_bit,
    "flip-bit-in-delta": flip_bit_in_delta,
    "swap": swap_objects,
    "older-version": older_version,
    "truncate": truncate_object,
    "repoint-row": repoint_row,
    "delete-entry-row": delete_entry_row,
    "delete-object-row": delete_object_row,
}
CATALOG_ONLY = {"repoint-row", "delete-entry-row", "delete-object-row"}
ROW_GONE = {"delete-entry-row"}  # the file is not in the catalog at all: it cannot be restored


def _without(tree: dict[str, tuple], names: set[str]) -> dict[str, tuple]:
    return {k: v for k, v in tree.items() if k not in names and "-CORRUPT-" not in k}


@pytest.mark.parametrize("kind", list(TAMPERS))
def test_tamper_is_detected_named_and_never_restored_silently(
    kind: str, base: Base, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(base.root / "repo", tmp_path / "repo")
    t = Tampered(tmp_path / "repo" / CLIENT, base, tmp_path)
    targets = TAMPERS[kind](t)
    names = [Path(rel).name for rel in targets]
    ids = [base.objects[rel] for rel in targets]

    # (a) sonic verify --deep fails and names the file or its object.
    capsys.readouterr()
    assert sonic.main(["verify", "--repository", t.url, "-P", PASSWORD, "--deep"]) == 1
    out = capsys.readouterr().out
    for name, object_id in zip(names, ids, strict=True):
        assert name in out or object_id in out, out

    # (b) regenerate without --verify-action fails, names the file, and leaves no wrong bytes
    # at its path (damaged content is renamed; from a set that does not match its manifest
    # nothing is restored); (c) with each explicit action every other file is restored exactly.
    want = snapshot(base.source)
    for action in (None, "rename", "delete", "keep"):
        out_dir = tmp_path / f"out-{action or 'default'}"
        extra = ["--verify-action", action] if action else []
        capsys.readouterr()
        code = regen(t, out_dir, *extra)
        err = capsys.readouterr().err
        assert code != 0, f"{kind} ({action}): regenerate succeeded"
        assert "Traceback" not in err
        restored = out_dir / str(base.source).lstrip("/")
        if action is None and kind in CATALOG_ONLY:
            assert "nothing was restored" in err and not restored.exists(), f"{kind}: restored from an altered set"
            assert all(name in err for name in names), err
            continue
        got = snapshot(restored)
        for rel, name in zip(targets, names, strict=True):
            assert name in err, f"{kind} ({action}): {name} not named in {err}"
            at = restored / rel
            corrupt = sorted(p.name for p in at.parent.glob(f"{at.name}-CORRUPT-*"))
            if action in (None, "rename", "delete"):
                assert not at.exists() or at.read_bytes() == (base.source / rel).read_bytes(), (
                    f"{kind} ({action}): wrong bytes left at {rel}"
                )
            if action == "delete" or kind in ROW_GONE:
                assert not at.exists() and not corrupt, f"{kind} ({action}): {rel} restored: {corrupt}"
            elif action in (None, "rename"):
                assert corrupt, f"{kind} ({action}): {rel} not renamed"
            else:  # keep
                assert at.exists() and not corrupt and f"{at}" in err, f"{kind}: {rel} not kept and reported"
        assert _without(got, set(targets)) == _without(want, set(targets)), f"{kind} ({action}): others differ"
        if kind not in CATALOG_ONLY:  # the object itself is bad: regenerate names it too
            assert any(object_id in err for object_id in ids), err


def test_a_set_without_its_manifest_vouches_for_nothing(
    base: Base, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that drops the manifests and then repoints a row: the sets are named, nothing
    is restored by default, and with a verify action every file is treated as unvouched."""
    shutil.copytree(base.root / "repo", tmp_path / "repo")
    t = Tampered(tmp_path / "repo" / CLIENT, base, tmp_path)
    assert t.sql("UPDATE sets SET manifest = NULL") == 4
    repoint_row(t)
    capsys.readouterr()
    assert sonic.main(["verify", "--repository", t.url, "-P", PASSWORD]) == 1
    assert capsys.readouterr().out.count("has no manifest") == 4

    assert regen(t, tmp_path / "default") == 1
    assert "nothing was restored" in capsys.readouterr().err
    assert not (tmp_path / "default").exists()
    deleted = tmp_path / "deleted"
    assert regen(t, deleted, "--verify-action", "delete") == 1
    assert [p for p in deleted.rglob("*") if not p.is_dir()] == []
    kept = tmp_path / "kept"
    assert regen(t, kept, "--verify-action", "keep") == 1
    err = capsys.readouterr().err
    restored = kept / str(base.source).lstrip("/")
    assert f"corrupt: {restored / 'small.txt'}" in err and f"corrupt: {restored / 'big1.bin'}" in err
    assert _without(snapshot(restored), {"small.txt"}) == _without(snapshot(base.source), {"small.txt"})
