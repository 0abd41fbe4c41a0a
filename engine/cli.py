"""`musicssl`: the headless CLI over the same `Library` facade the GUI uses."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from .errors import MusicSSLError
from .excerpts import DEFAULT_COUNT, POLICIES, ExcerptPolicy
from .library import Library
from .paths import DB_ENV_VAR

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
            for path, reason in result.flagged.items():
                print(f"  not added: {path} ({reason})")
            if result.skipped_urls:
                print(f"  {result.skipped_urls} stream URLs skipped")
    return 0


def cmd_analyze(lib: Library, args: argparse.Namespace) -> int:
    from .analysis import AnalysisOptions  # imports torch: only when analysing

    options = AnalysisOptions(
        policy=ExcerptPolicy(args.policy, args.excerpts),
        device=args.device,
        backend=args.backend,
        batch_size=args.batch_size,
        limit=args.limit,
        retry_errors=args.retry_errors,
    )
    info = lib.active_model()
    if not info.trained:
        print(
            f"model {info.name} is untrained (random init): similarity only, no auto tags",
            file=sys.stderr,
        )
    bar, progress = _progress_bar("analysing", "track")
    job = lib.analysis_job(options, progress)
    try:
        with bar:
            report = job.run()
    except KeyboardInterrupt:
        job.cancel()
        raise
    if args.json:
        _print_json({**report.__dict__, "speed": report.speed})
    else:
        print(report.summary())
        for path, message in report.errors[:10]:
            print(f"  ! {path}: {message}")
    return 0


def _result_rows(results: Sequence[Any]) -> list[dict[str, Any]]:
    return [r.__dict__ for r in results]


def cmd_similar(lib: Library, args: argparse.Namespace) -> int:
    results = lib.similar(
        args.tracks,
        args.n,
        max_per_artist=args.max_per_artist,
        max_per_album=args.max_per_album,
        exclude_same_album=args.exclude_same_album,
        tag=args.tag,
    )
    if args.json:
        _print_json(_result_rows(results))
    for r in [] if args.json else results:
        print(f"{r.score:6.3f}  {r.track_id:>6}  {r.artist or '?'} — {r.title or r.path}")
    return 0


def cmd_tags(lib: Library, args: argparse.Namespace) -> int:
    track = lib.track(args.track)
    trained = lib.active_model().trained
    if args.json:
        _print_json(track["tags"])
        return 0
    print(f"{track['artist'] or '?'} — {track['title'] or track['path']}")
    for t in track["tags"]:
        if t["source"] == "user" and t["score"] < 0.5:
            print(f"  user  not {t['tag']}")
        else:
            print(f"  {t['source']:<5} {t['tag']}  {t['score']:.2f}")
    if not trained:
        print("  (no auto tags: the active model is untrained — similarity only)")
    return 0


def cmd_duplicates(lib: Library, args: argparse.Namespace) -> int:
    groups = lib.duplicates(args.threshold)
    if args.json:
        _print_json(groups)
    for group in [] if args.json else groups:
        print("same recording:")
        for t in group:
            print(f"  {t['id']:>6}  {t['path']}")
    if not args.json and not groups:
        print("no duplicates found")
    return 0


def cmd_models(lib: Library, args: argparse.Namespace) -> int:
    if args.action == "use":
        info = lib.use_model(args.model)
        print(f"active model: {info.name} ({info.model_id}); run `musicssl analyze` to re-index")
        return 0
    active = lib.active_model().model_id
    rows = [
        {
            "name": b.name,
            "model_id": b.model_id,
            "trained": b.trained,
            "source": b.source,
            "architecture": b.architecture,
            "tags": b.n_tags,
            "active": b.model_id == active,
        }
        for b in lib.models()
    ]
    if args.json:
        _print_json(rows)
    for r in [] if args.json else rows:
        mark = "*" if r["active"] else " "
        kind = "trained" if r["trained"] else "untrained: similarity only"
        print(
            f"{mark} {r['name']:<28} {r['model_id']}  {r['architecture']:<10} "
            f"{r['tags']:>3} tags  {r['source']}, {kind}"
        )
    return 0


def cmd_folders(lib: Library, args: argparse.Namespace) -> int:
    if args.action == "list":
        folders = lib.folders()
        if args.json:
            _print_json(folders)
        for folder in [] if args.json else folders:
            print(folder)
        return 0
    plan = lib.folder_removal(args.folder)  # FolderNotFound (a MusicSSLError) lists the folders
    if not args.yes:
        # Removing forgets the user's tags on these tracks: say what goes before doing it.
        print(f"would remove {plan.summary()} (files on disk are never touched); add --yes")
        return 1
    print(f"removed {lib.remove_folder(args.folder).summary()} (files on disk untouched)")
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
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="check this installation end to end on generated audio (never the user's library)",
    )
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

    p = command("analyze", cmd_analyze, "embed and auto-tag new tracks (resumable)")
    p.add_argument(
        "--policy",
        choices=POLICIES,
        default="spaced",
        help="spaced: N evenly spaced excerpts (fast); all: every excerpt",
    )
    p.add_argument(
        "--excerpts",
        type=int,
        default=DEFAULT_COUNT,
        help=f"excerpts per track for --policy spaced (default {DEFAULT_COUNT})",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, default=None, help="analyse at most N tracks")
    p.add_argument("--retry-errors", action="store_true", help="retry files that failed before")

    p = command("similar", cmd_similar, "tracks that sound like the given ones")
    p.add_argument("tracks", nargs="+", metavar="TRACK", help="track ids or paths (seeds)")
    p.add_argument("-n", type=int, default=20)
    p.add_argument("--max-per-artist", type=int)
    p.add_argument("--max-per-album", type=int)
    p.add_argument("--exclude-same-album", action="store_true")
    p.add_argument("--tag", help="only tracks with this tag")

    p = command("tags", cmd_tags, "a track's file, user and auto tags")
    p.add_argument("track", metavar="TRACK")

    p = command("duplicates", cmd_duplicates, "the same recording in several files")
    p.add_argument(
        "--threshold",
        type=float,
        help="cosine similarity, 0..1 (default: the model's own, 0.98 or 0.86 when whitened)",
    )

    p = command("models", cmd_models, "installed model bundles; switch the active one")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_common(actions.add_parser("list", help="installed bundles"), argparse.SUPPRESS)
    a = actions.add_parser("use", help="make a bundle the active model")
    _add_common(a, argparse.SUPPRESS)
    a.add_argument("model", help="name or model id")

    p = command("folders", cmd_folders, "library folders (rescanned by the app); remove one")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_common(actions.add_parser("list", help="remembered library folders"), argparse.SUPPRESS)
    a = actions.add_parser("remove", help="forget a folder's tracks, tags and index entries")
    _add_common(a, argparse.SUPPRESS)
    a.add_argument("folder")
    a.add_argument("--yes", action="store_true", help="do it (without: only say what would go)")

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


def _can_show_windows() -> bool:
    """Qt aborts the process when it cannot reach a display; check before trying."""
    if os.environ.get("QT_QPA_PLATFORM") or sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.self_test:
        from .selftest import run_self_test

        return run_self_test()
    if args.command is None and not args.json and _can_show_windows():
        from musicssl.app.main import main as gui_main  # the app depends on the engine, not back

        return gui_main(["--db", args.db] if args.db else [])
    try:
        with Library(args.db) as lib:
            if args.command is None:
                cmd_status(lib, args)
                print(
                    "\n(no display found: the desktop app needs one; the commands below work here)"
                )
                parser.print_help()
                return 0
            return args.handler(lib, args)
    except (MusicSSLError, OSError, ValueError) as exc:
        print(f"musicssl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("musicssl: interrupted; finished work is saved", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
