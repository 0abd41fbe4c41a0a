"""The synthetic-music generator: its tags must describe what its MIDI actually contains."""

from __future__ import annotations

import mido
import numpy as np
import pytest
from musicssl.training.corpus.render import SOUNDFONTS, fluidsynth_binary, render
from musicssl.training.corpus.synth_midi import (
    DRUM_CHANNEL,
    FAST_BPM,
    GENRES,
    LOUD_VELOCITY,
    PROGRAM_TAGS,
    QUIET_VELOCITY,
    SLOW_BPM,
    TEMPLATES,
    facets_of,
    piece_to_midi,
    random_spec,
    tags_of,
)


def _played(midi: mido.MidiFile) -> tuple[set[int], bool, list[int], float]:
    """(programs that sound, drums sound, note velocities, bpm) read back from the file."""
    program: dict[int, int] = {}
    sounding: set[int] = set()
    drums = False
    velocities: list[int] = []
    bpm = float("nan")
    for msg in mido.merge_tracks(midi.tracks):
        if msg.type == "set_tempo":
            bpm = round(mido.tempo2bpm(msg.tempo), 3)
        elif msg.type == "program_change":
            program[msg.channel] = msg.program
        elif msg.type == "note_on" and msg.velocity > 0:
            velocities.append(msg.velocity)
            if msg.channel == DRUM_CHANNEL:
                drums = True
            else:
                sounding.add(program[msg.channel])  # a note before its program would be GM piano
    return sounding, drums, velocities, bpm


@pytest.mark.parametrize("genre", GENRES)
def test_tags_are_what_the_midi_plays(genre):
    rng = np.random.default_rng(7)
    for _ in range(4):
        spec = random_spec(rng, genre, seconds=8.0)
        midi = piece_to_midi(spec)
        programs, drums, velocities, bpm = _played(midi)
        expected = set(TEMPLATES[genre].tags)
        expected |= {tag for p in programs for tag in PROGRAM_TAGS[p]}
        expected |= {"drums"} if drums else set()
        expected |= {"fast"} if bpm >= FAST_BPM else {"slow"} if bpm <= SLOW_BPM else set()
        # Every note's velocity is the piece's level plus a part offset (-25..+5) and jitter (±8).
        assert min(velocities) >= max(1, spec.velocity - 33)
        assert max(velocities) <= min(127, spec.velocity + 13)
        tags = set(tags_of(spec))
        assert tags - {"loud", "quiet"} == expected
        assert ("loud" in tags) == (spec.velocity >= LOUD_VELOCITY)
        assert ("quiet" in tags) == (spec.velocity <= QUIET_VELOCITY)
        assert set(facets_of(spec)["instrument"]) == expected & {
            t for tags_ in PROGRAM_TAGS.values() for t in tags_
        } | ({"drums"} if drums else set())


def test_length_and_determinism():
    spec = random_spec(np.random.default_rng(3), "jazz", seconds=20.0)
    midi = piece_to_midi(spec)
    bar = 240 / spec.bpm
    assert abs(midi.length - 20.0) <= bar / 2 + 1e-6
    again = piece_to_midi(spec)
    assert [str(m) for m in mido.merge_tracks(again.tracks)] == [
        str(m) for m in mido.merge_tracks(midi.tracks)
    ]


def test_notes_stay_in_key():
    spec = random_spec(np.random.default_rng(5), "pop", seconds=8.0)
    scale = {
        (spec.tonic + s) % 12
        for s in ((0, 2, 4, 5, 7, 9, 11) if spec.mode == "major" else (0, 2, 3, 5, 7, 8, 10))
    }
    for msg in mido.merge_tracks(piece_to_midi(spec).tracks):
        if msg.type == "note_on" and msg.channel != DRUM_CHANNEL:
            assert msg.note % 12 in scale


@pytest.mark.skipif(fluidsynth_binary() is None, reason="fluidsynth binary not installed")
def test_render_length(tmp_path):
    from musicssl.engine.decode import decode

    font = SOUNDFONTS["timgm6mb"].path
    if not font.is_file():
        font = SOUNDFONTS["fluidr3"].path
    if not font.is_file():
        pytest.skip("no GM soundfont installed (fluid-soundfont-gm / timgm6mb-soundfont)")
    spec = random_spec(np.random.default_rng(1), "rock", seconds=4.0)
    midi = piece_to_midi(spec)
    midi.save(tmp_path / "p.mid")
    out = render(tmp_path / "p.mid", tmp_path / "p.flac", font, 22050, midi.length + 1.0)
    audio = decode(out, 22050)
    assert abs(len(audio) / 22050 - (midi.length + 1.0)) < 0.01
    seconds = np.arange(len(audio)) / 22050
    for start in np.arange(0.0, midi.length - 0.5, 0.5):  # sound all along the piece
        part = audio[(seconds >= start) & (seconds < start + 0.5)]
        assert float(np.sqrt(np.mean(part**2))) > 1e-3, start
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.flac", "p.mid"]
