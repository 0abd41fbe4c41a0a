"""Bundle format: round trips, zips, and every kind of broken bundle failing with a named file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch
from musicssl.engine.bundle import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    BundleConfig,
    BundleError,
    build_model,
    default_config,
    inspect_bundle,
    load_bundle,
    save_bundle,
)

TAGS = ["rock", "jazz", "ambient"]


def make(tmp_path: Path, name: str = "tiny", tags=TAGS, seed: int = 0, **params) -> Path:
    params = params or {"channels": [4, 8]}
    config = default_config(
        name,
        "melcnn",
        params,
        tags=list(tags),
        thresholds=[0.25] * len(tags),
        trained=True,
        provenance={"objective": "test", "steps": 3},
    )
    torch.manual_seed(seed)
    model = build_model(config)
    # Non-trivial BN statistics, so a load that skipped buffers would be caught.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    folder = tmp_path / name
    save_bundle(model, config, folder)
    return folder


def outputs(model, seed: int = 1):
    torch.manual_seed(seed)
    x = torch.randn(3, 8000) * 0.1
    with torch.inference_mode():
        return model(x)


def edit_config(folder: Path, **changes) -> None:
    path = folder / CONFIG_NAME
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def edit_tensors(folder: Path, fn) -> None:
    path = folder / WEIGHTS_NAME
    with safetensors.safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    fn(tensors)
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)


def test_round_trip_identical_outputs_and_model_id(tmp_path):
    folder = make(tmp_path)
    config = BundleConfig.from_dict(json.loads((folder / CONFIG_NAME).read_text()))
    torch.manual_seed(0)
    original = load_bundle(folder)
    again = load_bundle(folder)
    weights = (folder / WEIGHTS_NAME).read_bytes()
    assert original.model_id == hashlib.sha256(weights).hexdigest()[:16]
    assert again.model_id == original.model_id
    assert original.config == config
    assert original.config.tags == TAGS and original.config.thresholds == [0.25] * 3
    assert original.config.trained is True
    assert not original.model.training
    h1, p1 = outputs(original.model)
    h2, p2 = outputs(again.model)
    assert torch.equal(h1, h2) and torch.equal(p1, p2)
    assert inspect_bundle(folder) == (config, original.model_id)


def test_saving_a_loaded_bundle_keeps_outputs_and_id(tmp_path):
    folder = make(tmp_path)
    bundle = load_bundle(folder)
    model_id = save_bundle(bundle.model, bundle.config, tmp_path / "copy")
    copy = load_bundle(tmp_path / "copy")
    assert model_id == copy.model_id == bundle.model_id
    for a, b in zip(outputs(bundle.model), outputs(copy.model), strict=True):
        assert torch.equal(a, b)


def test_saving_is_byte_reproducible(tmp_path):
    bundle = load_bundle(make(tmp_path))
    ids = {save_bundle(bundle.model, bundle.config, tmp_path / f"copy{i}") for i in range(8)}
    assert ids == {bundle.model_id}


def test_different_weights_different_id(tmp_path):
    a = load_bundle(make(tmp_path, "a", seed=0))
    b = load_bundle(make(tmp_path, "b", seed=1))
    assert a.model_id != b.model_id


def test_zip_bundles_at_root_and_in_a_folder(tmp_path):
    folder = make(tmp_path)
    reference = load_bundle(folder)
    saved_zip = tmp_path / "saved.zip"
    assert save_bundle(reference.model, reference.config, saved_zip) == reference.model_id
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(nested, "w") as archive:
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            archive.write(folder / name, f"tiny-model/{name}")
    for path in (saved_zip, nested):
        bundle = load_bundle(path)
        assert bundle.model_id == reference.model_id
        assert bundle.path == path
        assert torch.equal(outputs(bundle.model)[0], outputs(reference.model)[0])


def test_zip_without_weights_names_the_zip(tmp_path):
    folder = make(tmp_path)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.write(folder / CONFIG_NAME, CONFIG_NAME)
    with pytest.raises(BundleError, match=r"bad\.zip.*model\.safetensors"):
        load_bundle(bad)


def test_zip_with_garbage_config_names_the_member(tmp_path):
    folder = make(tmp_path)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr(CONFIG_NAME, "{not json")
        archive.write(folder / WEIGHTS_NAME, WEIGHTS_NAME)
    with pytest.raises(BundleError, match=r"bad\.zip!config\.json: not valid JSON"):
        load_bundle(bad)


def expect_error(folder: Path, file_name: str, pattern: str) -> None:
    with pytest.raises(BundleError) as info:
        load_bundle(folder)
    message = str(info.value)
    assert str(folder / file_name) in message, message
    assert pytest.importorskip("re").search(pattern, message), message


def test_unknown_architecture(tmp_path):
    folder = make(tmp_path)
    edit_config(folder, architecture="transformer9000")
    expect_error(folder, CONFIG_NAME, r"unknown encoder architecture 'transformer9000'")
    with pytest.raises(BundleError, match="transformer9000"):
        inspect_bundle(folder)


def test_arch_params_that_do_not_fit(tmp_path):
    folder = make(tmp_path)
    edit_config(folder, arch_params={"channels": [4, 8], "wings": 2})
    expect_error(folder, CONFIG_NAME, r"arch_params do not fit.*wings")


def test_missing_tensor(tmp_path):
    folder = make(tmp_path)
    edit_tensors(folder, lambda t: t.pop("tag_head.weight"))
    expect_error(folder, WEIGHTS_NAME, r"missing tensor\(s\) tag_head\.weight")


def test_extra_tensor(tmp_path):
    folder = make(tmp_path)
    edit_tensors(folder, lambda t: t.update({"encoder.spare": torch.zeros(3)}))
    expect_error(folder, WEIGHTS_NAME, r"unexpected tensor\(s\) encoder\.spare")


def test_wrong_shape(tmp_path):
    folder = make(tmp_path)
    edit_tensors(folder, lambda t: t.update({"encoder.proj.weight": torch.zeros(7, 16)}))
    expect_error(folder, WEIGHTS_NAME, r"wrong shape for encoder\.proj\.weight \(7, 16\)")


def test_more_tags_than_the_head_has(tmp_path):
    folder = make(tmp_path)
    edit_config(folder, tags=[*TAGS, "folk"], thresholds=[0.5] * 4)
    expect_error(folder, WEIGHTS_NAME, r"tag_head\.weight \(3, 256\) \(expected \(4, 256\)\)")


def test_tags_thresholds_length_mismatch(tmp_path):
    folder = make(tmp_path)
    edit_config(folder, thresholds=[0.5, 0.5])
    expect_error(folder, CONFIG_NAME, r"'thresholds' has 2 entries but 'tags' has 3")


@pytest.mark.parametrize(
    "changes,pattern",
    [
        ({"sample_rate": True}, r"'sample_rate' must be an integer"),
        ({"sample_rate": "22050"}, r"'sample_rate' must be an integer"),
        ({"trained": "yes"}, r"'trained' must be true or false"),
        ({"tags": "rock"}, r"'tags' must be a list"),
        ({"thresholds": [0.5, 2.0, 0.1]}, r"'thresholds' must be a list of numbers in \[0, 1\]"),
        ({"format": "something-else"}, r"'format' is 'something-else'"),
        ({"format_version": 99}, r"newer than this MusicSSL"),
        ({"surprise": 1}, r"unknown key\(s\): surprise"),
        ({"arch_params": {"channels": [4, 8], "sample_rate": 1}}, r"must not repeat"),
    ],
)
def test_config_schema_violations(tmp_path, changes, pattern):
    folder = make(tmp_path)
    edit_config(folder, **changes)
    expect_error(folder, CONFIG_NAME, pattern)


def test_missing_required_key(tmp_path):
    folder = make(tmp_path)
    data = json.loads((folder / CONFIG_NAME).read_text())
    del data["embedding_dim"]
    (folder / CONFIG_NAME).write_text(json.dumps(data))
    expect_error(folder, CONFIG_NAME, r"missing required key\(s\): embedding_dim")


def test_garbage_json(tmp_path):
    folder = make(tmp_path)
    (folder / CONFIG_NAME).write_bytes(b"\x00\xffnot json at all")
    expect_error(folder, CONFIG_NAME, r"not valid JSON")
    (folder / CONFIG_NAME).write_text("[1, 2, 3]")
    expect_error(folder, CONFIG_NAME, r"expected a JSON object")


def test_missing_files(tmp_path):
    folder = make(tmp_path)
    (folder / WEIGHTS_NAME).unlink()
    expect_error(folder, WEIGHTS_NAME, r"missing")
    with pytest.raises(BundleError, match="no such bundle"):
        load_bundle(tmp_path / "nowhere")


class _Trap:
    """Unpickling this creates a marker file: proof that a loader unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_renamed_to_safetensors_is_rejected_unopened(tmp_path):
    folder = make(tmp_path)
    marker = tmp_path / "unpickled.marker"
    (folder / WEIGHTS_NAME).write_bytes(pickle.dumps({"weights": _Trap(marker)}))
    expect_error(folder, WEIGHTS_NAME, r"not a safetensors file")
    assert not marker.exists()
    # A torch.save checkpoint (zip + pickle) under the bundle's name fails the same way.
    torch.save(load_bundle(make(tmp_path, "other")).model.state_dict(), folder / WEIGHTS_NAME)
    expect_error(folder, WEIGHTS_NAME, r"not a safetensors file")


def test_front_end_edit_is_caught_by_the_weights_record(tmp_path):
    """Changing hop_length keeps every tensor shape but changes the embeddings: refused."""
    folder = make(tmp_path)
    data = json.loads((folder / CONFIG_NAME).read_text())
    data["arch_params"]["hop_length"] = 256
    (folder / CONFIG_NAME).write_text(json.dumps(data))
    expect_error(folder, CONFIG_NAME, r"disagree with those recorded in model\.safetensors")


def test_threshold_and_provenance_edits_are_allowed(tmp_path):
    folder = make(tmp_path)
    before = load_bundle(folder).model_id
    edit_config(folder, thresholds=[0.1, 0.2, 0.3], provenance={"note": "recalibrated"})
    after = load_bundle(folder)
    assert after.model_id == before
    assert after.config.threshold_for("jazz") == 0.2


def test_save_refuses_a_config_that_does_not_match_the_model(tmp_path):
    folder = make(tmp_path)
    bundle = load_bundle(folder)
    wrong_tags = BundleConfig(**{**bundle.config.__dict__, "tags": ["a"], "thresholds": [0.5]})
    with pytest.raises(BundleError, match="tags"):
        save_bundle(bundle.model, wrong_tags, tmp_path / "out")
    wrong_arch = BundleConfig(
        **{
            **bundle.config.__dict__,
            "arch_params": {**bundle.config.arch_params, "channels": [4, 4]},
        }
    )
    with pytest.raises(BundleError, match="wrong shape"):
        save_bundle(bundle.model, wrong_arch, tmp_path / "out2")
    assert not (tmp_path / "out2" / WEIGHTS_NAME).exists()


def test_half_precision_weights_load_as_float32(tmp_path):
    folder = make(tmp_path)
    edit_tensors(
        folder, lambda t: t.update({k: v.half() for k, v in t.items() if v.is_floating_point()})
    )
    bundle = load_bundle(folder)
    assert bundle.model.encoder.proj.weight.dtype == torch.float32


def test_default_config_records_resolved_parameters():
    config = default_config("x", "samplecnn")
    assert config.arch_params["channels"] == [128, 128, 128, 256, 256, 256, 256, 256, 256, 512]
    assert config.excerpt_samples == 59049 and config.sample_rate == 22050
    assert config.embedding_dim == 512 and config.trained is False
    assert BundleConfig.from_dict(json.loads(config.to_json())) == config


def test_copied_bundle_folder_keeps_id(tmp_path):
    folder = make(tmp_path)
    shutil.copytree(folder, tmp_path / "elsewhere")
    assert load_bundle(tmp_path / "elsewhere").model_id == load_bundle(folder).model_id


def test_whitened_bundles_round_trip_and_older_configs_load_unwhitened(tmp_path):
    config = dataclasses.replace(default_config("w", "melcnn", {"channels": [4, 8]}), whitened=True)
    model = build_model(config)
    dim = config.embedding_dim
    g = torch.Generator().manual_seed(0)
    mean, matrix = torch.randn(dim, generator=g), torch.randn(dim, dim, generator=g)
    model.set_whitening(mean, matrix)
    save_bundle(model, config, tmp_path / "w")
    loaded = load_bundle(tmp_path / "w")
    assert loaded.config.whitened
    h = torch.randn(3, dim, generator=g)
    expected = torch.nn.functional.normalize((h - mean) @ matrix, dim=-1)
    torch.testing.assert_close(loaded.model.similarity(h), expected)

    # Claiming no whitening over whitened weights is caught (signal record and tensors).
    edit_config(tmp_path / "w", whitened=False)
    with pytest.raises(BundleError):
        load_bundle(tmp_path / "w")

    # Bundles written before the key existed load as they always did: similarity is z.
    plain = make(tmp_path)
    data = json.loads((plain / CONFIG_NAME).read_text())
    assert data.pop("whitened") is False
    (plain / CONFIG_NAME).write_text(json.dumps(data))
    old = load_bundle(plain)
    assert not old.config.whitened and not old.model.whitened
    h = torch.randn(3, old.config.embedding_dim, generator=g)
    torch.testing.assert_close(old.model.similarity(h), old.model.normalize(h))
    with pytest.raises(ValueError, match="without whitening"):
        old.model.set_whitening(mean, matrix)
