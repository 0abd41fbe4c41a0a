"""The CLMR augmentation chain on batched waveforms, on the training device, seedable.

CLMR (Spijkervet & Burgoyne, "Contrastive Learning of Musical Representations", ISMIR 2021)
applies, in this order, each with its own probability: polarity inversion, white noise, gain,
high/low-pass filter, delay, pitch shift, reverb. The probabilities are the ones DESIGN.md
lists and CLMR's training script applies; the parameter ranges come from CLMR's augmentation
package (`audio_augmentations`, later `torchaudio-augmentations`) as that script calls it,
noted per field in `AugmentConfig`.

CLMR ran each transform per example on the CPU in data-loader workers, with sox (via WavAugment)
for pitch and reverb and Essentia for the filters. Here every transform works on a whole
(B, N) batch with torch ops, so the chain runs wherever the model runs and costs a small share
of a training step (bench/train_bench.py measures it). Where that needed a cheaper algorithm
than CLMR's, the substitute is named in the function's docstring:

- filter: Butterworth magnitude response applied in the frequency domain (zero-phase) instead
  of Essentia's first-order IIR filters; same order and cutoff ranges.
- pitch shift: phase-vocoder time stretch + band-limited FFT resampling, one pass per group of
  rows with the same shift, instead of sox's `pitch` (WSOLA) per example. Shifts are drawn on a grid
  (`pitch_step`, 1 semitone by default) so a batch has at most 15 groups.
- reverb: convolution with synthetic exponentially decaying noise impulse responses (FFT)
  instead of sox's Freeverb network; decay time, damping and wet level play the roles of sox's
  reverberance, HF damping and room size.

Each transform is also a plain function of (x, mask, parameters), so tests and other code can
apply one with known parameters. `mask` (B,) bool selects the rows to change; the others are
returned untouched. Randomness comes only from the `generator` passed in, so a seeded generator
gives the same augmented batch on every run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Augment",
    "AugmentConfig",
    "add_noise",
    "delay",
    "filter",
    "gain",
    "pitch_shift",
    "polarity",
    "reverb",
]


@dataclass
class AugmentConfig:
    """Probabilities as CLMR applies them; ranges from CLMR's augmentation code (module doc).

    noise: CLMR's original augmentation code (`audio_augmentations`) asks for "80 dB" but
    computes the noise power as signal power / 10**(80/20), i.e. an actual SNR of 40 dB; that
    is what we reproduce. (The later `torchaudio_augmentations` default, noise std 0.1-100 % of
    the signal's, is far harsher.)
    gain: uniform in [-20, -1] dB (the package draws integer dB in that range).
    filter: high-pass cutoff 200-1200 Hz or low-pass 2200-4000 Hz with equal chance; Essentia's
    filters CLMR used are first order.
    delay: 200-450 ms in 50 ms steps, echo at volume 0.5, mixed as (x + 0.5 x_delayed) / 2.
    pitch: +-700 cents (+-7 semitones), as in the package's PitchShift and DESIGN.md.
    reverb: sox's reverberance/damping/room size are each uniform over 0-100 %; mapped here to
    RT60 0.1-1.5 s, HF damping 0-1 and a wet share of 0.1-0.5 (our approximation).
    """

    polarity_p: float = 0.8
    noise_p: float = 0.01
    noise_snr_db: tuple[float, float] = (40.0, 40.0)
    gain_p: float = 0.3
    gain_db: tuple[float, float] = (-20.0, -1.0)
    filter_p: float = 0.8
    highpass_hz: tuple[float, float] = (200.0, 1200.0)
    lowpass_hz: tuple[float, float] = (2200.0, 4000.0)
    filter_order: int = 1
    delay_p: float = 0.3
    delay_ms: tuple[float, float] = (200.0, 450.0)
    delay_step_ms: float = 50.0
    delay_volume: float = 0.5
    pitch_p: float = 0.6
    pitch_semitones: tuple[float, float] = (-7.0, 7.0)
    pitch_step: float = 1.0
    reverb_p: float = 0.6
    reverb_rt60_s: tuple[float, float] = (0.1, 1.5)
    reverb_damping: tuple[float, float] = (0.0, 1.0)
    reverb_wet: tuple[float, float] = (0.1, 0.5)

    def __post_init__(self) -> None:
        for name in ("polarity_p", "noise_p", "gain_p", "filter_p", "delay_p", "pitch_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability, got {value}")
        if not 0.0 <= self.reverb_p <= 1.0:
            raise ValueError(f"reverb_p must be a probability, got {self.reverb_p}")
        for name in (
            "noise_snr_db", "gain_db", "highpass_hz", "lowpass_hz", "delay_ms",
            "pitch_semitones", "reverb_rt60_s", "reverb_damping", "reverb_wet",
        ):  # fmt: skip
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: low end {low} is above high end {high}")
        if self.filter_order < 1:
            raise ValueError("filter_order must be >= 1")
        if self.delay_step_ms <= 0 or self.pitch_step <= 0:
            raise ValueError("delay_step_ms and pitch_step must be positive")
        if self.reverb_rt60_s[0] <= 0:
            raise ValueError("reverb_rt60_s must be positive")

    @classmethod
    def none(cls) -> AugmentConfig:
        """Every probability 0: crops only (the fine-tuning setting of the PLOS ONE design)."""
        return cls(
            polarity_p=0.0, noise_p=0.0, gain_p=0.0, filter_p=0.0, delay_p=0.0, pitch_p=0.0,
            reverb_p=0.0,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# helpers


def fast_length(n: int) -> int:
    """Smallest 5-smooth integer >= n: FFT sizes the pocketfft/cuFFT kernels handle fastest."""
    n = max(1, int(n))
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            quotient = -(-n // p35)  # ceil(n / p35)
            p2 = 1 << (quotient - 1).bit_length() if quotient > 1 else 1
            best = min(best, p2 * p35)
            p35 *= 3
        p5 *= 5
    return best


def _largest_prime_factor(n: int) -> int:
    largest, p = 1, 2
    while p * p <= n:
        while n % p == 0:
            largest, n = p, n // p
        p += 1
    return max(largest, n)


def smooth_near(target: float, tolerance: float = 0.0025) -> int:
    """An integer within `tolerance` of target whose FFT is fast (smallest largest prime factor).

    A prime-length FFT costs 3-4x a smooth one; a 0.25 % change of a resampling ratio is a
    4-cent pitch error, far below what an augmentation needs to get right.
    """
    centre = max(1, round(target))
    reach = max(0, int(target * tolerance))
    best, best_factor = centre, _largest_prime_factor(centre)
    for step in range(1, reach + 1):
        if best_factor <= 7:
            break
        for candidate in (centre - step, centre + step):
            if candidate >= 1:
                factor = _largest_prime_factor(candidate)
                if factor < best_factor:
                    best, best_factor = candidate, factor
    return best


def _rows(mask: Tensor, x: Tensor) -> Tensor:
    return mask.to(device=x.device, dtype=torch.bool).nonzero(as_tuple=True)[0]


def _per_row(value: Tensor | float, x: Tensor) -> Tensor:
    """A scalar or (B,) parameter as a float (B, 1) column on x's device."""
    v = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    return v.reshape(-1, 1) if v.ndim else v.expand(x.shape[0]).reshape(-1, 1)


def _replace_rows(x: Tensor, rows: Tensor, values: Tensor) -> Tensor:
    out = x.clone()
    out[rows] = values
    return out


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    device = generator.device if generator is not None else like.device
    noise = torch.randn(shape, generator=generator, device=device, dtype=like.dtype)
    return noise.to(like.device)


def _rfftfreq(n: int, sample_rate: int, like: Tensor) -> Tensor:
    return torch.fft.rfftfreq(n, d=1.0 / sample_rate, device=like.device, dtype=like.dtype)


# ---------------------------------------------------------------------------------------------
# transforms


def polarity(x: Tensor, mask: Tensor) -> Tensor:
    """Negate the selected rows (inaudible, but a raw-waveform encoder must learn to ignore it)."""
    sign = 1.0 - 2.0 * mask.to(device=x.device, dtype=x.dtype)
    return x * sign.reshape(-1, 1)


def add_noise(
    x: Tensor, mask: Tensor, snr_db: Tensor | float, generator: torch.Generator | None = None
) -> Tensor:
    """White Gaussian noise at `snr_db` relative to each row's own RMS."""
    rows = _rows(mask, x)
    if rows.numel() == 0:
        return x
    sel = x[rows]
    rms = sel.pow(2).mean(dim=1, keepdim=True).sqrt()
    scale = rms * torch.pow(10.0, -_per_row(snr_db, x)[rows] / 20.0)
    return _replace_rows(x, rows, sel + scale * _randn(tuple(sel.shape), generator, x))


def gain(x: Tensor, mask: Tensor, gain_db: Tensor | float) -> Tensor:
    """Scale the selected rows by `gain_db` decibels."""
    factor = torch.pow(10.0, _per_row(gain_db, x) / 20.0)
    keep = ~mask.to(device=x.device, dtype=torch.bool).reshape(-1, 1)
    return x * torch.where(keep, torch.ones_like(factor), factor)


def filter(  # shadows the builtin on purpose (the chain's name); the builtin is not used here
    x: Tensor,
    mask: Tensor,
    cutoff_hz: Tensor | float,
    highpass: Tensor | bool,
    sample_rate: int,
    order: int = 1,
) -> Tensor:
    """Butterworth high- or low-pass of the given order, per row, zero-phase via the FFT.

    Magnitude |H| = 1/sqrt(1 + (f/fc)^(2 order)) (low-pass) or with fc/f (high-pass): the same
    slope as the IIR filters CLMR used, without a sequential recursion over 66k samples per row.
    The crop is zero-padded by 10 ms so the filter's (short, for these cutoffs) response does
    not wrap around from one end to the other.
    """
    rows = _rows(mask, x)
    if rows.numel() == 0:
        return x
    sel = x[rows]
    n = sel.shape[1]
    size = fast_length(n + math.ceil(0.01 * sample_rate))
    f = _rfftfreq(size, sample_rate, x).reshape(1, -1)
    fc = _per_row(cutoff_hz, x)[rows]
    hp = torch.as_tensor(highpass, device=x.device, dtype=torch.bool)
    hp = (hp.reshape(-1) if hp.ndim else hp.expand(x.shape[0]))[rows].reshape(-1, 1)
    ratio = torch.where(hp, fc / f.clamp_min(1e-6), f / fc)
    response = torch.rsqrt(1.0 + ratio.pow(2 * order))
    spectrum = torch.fft.rfft(sel, n=size) * response
    return _replace_rows(x, rows, torch.fft.irfft(spectrum, n=size)[:, :n])


def delay(x: Tensor, mask: Tensor, delay_samples: Tensor | int, volume: float = 0.5) -> Tensor:
    """Add an echo `delay_samples` later at `volume`, mixed as CLMR does: (x + v x_d) / 2.

    The halving is CLMR's; it also lowers the level by up to 6 dB, which the gain transform
    covers anyway. Rows are grouped by delay (CLMR's 50 ms grid gives at most 6 groups), so the
    work is slicing, not gathering.
    """
    rows = _rows(mask, x)
    if rows.numel() == 0:
        return x
    d_all = torch.as_tensor(delay_samples, device=x.device).round().long()
    d_all = d_all.reshape(-1) if d_all.ndim else d_all.expand(x.shape[0])
    d_sel = d_all[rows]
    out = x.clone()
    n = x.shape[1]
    for d in torch.unique(d_sel).tolist():
        group = rows[d_sel == d]
        src = x[group]
        mixed = src.clone()
        if 0 < d < n:
            mixed[:, d:] += volume * src[:, : n - d]
        elif d == 0:
            mixed += volume * src
        out[group] = mixed * 0.5
    return out


def phase_vocoder(spec: Tensor, rate: float) -> Tensor:
    """Time-scale a complex STFT (..., F, T) by 1/rate frames, as torchaudio's phase_vocoder.

    The same algorithm (interpolated magnitudes, phases accumulated from the phase advance
    between the two analysis frames each output frame falls between) written with unit
    complex numbers: e^{i(wH + princarg(d - wH))} = e^{id}, so the advance is the unit phasor
    of X[t+1] X*[t] and accumulating it is a cumulative product. That replaces two atan2 and a
    polar() per element, the bulk of torchaudio's cost on CPU (measured ~1.6x faster).
    """
    frames = spec.shape[-1]
    # Frame positions on the CPU in float64 (exact floors; MPS has no float64), then moved.
    steps = torch.arange(0, frames, rate, dtype=torch.float64)
    i0 = steps.floor().long()
    alpha = (steps - i0).to(spec.real.dtype).to(spec.device)
    i0 = i0.to(spec.device)
    padded = F.pad(spec, (0, 2))
    mag = padded.abs()
    unit = padded / mag.clamp_min(torch.finfo(mag.dtype).tiny)
    m0 = mag.index_select(-1, i0)
    magnitude = m0 + alpha * (mag.index_select(-1, i0 + 1) - m0)
    advance = unit.index_select(-1, i0[:-1] + 1) * unit.index_select(-1, i0[:-1]).conj()
    phase = torch.cat([unit[..., :1], advance], dim=-1).cumprod(dim=-1)
    return magnitude * phase


def _stretch(x: Tensor, rate: float, n_fft: int, length: int) -> Tensor:
    """Phase-vocoder time stretch of (R, N) rows to `length` (~N*rate) samples, pitch kept.

    One STFT / vocoder / inverse STFT for all rows of a group. Zero ("constant") padding at the
    edges: with reflect padding the mirrored first frames carry phase advances that are not
    those of the music, and a stretch (rate > 1) repeats them, which cost a test sine 80 % of
    its level; with zeros a sine keeps ~90 % of it (the rest is the vocoder's usual phasiness).
    """
    hop = n_fft // 4
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(
        x, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True
    )
    stretched = phase_vocoder(spec, 1.0 / rate)
    return torch.istft(stretched, n_fft, hop, window=window, center=True, length=length)


def _resample_to(x: Tensor, n_out: int) -> Tensor:
    """Band-limited resampling of (R, L) rows to n_out samples by truncating/padding the FFT."""
    length = x.shape[1]
    spectrum = torch.fft.rfft(x)
    bins = n_out // 2 + 1
    if spectrum.shape[1] >= bins:
        spectrum = spectrum[:, :bins]
    else:
        spectrum = F.pad(spectrum, (0, bins - spectrum.shape[1]))
    return torch.fft.irfft(spectrum, n=n_out) * (n_out / length)


def pitch_shift(
    x: Tensor,
    mask: Tensor,
    semitones: Tensor | float,
    sample_rate: int,
    window_seconds: float = 0.046,
) -> Tensor:
    """Shift pitch by `semitones` per row, keeping the length and tempo.

    Stretch time by r = 2**(s/12) with a phase vocoder, then resample the stretched signal back
    to N samples: the frequencies scale by r and the duration is unchanged. The resampling is
    done in the FFT domain, so pitching up drops the content that would alias instead of
    folding it back. One stretch + resample per distinct shift value in the batch (not per
    example), so the cost is a few batched STFTs whatever the batch size.
    """
    rows = _rows(mask, x)
    if rows.numel() == 0:
        return x
    s_all = torch.as_tensor(semitones, device=x.device, dtype=torch.float32)
    s_all = s_all.reshape(-1) if s_all.ndim else s_all.expand(x.shape[0])
    s_sel = s_all[rows]
    # A power of two near window_seconds (1024 at 22.05 kHz: 46 ms, ~21 Hz bins).
    n_fft = 1 << max(4, round(math.log2(max(16.0, window_seconds * sample_rate))))
    out = x.clone()
    n = x.shape[1]
    for s in torch.unique(s_sel).tolist():
        if s == 0:
            continue
        group = rows[s_sel == s]
        length = smooth_near(n * 2.0 ** (s / 12.0))
        stretched = _stretch(x[group], length / n, n_fft, length)
        out[group] = _resample_to(stretched, n)
    return out


def reverb(
    x: Tensor,
    mask: Tensor,
    rt60_s: Tensor | float,
    damping: Tensor | float,
    wet: Tensor | float,
    sample_rate: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mix in the rows convolved with a synthetic room: y = (1 - wet) x + wet (h * x).

    h is Gaussian noise under an exponential envelope reaching -60 dB at `rt60_s`, low-passed
    (first order, cutoff from Nyquist down to 1 kHz as `damping` goes 0 -> 1, like sox's HF
    damping) and scaled to unit energy so the wet signal has about the dry one's level. The
    convolution is causal: the tail of the crop's last notes runs past the end and is cut.
    """
    rows = _rows(mask, x)
    if rows.numel() == 0:
        return x
    sel = x[rows]
    count, n = sel.shape
    rt60 = _per_row(rt60_s, x)[rows]
    ir_len = max(1, math.ceil(float(rt60.max()) * sample_rate))
    t = torch.arange(ir_len, device=x.device, dtype=x.dtype).reshape(1, -1) / sample_rate
    envelope = torch.exp(-math.log(1000.0) * t / rt60) * (t <= rt60)
    ir = _randn((count, ir_len), generator, x) * envelope
    size = fast_length(n + ir_len - 1)
    f = _rfftfreq(size, sample_rate, x).reshape(1, -1)
    damp = _per_row(damping, x)[rows].clamp(0.0, 1.0)
    nyquist = sample_rate / 2.0
    cutoff = torch.exp(math.log(nyquist) + damp * (math.log(1000.0) - math.log(nyquist)))
    # A causal one-pole low-pass (1 - a) / (1 - a e^{-jw}), a = exp(-2 pi fc / sr): the DFT of
    # a decaying exponential, so unlike a magnitude-only response it adds nothing before the
    # sound.
    pole = torch.exp(-2.0 * math.pi * cutoff / sample_rate)
    omega = 2.0 * math.pi * f / sample_rate
    denominator = torch.complex(1.0 - pole * torch.cos(omega), pole * torch.sin(omega))
    ir_spectrum = torch.fft.rfft(ir, n=size) * ((1.0 - pole) / denominator)
    # Unit energy after damping (Parseval on the one-sided spectrum, close enough for a level).
    energy = ir_spectrum.abs().pow(2).sum(dim=1, keepdim=True) * (2.0 / size)
    ir_spectrum = ir_spectrum * torch.rsqrt(energy.clamp_min(1e-12))
    wet_signal = torch.fft.irfft(torch.fft.rfft(sel, n=size) * ir_spectrum, n=size)[:, :n]
    mix = _per_row(wet, x)[rows]
    return _replace_rows(x, rows, (1.0 - mix) * sel + mix * wet_signal)


# ---------------------------------------------------------------------------------------------
# the chain


class Augment(nn.Module):
    """The CLMR chain: each transform applied to a random subset of rows with its probability."""

    def __init__(self, sample_rate: int, config: AugmentConfig | None = None) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.config = config or AugmentConfig()
        # Wall time per transform in the last call (seconds), for the benchmark's breakdown; on
        # an asynchronous device (CUDA) it measures launches, not the kernels.
        self.last_timings: dict[str, float] = {}

    def _uniform(
        self, low_high: tuple[float, float], b: int, generator: torch.Generator | None, like
    ) -> Tensor:
        low, high = (float(v) for v in low_high)
        device = generator.device if generator is not None else like.device
        # float32: MPS has no float64, and parameter draws need no more precision.
        u = torch.rand(b, generator=generator, device=device, dtype=torch.float32)
        return (low + (high - low) * u).to(like.device)

    def _coin(self, p: float, b: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        device = generator.device if generator is not None else like.device
        return (torch.rand(b, generator=generator, device=device) < p).to(like.device)

    def draw(self, b: int, generator: torch.Generator | None, like: Tensor) -> dict[str, Tensor]:
        """Every random choice for a batch of b rows, drawn in a fixed order.

        All parameters are drawn for all rows whether or not a transform fires, so changing one
        probability does not reshuffle the others' draws.
        """
        c = self.config
        u = self._uniform
        params = {
            "polarity": self._coin(c.polarity_p, b, generator, like),
            "noise": self._coin(c.noise_p, b, generator, like),
            "snr_db": u(c.noise_snr_db, b, generator, like),
            "gain": self._coin(c.gain_p, b, generator, like),
            "gain_db": u(c.gain_db, b, generator, like),
            "filter": self._coin(c.filter_p, b, generator, like),
            "highpass": self._coin(0.5, b, generator, like),
            "highpass_hz": u(c.highpass_hz, b, generator, like),
            "lowpass_hz": u(c.lowpass_hz, b, generator, like),
            "delay": self._coin(c.delay_p, b, generator, like),
            "pitch": self._coin(c.pitch_p, b, generator, like),
            "reverb": self._coin(c.reverb_p, b, generator, like),
            "rt60_s": u(c.reverb_rt60_s, b, generator, like),
            "damping": u(c.reverb_damping, b, generator, like),
            "wet": u(c.reverb_wet, b, generator, like),
        }
        steps_d = math.floor((c.delay_ms[1] - c.delay_ms[0]) / c.delay_step_ms + 1e-9) + 1
        k = self._uniform((0.0, 1.0), b, generator, like)
        params["delay_ms"] = c.delay_ms[0] + c.delay_step_ms * (k * steps_d).floor().clamp(
            max=steps_d - 1
        )
        low, high = c.pitch_semitones
        s = self._uniform((low, high), b, generator, like)
        params["semitones"] = (s / c.pitch_step).round() * c.pitch_step
        return params

    @torch.no_grad()
    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if x.ndim != 2:
            raise ValueError(f"Augment expects (batch, samples), got shape {tuple(x.shape)}")
        c = self.config
        p = self.draw(x.shape[0], generator, x)
        sr = self.sample_rate
        timings: dict[str, float] = {}

        def timed(name, fn, *args, **kwargs):
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            timings[name] = time.perf_counter() - start
            return result

        x = timed("polarity", polarity, x, p["polarity"])
        x = timed("noise", add_noise, x, p["noise"], p["snr_db"], generator)
        x = timed("gain", gain, x, p["gain"], p["gain_db"])
        cutoff = torch.where(p["highpass"], p["highpass_hz"], p["lowpass_hz"])
        x = timed("filter", filter, x, p["filter"], cutoff, p["highpass"], sr, c.filter_order)
        delay_samples = (p["delay_ms"] * sr / 1000.0).round()
        x = timed("delay", delay, x, p["delay"], delay_samples, c.delay_volume)
        x = timed("pitch", pitch_shift, x, p["pitch"], p["semitones"], sr)
        x = timed(
            "reverb", reverb, x, p["reverb"], p["rt60_s"], p["damping"], p["wet"], sr, generator
        )
        self.last_timings = timings
        return x
