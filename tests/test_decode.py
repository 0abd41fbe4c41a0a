"""Decoding real encoded files: lengths, levels, seeking, streaming, and the ways files go bad."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest
import soxr
from audio_fixtures import FORMATS, music_signal, write_audio
from musicssl.engine import decode as dec
from musicssl.engine.decode import DecodeError

SECONDS = 3.0
LONG_SECONDS = 40.0
TITLE = "Ünïcödé ✓ 日本語"
LOSSLESS = {".flac", ".wav", ".aiff"}
# Lossy encoders add priming and pad the last frame (AAC: 1024 + up to 1023 samples, which this
# FFmpeg's mov muxer does not trim), so a decode may run up to ~50 ms long or short.
LENGTH_SLACK_S = {ext: (0.0 if ext in LOSSLESS else 0.05) for ext in FORMATS}
CODECS = {
    ".mp3": "mp3",
    ".flac": "flac",
    ".ogg": "vorbis",
    ".opus": "opus",
    ".m4a": "aac",
    ".wav": "pcm_s16le",
    ".aiff": "pcm_s16be",
    ".wma": "wmav2",
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decode")
    made = {
        ext: write_audio(
            folder / f"song{ext}", SECONDS, seed=0, tags={"title": TITLE, "artist": "Ä"}
        )
        for ext in FORMATS
    }
    made["mono.flac"] = write_audio(folder / "mono.flac", SECONDS, seed=0, channels=1)
    return made


@pytest.fixture(scope="module")
def long_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decode_long")
    return {
        ext: write_audio(folder / f"long{ext}", LONG_SECONDS, seed=5) for ext in (".mp3", ".flac")
    }


def reference(rate: int, source_rate: int = 44100) -> np.ndarray:
    """What the encoder was given, mean-downmixed and resampled the same way decode() does."""
    mono = music_signal(0, SECONDS, source_rate, 2).mean(axis=0)
    return soxr.resample(mono, source_rate, rate, quality="HQ").astype(np.float32)


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> float:
    """Peak normalised correlation over small lags: lossy codecs may shift audio by their delay."""
    n = min(len(a), len(b)) - 2 * max_lag
    assert n > 0
    x = a[max_lag : max_lag + n]
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        y = b[max_lag + lag : max_lag + lag + n]
        best = max(best, float(np.corrcoef(x, y)[0, 1]))
    return best


@pytest.mark.parametrize("rate", [22050, 16000])
@pytest.mark.parametrize("ext", list(FORMATS))
def test_every_format_decodes_to_mono_float32_with_the_right_length(files, ext, rate):
    x = dec.decode(files[ext], rate)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - SECONDS * rate) <= LENGTH_SLACK_S[ext] * rate + 1
    assert np.isfinite(x).all()
    # the fixture peaks at 0.5 (left) / 0.4 (right): a mean downmix peaks near 0.45
    assert 0.3 < np.abs(x).max() < 0.6
    ref = reference(rate, 48000 if ext == ".opus" else 44100)  # the fixture encodes Opus at 48k
    if ext in LOSSLESS:
        assert np.abs(x[: len(ref)] - ref[: len(x)]).max() < 1e-3
    else:
        assert best_correlation(x[: rate * 2], ref[: rate * 2], max_lag=rate // 20) > 0.9


def test_downmix_is_a_mean_so_mono_and_stereo_copies_match_in_level(files):
    stereo = dec.decode(files[".flac"], 44100)  # no resampling: only the downmix is in play
    mono = dec.decode(files["mono.flac"], 44100)
    signal = music_signal(0, SECONDS, 44100, 2)
    assert np.abs(stereo - signal.mean(axis=0)).max() < 1e-4  # 16-bit quantisation only
    assert np.abs(mono - signal[0]).max() < 1e-4
    assert abs(np.abs(stereo).max() - 0.45) < 0.01 and abs(np.abs(mono).max() - 0.5) < 0.01


@pytest.mark.parametrize("ext", [".mp3", ".flac", ".ogg", ".opus", ".m4a", ".wma"])
def test_stream_blocks_concatenate_to_decode(files, ext):
    rate, block_s = 22050, 0.7
    blocks = list(dec.stream(files[ext], rate, block_seconds=block_s))
    whole = dec.decode(files[ext], rate)
    block = round(block_s * rate)
    assert len(blocks) == -(-len(whole) // block)
    assert all(len(b) == block and b.dtype == np.float32 for b in blocks[:-1])
    assert 0 < len(blocks[-1]) <= block
    joined = np.concatenate(blocks)
    assert len(joined) == len(whole)
    np.testing.assert_allclose(joined, whole, atol=1e-6)


@pytest.mark.parametrize("ext", list(FORMATS))
def test_read_windows_match_slices_of_a_whole_decode(files, ext):
    rate = 16000
    whole = dec.decode(files[ext], rate)
    # unsorted, overlapping, touching the start, crossing the end, entirely past the end
    windows = [(2.2, 0.5), (0.0, 0.25), (1.0, 1.5), (1.1, 0.3), (2.75, 1.0), (10.0, 0.5)]
    got = dec.read_windows(files[ext], rate, windows)
    assert len(got) == len(windows)
    for (start, length), w in zip(windows, got, strict=True):
        k, n = round(start * rate), round(length * rate)
        assert w.dtype == np.float32 and len(w) == n
        part = whole[k : k + n]
        assert not w[len(part) :].any()  # past the end: zero padding only
        if ext in LOSSLESS:
            np.testing.assert_allclose(w[: len(part)], part, atol=1e-5)
        elif len(part) > rate // 10:
            # After a seek lossy decoders need not be bit-exact (AAC's noise substitution draws
            # from a random generator that a seek resets), but the samples must line up.
            assert np.corrcoef(w[: len(part)], part)[0, 1] > 0.999
            assert np.abs(w[: len(part)] - part).max() < 0.1
    assert not got[-1].any()


@pytest.mark.parametrize("ext", [".mp3", ".flac"])
def test_windows_in_a_long_file_seek_and_match_the_whole_decode(long_files, ext):
    path, rate = long_files[ext], 22050
    whole = dec.decode(path, rate)
    assert abs(len(whole) - LONG_SECONDS * rate) <= LENGTH_SLACK_S[ext] * rate
    windows = [(31.7, 3.0), (5.0, 2.0), (17.25, 4.0), (LONG_SECONDS - 1.0, 3.0)]
    got = dec.read_windows(path, rate, windows)
    for (start, length), w in zip(windows, got, strict=True):
        k, n = round(start * rate), round(length * rate)
        part = whole[k : k + n]
        assert len(w) == n
        assert np.corrcoef(w[: len(part)], part)[0, 1] > 0.999
        # mp3 after a seek decodes bit-identically once its pre-roll is discarded
        np.testing.assert_allclose(w[: len(part)], part, atol=1e-4)
        assert not w[len(part) :].any()
    # the same windows really came from seeks, not from decoding everything before them
    with dec._Source(path) as src:
        assert src.seekable
        for start, length in sorted(windows):
            src.window(round(start * rate), round(length * rate), rate, pad=True)
        assert src.seeks == len(windows)


def test_decode_with_offset_equals_the_slice(long_files):
    path, rate = long_files[".mp3"], 16000
    whole = dec.decode(path, rate)
    part = dec.decode(path, rate, offset=23.4, duration=5.0)
    k = round(23.4 * rate)
    assert len(part) == 5 * rate
    np.testing.assert_allclose(part, whole[k : k + len(part)], atol=1e-4)
    tail = dec.decode(path, rate, offset=LONG_SECONDS - 2.0)  # to the end, not padded
    np.testing.assert_allclose(tail, whole[round((LONG_SECONDS - 2.0) * rate) :], atol=1e-4)
    assert len(dec.decode(path, rate, offset=LONG_SECONDS + 5.0, duration=1.0)) == 0


@pytest.mark.parametrize("ext", list(FORMATS))
def test_probe_reports_stream_fields_and_unicode_tags(files, ext):
    info = dec.probe(files[ext])
    assert info.codec == CODECS[ext]
    assert info.sample_rate == (48000 if ext == ".opus" else 44100)
    assert info.channels == 2
    assert info.tags["title"] == TITLE
    assert all(k == k.lower() for k in info.tags)
    if ext == ".aiff":
        assert "artist" not in info.tags  # AIFF's NAME chunk carries the title only
    else:
        assert info.tags["artist"] == "Ä"
    if ext != ".ogg":
        assert info.duration == pytest.approx(SECONDS, abs=0.05)


def test_lying_ogg_duration_is_corrected_by_decoding(files):
    path = files[".ogg"]
    assert dec.probe(path).duration < 0.5  # FFmpeg's vorbis encoder: header says ~0.19 s
    assert dec.decoded_duration(path) == pytest.approx(SECONDS, abs=0.05)
    assert len(dec.decode(path, 22050)) == pytest.approx(SECONDS * 22050, abs=0.05 * 22050)
    with dec._Source(path) as src:
        assert not src.seekable  # its timestamps disagree with the header, so no seeking


def test_decoded_duration_counts_samples_exactly(files):
    assert dec.decoded_duration(files[".flac"]) == SECONDS
    assert dec.decoded_duration(files[".mp3"]) == SECONDS  # LAME gapless info is honoured


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, files):
    folder = tmp_path_factory.mktemp("bad")
    empty = folder / "empty.mp3"
    empty.write_bytes(b"")
    noise = folder / "noise.flac"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    text = folder / "notes.mp3"
    text.write_text("not audio at all\n" * 200)
    video = folder / "video.mkv"
    with av.open(str(video), "w") as out:
        st = out.add_stream("mpeg4", rate=10)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            out.mux(st.encode(frame))
        out.mux(st.encode(None))
    data = bytearray(files[".mp3"].read_bytes())
    rng = np.random.default_rng(2)
    for start in range(len(data) // 10, len(data) - 600, 800):  # damage throughout
        data[start : start + 600] = rng.integers(0, 256, 600, np.uint8).tobytes()
    corrupt = folder / "corrupt.mp3"
    corrupt.write_bytes(bytes(data))
    return {
        "missing": folder / "missing.flac",
        "empty": empty,
        "noise": noise,
        "text": text,
        "no audio": video,
        "corrupt throughout": corrupt,
    }


CALLS = {
    "probe": lambda p: dec.probe(p),
    "decode": lambda p: dec.decode(p, 22050),
    "decode offset": lambda p: dec.decode(p, 22050, offset=2.5),
    "stream": lambda p: list(dec.stream(p, 22050)),
    "read_windows": lambda p: dec.read_windows(p, 22050, [(0.0, 1.0), (2.0, 1.0)]),
    "decoded_duration": lambda p: dec.decoded_duration(p),
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize(
    "kind", ["missing", "empty", "noise", "text", "no audio", "corrupt throughout"]
)
def test_bad_files_raise_decode_error_naming_the_path(bad_files, kind, call):
    if kind == "corrupt throughout" and call in ("probe", "decode offset", "read_windows"):
        pytest.skip("reads only the header, or only audio before the damage")
    path = bad_files[kind]
    with pytest.raises(DecodeError) as info:
        CALLS[call](path)
    err = info.value
    assert err.path == str(path)
    assert str(path) in str(err) and err.reason in str(err)
    assert not isinstance(err.__cause__, DecodeError)


def test_decode_error_messages_say_what_went_wrong(bad_files):
    reasons = {}
    for kind, path in bad_files.items():
        with pytest.raises(DecodeError) as info:
            dec.decode(path, 22050)
        reasons[kind] = info.value.reason
    assert "No such file" in reasons["missing"]
    assert reasons["empty"] == "empty file"
    assert reasons["no audio"] == "no audio stream"
    assert reasons["corrupt throughout"].startswith("corrupt audio data from 0.")


def test_a_damaged_stretch_is_skipped_like_players_do(files, tmp_path):
    """A few bad frames mid-file must not cost the user the whole track."""
    data = bytearray(files[".mp3"].read_bytes())
    mid = len(data) // 2
    data[mid : mid + 3000] = np.random.default_rng(2).integers(0, 256, 3000, np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp3"
    damaged.write_bytes(bytes(data))
    clean = dec.decode(files[".mp3"], 22050)
    audio = dec.decode(damaged, 22050)
    assert 0.8 * clean.shape[0] < audio.shape[0] <= clean.shape[0] + 2000
    head = int(0.4 * clean.shape[0])
    np.testing.assert_allclose(audio[:head], clean[:head], atol=1e-4)


def test_decode_error_survives_pickling():
    err = pickle.loads(pickle.dumps(DecodeError("/music/a.mp3", "boom")))
    assert (err.path, err.reason, str(err)) == (
        "/music/a.mp3",
        "boom",
        "cannot decode '/music/a.mp3': boom",
    )


@pytest.mark.parametrize("ext", [".mp3", ".flac", ".wav"])
def test_truncated_file_decodes_what_is_there(files, tmp_path, ext):
    data = files[ext].read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) // 2])
    rate = 22050
    part = dec.decode(cut, rate)
    whole = dec.decode(files[ext], rate)
    assert 0.4 * SECONDS * rate < len(part) < 0.6 * SECONDS * rate
    # identical up to the last decoded frame, where soxr's flush sees the cut
    n = len(part) - rate // 10
    np.testing.assert_allclose(part[:n], whole[:n], atol=1e-5)
    assert dec.decoded_duration(cut) == pytest.approx(len(part) / rate, abs=0.01)


def test_bad_arguments_are_value_errors(files):
    path = files[".flac"]
    with pytest.raises(ValueError):
        dec.decode(path, 0)
    with pytest.raises(ValueError):
        dec.decode(path, 22050, offset=-1.0)
    with pytest.raises(ValueError):
        dec.read_windows(path, 22050, [(1.0, -0.5)])
    with pytest.raises(ValueError):
        next(dec.stream(path, 22050, block_seconds=0.0))
    assert dec.read_windows(path, 22050, []) == []


def test_parallel_decodes_in_threads_give_identical_results(files):
    paths = [files[".mp3"], files[".flac"], files[".m4a"], files[".mp3"]]
    serial = [dec.decode(p, 16000) for p in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda p: dec.decode(p, 16000), paths))
    for a, b in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(a, b)
