"""Real encoded audio made at test time with PyAV: tests exercise the FFmpeg paths users hit."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

# extension -> (container format, encoder, encoder options). The bundled FFmpeg has no libvorbis:
# Ogg uses the native (experimental) vorbis encoder.
FORMATS: dict[str, tuple[str, str, dict[str, str]]] = {
    ".mp3": ("mp3", "libmp3lame", {}),
    ".flac": ("flac", "flac", {}),
    ".ogg": ("ogg", "vorbis", {"strict": "experimental"}),
    ".opus": ("ogg", "libopus", {}),
    ".m4a": ("ipod", "aac", {}),
    ".wav": ("wav", "pcm_s16le", {}),
    ".aiff": ("aiff", "pcm_s16be", {}),
    ".wma": ("asf", "wmav2", {}),
}
RATES = {"libopus": 48000}


def music_signal(seed: int, seconds: float, rate: int = 44100, channels: int = 2) -> np.ndarray:
    """A deterministic, music-like stereo signal (notes with harmonics + noise hits), shape (C, N).

    Different seeds give different keys, tempi and timbres, so similarity tests have structure.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    out = np.zeros(n, dtype=np.float64)
    base = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    beat = 60.0 / rng.uniform(70, 160)
    harmonics = rng.uniform(0.1, 1.0, size=6)
    note_starts = np.arange(0.0, seconds, beat)
    for start in note_starts:
        f = base * 2 ** (rng.choice([0, 2, 4, 5, 7, 9, 11, 12]) / 12)
        i0, i1 = int(start * rate), min(n, int((start + beat) * rate))
        tt = t[i0:i1] - start
        env = np.exp(-3.0 * tt / beat)
        tone = sum(h * np.sin(2 * np.pi * f * (k + 1) * tt) for k, h in enumerate(harmonics))
        out[i0:i1] += env * tone / harmonics.sum()
        hit = min(i1 - i0, int(0.03 * rate))
        out[i0 : i0 + hit] += rng.normal(0, 0.3, hit) * np.exp(-np.arange(hit) / (0.005 * rate))
    out = 0.5 * out / max(1e-9, np.abs(out).max())
    chans = [out * (1.0 - 0.2 * c) for c in range(channels)]
    return np.stack(chans).astype(np.float32)


def write_audio(
    path: str | Path,
    seconds: float = 3.0,
    seed: int = 0,
    tags: dict[str, str] | None = None,
    channels: int = 2,
    rate: int = 44100,
) -> Path:
    """Encode `music_signal(seed)` into `path` (format from its extension), with metadata."""
    path = Path(path)
    container_fmt, codec, options = FORMATS[path.suffix.lower()]
    rate = RATES.get(codec, rate)
    samples = music_signal(seed, seconds, rate, channels)
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), "w", format=container_fmt) as out:
        for key, value in (tags or {}).items():
            out.metadata[key] = value
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        stream.bit_rate = 128000
        stream.codec_context.options = dict(options)
        stream.codec_context.open(strict=False)
        frame_size = stream.codec_context.frame_size or 1024
        resampler = av.AudioResampler(format=stream.format.name, layout=layout, rate=rate)
        for i in range(0, samples.shape[1], frame_size):
            chunk = np.ascontiguousarray(samples[:, i : i + frame_size])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = rate
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
        for converted in resampler.resample(None):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return path
