"""The corpus manifest: one JSON line per audio file, with its split, album and labels.

The manifest, not a random split, decides what is held out: whole soundtracks and the synthetic
pieces rendered with the second soundfont are `test`, so no tuning ever sees them. Audio files
carry the album/tags the engine's scanner reads (so `musicssl scan` of the training folder gives
a library DB the training commands use as is); the manifest keeps what a scan cannot express
(split, source package, soundfont, per-facet labels for probes).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mutagen

from ..datasets import TrackItem, album_key

__all__ = [
    "MANIFEST_NAME",
    "SPLITS",
    "Entry",
    "read_manifest",
    "tag_audio_file",
    "to_items",
    "write_manifest",
]

MANIFEST_NAME = "manifest.jsonl"
SPLITS = ("train", "val", "test")


@dataclass
class Entry:
    """One corpus file. `tags` are the shipped model's vocabulary; `facets` the probe tasks."""

    path: str  # relative to the corpus root
    split: str
    source: str  # "real" or "synth"
    album: str
    album_artist: str
    artist: str | None = None
    title: str | None = None
    tags: list[str] = field(default_factory=list)
    facets: dict[str, list[str]] = field(default_factory=dict)  # probe task -> its labels
    duration: float = 0.0
    sha256: str | None = None
    package: str | None = None  # the Debian package the file came from
    soundfont: str | None = None


def write_manifest(root: Path, entries: Iterable[Entry]) -> Path:
    """Write `root/manifest.jsonl` (atomically, so a killed build leaves the old one)."""
    path = root / MANIFEST_NAME
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(dataclasses.asdict(entry), sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read_manifest(root: Path) -> list[Entry]:
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no corpus manifest (run `musicssl-train corpus build`)")
    with path.open(encoding="utf-8") as f:
        return [Entry(**json.loads(line)) for line in f if line.strip()]


def tag_audio_file(path: Path, entry: Entry) -> None:
    """Write album, album artist, artist, title and genre(=tags) into the file's own tags.

    The scanner turns genres into 'file' tags, which training reads as labels. Real soundtrack
    files get their genre removed: a game's "Soundtrack" genre is no tag of the vocabulary, and
    under the labelled-negatives rule it would make every vocabulary tag a "no" for that track.
    """
    audio = mutagen.File(path, easy=True)
    if audio is None:
        raise ValueError(f"{path}: mutagen cannot tag this file")
    if audio.tags is None:
        audio.add_tags()
    audio["album"] = entry.album
    audio["albumartist"] = entry.album_artist
    if entry.artist:
        audio["artist"] = entry.artist
    if entry.title:
        audio["title"] = entry.title
    if entry.tags:
        audio["genre"] = list(entry.tags)
    elif "genre" in audio:
        del audio["genre"]
    audio.save()


def to_items(root: Path, entries: Sequence[Entry], facet: str | None = None) -> list[TrackItem]:
    """Training items for `entries`; labels are the tags, or one facet's labels when given.

    The album key is built exactly as a library scan builds it, so retrieval classes match.
    """
    items = []
    for e in entries:
        path = str((root / e.path).resolve())
        if facet is None:
            labels = {t: 1.0 for t in e.tags}
        else:
            labels = {v: 1.0 for v in e.facets.get(facet, [])}
        items.append(
            TrackItem(
                path=path,
                album=album_key(path, e.album, e.album_artist, e.artist),
                artist=e.album_artist,
                labels=labels,
            )
        )
    return items
