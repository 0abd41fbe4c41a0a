"""`musicssl`: the headless CLI over the same `Library` facade the GUI uses."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from .db import DatabaseError
from .library import Library, TrackNotFound
from .paths import DB_ENV_VAR
from .playlist_formats import PlaylistFormatError
from .playlists import PlaylistNotFound
from .track_query import QueryError

Handler = Callable[[Library, argparse.Namespace], int]


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def _progress_bar(desc: str, unit: str) -> tuple[tqdm, Callable[[int, int | None, str], None]]:
    bar = tqdm(desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr, leave=False)

    def update(done: int, total: int | None, _item: str) -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return bar, update


def cmd_scan(lib: Library, args: argparse.Namespace) -> int:
    bar, progress = _progress_bar("scanning", "file")
    with bar:
        report = lib.scan(args.paths, progress)
    if args.json:
        _print_json(report.__dict__)
    else:
        print(report.summary())
        for path, message in report.errors[: args.show_errors]:
            print(f"  ! {path}: {message}")
        hidden = len(report.errors) - args.show_errors
        if hidden > 0:
            print(f"  … {hidden} more; `musicssl errors` lists them all")
    return 0


def cmd_status(lib: Library, args: argparse.Namespace) -> int:
    status = lib.status()
    if args.json:
        _print_json(status)
        return 0
    print(f"library     {status['database']}")
    print(f"folders     {', '.join(status['folders']) or '(none yet: musicssl scan ~/Music)'}")
    print(f"tracks      {status['tracks']} ({status['hours']} h)")
    print(f"analysed    {status['analyzed']}   waiting {status['new']}")
    print(f"unreadable  {status['errors']} files, {status['scan_errors']} folders")
    print(f"missing     {status['missing']}")
    print(f"playlists   {status['playlists']}")
    return 0


def cmd_errors(lib: Library, args: argparse.Namespace) -> int:
    rows = lib.errors()
    if args.json:
        _print_json(rows)
    for row in [] if args.json else rows:
        print(f"{row['path']}\t{row['error']}")
    return 0


def _fmt_duration(seconds: float | None) -> str:
    if not seconds:
        return "-:--"
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def cmd_tracks(lib: Library, args: argparse.Namespace) -> int:
    rows = lib.tracks(args.where, args.search, args.sort, args.desc, args.limit)
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        flag = "missing" if r["missing"] else r["status"]
        print(
            f"{r['id']:>6}  {_fmt_duration(r['duration']):>6}  {flag:<8}  "
            f"{r['artist'] or '?'} — {r['title'] or r['path']}  [{r['album'] or ''}]"
        )
    total = lib.count(args.where, args.search)
    if args.limit is not None and total > len(rows):
        print(f"({len(rows)} of {total} shown; --limit to see more)")
    return 0


def cmd_playlist(lib: Library, args: argparse.Namespace) -> int:
    action = args.action
    if action == "list":
        rows = lib.playlists()
        if args.json:
            _print_json(rows)
        for r in [] if args.json else rows:
            print(
                f"{r['id']:>4}  {r['name']}  ({r['count']} tracks, {_fmt_duration(r['duration'])})"
            )
    elif action == "create":
        playlist_id = lib.create_playlist(args.name, args.tracks)
        print(playlist_id if not args.json else json.dumps({"id": playlist_id}))
    elif action == "add":
        lib.add_to_playlist(args.name, args.tracks)
    elif action == "show":
        from .playlists import items

        rows = items(lib.db, lib.playlist_id(args.name))
        if args.json:
            _print_json(rows)
        for r in [] if args.json else rows:
            print(f"{r['position'] + 1:>4}. {r['artist'] or '?'} — {r['title'] or r['path']}")
    elif action == "export":
        dest = lib.export_playlist(args.name, args.dest, args.format, not args.absolute)
        print(dest)
    elif action == "import":
        result = lib.import_playlist(args.file, args.name)
        if args.json:
            _print_json(result.__dict__)
        else:
            print(f"playlist {result.playlist_id}: {result.matched} tracks")
            for path in result.missing:
                print(f"  not found: {path}")
            if result.skipped_urls:
                print(f"  {result.skipped_urls} stream URLs skipped")
    return 0


def _add_common(p: argparse.ArgumentParser, default: Any = None) -> None:
    """`--db`/`--json` work before or after the command; SUPPRESS keeps an earlier value."""
    p.add_argument(
        "--db",
        default=default,
        help=f"library database file (default: ${DB_ENV_VAR} or the user data dir)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=default if default is not None else False,
        help="machine-readable output",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicssl", description="Organise a music library with learned audio understanding."
    )
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_common(p, argparse.SUPPRESS)
        p.set_defaults(handler=handler)
        return p

    p = command("scan", cmd_scan, "add folders or files to the library (incremental)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--show-errors", type=int, default=10, metavar="N")

    command("status", cmd_status, "what the library holds")
    command("errors", cmd_errors, "files and folders that could not be read")

    p = command("tracks", cmd_tracks, "list tracks, filtered and sorted")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="FILTER",
        help="FIELD OP VALUE, repeatable (all must hold): artist=Bach, year>1990, tag=rock, "
        "title~night, status=error, missing=1",
    )
    p.add_argument("--search", help="words to find in title/artist/album/path/tags")
    p.add_argument("--sort", default="artist")
    p.add_argument("--desc", action="store_true")
    p.add_argument("--limit", type=int, default=None)

    p = command("playlist", cmd_playlist, "create, fill, export and import playlists")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help_text, description=help_text)
        _add_common(a, argparse.SUPPRESS)
        return a

    action("list", "all playlists")
    a = action("create", "new playlist, optionally with tracks")
    a.add_argument("name")
    a.add_argument("tracks", nargs="*", metavar="TRACK", help="track ids or paths")
    a = action("add", "append tracks")
    a.add_argument("name", help="playlist id or name")
    a.add_argument("tracks", nargs="+", metavar="TRACK")
    a = action("show", "a playlist's tracks in order")
    a.add_argument("name")
    a = action("export", "write M3U8, XSPF or PLS (by extension or --format)")
    a.add_argument("name")
    a.add_argument("dest")
    a.add_argument("--format", choices=["m3u8", "m3u", "xspf", "pls"])
    a.add_argument("--absolute", action="store_true", help="absolute paths (default: relative)")
    a = action("import", "read an M3U/M3U8/PLS/XSPF file")
    a.add_argument("file")
    a.add_argument("--name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with Library(args.db) as lib:
            if args.command is None:
                cmd_status(lib, args)
                print()
                parser.print_help()
                return 0
            return args.handler(lib, args)
    except (
        DatabaseError,
        TrackNotFound,
        PlaylistNotFound,
        PlaylistFormatError,
        QueryError,
        FileNotFoundError,
        ValueError,
    ) as exc:
        print(f"musicssl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("musicssl: interrupted; finished work is saved", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
