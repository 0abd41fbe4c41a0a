"""Choosing the random-init baseline works on a fresh data folder, before anything created it."""

from __future__ import annotations

import torch
from musicssl.engine import models
from musicssl.engine.bundle import build_model, default_config, save_bundle
from musicssl.engine.library import Library


def _install_trained(tmp_path) -> models.BundleInfo:  # noqa: ANN001
    config = default_config(
        "tagger", "melcnn", {"channels": [4, 8]}, embedding_dim=16, tags=["a"], trained=True
    )
    torch.manual_seed(1)
    save_bundle(build_model(config), config, tmp_path / "src")
    return models.install_bundle(tmp_path / "src")


def test_use_baseline_on_fresh_data_dir(tmp_path):
    baseline_dir = models.user_models_dir() / models.BASELINE_NAME
    with Library(tmp_path / "lib.db") as lib:
        info = lib.use_model(models.BASELINE_NAME)
        assert info.name == models.BASELINE_NAME and not info.trained
        assert info.source == models.SHIPPED  # shipped: listing/choosing it needs no torch
        assert not baseline_dir.exists()
        assert lib.active_model() == info


def test_baseline_listed_and_selectable_beside_a_trained_model(tmp_path):
    trained = _install_trained(tmp_path)
    with Library(tmp_path / "lib.db") as lib:
        best = lib.active_model()  # trained before untrained, shipped before user
        assert best.trained and best.source == models.SHIPPED and best != trained
        names = [b.name for b in lib.models()]
        assert names.count(models.BASELINE_NAME) == 1 and "tagger" in names
        assert [b.name for b in lib.models()] == names  # listing twice creates nothing new
        lib.use_model("tagger")
        assert lib.active_model() == trained
        lib.use_model(models.BASELINE_NAME)
        assert lib.active_model().name == models.BASELINE_NAME


def test_without_package_data_the_baseline_is_made_identically_and_repaired(tmp_path, monkeypatch):
    shipped = models.ensure_baseline()
    # A frozen/zipped install has no plain resources folder: the baseline is made per user.
    monkeypatch.setattr(models, "shipped_models_dir", lambda: None)
    first = models.ensure_baseline()
    assert first.source == models.USER and first.model_id == shipped.model_id  # same weights
    (first.path / "config.json").write_text("{")
    with Library(tmp_path / "lib.db") as lib:
        again = lib.use_model(models.BASELINE_NAME)
    assert again.model_id == first.model_id
