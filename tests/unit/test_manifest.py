"""The set manifest: format round trip, determinism, and every tamper named."""

from __future__ import annotations

import itertools
import os
import struct
from typing import Any

import pytest
from tardis.v1 import common_pb2 as common

from tardis_cli.manifest import (
    ADDED,
    CHANGED,
    MISSING,
    Manifest,
    Problem,
    build_manifest,
    verify_directory,
    verify_tree,
)
from tardis_common.errors import Corrupt

KEY = b"k" * 32
CLIENT = "laptop"
SET = 7

Tree = dict[str, Any]  # name -> nested Tree (a directory) or a dict of Entry fields (anything else)


def _file(size: int = 10, **fields: Any) -> dict[str, Any]:
    return {"type": common.ENTRY_TYPE_FILE, "size": size, "mode": 0o100644, "mtime_ns": 1_000, **fields} | {
        "object_id": fields.get("object_id", f"{size:064x}".encode())
    }


def _is_file(node: Any) -> bool:
    return "type" in node and not isinstance(node["type"], dict)


def stored(tree: Tree, batch: int = 3) -> list[common.StoredEntries]:
    """The ReadTree stream of ``tree`` as the catalog sends it: by dir_id, parents first."""
    ids = itertools.count(1)
    rows: list[common.Entry] = []

    def walk(node: Tree, dir_id: int) -> None:
        children = []
        for name, value in node.items():
            if _is_file(value):
                rows.append(common.Entry(name=name.encode(), dir_id=dir_id, **value))
            else:
                child = next(ids)
                rows.append(
                    common.Entry(
                        name=name.encode(),
                        dir_id=dir_id,
                        type=common.ENTRY_TYPE_DIR,
                        mode=0o40755,
                        child_dir_id=child,
                    )
                )
                children.append((value, child))
        for value, child in children:
            walk(value, child)

    walk(tree, 0)
    rows.sort(key=lambda e: e.dir_id)
    return [common.StoredEntries(entries=rows[i : i + batch]) for i in range(0, len(rows), batch)]


def sample() -> Tree:
    return {
        "etc": {"hosts": _file(20), "passwd": _file(30, uid=0, gid=0)},
        "home": {
            "ann": {
                "notes.txt": _file(5),
                "empty": {},
                "link": {"type": common.ENTRY_TYPE_SYMLINK, "link_target": b"x"},
            },
            "bob": {"a.bin": _file(100)},
        },
        "top.txt": _file(1),
    }


def build(tree: Tree) -> bytes:
    return build_manifest(KEY, CLIENT, SET, stored(tree))


def check(tree: Tree, sealed_from: Tree | None = None) -> list[Problem]:
    manifest = Manifest.parse(build(sealed_from or sample()), CLIENT, SET)
    return verify_tree(KEY, manifest, stored(tree))


def test_round_trip_and_clean_verify() -> None:
    data = build(sample())
    manifest = Manifest.parse(data, CLIENT, SET)
    assert data[:4] == b"TDMF"
    assert set(manifest.dirs) == {
        (),
        (b"etc",),
        (b"home",),
        (b"home", b"ann"),
        (b"home", b"ann", b"empty"),
        (b"home", b"bob"),
    }
    assert set(manifest.entries((b"home", b"ann")) or {}) == {b"notes.txt", b"empty", b"link"}
    assert manifest.root_mac == manifest.dirs[()].mac
    assert check(sample()) == []


def test_deterministic_whatever_the_catalog_order_and_batching() -> None:
    first = build(sample())
    assert build(sample()) == first
    reordered = dict(reversed(list(sample().items())))
    assert build_manifest(KEY, CLIENT, SET, stored(reordered, batch=1)) == first
    assert build_manifest(b"o" * 32, CLIENT, SET, stored(sample())) != first


def test_catalog_ids_do_not_matter() -> None:
    """The same tree under other directory ids (the server's to choose) verifies."""
    batches = stored(sample())
    shifted = []
    for batch in batches:
        out = common.StoredEntries()
        for entry in batch.entries:
            moved = out.entries.add()
            moved.CopyFrom(entry)
            moved.dir_id = entry.dir_id + 100 if entry.dir_id else 0
            moved.child_dir_id = entry.child_dir_id + 100 if entry.child_dir_id else 0
        shifted.append(out)
    manifest = Manifest.parse(build(sample()), CLIENT, SET)
    assert verify_tree(KEY, manifest, shifted) == []
    assert verify_tree(KEY, manifest, list(reversed(shifted))) == []  # children before parents too


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("object_id", b"f" * 64),
        ("size", 21),
        ("mode", 0o100777),
        ("mtime_ns", 5),
        ("uid", 9),
        ("xattrs", b"a=b"),
    ],
)
def test_a_changed_file_is_named(field: str, value: Any) -> None:
    tree = sample()
    tree["etc"]["hosts"][field] = value
    assert check(tree) == [Problem((b"etc", b"hosts"), CHANGED)]


def test_a_changed_link_target_is_named() -> None:
    tree = sample()
    tree["home"]["ann"]["link"]["link_target"] = b"/etc/shadow"
    assert check(tree) == [Problem((b"home", b"ann", b"link"), CHANGED)]


def test_a_deleted_entry_is_named() -> None:
    tree = sample()
    del tree["home"]["bob"]["a.bin"]
    assert check(tree) == [Problem((b"home", b"bob", b"a.bin"), MISSING)]


def test_an_added_entry_is_named() -> None:
    tree = sample()
    tree["home"]["ann"]["empty"]["planted"] = _file(3)
    assert check(tree) == [Problem((b"home", b"ann", b"empty", b"planted"), ADDED)]


def test_a_renamed_directory_is_named_once() -> None:
    tree = sample()
    tree["home"]["robert"] = tree["home"].pop("bob")
    assert check(tree) == [Problem((b"home", b"bob"), MISSING), Problem((b"home", b"robert"), ADDED)]


def test_a_directory_deleted_with_its_contents() -> None:
    tree = sample()
    del tree["home"]["ann"]
    assert check(tree) == [Problem((b"home", b"ann"), MISSING)]


def test_a_changed_directory_mode_is_named_but_not_its_parents() -> None:
    batches = stored(sample())
    for batch in batches:
        for entry in batch.entries:
            if entry.name == b"bob":
                entry.mode = 0o40777
    manifest = Manifest.parse(build(sample()), CLIENT, SET)
    assert verify_tree(KEY, manifest, batches) == [Problem((b"home", b"bob"), CHANGED)]


def test_a_directory_pointed_at_another_listing_is_caught() -> None:
    batches = stored(sample())
    ids = {e.name: e.child_dir_id for b in batches for e in b.entries if e.child_dir_id}
    for batch in batches:
        for entry in batch.entries:
            if entry.name == b"bob":
                entry.child_dir_id = ids[b"etc"]
    manifest = Manifest.parse(build(sample()), CLIENT, SET)
    with pytest.raises(Corrupt, match="twice or in a loop"):
        verify_tree(KEY, manifest, batches)


def test_verify_directory_checks_one_listing() -> None:
    manifest = Manifest.parse(build(sample()), CLIENT, SET)
    listing = [e for b in stored(sample()) for e in b.entries if e.dir_id == 0]
    assert verify_directory(KEY, manifest, (), listing) == []
    listing[0].size += 1
    assert verify_directory(KEY, manifest, (), listing) == [Problem((listing[0].name,), CHANGED)]
    assert verify_directory(KEY, manifest, (b"nowhere",), []) == [Problem((b"nowhere",), ADDED)]


def test_a_manifest_of_another_set_or_client_is_refused() -> None:
    data = build(sample())
    with pytest.raises(Corrupt, match="swapped manifest"):
        Manifest.parse(data, CLIENT, SET + 1)
    with pytest.raises(Corrupt, match="swapped manifest"):
        Manifest.parse(data, "desktop", SET)


@pytest.mark.parametrize("cut", [1, 32, 33, 60, 200])
def test_a_truncated_manifest_is_refused(cut: int) -> None:
    data = build(sample())
    with pytest.raises(Corrupt, match=r"^the manifest of set 7 ") as caught:
        Manifest.parse(data[:-cut], CLIENT, SET)
    assert "\n" not in str(caught.value)


def test_a_forged_manifest_fails_authentication() -> None:
    data = bytearray(build(sample()))
    data[-40] ^= 1  # inside the last directory record
    manifest = Manifest.parse(bytes(data), CLIENT, SET)
    with pytest.raises(Corrupt, match="does not authenticate"):
        verify_tree(KEY, manifest, stored(sample()))
    with pytest.raises(Corrupt, match="does not authenticate"):
        verify_tree(b"x" * 32, Manifest.parse(build(sample()), CLIENT, SET), stored(sample()))


def test_bad_magic_and_version() -> None:
    data = build(sample())
    with pytest.raises(Corrupt, match="bad magic"):
        Manifest.parse(b"XXXX" + data[4:], CLIENT, SET)
    with pytest.raises(Corrupt, match="version 9"):
        Manifest.parse(data[:4] + struct.pack(">B", 9) + data[5:], CLIENT, SET)


def test_an_empty_set() -> None:
    manifest = Manifest.parse(build_manifest(KEY, CLIENT, SET, []), CLIENT, SET)
    assert list(manifest.dirs) == [()]
    assert verify_tree(KEY, manifest, []) == []
    assert verify_tree(KEY, manifest, stored({"new": _file()})) == [Problem((b"new",), ADDED)]


def test_encrypted_style_names() -> None:
    """Names are opaque bytes: random binary components work the same."""
    names = [os.urandom(24) for _ in range(4)]
    tree: Tree = {n.hex(): {} for n in names}
    batches = stored(tree)
    for batch in batches:
        for entry in batch.entries:
            entry.name = bytes.fromhex(entry.name.decode())
    data = build_manifest(KEY, CLIENT, SET, batches)
    manifest = Manifest.parse(data, CLIENT, SET)
    assert set(manifest.dirs) == {()} | {(n,) for n in names}
    assert verify_tree(KEY, manifest, batches) == []


def test_build_takes_listings_in_any_order_but_refuses_loops() -> None:
    batches = stored(sample(), batch=1)
    assert build_manifest(KEY, CLIENT, SET, list(reversed(batches))) == build(sample())
    unlisted = stored({"x": {}})
    unlisted[0].entries[0].child_dir_id = 0  # a directory entry with no listing: an empty directory
    manifest = Manifest.parse(build_manifest(KEY, CLIENT, SET, unlisted), CLIENT, SET)
    assert manifest.entries((b"x",)) == {}
    assert verify_tree(KEY, manifest, unlisted) == []
    cycle = common.StoredEntries(
        entries=[
            common.Entry(name=b"a", dir_id=0, type=common.ENTRY_TYPE_DIR, child_dir_id=1),
            common.Entry(name=b"b", dir_id=1, type=common.ENTRY_TYPE_DIR, child_dir_id=1),
        ]
    )
    with pytest.raises(Corrupt, match="twice or in a loop"):
        build_manifest(KEY, CLIENT, SET, [cycle])
