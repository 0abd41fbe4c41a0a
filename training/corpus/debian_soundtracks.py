"""Real music for the corpus: openly licensed game soundtracks packaged by Debian.

Each package is one soundtrack (= album: the style unit DESIGN.md's probe found transferable).
Music is told apart from sound effects by where the game keeps it (a `music`/`cdtracks` folder,
also inside `.pk3`/`.zip` archives) and by length (effects and jingles are under 30 s). The same
recording shipped twice (a menu theme copied into two folders, two packages) is kept once, by
content hash, so it can never sit in both the training and the test split.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from musicssl.engine.decode import DecodeError, decoded_duration
from musicssl.engine.metadata import MetadataError, read_metadata

from . import apt
from .manifest import Entry, tag_audio_file

__all__ = ["MIN_SECONDS", "SOUNDTRACKS", "Soundtrack", "collect"]

MIN_SECONDS = 30.0
MUSIC_DIRS = frozenset({"music", "cdtracks"})
AUDIO_SUFFIXES = frozenset({".ogg", ".oga", ".opus", ".flac", ".mp3", ".wav"})
# Games that pack their data: Quake-engine .pk3 (Nexuiz) and plain zip (0 A.D.'s public.zip).
ARCHIVE_SUFFIXES = frozenset({".pk3", ".zip"})


@dataclass(frozen=True)
class Soundtrack:
    package: str
    title: str  # the album name written into the corpus files
    split: str  # which manifest split the whole soundtrack goes to


# Test: three whole soundtracks no training or tuning step ever sees. Val: three more, so choices
# that need many similar tracks (identification: a track among its own soundtrack's) can be made
# without touching test. 0 A.D. (orchestral, one composer's style over 60 tracks) is there
# because the two smaller val soundtracks stopped telling candidates apart (both near 0.95).
SOUNDTRACKS: tuple[Soundtrack, ...] = (
    Soundtrack("ufoai-music", "UFO: Alien Invasion", "train"),
    Soundtrack("nexuiz-music", "Nexuiz", "train"),
    Soundtrack("supertux-data", "SuperTux", "train"),
    Soundtrack("widelands-data", "Widelands", "train"),
    Soundtrack("megaglest-data", "MegaGlest", "train"),
    Soundtrack("freedroidrpg-data", "FreedroidRPG", "val"),
    Soundtrack("hedgewars-data", "Hedgewars", "val"),
    Soundtrack("0ad-data", "0 A.D.", "val"),
    Soundtrack("wesnoth-1.16-music", "The Battle for Wesnoth", "test"),
    Soundtrack("warzone2100-music", "Warzone 2100", "test"),
    Soundtrack("singularity-music", "Endgame: Singularity", "test"),
)


def _is_music(path: PurePosixPath) -> bool:
    parts = {p.lower() for p in path.parts[:-1]}
    return path.suffix.lower() in AUDIO_SUFFIXES and bool(parts & MUSIC_DIRS)


def _candidates(unpacked: Path, staging: Path) -> Iterator[tuple[str, Path]]:
    """(name inside the package, readable file) for every music-looking file, sorted."""
    for path in sorted(p for p in unpacked.rglob("*") if p.is_file()):
        rel = PurePosixPath(path.relative_to(unpacked).as_posix())
        if _is_music(rel):
            yield str(rel), path
        elif path.suffix.lower() in ARCHIVE_SUFFIXES:
            with zipfile.ZipFile(path) as archive:
                for member in sorted(archive.namelist()):
                    inner = PurePosixPath(member)
                    if not _is_music(inner):
                        continue
                    target = staging / path.stem / inner
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with archive.open(member) as src, target.open("wb") as dst:
                            shutil.copyfileobj(src, dst)
                    yield f"{rel}/{member}", target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _duration(path: Path) -> float:
    try:
        return decoded_duration(path)
    except DecodeError:
        return 0.0


def _load_json(path: Path) -> dict[str, float]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _save_json(path: Path, data: dict[str, float]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def collect(root: Path, soundtracks: tuple[Soundtrack, ...] = SOUNDTRACKS) -> list[Entry]:
    """Fetch, unpack, filter, dedupe and copy the soundtracks into `root/audio/<split>/real`.

    Downloads and unpacked trees live under `root/debs` and `root/unpacked` and are reused, so a
    rerun only redoes what is missing. Returns the manifest entries (paths relative to `root`).
    """
    seen: set[str] = set()
    entries: list[Entry] = []
    # Decoding every candidate for its true length is the slow part; remember it by content.
    durations_file = root / "durations.json"
    known: dict[str, float] = _load_json(durations_file)
    for st in soundtracks:
        deb = apt.download(st.package, root / "debs")
        unpacked = apt.unpack(deb, root / "unpacked" / st.package)
        found = list(_candidates(unpacked, root / "staging" / st.package))
        with ThreadPoolExecutor(max_workers=2) as pool:
            hashes = list(pool.map(_sha256, (p for _, p in found)))
            todo = [(sha, p) for sha, (_, p) in zip(hashes, found, strict=True) if sha not in known]
            for (sha, _), seconds in zip(
                todo, pool.map(_duration, (p for _, p in todo)), strict=True
            ):
                known[sha] = seconds
        _save_json(durations_file, known)
        for (name, path), sha in zip(found, hashes, strict=True):
            seconds = known[sha]
            if sha in seen or seconds < MIN_SECONDS:
                continue
            seen.add(sha)
            try:
                meta = read_metadata(path)
            except MetadataError:
                meta = None
            rel = Path("audio", st.split, "real", st.package, f"{sha[:10]}{path.suffix.lower()}")
            entry = Entry(
                path=rel.as_posix(),
                split=st.split,
                source="real",
                album=st.title,
                album_artist=st.title,
                artist=(meta.artist if meta else None) or None,
                title=(meta.title if meta else None) or PurePosixPath(name).stem,
                facets={"soundtrack": [st.title], "genre": list(meta.genres) if meta else []},
                duration=round(seconds, 3),
                sha256=sha,
                package=st.package,
            )
            target = root / rel
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".part" + target.suffix)
                shutil.copyfile(path, tmp)
                tag_audio_file(tmp, entry)
                tmp.replace(target)
            entries.append(entry)
    return entries
