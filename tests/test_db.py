"""The DB opens with the settings the engine relies on, and migrates old files forward."""

from __future__ import annotations

import sqlite3

import pytest
from musicssl.engine import db as dbmod


def test_new_db_has_wal_foreign_keys_and_large_pages(db):
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA page_size").fetchone()[0] == dbmod.PAGE_SIZE
    assert db.execute("PRAGMA user_version").fetchone()[0] == dbmod.SCHEMA_VERSION
    assert {"tracks", "tags", "playlists", "playlist_items", "embeddings", "index_chunks"} <= set(
        db.table_names()
    )


def test_v1_file_migrates_forward_keeping_data_and_a_backup(tmp_path):
    path = tmp_path / "old.db"
    old = dbmod.connect(path, migrate_to=1)
    old.execute(
        "INSERT INTO tracks (path, status, added_at, updated_at) VALUES ('/m/a.mp3', 'new', 0, 0)"
    )
    old.execute("INSERT INTO tags (track_id, tag, source) VALUES (1, 'rock', 'user')")
    assert "embeddings" not in old.table_names()
    old.conn.close()

    new = dbmod.connect(path)
    assert new.execute("PRAGMA user_version").fetchone()[0] == dbmod.SCHEMA_VERSION
    assert "embeddings" in new.table_names()
    assert new.execute("SELECT tag FROM tags WHERE track_id = 1").fetchone()[0] == "rock"
    backups = list(tmp_path.glob("old.db.v1-*.bak"))
    assert len(backups) == 1
    with sqlite3.connect(backups[0]) as bak:
        assert bak.execute("PRAGMA user_version").fetchone()[0] == 1


def test_newer_schema_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {dbmod.SCHEMA_VERSION + 5}")
    with pytest.raises(dbmod.DatabaseError, match="newer than this MusicSSL"):
        dbmod.connect(path)


def test_not_a_database_is_refused_with_the_path(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(dbmod.DatabaseError, match="garbage.db"):
        dbmod.connect(path)


def test_transaction_rolls_back_on_error(db):
    with pytest.raises(RuntimeError), dbmod.transaction(db) as conn:
        conn.execute(
            "INSERT INTO tracks (path, status, added_at, updated_at) VALUES ('/x', 'new', 0, 0)"
        )
        raise RuntimeError("boom")
    assert db.execute("SELECT count(*) FROM tracks").fetchone()[0] == 0


def test_deleting_a_track_cascades_to_its_tags(db):
    with dbmod.transaction(db) as conn:
        conn.execute(
            "INSERT INTO tracks (path, status, added_at, updated_at) VALUES ('/x', 'new', 0, 0)"
        )
        conn.execute("INSERT INTO tags (track_id, tag, source) VALUES (1, 'jazz', 'file')")
        conn.execute("DELETE FROM tracks WHERE id = 1")
    assert db.execute("SELECT count(*) FROM tags").fetchone()[0] == 0
