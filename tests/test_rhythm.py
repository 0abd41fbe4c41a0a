"""The onset autocorrelation (engine/rhythm.py) and the statistics blocks of the track vector."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from musicssl.engine.bundle import (
    CONFIG_NAME,
    STATISTIC_WEIGHTS,
    BundleError,
    build_model,
    default_config,
    load_bundle,
    save_bundle,
)
from musicssl.engine.harmony import pitch_class_profile
from musicssl.engine.rhythm import FIRST_LAG, N_LAGS, POOL, hop_for, onset_autocorrelation
from musicssl.engine.statistics import STATISTICS

RATE = 22050


def _clicks(period: float, rate: int = RATE, seconds: float = 3.0) -> torch.Tensor:
    """(1, N) decaying noise bursts every `period` seconds: a metronome."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(int(seconds * rate))
    burst = torch.randn(int(0.02 * rate), generator=g) * torch.linspace(1, 0, int(0.02 * rate))
    for start in range(0, len(x) - len(burst), int(period * rate)):
        x[start : start + len(burst)] += burst
    return x[None]


def _peak_seconds(profile: torch.Tensor, rate: int) -> float:
    lag = FIRST_LAG + POOL * int(profile.argmax()) + (POOL - 1) / 2
    return lag * hop_for(rate) / rate


@pytest.mark.parametrize("rate", [RATE, 44100])
def test_a_metronome_peaks_at_its_period_at_any_rate(rate):
    for period in (0.35, 0.5, 0.75):
        profile = onset_autocorrelation(_clicks(period, rate), rate)[0]
        assert profile.shape == (N_LAGS,)
        assert abs(_peak_seconds(profile, rate) - period) < 0.02, period
        assert float(profile.max()) <= 1.0
    slow = onset_autocorrelation(_clicks(0.75), RATE)
    fast = onset_autocorrelation(_clicks(0.5), RATE)
    assert float(F.cosine_similarity(slow, fast)) < 0.5


def test_silence_and_short_excerpts_are_finite_and_bad_shapes_are_refused():
    assert torch.equal(onset_autocorrelation(torch.zeros(2, RATE), RATE), torch.zeros(2, N_LAGS))
    short = onset_autocorrelation(_clicks(0.1, seconds=0.3), RATE)
    assert short.shape == (1, N_LAGS) and bool(torch.isfinite(short).all())
    with pytest.raises(ValueError, match="batch, samples"):
        onset_autocorrelation(torch.zeros(RATE), RATE)


def test_bundle_keys_name_every_statistic():
    assert tuple(f"{s.name}_weight" for s in STATISTICS) == STATISTIC_WEIGHTS


def _model(harmony: float, rhythm: float):
    config = dataclasses.replace(
        default_config("r", "melcnn", {"channels": [4, 8]}),
        whitened=True,
        harmony_weight=harmony,
        rhythm_weight=rhythm,
    )
    return build_model(config), config


def test_the_track_vector_weighs_each_standardised_statistic():
    model, config = _model(0.2, 0.1)
    dim = config.embedding_dim
    assert model.descriptor_dim == dim + 12 + N_LAGS
    g = torch.Generator().manual_seed(1)
    stats = {}
    for name, width in (("harmony", 12), ("rhythm", N_LAGS)):
        stats[name] = torch.randn(width, generator=g), torch.rand(width, generator=g) + 0.5
        model.set_statistic(name, *stats[name])

    x = _clicks(0.5).repeat(2, 1)
    h = torch.randn(2, dim, generator=g)
    descriptor = model.descriptor(x, h)
    torch.testing.assert_close(descriptor[:, dim : dim + 12], pitch_class_profile(x, RATE))
    torch.testing.assert_close(descriptor[:, dim + 12 :], onset_autocorrelation(x, RATE))

    a, b = (torch.randn(2, model.descriptor_dim, generator=g) for _ in range(2))
    cos = (model.similarity(a) * model.similarity(b)).sum(-1)
    expected = F.cosine_similarity(a[:, :dim], b[:, :dim])  # identity whitening, zero mean
    for (name, weight), (start, end) in zip(
        (("harmony", 0.2), ("rhythm", 0.1)), ((dim, dim + 12), (dim + 12, None)), strict=True
    ):
        mean, scale = stats[name]
        part = F.cosine_similarity(
            (a[:, start:end] - mean) / scale, (b[:, start:end] - mean) / scale
        )
        expected = expected + weight * part
    torch.testing.assert_close(cos, expected / 1.3)

    rhythm_only, _ = _model(0.0, 0.5)
    assert rhythm_only.descriptor_dim == dim + N_LAGS
    with pytest.raises(ValueError, match="does not weigh harmony"):
        rhythm_only.set_statistic("harmony", *stats["harmony"])
    with pytest.raises(ValueError, match="rhythm scales must be positive"):
        rhythm_only.set_statistic("rhythm", stats["rhythm"][0], -stats["rhythm"][1])
    with pytest.raises(ValueError, match="rhythm_weight"):
        type(model)(model.encoder, dim, rhythm_weight=float("inf"), sample_rate=RATE)


def test_rhythm_bundles_round_trip_and_reject_an_edited_weight(tmp_path):
    model, config = _model(0.0, 0.1)
    model.set_statistic("rhythm", torch.full((N_LAGS,), 0.2), torch.full((N_LAGS,), 0.3))
    save_bundle(model, config, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert loaded.config.rhythm_weight == 0.1 and not loaded.config.harmony_weight
    torch.testing.assert_close(loaded.model.rhythm_scale, torch.full((N_LAGS,), 0.3))
    d = torch.randn(3, model.descriptor_dim)
    torch.testing.assert_close(loaded.model.similarity(d), model.similarity(d))
    data = json.loads((tmp_path / "b" / CONFIG_NAME).read_text())
    (tmp_path / "b" / CONFIG_NAME).write_text(json.dumps({**data, "rhythm_weight": 0.3}))
    with pytest.raises(BundleError):
        load_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="rhythm_weight differs"):
        save_bundle(model, dataclasses.replace(config, rhythm_weight=0.0), tmp_path / "c")
    with pytest.raises(BundleError, match="rhythm_weight"):
        dataclasses.replace(config, rhythm_weight=-1.0).validate()
