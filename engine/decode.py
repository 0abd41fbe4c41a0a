"""Audio decoding: any file FFmpeg reads -> mono float32 numpy at the rate the models want.

Analysis only ever needs a few windows of a track, and libraries hold 80-minute DJ mixes, so
besides whole-file `decode` there is `read_windows` (seek per window, one open) and `stream`
(bounded memory). Every failure surfaces as `DecodeError` carrying the path, so the scanner can
mark one track as broken and carry on; raw PyAV exceptions never escape.

Samples are addressed on one grid: output sample k is at time k / sample_rate counted from the
first decoded sample, so `read_windows` and `decode(offset=...)` return (up to lossy-decoder and
float noise) the same samples as slicing `decode(path, rate)`. PyAV releases the GIL while it
demuxes and decodes, and each call opens its own container, so these functions are safe to call
from worker threads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import soxr

from .errors import MusicSSLError
from .metadata import CANNOT_READ

__all__ = [
    "AudioInfo",
    "DecodeError",
    "decode",
    "decoded_duration",
    "probe",
    "read_windows",
    "stream",
]

# soxr rather than FFmpeg's swr: soxr "HQ" is a steep linear-phase filter with no audible aliasing,
# yet still decodes mp3/flac to 22050 Hz at several hundred times real time.
SOXR_QUALITY = "HQ"
# Decoded (and discarded) before a seek target, so lossy decoders (mp3 bit reservoir, MDCT
# overlap, Opus/Vorbis pre-roll) have settled by the time the wanted samples come out.
SEEK_PREROLL_S = 0.5
# Resampled before a window's first sample, so soxr's filter history is real audio and the window
# equals the same stretch of a whole-file decode instead of starting with a filter transient.
RESAMPLE_MARGIN_S = 0.05
# Offsets closer to the start than this are reached by decoding from the start: cheaper than a
# seek, and exact.
SEEK_MIN_OFFSET_S = 2.0
# Damaged packets are skipped (the rest of the track is still music) unless there are more than
# this many and they exceed this share of the packets read so far.
_MIN_BAD_PACKETS = 8
_MAX_BAD_PACKET_SHARE = 0.1
# FFmpeg decoder threading. Off: of the audio decoders only flac has frame threads, it measured
# no faster (bench/decode_bench.py --no-pin --thread-type AUTO), and the engine already decodes
# several files in parallel threads.
DECODER_THREAD_TYPE = "NONE"
# Source samples per soxr call: per-call overhead dominates with 1152-sample mp3 frames.
_SOXR_BATCH = 1 << 15
# Source rates decoded at all. A damaged WAV header claiming 1 Hz made a 200 KB file take 275 s:
# every source sample became 22,050 output samples. No real audio is that slow,
# and nothing past 1 MHz is PCM audio (DSD decodes at 352.8 kHz).
_MIN_SOURCE_RATE = 1000
_MAX_SOURCE_RATE = 1_000_000
# swr's stereo->mono matrix is (L+R)*0.707; normalising it to a plain mean keeps mono and stereo
# copies of a song at the same level and keeps every sample within [-1, 1].
_DOWNMIX_OPTIONS = {"rematrix_maxval": "1.0"}
# Non-UTF-8 tags (old ID3v2 in cp1252) must not make a playable file undecodable.
_OPEN_OPTIONS = {"metadata_errors": "replace"}

_EMPTY = np.zeros(0, dtype=np.float32)
# What PyAV raises for bad input (InvalidDataError is both an FFmpegError and a ValueError; the
# resampler and metadata decoding raise plain ValueError).
_AV_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError)


class DecodeError(MusicSSLError):
    """A file that cannot be decoded; carries the path so a library scan can report and skip it."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode '{self.path}': {reason}")

    def __reduce__(self):  # keep the two-argument form across process pools
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class AudioInfo:
    """Header facts, read without decoding; `duration` may be wrong (see decoded_duration)."""

    duration: float | None
    sample_rate: int
    channels: int
    codec: str
    tags: dict[str, str] = field(default_factory=dict)


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Read stream parameters and tags from the header only, so a library scan stays fast."""
    with _open(path) as container, _as_decode_error(path):
        st = _audio_stream(path, container)
        cc = st.codec_context
        rate = int(cc.sample_rate or st.rate or 0)
        if rate <= 0:
            raise DecodeError(path, "audio stream has no sample rate")
        duration: float | None = None
        if st.duration is not None and st.time_base is not None:
            duration = float(st.duration * st.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        tags = {str(k).lower(): str(v) for k, v in st.metadata.items()}
        # Container-level tags win; Ogg keeps its Vorbis comments on the stream instead.
        tags.update({str(k).lower(): str(v) for k, v in container.metadata.items()})
        return AudioInfo(
            duration=duration,
            sample_rate=rate,
            channels=int(cc.channels or st.layout.nb_channels or 0),
            # the codec's canonical id name ("mp3"), not the decoder's ("mp3float")
            codec=cc.codec.canonical_name or cc.name,
            tags=tags,
        )


def decode(
    path: str | os.PathLike[str],
    sample_rate: int,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Decode to mono float32; with `offset` it seeks instead of decoding everything before it.

    Returns `decode(path, rate)[round(offset*rate):][:round(duration*rate)]`, shorter (never
    padded) when the file ends first.
    """
    sample_rate = _check_rate(sample_rate)
    if offset < 0 or (duration is not None and duration < 0):
        raise ValueError(f"offset and duration must be >= 0, got {offset}, {duration}")
    start = round(offset * sample_rate)
    count = None if duration is None else round(duration * sample_rate)
    with _Source(path) as src:
        if count is None and start == 0:
            return _concat(src.resampled_from_start(sample_rate))
        return src.window(start, count, sample_rate, pad=False)


def stream(
    path: str | os.PathLike[str], sample_rate: int, block_seconds: float = 30.0
) -> Iterator[np.ndarray]:
    """Yield the whole file as consecutive blocks, so an hour-long mix never sits in memory.

    Blocks hold exactly round(block_seconds*rate) samples (the last may be shorter) and their
    concatenation equals `decode(path, rate)`: soxr is fed incrementally, never restarted.
    """
    sample_rate = _check_rate(sample_rate)
    block = round(block_seconds * sample_rate)
    if block < 1:
        raise ValueError(f"block_seconds={block_seconds} is shorter than one sample")
    with _Source(path) as src:
        pending: list[np.ndarray] = []
        have = 0
        for chunk in src.resampled_from_start(sample_rate):
            pending.append(chunk)
            have += len(chunk)
            if have >= block:
                buf = np.concatenate(pending)
                cut = len(buf) - len(buf) % block
                for i in range(0, cut, block):
                    yield buf[i : i + block].copy()
                pending = [buf[cut:]]
                have = len(pending[0])
        if have:
            yield np.concatenate(pending)


def read_windows(
    path: str | os.PathLike[str], sample_rate: int, windows: Sequence[tuple[float, float]]
) -> list[np.ndarray]:
    """Decode only the (start_s, length_s) windows that analysis needs, in the caller's order.

    One open; windows are visited in time order with a seek each (or one forward pass when the
    file's timestamps cannot be trusted). Each result has exactly round(length*rate) samples,
    zero-padded past the end of the file.
    """
    sample_rate = _check_rate(sample_rate)
    spans = []
    for start_s, length_s in windows:
        if start_s < 0 or length_s < 0:
            raise ValueError(f"window ({start_s}, {length_s}) must have start and length >= 0")
        spans.append((round(start_s * sample_rate), round(length_s * sample_rate)))
    results: list[np.ndarray | None] = [None] * len(spans)
    if not spans:
        return []
    order = sorted(range(len(spans)), key=lambda i: spans[i])
    with _Source(path) as src:
        if src.seekable:
            for i in order:
                start, count = spans[i]
                results[i] = src.window(start, count, sample_rate, pad=True)
        else:
            outs = src.windows_in_one_pass([spans[i] for i in order], sample_rate)
            for i, out in zip(order, outs, strict=True):
                results[i] = out
    return [r if r is not None else np.zeros(0, np.float32) for r in results]


def decoded_duration(path: str | os.PathLike[str]) -> float:
    """Exact duration by decoding every frame, for containers whose header lies (FFmpeg's own
    Vorbis encoder writes Ogg granule positions that claim 0.19 s for a 3 s file)."""
    samples: dict[int, int] = {}  # per rate, summed as integers so 3 s comes out as exactly 3.0
    with _open(path) as container, _as_decode_error(path):
        st = _audio_stream(path, container)
        st.thread_type = DECODER_THREAD_TYPE
        for frame in _decoded_frames(path, container, st):
            samples[frame.sample_rate] = samples.get(frame.sample_rate, 0) + frame.samples
    if not any(samples.values()):
        raise DecodeError(path, "no decodable audio frames")
    return sum(n / rate for rate, n in samples.items())


# --- internals ---------------------------------------------------------------------------------


def _check_rate(sample_rate: int) -> int:
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    return int(sample_rate)


@contextmanager
def _as_decode_error(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn whatever PyAV raises into a DecodeError naming the file."""
    try:
        yield
    except DecodeError:
        raise
    except _AV_ERRORS as exc:
        raise DecodeError(path, _reason(exc)) from exc


def _reason(exc: BaseException) -> str:
    """The FFmpeg/OS message without the path PyAV appends (DecodeError adds it once).

    FFmpeg's bare "End of file" (an Ogg page or header cut short) says nothing to a user, so it
    is spelled out."""
    if isinstance(exc, av.EOFError):
        return "unexpected end of file (truncated, still being copied, or not audio)"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text)


def _open(path: str | os.PathLike[str]) -> av.container.InputContainer:
    """Open for reading. A file the OS will not hand over (gone with an unplugged drive, no
    permission) gets the scanner's CANNOT_READ reason, so the next scan retries it instead of
    leaving a good track marked broken for ever."""
    name = str(path)
    try:
        size = os.stat(name).st_size
    except OSError as exc:
        raise DecodeError(name, f"{CANNOT_READ}: {_reason(exc)}") from exc
    if Path(name).is_dir():
        raise DecodeError(name, "is a directory")
    if size == 0:
        raise DecodeError(name, "empty file")
    with _as_decode_error(name):
        try:
            return av.open(name, "r", **_OPEN_OPTIONS)
        except (PermissionError, FileNotFoundError) as exc:  # PyAV's errors subclass these
            raise DecodeError(name, f"{CANNOT_READ}: {_reason(exc)}") from exc


def _audio_stream(path: str | os.PathLike[str], container: av.container.InputContainer):
    if not container.streams.audio:
        raise DecodeError(path, "no audio stream")
    return container.streams.audio[0]


def _decoded_frames(
    path: str | os.PathLike[str], container: av.container.InputContainer, st: av.AudioStream
) -> Iterator[av.AudioFrame]:
    """The stream's frames from the current position, skipping unreadable packets as media
    players do: a truncated tail or a damaged frame must not cost the user a whole track. A file
    whose damage is pervasive (more than `_MAX_BAD_PACKET_SHARE` of its packets) is an error."""
    error: Exception | None = None
    error_at: float | None = None
    bad = total = 0
    produced = False
    for packet in container.demux(st):
        total += 1
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            bad += 1
            if error is None:
                error = exc
                if packet.pts is not None and packet.time_base is not None:
                    error_at = float(packet.pts * packet.time_base)
            if bad > _MIN_BAD_PACKETS and bad > _MAX_BAD_PACKET_SHARE * total:
                where = "" if error_at is None else f" from {error_at:.2f} s"
                raise DecodeError(
                    path, f"corrupt audio data{where} ({bad} of {total} packets): {_reason(error)}"
                ) from None
            continue
        if frames:
            produced = True
            yield from frames
    if error is not None and not produced:
        raise DecodeError(path, _reason(error))


def _concat(chunks: Iterable[np.ndarray]) -> np.ndarray:
    parts = list(chunks)
    if not parts:
        return _EMPTY.copy()
    return np.concatenate(parts).astype(np.float32, copy=False)


class _Downmix:
    """Decoded frames -> mono float32 arrays at the source rate, via FFmpeg's channel matrix."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._resampler: av.AudioResampler | None = None

    def _new(self) -> av.AudioResampler:
        return av.AudioResampler(
            format="flt", layout="mono", rate=self.rate, options=_DOWNMIX_OPTIONS
        )

    def __call__(self, frame: av.AudioFrame) -> np.ndarray:
        if self._resampler is None:
            self._resampler = self._new()
        try:
            frames = self._resampler.resample(frame)
        except ValueError as exc:
            if isinstance(exc, av.FFmpegError):
                raise
            # The stream changed layout or format mid-file: drain the old graph, build a new one.
            frames = self._resampler.resample(None)
            self._resampler = self._new()
            frames += self._resampler.resample(frame)
        if not frames:
            return _EMPTY
        if len(frames) == 1:
            return frames[0].to_ndarray().reshape(-1)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


def _soxr(chunks: Iterable[np.ndarray], src_rate: int, dst_rate: int) -> Iterator[np.ndarray]:
    """Resample a chunk sequence as one continuous signal, flushing soxr's tail at the end."""
    if src_rate == dst_rate:
        for chunk in chunks:
            if len(chunk):
                yield chunk
        return
    rs = soxr.ResampleStream(src_rate, dst_rate, 1, dtype="float32", quality=SOXR_QUALITY)
    pending: list[np.ndarray] = []
    have = 0
    for chunk in chunks:
        pending.append(chunk)
        have += len(chunk)
        if have >= _SOXR_BATCH:
            out = rs.resample_chunk(np.concatenate(pending))
            pending, have = [], 0
            if len(out):
                yield out
    tail = np.concatenate(pending) if pending else _EMPTY
    out = rs.resample_chunk(tail, last=True)
    if len(out):
        yield out


class _Source:
    """One open audio stream plus what the first decoded frame tells about its timestamps."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._container: av.container.InputContainer | None = None
        self.seeks = 0  # seeks that landed usably; counted so tests can tell seeking really happens
        self._open_fresh()
        first = self._head
        assert first is not None
        self.rate = int(first.sample_rate)
        if not _MIN_SOURCE_RATE <= self.rate <= _MAX_SOURCE_RATE:
            self.close()
            raise DecodeError(self.path, f"{self.rate} Hz is not an audio sample rate")
        st = self._stream
        tb = st.time_base
        self._time_base = tb
        self._origin = first.pts
        # Seek only where timestamps locate single samples and agree with the header; otherwise
        # (ASF's millisecond clock, Ogg files with bogus granule positions, no pts) a seek could
        # land on the wrong sample, so windows come from one forward pass instead.
        self.seekable = bool(
            first.pts is not None
            and tb is not None
            and tb * self.rate <= 1
            and (st.start_time is None or abs(first.pts - st.start_time) * tb * self.rate <= 1)
        )

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _guard(self, gen: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        with _as_decode_error(self.path):
            yield from gen

    def _open_fresh(self) -> None:
        """(Re)open so decoding starts exactly as a plain whole-file decode does."""
        self.close()
        self._container = _open(self.path)
        try:
            with _as_decode_error(self.path):
                self._stream = _audio_stream(self.path, self._container)
                self._stream.thread_type = DECODER_THREAD_TYPE
                self._frames = _decoded_frames(self.path, self._container, self._stream)
                self._head: av.AudioFrame | None = next(self._frames, None)
        except DecodeError:
            self.close()
            raise
        if self._head is None:
            self.close()
            raise DecodeError(self.path, "no decodable audio frames")

    def _mono_from_start(self) -> Iterator[np.ndarray]:
        """Every sample from the first decoded one, as mono float32 at the source rate."""
        if self._head is None:  # this container was already read past its start
            self._open_fresh()
        head, self._head = self._head, None
        downmix = _Downmix(self.rate)
        yield downmix(head)
        for frame in self._frames:
            yield downmix(frame)

    def resampled_from_start(self, rate: int) -> Iterator[np.ndarray]:
        return self._guard(_soxr(self._mono_from_start(), self.rate, rate))

    def _mono_after_seek(self, first: int) -> Iterator[np.ndarray] | None:
        """Source samples from index `first` on via a seek, or None if the seek overshot."""
        assert self._container is not None
        self._head = None
        tb = self._time_base
        target_s = first / self.rate - SEEK_PREROLL_S
        ts = self._origin + math.floor(target_s / tb)
        try:
            self._container.seek(ts, stream=self._stream)
        except av.FFmpegError:  # some demuxers refuse some targets: decode from the start
            return None
        frames = _decoded_frames(self.path, self._container, self._stream)
        downmix = _Downmix(self.rate)
        for frame in frames:
            if frame.pts is None:
                return None
            pos = round((frame.pts - self._origin) * tb * self.rate)
            if pos > first:
                return None
            mono = downmix(frame)
            break
        else:
            return iter(())  # seeked past the end of the stream
        self.seeks += 1
        return self._trimmed(first, pos, mono, frames, downmix)

    @staticmethod
    def _trimmed(first, pos, mono, frames, downmix) -> Iterator[np.ndarray]:
        while True:
            end = pos + len(mono)
            if end > first:
                yield mono[max(0, first - pos) :]
                break
            pos = end
            frame = next(frames, None)
            if frame is None:
                return
            mono = downmix(frame)
        for frame in frames:
            yield downmix(frame)

    def window(self, start: int, count: int | None, rate: int, pad: bool) -> np.ndarray:
        """Output samples [start, start+count) on the whole-file grid (count None: to the end)."""
        if count == 0:
            return _EMPTY.copy()
        with _as_decode_error(self.path):
            return self._window(start, count, rate, pad)

    def _window(self, start: int, count: int | None, rate: int, pad: bool) -> np.ndarray:
        # Start resampling a little before `start`, on a source sample that falls exactly on an
        # output sample, so the window lines up with (and matches) a whole-file decode.
        g = math.gcd(self.rate, rate)
        step_in, step_out = self.rate // g, rate // g
        lead_out = (max(0, start - round(RESAMPLE_MARGIN_S * rate)) // step_out) * step_out
        first_in = lead_out // step_out * step_in
        chunks: Iterator[np.ndarray] | None = None
        if self.seekable and start >= SEEK_MIN_OFFSET_S * rate and lead_out > 0:
            chunks = self._mono_after_seek(first_in)
        if chunks is None:  # decode from the start instead: exact, just slower
            chunks, lead_out = self._mono_from_start(), 0
        skip = start - lead_out
        want = count
        parts: list[np.ndarray] = []
        have = 0
        for out in _soxr(chunks, self.rate, rate):
            if skip:
                drop = min(skip, len(out))
                skip -= drop
                out = out[drop:]
            if want is not None and have + len(out) >= want:
                parts.append(out[: want - have])
                have = want
                break
            parts.append(out)
            have += len(out)
        result = _concat(parts)
        if pad and want is not None and len(result) < want:
            result = np.concatenate([result, np.zeros(want - len(result), np.float32)])
        return result

    def windows_in_one_pass(
        self, spans: Sequence[tuple[int, int]], rate: int
    ) -> Iterator[np.ndarray]:
        """Sorted (start, count) output spans cut from a single forward decode (no seeking)."""
        pos = 0
        outs = [[] for _ in spans]
        last_end = max(s + c for s, c in spans)
        chunks = self.resampled_from_start(rate)
        for out in chunks:
            end = pos + len(out)
            for (s, c), parts in zip(spans, outs, strict=True):
                lo, hi = max(s, pos), min(s + c, end)
                if lo < hi:
                    parts.append(out[lo - pos : hi - pos])
            pos = end
            if pos >= last_end:
                break
        chunks.close()
        for (_, c), parts in zip(spans, outs, strict=True):
            got = _concat(parts)
            if len(got) < c:
                got = np.concatenate([got, np.zeros(c - len(got), np.float32)])
            yield got
