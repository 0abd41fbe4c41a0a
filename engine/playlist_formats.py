"""Playlist files on disk (M3U/M3U8, PLS, XSPF): read them into entries, write entries out.

No database here: `playlists.py` maps entries to library tracks.

Reading returns absolute, normalised paths (`os.path.normpath`, symlinks left alone); relative
entries are resolved against the playlist file's folder. Rules worth knowing:

- `file://` URIs are accepted everywhere and percent-decoded; other URLs (http, https, rtsp...)
  are stream entries: skipped, and listed in `ParsedPlaylist.urls`.
- Plain M3U/PLS paths are taken literally (a `%20` in an M3U line is a file name with `%20`);
  XSPF `<location>`s are URIs, so they are always percent-decoded.
- Windows backslashes on POSIX: a path containing `\\` is used as written when that file exists,
  otherwise every `\\` is read as a folder separator (a Windows-made playlist). Backslashes are
  legal in POSIX file names, so a real file named `a\\b.mp3` still resolves; a missing one is
  reported under the Windows reading, which is almost always what the author meant. A
  drive-qualified path (`C:\\Music\\x.mp3`) cannot exist on POSIX; like any relative path it is
  joined to the playlist's folder, so it shows up as missing.
- A percent-encoded name that is not UTF-8 (`file:///m/%E9t%E9.mp3`) is returned with `\\xNN`
  escapes, as the scanner stores such names: it matches the library's row, never opens a file.
- Text encoding: XSPF follows its XML declaration. M3U/M3U8/PLS are UTF-8 when they decode as
  such, else cp1252, else Latin-1 (an .m3u8 with stray 8-bit bytes gets the same leniency). A
  UTF-8 (or UTF-16) byte-order mark is honoured and dropped.
- M3U/PLS lines are stripped of surrounding whitespace, so a name that starts with whitespace or
  `#` is written as `./name` (relative) to survive; names *ending* in whitespace, or containing a
  line break, cannot be stored in M3U/PLS (line breaks raise `ValueError` on writing).

Writing is atomic: the text goes to a hidden temp file in the destination folder, is fsynced, then
`os.replace`d over the destination, so an interrupted export never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from urllib.parse import quote, unquote

from .errors import MusicSSLError

__all__ = [
    "FORMATS",
    "MAX_PLAYLIST_BYTES",
    "Entry",
    "ParsedPlaylist",
    "PlaylistFormatError",
    "format_for",
    "parse_playlist",
    "read_playlist",
    "write_playlist",
]

FORMATS = ("m3u8", "m3u", "xspf", "pls")
XSPF_NS = "http://xspf.org/ns/0/"
# A playlist is text; anything bigger is not one (and would be slow to parse by accident).
MAX_PLAYLIST_BYTES = 64 * 1024 * 1024

# "scheme://": a bare "name:" is too often a file name ("Live: Paris.mp3") to count as a URL, and
# the 2+ letter scheme keeps "C://x" a drive. file: URIs also come as "file:/path".
_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_FILE_URI_RE = re.compile(r"^file:/", re.I)
_NEWLINE_RE = re.compile(r"\r\n|\r|\n")  # not str.splitlines(): names may contain U+2028, U+0085
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_EXTINF_RE = re.compile(r'^#EXTINF:\s*(-?\d+(?:\.\d*)?)?((?:[^,"]|"[^"]*")*),(.*)$', re.I)
_DRIVE_URI_RE = re.compile(r"^/[A-Za-z]:")
# Characters XML 1.0 cannot carry at all (C0 controls except tab/newline/CR, lone surrogates...).
_XML_INVALID_RE = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass
class Entry:
    """One playlist item: an absolute file path plus whatever metadata the file carried."""

    path: str
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    duration: float | None = None  # seconds


@dataclass
class ParsedPlaylist:
    """Everything `parse_playlist` learned from one file."""

    entries: list[Entry] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)  # stream entries that were skipped
    title: str | None = None  # the playlist's own name, when the file stores one
    format: str = "m3u8"


class PlaylistFormatError(MusicSSLError, ValueError):
    """A playlist file that cannot be read (missing, unreadable, not a playlist, broken XML)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# --------------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------------


def format_for(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The format named by `fmt` (case and a leading dot ignored), else by `path`'s extension."""
    if fmt is not None:
        name = fmt.strip().lower().lstrip(".")
        if name not in FORMATS:
            raise ValueError(
                f"unknown playlist format {fmt!r}; expected one of {', '.join(FORMATS)}"
            )
        return name
    suffix = PurePath(os.fspath(path)).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ValueError(
            f"cannot tell the playlist format of {os.fspath(path)!r} from its extension "
            f"{('.' + suffix) if suffix else '(none)'}; use one of "
            f"{', '.join('.' + f for f in FORMATS)} or pass fmt"
        )
    return suffix


def _sniff(text: str) -> str | None:
    head = text.lstrip()[:512].lower()
    if head.startswith("<?xml") or head.startswith("<playlist"):
        return "xspf"
    if head.startswith("[playlist]"):
        return "pls"
    if head.startswith("#extm3u"):
        return "m3u"
    return None


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_playlist(path: str | os.PathLike[str]) -> list[Entry]:
    """The file's entries in order, with absolute normalised paths; stream URLs are left out."""
    return parse_playlist(path).entries


def parse_playlist(path: str | os.PathLike[str]) -> ParsedPlaylist:
    """Read an .m3u/.m3u8/.pls/.xspf file; raises `PlaylistFormatError` if it can't be read."""
    path = os.path.abspath(os.fspath(path))
    try:
        size = os.path.getsize(path)
        if size > MAX_PLAYLIST_BYTES:
            raise PlaylistFormatError(path, f"too large for a playlist ({size} bytes)")
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise PlaylistFormatError(path, exc.strerror or str(exc)) from exc
    base = os.path.dirname(path)
    fmt = PurePath(path).suffix.lower().lstrip(".")
    if fmt == "xspf":  # XML declares its own encoding; expat decodes it
        return _parse_xspf(path, data, base)
    text = _decode(path, data)
    if fmt not in FORMATS:
        fmt = _sniff(text)
        if fmt is None:
            raise PlaylistFormatError(path, "not a recognised playlist (M3U, PLS or XSPF)")
        if fmt == "xspf":
            return _parse_xspf(path, data, base)
    if "\x00" in text:
        raise PlaylistFormatError(path, "binary data, not a text playlist")
    if fmt == "pls":
        return _parse_pls(path, text, base)
    return _parse_m3u(text, base, fmt)


def _decode(path: str, data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise PlaylistFormatError(path, f"invalid UTF-16 text: {exc}") from exc
    with contextlib.suppress(UnicodeDecodeError):
        return data.decode("utf-8")
    # Legacy 8-bit playlists (Winamp, old iTunes): cp1252 is the usual code page; Latin-1 decodes
    # every byte, so it is the last resort. An .m3u8 with stray bytes gets the same leniency.
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _resolve(raw: str, base: str, uri: bool = False) -> tuple[str | None, str | None]:
    """(absolute path, None) for a file entry, (None, url) for a stream URL, (None, None) if empty.

    `uri=True` (XSPF) treats scheme-less references as relative URIs, so they are percent-decoded.
    """
    raw = raw.strip()
    if not raw:
        return None, None
    match = _URL_RE.match(raw)
    if match and match.group(1).lower() != "file":
        return None, raw
    if _FILE_URI_RE.match(raw):
        # Split by hand, not with urlsplit: a sloppy writer's literal '#' or '?' is part of the
        # file name, not a fragment or query (a proper URI has them percent-encoded anyway).
        rest, host = raw[5:], ""
        if rest.startswith("//"):
            host, slash, rest = rest[2:].partition("/")
            rest = slash + rest
        value = unquote(rest, errors="surrogateescape")
        if _DRIVE_URI_RE.match(value):  # file:///C:/Music/x.mp3
            value = value[1:]
        elif host and host.lower() != "localhost":  # file://server/share/x.mp3
            value = f"//{unquote(host)}{value}"
    elif uri:
        value = unquote(raw, errors="surrogateescape")
    else:
        value = raw
    if not value:
        return None, None
    if os.sep == "/" and "\\" in value:
        literal = os.path.normpath(os.path.join(base, value))
        if not os.path.lexists(literal):
            value = value.replace("\\", "/")
    full = os.path.normpath(os.path.join(base, value))
    if not os.path.isabs(full):  # a drive-relative path on Windows ("C:x.mp3")
        full = os.path.abspath(full)
    return _as_text(full), None


def _as_text(path: str) -> str:
    """The path as valid text: name bytes that are not UTF-8 (percent-encoded in a URI) become
    `\\xNN`, the form in which the scanner stores such a file's name. Left as surrogates they
    made SQLite refuse the query, which aborted the scan that imported the playlist."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return path


def _split_display(text: str) -> tuple[str | None, str | None]:
    """'Artist - Title' -> (artist, title); no separator -> (None, title)."""
    text = text.strip()
    if not text:
        return None, None
    artist, sep, title = text.partition(" - ")
    if sep and artist.strip() and title.strip():
        return artist.strip(), title.strip()
    return None, text


def _parse_duration(value: str | None, scale: float = 1.0) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if number < 0 or number != number or number == float("inf"):
        return None
    return number / scale


def _parse_m3u(text: str, base: str, fmt: str) -> ParsedPlaylist:
    result = ParsedPlaylist(format=fmt)
    pending: dict[str, object] = {}
    for line in _NEWLINE_RE.split(text):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            upper = line[:10].upper()
            if upper.startswith("#EXTINF:"):
                match = _EXTINF_RE.match(line)
                if match:
                    artist, title = _split_display(match.group(3))
                    pending.update(
                        duration=_parse_duration(match.group(1)), artist=artist, title=title
                    )
            elif upper.startswith("#EXTALB:"):
                pending["album"] = line[8:].strip() or None
            elif upper.startswith("#EXTART:") and pending.get("artist") is None:
                pending["artist"] = line[8:].strip() or None
            elif upper.startswith("#PLAYLIST:"):
                result.title = line[10:].strip() or None
            continue
        path, url = _resolve(line, base)
        if url is not None:
            result.urls.append(url)
        elif path is not None:
            result.entries.append(Entry(path=path, **pending))  # type: ignore[arg-type]
        pending = {}
    return result


def _parse_pls(path: str, text: str, base: str) -> ParsedPlaylist:
    result = ParsedPlaylist(format="pls")
    files: dict[int, str] = {}
    titles: dict[int, str] = {}
    lengths: dict[int, str] = {}
    section: str | None = None
    seen_playlist = False
    key_re = re.compile(r"^(file|title|length)(\d{1,9})$")  # int() refuses 5,000 digits
    for line in _NEWLINE_RE.split(text):
        line = line.strip()
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            seen_playlist = seen_playlist or section == "playlist"
            continue
        if section != "playlist" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().lower()
        match = key_re.match(key)
        if match:
            target = {"file": files, "title": titles, "length": lengths}[match.group(1)]
            target[int(match.group(2))] = value
        elif key in ("x-gnome-title", "name"):
            result.title = value.strip() or None
    if not seen_playlist:
        raise PlaylistFormatError(path, "not a PLS playlist (no [playlist] section)")
    for number in sorted(files):
        entry_path, url = _resolve(files[number], base)
        if url is not None:
            result.urls.append(url)
        elif entry_path is not None:
            artist, title = _split_display(titles.get(number, ""))
            duration = _parse_duration(lengths.get(number))
            result.entries.append(
                Entry(path=entry_path, title=title, artist=artist, duration=duration)
            )
    return result


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            text = (child.text or "").strip()
            return text or None
    return None


def _parse_xspf(path: str, data: bytes, base: str) -> ParsedPlaylist:
    # expat >= 2.4 (bundled with Python 3.10+) already refuses entity-expansion bombs; a playlist
    # has no business declaring entities, so refuse them outright too.
    if b"<!ENTITY" in data:
        raise PlaylistFormatError(path, "XSPF with entity declarations is not accepted")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise PlaylistFormatError(path, f"invalid XSPF XML: {exc}") from exc
    if _local(root.tag) != "playlist":
        raise PlaylistFormatError(path, f"not an XSPF playlist (root element <{_local(root.tag)}>)")
    result = ParsedPlaylist(format="xspf", title=_child_text(root, "title"))
    track_list = next((c for c in root if _local(c.tag) == "trackList"), None)
    if track_list is None:
        return result
    for track in track_list:
        if _local(track.tag) != "track":
            continue
        location = _child_text(track, "location")
        if location is None:
            continue
        entry_path, url = _resolve(location, base, uri=True)
        if url is not None:
            result.urls.append(url)
        elif entry_path is not None:
            result.entries.append(
                Entry(
                    path=entry_path,
                    title=_child_text(track, "title"),
                    artist=_child_text(track, "creator"),
                    album=_child_text(track, "album"),
                    duration=_parse_duration(_child_text(track, "duration"), scale=1000.0),
                )
            )
    return result


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_playlist(
    dest: str | os.PathLike[str],
    entries: Sequence[Entry],
    fmt: str | None = None,
    relative: bool = True,
    name: str | None = None,
) -> Path:
    """Write `entries` to `dest` atomically and return its absolute path.

    `fmt` is one of m3u8, m3u, xspf, pls (default: from `dest`'s extension; unknown -> ValueError).
    `relative=True` writes paths relative to `dest`'s folder where possible (absolute when the
    track is on another drive); `name` is stored as the playlist title where the format has one.
    Relative entry paths are taken as relative to the current directory.
    """
    dest = Path(os.path.abspath(os.fspath(dest)))
    fmt = format_for(dest, fmt)
    folder = str(dest.parent)
    paths = [_output_path(os.path.abspath(e.path), folder, relative) for e in entries]
    if fmt == "xspf":
        data = _render_xspf(entries, paths, name)
    elif fmt == "pls":
        data = _render_pls(entries, paths).encode("utf-8", errors="surrogateescape")
    else:
        data = _render_m3u(entries, paths, name).encode("utf-8", errors="surrogateescape")
    _atomic_write(dest, data)
    return dest


def _output_path(path: str, folder: str, relative: bool) -> tuple[str, bool]:
    """(path as written, is_relative)."""
    if relative:
        try:
            return os.path.relpath(path, folder), True
        except ValueError:  # another drive (Windows): no relative path exists
            pass
    return path, False


def _line_safe(path: str, is_relative: bool) -> str:
    """A path for one M3U/PLS line: no line breaks; leading whitespace or '#' protected by './'."""
    if "\n" in path or "\r" in path:
        raise ValueError(f"cannot store a path containing a line break in M3U/PLS: {path!r}")
    if is_relative and (path.startswith("#") or path != path.lstrip()):
        return os.curdir + os.sep + path
    return path


def _one_line(text: str) -> str:
    """Metadata for one M3U/PLS line: line breaks and control characters become spaces (a NUL
    made the file unreadable: `parse_playlist` rejects it as binary data)."""
    return _CONTROL_RE.sub(" ", " ".join(_NEWLINE_RE.split(text))).strip()


def _display(entry: Entry) -> str:
    title = _one_line(entry.title or "")
    artist = _one_line(entry.artist or "")
    if artist and title:
        return f"{artist} - {title}"
    return title or artist


def _seconds(duration: float | None) -> int:
    if duration is None or duration != duration or duration < 0 or duration == float("inf"):
        return -1
    return int(round(duration))


def _render_m3u(entries: Sequence[Entry], paths: list[tuple[str, bool]], name: str | None) -> str:
    lines = ["#EXTM3U"]
    if name:
        lines.append(f"#PLAYLIST:{_one_line(name)}")
    for entry, (path, is_rel) in zip(entries, paths, strict=True):
        lines.append(f"#EXTINF:{_seconds(entry.duration)},{_display(entry)}")
        if entry.album:
            lines.append(f"#EXTALB:{_one_line(entry.album)}")
        lines.append(_line_safe(path, is_rel))
    return "\n".join(lines) + "\n"


def _render_pls(entries: Sequence[Entry], paths: list[tuple[str, bool]]) -> str:
    lines = ["[playlist]"]
    for number, (entry, (path, is_rel)) in enumerate(zip(entries, paths, strict=True), start=1):
        lines.append(f"File{number}={_line_safe(path, is_rel)}")
        display = _display(entry)
        if display:
            lines.append(f"Title{number}={display}")
        lines.append(f"Length{number}={_seconds(entry.duration)}")
    lines += [f"NumberOfEntries={len(entries)}", "Version=2"]
    return "\n".join(lines) + "\n"


def _xml_text(text: str) -> str:
    return _XML_INVALID_RE.sub("", text)


def _location_uri(path: str, is_relative: bool) -> str:
    if not is_relative:
        return Path(path).as_uri()
    # A relative URI reference: '/' separators, everything else percent-encoded (':' included, so
    # a first segment like 'a:b' is never read back as a URI scheme).
    return quote(os.fsencode(PurePath(path).as_posix()), safe="/")


def _render_xspf(
    entries: Sequence[Entry], paths: list[tuple[str, bool]], name: str | None
) -> bytes:
    def sub(parent: ET.Element, tag: str, text: str) -> None:
        ET.SubElement(parent, tag).text = _xml_text(text)

    # Unqualified tags under an explicit default xmlns: ElementTree's default_namespace option
    # refuses the unqualified version="1" attribute.
    root = ET.Element("playlist", {"version": "1", "xmlns": XSPF_NS})
    if name:
        sub(root, "title", name)
    track_list = ET.SubElement(root, "trackList")
    for entry, (path, is_rel) in zip(entries, paths, strict=True):
        track = ET.SubElement(track_list, "track")
        sub(track, "location", _location_uri(path, is_rel))
        if entry.title:
            sub(track, "title", entry.title)
        if entry.artist:
            sub(track, "creator", entry.artist)
        if entry.album:
            sub(track, "album", entry.album)
        if _seconds(entry.duration) >= 0:
            sub(track, "duration", str(int(round(entry.duration * 1000))))  # type: ignore[operator]
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode("utf-8")


def _atomic_write(dest: Path, data: bytes) -> None:
    """Write `data` to a new temp file beside `dest`, fsync it, then rename it over `dest`."""
    if dest.is_dir():
        raise IsADirectoryError(f"{dest} is a folder, not a playlist file")
    while True:
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
        try:
            # O_EXCL: never reuse or follow an existing file; 0o666 lets the umask decide the mode.
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666
            )
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if dest.exists():
            with contextlib.suppress(OSError):
                os.chmod(tmp, dest.stat().st_mode & 0o7777)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
