"""Labelled synthetic music: multi-instrument MIDI pieces from genre templates.

Real music with trustworthy instrument/genre/tempo labels is not openly available at recipe
time, so the corpus writes its own: each piece has drums, bass, chords and a melody chosen by a
genre template, a tempo, a key and mode and a dynamic level, and its tags are read off what was
actually written (the General MIDI programs that play notes, the tempo, the velocities) — a tag
is never claimed for something the MIDI does not contain. Rendering (`render`) with two
different soundfonts then measures how far the labels transfer across timbre.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mido
import numpy as np

__all__ = [
    "DRUM_CHANNEL",
    "GENRES",
    "PROGRAM_TAGS",
    "TEMPLATES",
    "PieceSpec",
    "Template",
    "facets_of",
    "piece_to_midi",
    "random_spec",
    "tags_of",
]

TICKS = 480  # per beat
DRUM_CHANNEL = 9
FAST_BPM = 130  # MagnaTagATune's "fast"/"slow" have no definition; these are the usual bounds
SLOW_BPM = 85
LOUD_VELOCITY = 100
QUIET_VELOCITY = 55

# General MIDI program -> the tags its sound honestly supports.
PROGRAM_TAGS: dict[int, tuple[str, ...]] = {
    0: ("piano",),  # acoustic grand
    1: ("piano",),  # bright acoustic
    6: ("harpsichord",),
    16: ("organ",),  # drawbar
    19: ("organ",),  # church
    24: ("guitar",),  # nylon
    25: ("guitar",),  # steel
    27: ("guitar",),  # clean electric
    29: ("guitar",),  # overdriven
    30: ("guitar",),  # distortion
    32: ("bass",),  # acoustic
    33: ("bass",),  # finger
    34: ("bass",),  # pick
    38: ("bass", "synth"),  # synth bass
    40: ("violin",),
    42: ("cello",),
    46: ("harp",),
    48: ("strings",),  # string ensemble
    49: ("strings",),  # slow strings
    52: ("choir",),  # choir aahs
    56: ("brass",),  # trumpet
    57: ("brass",),  # trombone
    61: ("brass",),  # brass section
    73: ("flute",),
    80: ("synth",),  # square lead
    81: ("synth",),  # saw lead
    88: ("synth",),  # new age pad
    89: ("synth",),  # warm pad
    90: ("synth",),  # polysynth
    104: ("sitar",),
}

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
# Chord progressions as scale degrees (0 = tonic), one chord per bar.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 0), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 0, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4)),
}
# GM percussion notes
KICK, SNARE, CLAP, HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE, SHAKER = (
    36,
    38,
    39,
    42,
    44,
    46,
    49,
    51,
    70,
)


@dataclass(frozen=True)
class Template:
    """What a genre plays: candidate programs per role, styles, tempo and dynamics ranges."""

    tags: tuple[str, ...]
    tempo: tuple[int, int]
    velocity: tuple[int, int]
    modes: tuple[str, ...]
    drums: str | None  # drum pattern name; None = no drums
    bass: tuple[int, ...]  # empty = no bass part
    bass_style: str
    chords: tuple[int, ...]
    chord_style: str
    melody: tuple[int, ...]
    melody_density: float  # notes per beat
    extra: tuple[int, ...] = ()  # an optional second layer (pad/counter-melody)
    extra_probability: float = 0.0
    swing: bool = False


TEMPLATES: dict[str, Template] = {
    "rock": Template(
        ("rock",), (100, 160), (85, 120), ("major", "minor"), "rock",
        (33, 34), "octave", (29, 30, 27, 25), "strum", (29, 30, 16, 0), 1.5, (16, 48), 0.4,
    ),
    "metal": Template(
        ("metal",), (140, 200), (100, 127), ("minor",), "metal",
        (34, 33), "root8", (30,), "power", (30, 29), 2.0, (48, 52), 0.3,
    ),
    "classical": Template(
        ("classical",), (60, 140), (40, 110), ("major", "minor"), None,
        (42, 0), "root", (48, 0, 6, 46, 19), "arpeggio", (40, 73, 0, 6), 1.0, (52, 46, 73), 0.4,
    ),
    "techno": Template(
        ("electronic", "techno"), (120, 145), (85, 120), ("minor", "major"), "four",
        (38,), "octave", (89, 90, 81), "offbeat", (80, 81), 2.0, (88,), 0.5,
    ),
    "ambient": Template(
        ("ambient",), (60, 90), (30, 70), ("major", "minor"), None,
        (), "pedal", (88, 89, 52, 48), "pad", (73, 46, 0), 0.25, (52, 88), 0.5,
    ),
    "jazz": Template(
        ("jazz",), (90, 190), (55, 100), ("major", "minor"), "swing",
        (32,), "walking", (0, 16), "comp", (56, 57, 73, 0), 1.5, (), 0.0, True,
    ),
    "country": Template(
        ("country",), (90, 150), (70, 105), ("major",), "country",
        (32, 33), "root", (25,), "strum", (40, 25), 1.5, (0, 46), 0.3,
    ),
    "pop": Template(
        ("pop",), (90, 130), (70, 110), ("major", "minor"), "pop",
        (33, 38), "root", (0, 27, 90, 48), "block", (80, 0, 73, 81), 1.0, (48, 89), 0.4,
    ),
    "dance": Template(
        ("dance",), (118, 132), (90, 120), ("minor", "major"), "four",
        (38, 33), "octave", (0, 90, 81), "offbeat", (81, 80, 0), 2.0, (89,), 0.4,
    ),
    "new age": Template(
        ("new age",), (60, 100), (35, 75), ("major",), None,
        (), "pedal", (88, 89, 46, 0, 48), "pad", (73, 46, 104, 0), 0.5, (52, 104, 73), 0.5,
    ),
}  # fmt: skip
GENRES = tuple(TEMPLATES)


@dataclass
class PieceSpec:
    """Everything `piece_to_midi` needs; the same spec always gives the same MIDI."""

    genre: str
    bpm: int
    tonic: int  # MIDI pitch class 0..11
    mode: str
    velocity: int  # the piece's base dynamic level
    bars: int
    programs: dict[str, int] = field(default_factory=dict)  # role -> GM program
    progression: tuple[int, ...] = (0, 4, 5, 3)
    seed: int = 0


def random_spec(rng: np.random.Generator, genre: str, seconds: float = 30.0) -> PieceSpec:
    """A random piece of `genre` lasting about `seconds` (whole bars of 4/4)."""
    t = TEMPLATES[genre]
    bpm = int(rng.integers(t.tempo[0], t.tempo[1] + 1))
    mode = str(rng.choice(t.modes))
    programs = {"chords": int(rng.choice(t.chords)), "melody": int(rng.choice(t.melody))}
    if t.bass:
        programs["bass"] = int(rng.choice(t.bass))
    if t.extra and rng.random() < t.extra_probability:
        programs["extra"] = int(rng.choice(t.extra))
    progressions = PROGRESSIONS[mode]
    return PieceSpec(
        genre=genre,
        bpm=bpm,
        tonic=int(rng.integers(12)),
        mode=mode,
        velocity=int(rng.integers(t.velocity[0], t.velocity[1] + 1)),
        bars=max(2, round(seconds * bpm / 240)),
        programs=programs,
        progression=progressions[int(rng.integers(len(progressions)))],
        seed=int(rng.integers(2**31)),
    )


def tags_of(spec: PieceSpec) -> list[str]:
    """The MagnaTagATune-style tags the piece honestly has (sorted)."""
    tags = set(TEMPLATES[spec.genre].tags)
    for program in spec.programs.values():
        tags.update(PROGRAM_TAGS[program])
    if TEMPLATES[spec.genre].drums:
        tags.add("drums")
    if spec.bpm >= FAST_BPM:
        tags.add("fast")
    elif spec.bpm <= SLOW_BPM:
        tags.add("slow")
    if spec.velocity >= LOUD_VELOCITY:
        tags.add("loud")
    elif spec.velocity <= QUIET_VELOCITY:
        tags.add("quiet")
    return sorted(tags)


def facets_of(spec: PieceSpec) -> dict[str, list[str]]:
    """Probe tasks at different perception levels: timbre, genre, tempo class, tonality."""
    instruments = sorted(
        {t for p in spec.programs.values() for t in PROGRAM_TAGS[p]}
        | ({"drums"} if TEMPLATES[spec.genre].drums else set())
    )
    tempo = "fast" if spec.bpm >= FAST_BPM else "slow" if spec.bpm <= SLOW_BPM else "medium"
    return {
        "instrument": instruments,
        "genre": [spec.genre],
        "tempo": [tempo],
        "mode": [spec.mode],
    }


# ---------------------------------------------------------------------------------------------
# writing the parts: each returns (start tick, duration ticks, pitch, velocity) notes


Note = tuple[int, int, int, int]


class _Writer:
    def __init__(self, spec: PieceSpec) -> None:
        self.spec = spec
        self.template = TEMPLATES[spec.genre]
        self.rng = np.random.default_rng(spec.seed)
        self.scale = MAJOR if spec.mode == "major" else MINOR
        self.bar = 4 * TICKS

    def vel(self, offset: int = 0) -> int:
        jitter = int(self.rng.integers(-8, 9))
        return int(np.clip(self.spec.velocity + offset + jitter, 1, 127))

    def degree_pitch(self, degree: int, octave: int) -> int:
        """Pitch of scale degree `degree` (may exceed 6) with the tonic in `octave`."""
        octave += degree // 7
        return 12 * (octave + 1) + self.spec.tonic + self.scale[degree % 7]

    def chord_root(self, bar: int) -> int:
        return self.spec.progression[bar % len(self.spec.progression)]

    def triad(self, bar: int, octave: int, seventh: bool = False) -> list[int]:
        root = self.chord_root(bar)
        degrees = [root, root + 2, root + 4] + ([root + 6] if seventh else [])
        return [self.degree_pitch(d, octave) for d in degrees]

    def chords(self) -> list[Note]:
        style, notes = self.template.chord_style, []
        eighth = TICKS // 2
        for b in range(self.spec.bars):
            t0 = b * self.bar
            chord = self.triad(b, 4, seventh=style == "comp")
            if style == "block":
                for half in range(2):
                    notes += [(t0 + half * 2 * TICKS, 2 * TICKS, p, self.vel(-10)) for p in chord]
            elif style == "pad":
                notes += [(t0, self.bar, p, self.vel(-15)) for p in chord + [chord[0] - 12]]
            elif style == "strum":
                for k in range(8):
                    notes += [
                        (t0 + k * eighth + 10 * i, eighth, p, self.vel(-12))
                        for i, p in enumerate(chord)
                    ]
            elif style == "power":
                root = self.degree_pitch(self.chord_root(b), 2)
                for k in range(8):
                    notes += [(t0 + k * eighth, eighth, p, self.vel()) for p in (root, root + 7)]
            elif style == "arpeggio":
                cycle = chord + [chord[1]]
                for k in range(8):
                    notes.append((t0 + k * eighth, eighth, cycle[k % 4], self.vel(-10)))
            elif style == "offbeat":
                for beat in range(4):
                    notes += [
                        (t0 + beat * TICKS + eighth, eighth // 2, p, self.vel(-5)) for p in chord
                    ]
            elif style == "comp":
                for beat in range(4):
                    if self.rng.random() < 0.5:
                        notes += [(t0 + beat * TICKS, TICKS, p, self.vel(-15)) for p in chord]
            else:
                raise ValueError(f"unknown chord style {style!r}")
        return notes

    def bass(self) -> list[Note]:
        style, notes = self.template.bass_style, []
        for b in range(self.spec.bars):
            t0 = b * self.bar
            root = self.degree_pitch(self.chord_root(b), 1)
            if style == "root":
                notes += [
                    (t0, 2 * TICKS, root, self.vel()),
                    (t0 + 2 * TICKS, 2 * TICKS, root, self.vel()),
                ]
            elif style in ("octave", "root8"):
                for k in range(8):
                    pitch = root + 12 if style == "octave" and k % 2 else root
                    notes.append((t0 + k * TICKS // 2, TICKS // 2, pitch, self.vel()))
            elif style == "walking":
                degree = self.chord_root(b)
                for beat in range(4):
                    step = int(self.rng.choice((-1, 1, 2))) if beat else 0
                    degree += step
                    notes.append(
                        (t0 + beat * TICKS, TICKS, self.degree_pitch(degree, 1), self.vel())
                    )
            elif style == "pedal":
                notes.append((t0, self.bar, root, self.vel(-10)))
            else:
                raise ValueError(f"unknown bass style {style!r}")
        return notes

    def melody(self, octave: int = 5, density: float | None = None) -> list[Note]:
        """A random walk on the scale, starting on a chord tone, with rests."""
        density = density or self.template.melody_density
        lengths = np.array([TICKS // 4, TICKS // 2, TICKS, 2 * TICKS])
        # Prefer note lengths close to 1/density beats.
        weights = np.exp(-np.abs(np.log(lengths / (TICKS / density))))
        weights /= weights.sum()
        notes, t, degree = [], 0, self.chord_root(0)
        end = self.spec.bars * self.bar
        while t < end:
            length = int(self.rng.choice(lengths, p=weights))
            length = min(length, end - t)
            if self.rng.random() > 0.15:
                degree = int(np.clip(degree + self.rng.choice((-2, -1, -1, 1, 1, 2, 3)), -3, 10))
                start = t
                if self.template.swing and (t % TICKS) == TICKS // 2:
                    start += TICKS // 6  # swung off-beat
                notes.append(
                    (
                        start,
                        max(1, length - (start - t)),
                        self.degree_pitch(degree, octave),
                        self.vel(5),
                    )
                )
            t += length
        return notes

    def drums(self) -> list[Note]:
        pattern, notes = self.template.drums, []
        sixteenth = TICKS // 4

        def hit(t: int, pitch: int, offset: int = 0) -> None:
            notes.append((t, sixteenth, pitch, self.vel(offset)))

        for b in range(self.spec.bars):
            t0 = b * self.bar
            if b % 4 == 0 and pattern in ("rock", "metal", "pop", "four", "country"):
                hit(t0, CRASH, -10)
            for beat in range(4):
                tb = t0 + beat * TICKS
                if pattern in ("rock", "pop", "country"):
                    if beat in (0, 2) or (
                        pattern == "pop" and beat == 1 and self.rng.random() < 0.5
                    ):
                        hit(tb + (TICKS // 2 if pattern == "pop" and beat == 1 else 0), KICK)
                    if beat in (1, 3):
                        hit(tb, SNARE)
                    hit(tb, HAT, -20)
                    hit(tb + TICKS // 2, HAT, -25)
                elif pattern == "metal":
                    for k in range(4):
                        hit(tb + k * sixteenth, KICK, -5)
                    if beat in (1, 3):
                        hit(tb, SNARE, 5)
                    hit(tb, CRASH if beat == 0 else RIDE, -15)
                elif pattern == "four":
                    hit(tb, KICK, 5)
                    hit(tb + TICKS // 2, OPEN_HAT, -20)
                    if beat in (1, 3):
                        hit(tb, CLAP, -5)
                elif pattern == "swing":
                    hit(tb, RIDE, -15)
                    if beat in (1, 3):
                        hit(tb + 2 * TICKS // 3, RIDE, -25)
                        hit(tb, PEDAL_HAT, -20)
                    if beat == 0 and self.rng.random() < 0.5:
                        hit(tb, KICK, -20)
                else:
                    raise ValueError(f"unknown drum pattern {pattern!r}")
            if pattern == "country":
                hit(t0 + 7 * TICKS // 2, SHAKER, -25)
        return notes


def _track(notes: list[Note], channel: int, program: int | None, name: str) -> mido.MidiTrack:
    events: list[tuple[int, int, mido.Message]] = []
    for start, length, pitch, velocity in notes:
        events.append(
            (start, 1, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity))
        )
        events.append((start + length, 0, mido.Message("note_off", channel=channel, note=pitch)))
    events.sort(key=lambda e: (e[0], e[1]))  # note_offs before note_ons at the same tick
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
    if program is not None:
        track.append(mido.Message("program_change", channel=channel, program=program))
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    return track


def piece_to_midi(spec: PieceSpec) -> mido.MidiFile:
    """The piece as a type-1 MIDI file: a tempo track, then one track per part."""
    writer = _Writer(spec)
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS)
    conductor = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(spec.bpm)),
            mido.MetaMessage("time_signature", numerator=4, denominator=4),
        ]
    )
    end = spec.bars * writer.bar
    conductor.append(mido.MetaMessage("end_of_track", time=end))
    midi.tracks.append(conductor)
    parts = {"chords": writer.chords, "bass": writer.bass, "melody": writer.melody}
    channel = 0
    for role in ("chords", "bass", "melody", "extra"):
        if role not in spec.programs:
            continue
        notes = writer.melody(octave=4, density=0.5) if role == "extra" else parts[role]()
        midi.tracks.append(_track(notes, channel, spec.programs[role], role))
        channel += 1
    if writer.template.drums:
        midi.tracks.append(_track(writer.drums(), DRUM_CHANNEL, None, "drums"))
    return midi
