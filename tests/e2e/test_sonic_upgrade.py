"""sonic upgrade: an old local catalog brought to the current schema, data intact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from helpers.trees import assert_same_tree, make_tree
from tardis_catalog import schema
from tardis_cli import backup, regenerate, sonic


def test_upgrade_of_a_version_2_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository = tmp_path / "repo" / "old"
    source = make_tree(tmp_path / "src", files=20)
    assert backup.main(["--repository", str(repository), "--create", str(source)]) == 0
    db = repository / "tardis.db"
    with sqlite3.connect(db) as conn:  # undo the version 3 migration: a catalog of the previous release
        for trigger in ("objects_revive_doomed", "objects_readdress_doomed"):  # and version 5's
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("DROP TABLE doomed")
        for table in ("convert_names", "convert_entries", "convert_sets", "convert_trash"):  # and version 4's
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP TABLE credentials")
        conn.execute("ALTER TABLE sets DROP COLUMN manifest")
        conn.execute("ALTER TABLE sets DROP COLUMN command_line")
        conn.execute("PRAGMA user_version = 2")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    capsys.readouterr()
    assert sonic.main(["upgrade", "--repository", str(repository)]) == 0
    out = capsys.readouterr().out
    assert f"from schema version 2 to {schema.SCHEMA_VERSION}" in out
    assert (repository / "tardis.db.schema-v2.bak").is_file()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert sonic.main(["upgrade", "--repository", str(repository)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    restored = tmp_path / "out"
    assert regenerate.main(["--repository", str(repository), "-o", str(restored)]) == 0
    assert_same_tree(source, restored / str(source).lstrip("/"))


def test_upgrade_refuses_what_it_cannot_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sonic.main(["upgrade", "--repository", str(tmp_path / "repo" / "absent")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    assert sonic.main(["upgrade", "--repository", "tardis://127.0.0.1:1/c"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "AllowSchemaUpgrades" in err
