"""Play MIDI files through FluidSynth into audio files, with a chosen General MIDI soundfont.

Two soundfonts on purpose: training pieces use FluidR3 and test pieces another bank (TimGM6mb),
so the synthetic test measures labels that survive a change of instrument samples rather than
memorised sample timbres. FluidSynth is a recipe-time tool (Debian package), never a product
dependency.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

__all__ = ["SOUNDFONTS", "Soundfont", "fluidsynth_binary", "render"]

# FluidSynth's default master gain (0.2) leaves full GM mixes around -35 dBFS RMS, far below
# mastered music; 0.5 brings loud pieces near -25 dBFS without clipping dense ones.
GAIN = 0.5


@dataclass(frozen=True)
class Soundfont:
    name: str
    package: str  # the Debian package that installs it
    path: Path


SF2 = Path("/usr/share/sounds/sf2")
SOUNDFONTS = {
    "fluidr3": Soundfont("FluidR3_GM", "fluid-soundfont-gm", SF2 / "FluidR3_GM.sf2"),
    "timgm6mb": Soundfont("TimGM6mb", "timgm6mb-soundfont", SF2 / "TimGM6mb.sf2"),
}


def fluidsynth_binary() -> str | None:
    """Path of the `fluidsynth` program, or None when it is not installed."""
    return shutil.which("fluidsynth")


def _write_flac(path: Path, pcm: np.ndarray, sample_rate: int) -> None:
    """(frames, channels) int16 -> FLAC with PyAV (its FFmpeg has the native flac encoder)."""
    layout = "stereo" if pcm.shape[1] == 2 else "mono"
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=sample_rate)
        stream.layout = layout
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm.reshape(1, -1)), format="s16", layout=layout
        )
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def render(
    midi: Path, out: Path, soundfont: Path, sample_rate: int = 22050, seconds: float | None = None
) -> Path:
    """Render `midi` to the FLAC file `out` at `sample_rate`, cut to `seconds` when given.

    FluidSynth's fast (non-real-time) rendering appends about five seconds of digital silence
    after the last release tail; cutting at the MIDI's length plus a short tail keeps crops of
    silence out of training. Written to a temporary name first so an interrupted build never
    leaves a short file behind.
    """
    binary = fluidsynth_binary()
    if binary is None:
        raise FileNotFoundError("fluidsynth is not installed (Debian package: fluidsynth)")
    if not soundfont.is_file():
        raise FileNotFoundError(f"{soundfont}: soundfont missing")
    out.parent.mkdir(parents=True, exist_ok=True)
    wav = out.with_name(out.stem + ".part.wav")
    tmp = out.with_name(out.stem + ".part.flac")
    try:
        subprocess.run(
            [
                binary,
                "-n",
                "-i",
                "-q",
                "-o",
                "synth.dynamic-sample-loading=1",
                "-g",
                str(GAIN),
                "-r",
                str(sample_rate),
                "-O",
                "s16",
                "-T",
                "wav",
                "-F",
                str(wav),
                str(soundfont),
                str(midi),
            ],
            check=True,
            capture_output=True,
        )
        with wave.open(str(wav), "rb") as w:
            channels = w.getnchannels()
            frames = w.getnframes()
            if seconds is not None:
                frames = min(frames, round(seconds * sample_rate))
            pcm = np.frombuffer(w.readframes(frames), np.int16).reshape(-1, channels)
        _write_flac(tmp, pcm, sample_rate)
        tmp.replace(out)
    finally:
        wav.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return out
