"""Tags and container audio info of one file: mutagen first, PyAV (`decode.probe`) as the fallback.

mutagen is pure Python and reads only the headers, so it is fast (~0.25 ms for a tagged MP3 when
the format class is picked from the extension; `mutagen.File`'s sniffing of every format costs
another ~0.15 ms). It does not read FFmpeg's RIFF `LIST INFO` (WAV) or AIFF text chunks, nor
Matroska at all, and it raises on junk: those go to `decode.probe`. Durations here are the
container's word (wrong for some Ogg files); the analysis step corrects them by decoding.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import mutagen
from mutagen._constants import GENRES as _ID3_GENRES
from mutagen.aac import AAC
from mutagen.aiff import AIFF
from mutagen.apev2 import APEv2
from mutagen.asf import ASF
from mutagen.easymp4 import EasyMP4
from mutagen.flac import FLAC
from mutagen.id3 import ID3
from mutagen.monkeysaudio import MonkeysAudio
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4, MP4Tags
from mutagen.oggflac import OggFLAC
from mutagen.oggopus import OggOpus
from mutagen.oggspeex import OggSpeex
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE
from mutagen.wavpack import WavPack

from .errors import MusicSSLError


class MetadataError(MusicSSLError):
    """A file whose tags and audio info cannot be read; `reason` is written for a person."""

    def __init__(self, path: str | os.PathLike[str], reason: str):
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


# The start of the reason for OS-level failures (permissions, I/O errors): worth retrying later.
CANNOT_READ = "cannot read the file"


@dataclass
class TrackMeta:
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    codec: str | None = None
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    album_artist: str | None = None
    genre: str | None = None  # display string: the split genres joined with "; "
    genres: list[str] = field(default_factory=list)
    year: int | None = None
    track_number: int | None = None


# The class to try first for an extension; anything else (or a misnamed file) goes through
# mutagen.File's sniffing. MP3 and MP4 use the raw classes: the "easy" wrappers' keys() probes
# ~75 registered keys per file, which was a third of the scan time in a profile.
_FAST: dict[str, type] = {
    ".mp3": MP3,
    ".flac": FLAC,
    ".ogg": OggVorbis,
    ".oga": OggVorbis,
    ".opus": OggOpus,
    ".m4a": MP4,
    ".mp4": MP4,
}

# Containers whose tags mutagen does not read the way FFmpeg (and most tools) write them.
_TAGS_ELSEWHERE = (WAVE, AIFF, AAC)

# Lower-case tag keys (mutagen easy keys, ASF/APE names, FFmpeg metadata keys), first match wins.
_ALIASES: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "artist": ("artist", "author"),
    "album": ("album", "wm/albumtitle"),
    "album_artist": ("albumartist", "album_artist", "album artist", "wm/albumartist"),
    "genre": ("genre", "wm/genre"),
    "date": ("date", "year", "wm/year", "originaldate", "original_date", "creation_time"),
    "track": ("tracknumber", "track", "wm/tracknumber"),
}
_ID3_FRAMES = {
    "TIT2": "title",
    "TPE1": "artist",
    "TALB": "album",
    "TPE2": "albumartist",
    "TCON": "genre",
    "TDRC": "date",
    "TRCK": "tracknumber",
}
_MP4_ATOMS = {
    "\xa9nam": "title",
    "\xa9ART": "artist",
    "\xa9alb": "album",
    "aART": "albumartist",
    "\xa9gen": "genre",
    "\xa9day": "date",
}
_ASF_CODECS = {
    "Windows Media Audio Standard": "wmav1",
    "Windows Media Audio 9 Standard": "wmav2",
    "Windows Media Audio 9 Professional": "wmapro",
    "Windows Media Audio 9 Lossless": "wmalossless",
}

_TAG_FIELDS = (
    "title", "artist", "album", "album_artist", "genre", "genres", "year", "track_number",
)  # fmt: skip
_GENRE_SEPARATORS = re.compile(r"[;/,|\x00]")
_ID3_NUMERIC_GENRE = re.compile(r"^\((\d{1,3})\)$")  # int() refuses 5,000 digits
_YEAR = re.compile(r"(?<!\d)(\d{4})(?!\d)")
# At most 9 significant digits: "9" * 30 in a track tag once overflowed SQLite's INTEGER and
# aborted the whole scan, and 5,000 digits exceed int()'s limit.
_LEADING_INT = re.compile(r"\s*0*(\d{1,9})(?!\d)")
_CONTROL = re.compile(r"[\x01-\x1f\x7f-\x9f]")


def split_genres(value: str | Iterable[str] | None) -> list[str]:
    """Split "Rock; Pop", "Rock/Pop", "Rock, Pop", "Rock|Pop", NUL-joined and multi-valued genres.

    Items are stripped, empties dropped, and duplicates removed case-insensitively keeping the
    first spelling. ID3v1 references written as "(17)" become their names ("Rock").
    """
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    seen: set[str] = set()
    for item in values:
        for part in _GENRE_SEPARATORS.split(str(item)):
            for name in _genre_names(part.strip()):
                key = name.casefold()
                if name and key not in seen:
                    seen.add(key)
                    out.append(name)
    return out


def _genre_names(part: str) -> list[str]:
    """One split item, with an ID3v1 reference resolved and split like typed text: "(62)" is
    "Pop/Funk", which must give the same tags as a file whose genre says "Pop/Funk"."""
    numeric = _ID3_NUMERIC_GENRE.match(part)
    if numeric and int(numeric.group(1)) < len(_ID3_GENRES):
        return [
            name.strip() for name in _GENRE_SEPARATORS.split(_ID3_GENRES[int(numeric.group(1))])
        ]
    return [part]


def parse_year(value: str | None) -> int | None:
    """The year of "1999", "1999-05-01", "05/01/1999", "2001-01-01T00:00:00Z"; else None."""
    if not value:
        return None
    match = _YEAR.search(value)
    if not match:
        return None
    year = int(match.group(1))
    return year if year > 0 else None


def parse_track_number(value: str | None) -> int | None:
    """The track of "3", "03", "3/12", "3 of 12"; None for empty, 0, text or absurdly long."""
    if not value:
        return None
    match = _LEADING_INT.match(value)
    if not match:
        return None
    number = int(match.group(1))
    return number if number > 0 else None


def _texts(value: Any) -> list[str]:
    """A tag value (str, list, mutagen attribute objects, APE NUL-joined text) as clean strings.

    Control characters become spaces: a title must not move the terminal's cursor or break a
    playlist line. De-duplication goes through a dict, not a list: a tag with 20,000 values
    took 4 s per file with `in list`, and a scan must not stall on one odd file.
    """
    items = value if isinstance(value, (list, tuple)) else [value]
    out: dict[str, None] = {}
    for item in items:
        text = item if isinstance(item, str) else str(item)
        for part in text.split("\x00"):
            part = _CONTROL.sub(" ", part).strip()
            if part:
                out[part] = None
    return list(out)


def _tag_dict(tags: Any) -> dict[str, list[str]]:
    """Whatever mutagen returned (easy dict, raw ID3, ASF, APEv2) as lower-case key -> texts."""
    out: dict[str, list[str]] = {}
    if tags is None:
        return out
    if isinstance(tags, ID3):  # raw ID3 (WAV/AIFF id3 chunks): the few frames we use
        for frame_id, key in _ID3_FRAMES.items():
            frames = tags.getall(frame_id)
            if frames:
                frame = frames[0]
                texts = frame.genres if frame_id == "TCON" else [str(t) for t in frame.text]
                out[key] = _texts(texts)
        return out
    if isinstance(tags, MP4Tags):  # raw MP4 atoms (mutagen maps numeric `gnre` to ©gen)
        for atom, key in _MP4_ATOMS.items():
            if atom in tags:
                out[key] = _texts(tags[atom])
        trkn = tags.get("trkn")
        if trkn and trkn[0] and trkn[0][0]:
            out["tracknumber"] = [str(trkn[0][0])]
        return out
    try:
        keys = list(tags.keys())
    except Exception:  # noqa: BLE001 - odd tag containers: no tags rather than no track
        return out
    for key in keys:
        try:
            texts = _texts(tags[key])
        except Exception:  # noqa: BLE001 - binary values (cover art) and the like
            continue
        if texts:
            out.setdefault(str(key).lower(), []).extend(t for t in texts if t)
    return out


def _fill_tags(meta: TrackMeta, tags: dict[str, list[str]]) -> None:
    def first(field_name: str) -> list[str]:
        for alias in _ALIASES[field_name]:
            if tags.get(alias):
                return tags[alias]
        return []

    for name in ("title", "artist", "album", "album_artist"):
        values = first(name)
        setattr(meta, name, "; ".join(dict.fromkeys(values)) if values else None)
    meta.genres = split_genres(first("genre"))
    meta.genre = "; ".join(meta.genres) if meta.genres else None
    dates = first("date")
    meta.year = parse_year(dates[0]) if dates else None
    tracks = first("track")
    meta.track_number = parse_track_number(tracks[0]) if tracks else None


def _codec(audio: Any) -> str | None:
    info = audio.info
    if isinstance(audio, MP3):
        return {1: "mp1", 2: "mp2"}.get(getattr(info, "layer", 3), "mp3")
    if isinstance(audio, (FLAC, OggFLAC)):
        return "flac"
    if isinstance(audio, OggVorbis):
        return "vorbis"
    if isinstance(audio, OggOpus):
        return "opus"
    if isinstance(audio, OggSpeex):
        return "speex"
    if isinstance(audio, (MP4, EasyMP4)):
        codec = (getattr(info, "codec", "") or "").lower()
        if codec.startswith("mp4a.40") or codec == "mp4a":
            return "aac"
        if codec in ("mp4a.69", "mp4a.6b"):
            return "mp3"
        return codec or "aac"
    if isinstance(audio, ASF):
        name = getattr(info, "codec_type", "") or ""
        return _ASF_CODECS.get(name, name or "wma")
    if isinstance(audio, (WAVE, AIFF)):
        return "pcm"
    if isinstance(audio, AAC):
        return "aac"
    if isinstance(audio, MonkeysAudio):
        return "ape"
    if isinstance(audio, WavPack):
        return "wavpack"
    return type(audio).__name__.lower()


def _positive(value: Any, kind: type) -> Any:
    try:
        value = kind(value)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def _from_mutagen(audio: Any) -> TrackMeta:
    info = audio.info
    meta = TrackMeta(
        duration=_positive(getattr(info, "length", None), float),
        sample_rate=_positive(getattr(info, "sample_rate", None), int),
        channels=_positive(getattr(info, "channels", None), int),
        codec=_codec(audio),
    )
    if meta.sample_rate is None and isinstance(audio, OggOpus):
        meta.sample_rate = 48000  # Opus always decodes at 48 kHz; the header's rate is a hint
    tags = audio.tags
    if isinstance(audio, (MonkeysAudio, WavPack)) and not isinstance(tags, APEv2):
        tags = None
    _fill_tags(meta, _tag_dict(tags))
    return meta


def _mutagen_open(path: str) -> Any:
    """A mutagen FileType, or None when mutagen does not know the format; raises on junk."""
    fast = _FAST.get(os.path.splitext(path)[1].lower())
    if fast is not None:
        try:
            return fast(path)
        except Exception:  # noqa: BLE001 - misnamed file: let mutagen sniff the real format
            pass
    return mutagen.File(path, easy=True)


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError (permission denied, I/O error) behind a mutagen error, if that is what it was."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OSError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _probe(path: str) -> TrackMeta:
    from . import decode  # lazy: PyAV loads FFmpeg, which most scans never need

    info = decode.probe(path)
    meta = TrackMeta(
        duration=_positive(info.duration, float),
        sample_rate=_positive(info.sample_rate, int),
        channels=_positive(info.channels, int),
        codec=info.codec or None,
    )
    if meta.sample_rate is None or meta.channels is None:
        # FFmpeg "opens" some junk (random bytes named .flac) as a stream with 0 Hz, 0 channels.
        raise MetadataError(path, "no audio stream with a sample rate and channels")
    _fill_tags(meta, {k.lower(): _texts(v) for k, v in (info.tags or {}).items()})
    return meta


def _reason(exc: BaseException, path: str) -> str:
    """The message of a reader's exception, without the path (the error row already names it)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    text = str(exc).strip() or type(exc).__name__
    for quoted in (f"'{path}' is ", f"{path!r} is ", f"'{path}'", path):
        text = text.replace(quoted, "")
    return " ".join(text.split())


def read_metadata(path: str | os.PathLike[str]) -> TrackMeta:
    """Tags and container audio info of one file; raises `MetadataError` if neither reader can."""
    path = os.fspath(path)
    mutagen_error: str
    try:
        audio = _mutagen_open(path)
    except Exception as exc:  # noqa: BLE001 - mutagen raises many types on junk
        os_error = _os_error(exc)
        if os_error is not None and (
            isinstance(os_error, PermissionError)
            or os_error.errno == errno.EIO
            or not os.path.isfile(path)
        ):
            raise MetadataError(path, f"{CANNOT_READ}: {os_error.strerror or os_error}") from exc
        audio, mutagen_error = None, _reason(exc, path)
    else:
        mutagen_error = "unknown format"

    if audio is not None and getattr(audio, "info", None) is not None:
        meta = _from_mutagen(audio)
        if isinstance(audio, _TAGS_ELSEWHERE) and not (meta.title or meta.artist or meta.album):
            try:
                probed = _probe(path)
            except Exception:  # noqa: BLE001 - the audio info from mutagen is still good
                return meta
            for name in _TAG_FIELDS:
                setattr(meta, name, getattr(probed, name))
            meta.codec = probed.codec or meta.codec
        return meta

    try:
        return _probe(path)
    except Exception as exc:  # noqa: BLE001 - DecodeError, ImportError, FFmpeg oddities
        ffmpeg_error = _reason(exc, path)
        raise MetadataError(
            path, f"not a readable audio file (mutagen: {mutagen_error}; ffmpeg: {ffmpeg_error})"
        ) from exc
