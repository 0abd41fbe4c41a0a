"""The pitch-class profile and the harmony part of the track vector (engine/harmony.py)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from musicssl.engine.bundle import (
    CONFIG_NAME,
    BundleError,
    build_model,
    default_config,
    load_bundle,
    save_bundle,
)
from musicssl.engine.harmony import n_fft_for, pitch_class_profile

RATE = 22050
# Pitch classes counted from A: A=0, C=3, E=7, G=10.
A, C, E, G = 0, 3, 7, 10


def _tones(freqs: list[float], seconds: float = 3.0, rate: int = RATE) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return sum(torch.sin(2 * math.pi * f * t) for f in freqs)[None] / len(freqs)


def test_the_profile_peaks_on_the_pitch_classes_that_sound():
    a4 = pitch_class_profile(_tones([440.0]), RATE)[0]
    assert a4.shape == (12,) and int(a4.argmax()) == A
    # C major triad over three octaves: C, E and G are the three strongest classes.
    triad = pitch_class_profile(_tones([130.81, 329.63, 783.99]), RATE)[0]
    assert set(torch.topk(triad, 3).indices.tolist()) == {C, E, G}
    # An octave up is the same pitch class.
    assert int(pitch_class_profile(_tones([880.0]), RATE)[0].argmax()) == A


def test_the_profile_ignores_loudness_and_handles_silence_and_short_excerpts():
    x = _tones([261.63, 392.0]) + 0.01 * torch.randn(1, 3 * RATE, generator=torch.Generator())
    torch.testing.assert_close(pitch_class_profile(0.05 * x, RATE), pitch_class_profile(x, RATE))
    assert torch.all(pitch_class_profile(torch.zeros(2, RATE), RATE) == 0)
    short = pitch_class_profile(_tones([440.0], seconds=0.05), RATE)  # shorter than one window
    assert short.shape == (1, 12) and int(short.argmax()) == A
    assert n_fft_for(22050) == 4096 and n_fft_for(44100) == 8192
    # Another rate keeps the pitch mapping.
    assert int(pitch_class_profile(_tones([440.0], rate=44100), 44100)[0].argmax()) == A
    with pytest.raises(ValueError, match="batch, samples"):
        pitch_class_profile(torch.zeros(RATE), RATE)


def _harmony_model(weight: float):
    config = dataclasses.replace(
        default_config("h", "melcnn", {"channels": [4, 8]}), whitened=True, harmony_weight=weight
    )
    return build_model(config), config


def test_the_track_vector_adds_the_weighted_cosine_of_the_standardised_profiles():
    model, config = _harmony_model(0.5)
    dim = config.embedding_dim
    assert model.descriptor_dim == dim + 12
    g = torch.Generator().manual_seed(0)
    mean, scale = torch.rand(12, generator=g), torch.rand(12, generator=g) + 0.5
    model.set_statistic("harmony", mean, scale)

    x = _tones([220.0, 277.18, 329.63]).repeat(2, 1)
    h = torch.randn(2, dim, generator=g)
    descriptor = model.descriptor(x, h)
    assert descriptor.shape == (2, dim + 12)
    torch.testing.assert_close(descriptor[:, :dim], h)
    torch.testing.assert_close(descriptor[:, dim:], pitch_class_profile(x, RATE))

    a = torch.randn(2, dim + 12, generator=g)
    b = torch.randn(2, dim + 12, generator=g)
    cos = (model.similarity(a) * model.similarity(b)).sum(-1)
    cos_h = F.cosine_similarity(a[:, :dim], b[:, :dim])  # identity whitening, zero mean
    cos_c = F.cosine_similarity((a[:, dim:] - mean) / scale, (b[:, dim:] - mean) / scale)
    torch.testing.assert_close(cos, (cos_h + 0.5 * cos_c) / 1.5)
    torch.testing.assert_close(model.similarity(a).norm(dim=-1), torch.ones(2))
    # Tags read h alone.
    torch.testing.assert_close(model.tag_probs(h), model.tag_probs(descriptor[:, :dim]))

    with pytest.raises(ValueError, match="268-d|track descriptors"):
        model.similarity(h)
    with pytest.raises(ValueError, match="positive"):
        model.set_statistic("harmony", mean, -scale)
    plain, _ = _harmony_model(0.0)
    assert plain.descriptor_dim == dim and plain.descriptor(x, h) is h
    with pytest.raises(ValueError, match="does not weigh harmony"):
        plain.set_statistic("harmony", mean, scale)
    with pytest.raises(ValueError, match="sample_rate"):
        type(model)(model.encoder, dim, harmony_weight=0.2)


def test_harmony_bundles_round_trip_and_reject_a_mismatched_or_bad_weight(tmp_path):
    model, config = _harmony_model(0.2)
    model.set_statistic("harmony", torch.full((12,), 1.5), torch.full((12,), 0.25))
    save_bundle(model, config, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert loaded.config.harmony_weight == 0.2
    torch.testing.assert_close(loaded.model.harmony_scale, torch.full((12,), 0.25))
    d = torch.randn(3, model.descriptor_dim)
    torch.testing.assert_close(loaded.model.similarity(d), model.similarity(d))

    # The weight is part of the weights' signal record: a config edited to another weight (or
    # to none) no longer loads, and save refuses a config that disagrees with the model.
    data = json.loads((tmp_path / "b" / CONFIG_NAME).read_text())
    for edited in (0.5, 0.0):
        (tmp_path / "b" / CONFIG_NAME).write_text(json.dumps({**data, "harmony_weight": edited}))
        with pytest.raises(BundleError):
            load_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="harmony_weight differs"):
        save_bundle(model, dataclasses.replace(config, harmony_weight=0.3), tmp_path / "c")
    for bad in (-0.1, "0.2", True, float("nan")):
        with pytest.raises(BundleError, match="harmony_weight"):
            dataclasses.replace(config, harmony_weight=bad).validate()
    # Configs written before the keys existed load without statistics.
    plain_cfg = default_config("p", "melcnn", {"channels": [4, 8]})
    save_bundle(build_model(plain_cfg), plain_cfg, tmp_path / "p")
    data = json.loads((tmp_path / "p" / CONFIG_NAME).read_text())
    assert data.pop("harmony_weight") == 0.0 and data.pop("rhythm_weight") == 0.0
    (tmp_path / "p" / CONFIG_NAME).write_text(json.dumps(data))
    assert load_bundle(tmp_path / "p").model.descriptor_dim == plain_cfg.embedding_dim
