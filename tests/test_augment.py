"""The CLMR augmentation chain: each transform does what it claims, the chain is seedable."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from musicssl.training.augment import (
    Augment,
    AugmentConfig,
    add_noise,
    delay,
    fast_length,
    filter,
    gain,
    pitch_shift,
    polarity,
    reverb,
)

SR = 16000
N = 16000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tones(freqs=(220.0, 3000.0, 6000.0), n=N, batch=3, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    rows = []
    for b in range(batch):
        phases = torch.rand(len(freqs), generator=g) * 2 * math.pi
        row = sum(torch.sin(2 * math.pi * f * t + p) for f, p in zip(freqs, phases, strict=True))
        rows.append(row * (0.2 + 0.1 * b))
    return torch.stack(rows)


def rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(dim=-1).sqrt()


def band_energy(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    spec = torch.fft.rfft(x).abs().pow(2)
    f = torch.fft.rfftfreq(x.shape[-1], 1 / SR)
    return spec[..., (f >= low) & (f < high)].sum(dim=-1)


def peak_hz(x: torch.Tensor) -> float:
    spec = torch.fft.rfft(x * torch.hann_window(x.shape[-1])).abs()
    return float(torch.fft.rfftfreq(x.shape[-1], 1 / SR)[spec.argmax()])


ALL = torch.tensor([True, True, True])
ROW1 = torch.tensor([False, True, False])


def test_polarity_flips_only_selected_rows():
    x = tones()
    y = polarity(x, ROW1)
    assert y.shape == x.shape
    assert torch.equal(y[1], -x[1]) and torch.equal(y[0], x[0]) and torch.equal(y[2], x[2])


def test_gain_changes_rms_by_the_given_decibels():
    x = tones()
    db = torch.tensor([-6.0, -20.0, -1.0])
    y = gain(x, ALL, db)
    change = 20 * torch.log10(rms(y) / rms(x))
    torch.testing.assert_close(change, db, atol=1e-3, rtol=0)
    assert torch.equal(gain(x, ROW1, db)[0], x[0])


def test_noise_lands_at_the_requested_snr_and_follows_the_generator():
    x = tones()
    snr = torch.tensor([40.0, 20.0, 10.0])
    y = add_noise(x, ALL, snr, torch.Generator().manual_seed(1))
    measured = 20 * torch.log10(rms(x) / rms(y - x))
    torch.testing.assert_close(measured, snr, atol=0.3, rtol=0)
    again = add_noise(x, ALL, snr, torch.Generator().manual_seed(1))
    assert torch.equal(y, again)


def test_filter_low_and_high_pass_remove_their_stop_band():
    x = tones()
    low = filter(x, ALL, 1000.0, False, SR, order=2)
    high = filter(x, ALL, 1000.0, True, SR, order=2)
    assert low.shape == high.shape == x.shape
    assert torch.all(band_energy(low, 5000, 8000) < 0.05 * band_energy(x, 5000, 8000))
    assert torch.all(band_energy(low, 100, 400) > 0.9 * band_energy(x, 100, 400))
    assert torch.all(band_energy(high, 100, 400) < 0.1 * band_energy(x, 100, 400))
    assert torch.all(band_energy(high, 5000, 8000) > 0.9 * band_energy(x, 5000, 8000))
    # Per-row choice of type and cutoff in one call.
    mixed = filter(x, ALL, torch.tensor([1000.0, 1000.0, 1000.0]), torch.tensor([0, 1, 0]), SR)
    torch.testing.assert_close(mixed[1], filter(x[1:2], ALL[:1], 1000.0, True, SR)[0])


def test_delay_adds_a_lagged_copy():
    x = torch.zeros(3, 4000)
    x[:, 100] = 1.0
    d = torch.tensor([800, 1600, 3200])
    y = delay(x, ALL, d, volume=0.5)
    for b in range(3):
        assert y[b, 100] == pytest.approx(0.5)  # CLMR's (x + 0.5 x_d) / 2 mix
        assert y[b, 100 + int(d[b])] == pytest.approx(0.25)
        assert torch.count_nonzero(y[b]) == 2


@pytest.mark.parametrize("semitones", [-7.0, -2.0, 3.0, 7.0])
def test_pitch_shift_moves_a_sine_by_the_semitone_ratio(semitones):
    t = torch.arange(N) / SR
    sine = torch.sin(2 * math.pi * 440.0 * t)[None]
    y = pitch_shift(sine, torch.tensor([True]), torch.tensor([semitones]), SR)
    assert y.shape == sine.shape
    expected = 440.0 * 2 ** (semitones / 12)
    assert abs(peak_hz(y[0]) - expected) < 0.01 * expected + 2.0
    # Duration (tempo) is kept: the level holds to the end instead of running out.
    assert rms(y[0, -2000:]) > 0.5 * rms(sine[0, -2000:])


def test_reverb_extends_the_tail():
    x = torch.zeros(2, N)
    x[:, 1000:1400] = torch.randn(2, 400, generator=torch.Generator().manual_seed(0))
    y = reverb(x, torch.tensor([True, False]), 0.5, 0.2, 0.5, SR, torch.Generator().manual_seed(3))
    tail = slice(1400 + SR // 20, 1400 + SR // 4)
    assert rms(y[0, tail]) > 0.01 * rms(x[0, 1000:1400])
    assert y[0, :1000].abs().max() < 1e-5  # causal: nothing before the sound (float noise)
    assert torch.equal(y[1], x[1])


def test_probability_zero_is_identity_and_the_chain_keeps_shape():
    x = tones(batch=4)
    assert torch.equal(Augment(SR, AugmentConfig.none())(x), x)
    y = Augment(SR)(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()


def test_chain_is_deterministic_under_a_seeded_generator():
    x = tones(batch=8, seed=2)
    aug = Augment(SR, AugmentConfig(noise_p=0.5))
    a = aug(x, torch.Generator().manual_seed(7))
    b = aug(x, torch.Generator().manual_seed(7))
    c = aug(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "field", ["polarity_p", "noise_p", "gain_p", "filter_p", "delay_p", "pitch_p", "reverb_p"]
)
def test_each_transform_of_the_chain_fires_alone_at_probability_one(field):
    x = tones(batch=4, seed=4)
    config = dataclasses.replace(AugmentConfig.none(), **{field: 1.0})
    aug = Augment(SR, config)
    y = aug(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and torch.isfinite(y).all()
    changed = (y - x).abs().amax(dim=1) > 1e-4
    if field == "pitch_p":  # a drawn shift of 0 semitones is a legitimate no-op
        shifted = aug.draw(4, torch.Generator().manual_seed(0), x)["semitones"] != 0
        assert torch.equal(changed, shifted) and shifted.sum() >= 2
    else:
        assert torch.all(changed)


def test_drawn_parameters_follow_clmr_ranges():
    params = Augment(SR).draw(256, torch.Generator().manual_seed(0), torch.zeros(1))
    assert set(params["delay_ms"].tolist()) == {200.0, 250.0, 300.0, 350.0, 400.0, 450.0}
    assert params["semitones"].abs().max() == 7 and torch.all(params["semitones"] % 1 == 0)
    assert params["gain_db"].min() >= -20 and params["gain_db"].max() <= -1
    assert 0.7 < params["polarity"].float().mean() < 0.9  # p = 0.8
    assert 0.5 < params["pitch"].float().mean() < 0.7  # p = 0.6


def test_config_rejects_bad_values_and_fast_lengths_are_smooth():
    with pytest.raises(ValueError):
        AugmentConfig(pitch_p=1.5)
    with pytest.raises(ValueError):
        AugmentConfig(gain_db=(0.0, -6.0))
    for n in (1, 7, 66150, 88200, 99991):
        m = fast_length(n)
        assert m >= n and m < 1.25 * n + 8
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        assert m == 1
