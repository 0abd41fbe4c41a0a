"""`musicssl-train corpus build`: the whole recipe, rerunnable (finished files are kept).

Layout under the corpus root (outside the repository; nothing here is ever committed):
    debs/, unpacked/, staging/       downloaded and unpacked Debian packages
    midi/<split>/                    the generated MIDI scores
    audio/<split>/{real,synth}/...   tagged audio files
    manifest.jsonl                   one line per audio file (see `manifest`)
    train.db                         a MusicSSL library of audio/train (`--library` for training)
    val.db                           one of audio/val/real (labelled by `corpus teacher`, it is
                                     export's `--threshold-library`)

Synthetic splits: train and val render with FluidR3, test with TimGM6mb. Synthetic albums are
genre volumes ("Rock Sketches 3"): album co-membership then means "same genre", the same kind
of style signal a real album gives, and the album-wise split of training keeps volumes whole.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mutagen
import numpy as np
from musicssl.engine.library import Library

from . import apt
from .debian_soundtracks import SOUNDTRACKS, collect
from .manifest import Entry, tag_audio_file, write_manifest
from .render import SOUNDFONTS, render
from .synth_midi import GENRES, PieceSpec, facets_of, piece_to_midi, random_spec, tags_of

log = logging.getLogger(__name__)

__all__ = ["SYNTH_ARTIST", "BuildConfig", "build", "synth_entries"]

SYNTH_ARTIST = "MusicSSL synthetic"
TOOL_PACKAGES = ("fluidsynth",)
TAIL_SECONDS = 1.0  # kept after the last note: the release and reverb tail


@dataclass
class BuildConfig:
    root: Path
    real: bool = True
    synth: bool = True
    album_size: int = 6  # synthetic pieces per album
    train_albums: int = 3  # per genre
    val_albums: int = 1  # per genre
    test_albums: int = 1  # per genre (other soundfont)
    seconds: float = 30.0
    train_soundfont: str = "fluidr3"
    test_soundfont: str = "timgm6mb"
    sample_rate: int = 22050
    workers: int = 2
    seed: int = 0


def _synth_plan(cfg: BuildConfig) -> list[tuple[str, str, int, int]]:
    """(split, genre, album number, piece number) for every synthetic piece, in a fixed order."""
    plan = []
    for split, albums in (
        ("train", cfg.train_albums),
        ("val", cfg.val_albums),
        ("test", cfg.test_albums),
    ):
        for genre in GENRES:
            for album in range(albums):
                plan += [(split, genre, album, k) for k in range(cfg.album_size)]
    return plan


def _make_piece(job: tuple[PieceSpec, Entry, Path, Path, Path, int]) -> Entry:
    """Write, render and tag one piece (skipped when its audio exists); returns its entry."""
    spec, entry, midi_path, font_path, root, sample_rate = job
    out = root / entry.path
    if not out.exists():
        midi_path.parent.mkdir(parents=True, exist_ok=True)
        midi = piece_to_midi(spec)
        midi.save(midi_path)
        tmp = render(
            midi_path,
            out.with_name(out.stem + ".tmp.flac"),
            font_path,
            sample_rate,
            midi.length + TAIL_SECONDS,
        )
        tag_audio_file(tmp, entry)
        tmp.replace(out)
    return dataclasses.replace(entry, duration=round(mutagen.File(out).info.length, 3))


def synth_entries(cfg: BuildConfig) -> list[Entry]:
    """Write, render and tag the synthetic pieces; returns their manifest entries."""
    jobs = []
    for split, genre, album, k in _synth_plan(cfg):
        # Seeded by the piece's place, not by draw order: changing one split's size leaves
        # every other piece (and its rendered file) as it was.
        where = [cfg.seed, ("train", "val", "test").index(split), GENRES.index(genre), album, k]
        spec = random_spec(np.random.default_rng(where), genre, cfg.seconds)
        font = SOUNDFONTS[cfg.test_soundfont if split == "test" else cfg.train_soundfont]
        slug = genre.replace(" ", "-")
        name = f"{slug}-{split}-{album:02d}-{k:02d}"
        album_title = f"{genre.title()} Sketches {split} {album + 1}"
        rel = Path("audio", split, "synth", slug, f"{name}.flac")
        entry = Entry(
            path=rel.as_posix(),
            split=split,
            source="synth",
            album=album_title,
            album_artist=SYNTH_ARTIST,
            artist=SYNTH_ARTIST,
            title=name,
            tags=tags_of(spec),
            facets=facets_of(spec),
            soundfont=font.name,
        )
        midi_path = cfg.root / "midi" / split / f"{name}.mid"
        jobs.append((spec, entry, midi_path, font.path, cfg.root, cfg.sample_rate))
    apt.install(
        TOOL_PACKAGES
        + tuple(SOUNDFONTS[n].package for n in (cfg.train_soundfont, cfg.test_soundfont))
    )

    # Processes, not threads: writing MIDI, cutting and encoding are Python work under the GIL.
    with ProcessPoolExecutor(max_workers=max(1, cfg.workers)) as pool:
        return list(pool.map(_make_piece, jobs, chunksize=4))


def build(cfg: BuildConfig) -> list[Entry]:
    """Run the recipe; writes the manifest and the training library DB under `cfg.root`."""
    cfg.root.mkdir(parents=True, exist_ok=True)
    entries: list[Entry] = []
    if cfg.real:
        entries += collect(cfg.root, SOUNDTRACKS)
    if cfg.synth:
        entries += synth_entries(cfg)
    write_manifest(cfg.root, entries)
    # val.db holds the real val tracks only: once `corpus teacher` has labelled it, export
    # tunes tag thresholds on it (`--threshold-library`), real music rather than synthetic.
    for name, folder in (("train.db", ("train",)), ("val.db", ("val", "real"))):
        audio = cfg.root.joinpath("audio", *folder)
        if audio.is_dir():
            with Library(cfg.root / name) as lib:
                report = lib.scan([audio])
            log.info("%s: %s", name, report.summary())
    return entries
