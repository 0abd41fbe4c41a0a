"""Installed-model registry: shipped + user bundles, the random-init baseline, the active model."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from musicssl.engine import db as dbmod
from musicssl.engine import models
from musicssl.engine.bundle import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    BundleError,
    build_model,
    default_config,
    load_bundle,
    save_bundle,
)
from musicssl.engine.paths import data_dir


def make(folder: Path, name: str, *, trained: bool, seed: int = 0, tags=("a", "b")) -> Path:
    config = default_config(
        name, "melcnn", {"channels": [4, 8]}, embedding_dim=16, tags=list(tags), trained=trained
    )
    torch.manual_seed(seed)
    save_bundle(build_model(config), config, folder)
    return folder


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A stand-in for the package's resources/models (the real one may gain bundles later)."""
    root = tmp_path / "shipped-models"
    root.mkdir()
    monkeypatch.setattr(models, "shipped_models_dir", lambda: root)
    return root


def test_real_shipped_dir_is_the_package_resources():
    root = models.shipped_models_dir()
    assert root is not None and root.parts[-2:] == ("resources", "models")
    assert models.user_models_dir() == data_dir() / "models"


def test_lists_shipped_and_user_bundles(shipped, tmp_path):
    make(shipped / "house", "house-style", trained=True, seed=1)
    src = make(tmp_path / "src", "my-model", trained=False, seed=2)
    installed = models.install_bundle(src)
    assert installed.source == models.USER
    assert installed.path.parent == models.user_models_dir()
    listing = models.list_bundles()
    assert [(b.name, b.source, b.trained) for b in listing] == [
        ("house-style", "shipped", True),
        ("my-model", "user", False),
    ]
    assert listing[0].n_tags == 2 and listing[0].architecture == "melcnn"
    assert listing[0].embedding_dim == 16
    assert listing[1].model_id == load_bundle(src).model_id
    assert listing[1].load().model_id == listing[1].model_id


def test_install_zip_keeps_bytes_and_is_idempotent(shipped, tmp_path):
    src = make(tmp_path / "src", "zipped", trained=True, seed=3)
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            zf.write(src / name, f"zipped/{name}")
    first = models.install_bundle(archive)
    assert first.model_id == load_bundle(src).model_id
    assert (first.path / WEIGHTS_NAME).read_bytes() == (src / WEIGHTS_NAME).read_bytes()
    assert models.install_bundle(src) == first  # same weights: nothing new
    # Same name, different weights: installed beside it, not over it.
    other = models.install_bundle(make(tmp_path / "src2", "zipped", trained=True, seed=4))
    assert other.path != first.path and other.model_id != first.model_id
    assert len(models.list_bundles()) == 2


def test_install_rejects_broken_bundle(shipped, tmp_path):
    src = make(tmp_path / "src", "broken", trained=True)
    (src / WEIGHTS_NAME).write_bytes(b"not weights")
    with pytest.raises(BundleError, match="model.safetensors"):
        models.install_bundle(src)
    assert models.list_bundles() == []


def test_broken_user_bundle_is_skipped_not_fatal(shipped, tmp_path, caplog):
    models.install_bundle(make(tmp_path / "ok", "fine", trained=True))
    broken = models.user_models_dir() / "broken"
    broken.mkdir()
    (broken / CONFIG_NAME).write_text("{")
    assert [b.name for b in models.list_bundles()] == ["fine"]
    assert "broken" in caplog.text


def test_baseline_created_once_and_deterministic(shipped, db):
    info = models.active_model(db)
    assert info.name == models.BASELINE_NAME
    assert info.trained is False and info.n_tags == 0 and info.architecture == "melcnn"
    assert info.path == models.user_models_dir() / models.BASELINE_NAME
    first_id = info.model_id
    mtime = (info.path / WEIGHTS_NAME).stat().st_mtime_ns
    assert models.active_model(db).model_id == first_id
    assert (info.path / WEIGHTS_NAME).stat().st_mtime_ns == mtime  # not rewritten
    # Created again from scratch (another machine, a wiped data dir): the same model_id.
    torch.manual_seed(12345)  # the caller's RNG state must not matter ...
    shutil.rmtree(info.path)
    again = models.ensure_baseline()
    assert again.model_id == first_id
    state = torch.random.get_rng_state()
    models.ensure_baseline()
    assert torch.equal(state, torch.random.get_rng_state())  # ... nor be disturbed
    row = db.conn.execute("SELECT name, config FROM models WHERE id = ?", (first_id,)).fetchone()
    assert row[0] == models.BASELINE_NAME
    assert json.loads(row[1])["trained"] is False


def test_active_prefers_trained_shipped(shipped, tmp_path, db):
    models.install_bundle(make(tmp_path / "u1", "user-trained", trained=True, seed=1))
    make(shipped / "s-untrained", "shipped-untrained", trained=False, seed=2)
    assert models.active_model(db).name == "user-trained"
    make(shipped / "s-trained", "shipped-trained", trained=True, seed=3)
    assert models.active_model(db).name == "shipped-trained"
    assert not (models.user_models_dir() / models.BASELINE_NAME).exists()


def test_set_active_persists_in_the_db_file(shipped, tmp_path, db):
    make(shipped / "s", "shipped-trained", trained=True, seed=1)
    mine = models.install_bundle(make(tmp_path / "u", "mine", trained=False, seed=2))
    assert models.set_active(db, "mine") == mine
    assert models.active_model(db) == mine
    by_id = models.set_active(db, mine.model_id)
    assert by_id == mine
    path = Path(db.conn.execute("PRAGMA database_list").fetchone()[2])
    reopened = dbmod.connect(path)
    try:
        assert (
            reopened.conn.execute(
                "SELECT value FROM settings WHERE key = 'active_model'"
            ).fetchone()[0]
            == mine.model_id
        )
        assert models.active_model(reopened) == mine
        registered = reopened.conn.execute(
            "SELECT id, name, path FROM models WHERE id = ?", (mine.model_id,)
        ).fetchone()
        assert registered == (mine.model_id, "mine", str(mine.path.resolve()))
    finally:
        reopened.conn.close()


def test_set_active_unknown_and_missing_fallback(shipped, tmp_path, db):
    make(shipped / "s", "shipped-trained", trained=True, seed=1)
    with pytest.raises(models.ModelNotFoundError, match="nope.*shipped-trained"):
        models.set_active(db, "nope")
    mine = models.install_bundle(make(tmp_path / "u", "mine", trained=True, seed=2))
    models.set_active(db, mine.model_id)
    shutil.rmtree(mine.path)  # uninstalled behind the library's back
    assert models.active_model(db).name == "shipped-trained"


def test_register_keeps_first_added_at(shipped, tmp_path, db):
    bundle = load_bundle(make(tmp_path / "b", "b", trained=True))
    models.register(db, bundle)
    first = db.conn.execute("SELECT added_at FROM models").fetchone()[0]
    models.register(db, bundle)
    rows = db.conn.execute("SELECT added_at, name FROM models").fetchall()
    assert rows == [(first, "b")]
