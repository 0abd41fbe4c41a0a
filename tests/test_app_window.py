"""The desktop app driven through its real widgets: import, browse, similar, playlists, tags,
cancel, preview, map, settings. Real SQLite files and real encoded audio throughout."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import builtins
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from audio_fixtures import write_audio
from conftest_app import *  # noqa: F403 - the fixtures
from conftest_app import BROKEN, N_TRACKS, find_action, wait_jobs_idle, wait_tag
from musicssl.app import player as player_mod
from musicssl.app.models.page_loader import PageLoader
from musicssl.app.models.projection import pca_2d, points_in_polygon
from musicssl.app.models.track_table import PAGE_SIZE, TrackTableModel
from musicssl.app.player import Player
from musicssl.app.settings import AppSettings
from musicssl.engine import playlists
from musicssl.engine.bundle import build_model, default_config, save_bundle
from musicssl.engine.library import Library
from musicssl.engine.models import user_models_dir
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QLineEdit, QProgressBar, QToolButton

pytestmark = pytest.mark.filterwarnings(
    "ignore:Function.*QDrag(Enter|Move)Event:DeprecationWarning"
)

LONG = 60000  # ms: generous for a loaded 2-core machine


def drop_paths(window, paths) -> None:  # noqa: ANN001
    """What the file manager does: drag enter, then drop, with file URLs."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(
        QPoint(200, 200),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(
        QPointF(200, 200),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(window, drop)


def select_titles(window, titles) -> list[int]:  # noqa: ANN001
    """Select library rows by title (as clicks would); returns their track ids."""
    model = window.track_model
    rows = [r for r in range(model.rowCount()) if model.track(r)["title"] in titles]
    assert len(rows) == len(titles), titles
    window.library_view.table.select_rows(rows)
    return [model.track_id(r) for r in rows]


def install_tagging_model(lib: Library, tags=("calm", "energetic", "rock")) -> None:  # noqa: ANN001
    """A 'trained' bundle (random weights, thresholds 0) so analysis writes auto tags.

    The library is pinned to the baseline first: with no stored choice the engine would make
    the best installed (trained) bundle active on its own, and the tests switch explicitly.
    """
    lib.active_model()  # creates the baseline bundle in this test's data folder
    lib.use_model("baseline-random-init")
    config = default_config(
        "test-tagger", "melcnn", tags=list(tags), thresholds=[0.0] * len(tags), trained=True
    )
    dest = user_models_dir() / "test-tagger"
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_bundle(build_model(config), config, dest)


# ------------------------------------------------------------------------------------ import
def test_first_run_drop_folder_scans_and_analyses(qtbot, make_window, empty_library, music_dir):
    window = make_window(empty_library)
    assert window.page == "empty"
    assert window.empty_state.isVisible()
    assert window.model_label.text() == "Model: musicssl-default"  # the shipped, trained one

    with qtbot.waitSignal(window.analysis_finished, timeout=LONG) as analysed:
        drop_paths(window, [music_dir])
    report = analysed.args[0]
    assert report.analyzed == N_TRACKS and not report.cancelled
    wait_jobs_idle(qtbot, window)
    qtbot.waitUntil(lambda: window.page == "library")
    model = window.track_model
    # Counted on the page-loader thread after the job's refresh: wait for it.
    qtbot.waitUntil(lambda: model.rowCount() == N_TRACKS + 1)  # the broken file is listed too
    statuses = {model.track(r)["status"] for r in range(model.rowCount())}
    assert statuses == {"analyzed", "error"}
    # The folder is remembered for the next start, and the unreadable file is announced.
    assert empty_library.folders() == [str(music_dir)]
    assert window.problem_link.isVisible()
    assert "could not be read" in window.problem_link.text()
    # The link leads to the errors page, which names the file.
    window.problem_link.linkActivated.emit("errors")
    assert window.page == "errors"
    paths = [
        window.errors_view.errors.item(r, 0).text()
        for r in range(window.errors_view.errors.rowCount())
    ]
    assert any(p.endswith(BROKEN.split("/")[-1]) for p in paths)


def test_start_rescans_remembered_folders_incrementally(qtbot, make_window, library, tmp_path):
    extra = tmp_path / "extra"
    window = make_window(library)
    assert window.page == "library"
    window.track_model.reload()  # rows being read again, as at launch: the rescan waits for them
    with qtbot.waitSignal(window.scan_finished, timeout=LONG) as scanned:
        window.start()
        assert not window.jobs.busy()
    assert scanned.args[0].added == 0 and scanned.args[0].unchanged >= N_TRACKS
    wait_jobs_idle(qtbot, window)
    # File → Add folder… goes through the same path as a drop.
    extra.mkdir()
    write_audio(extra / "new.wav", seconds=2.0, seed=11, tags={"title": "Brand new"})
    window.dialogs.folder_answers.append(str(extra))
    with qtbot.waitSignal(window.analysis_finished, timeout=LONG):
        window.act_add_folder.trigger()
    wait_jobs_idle(qtbot, window)
    qtbot.waitUntil(lambda: window.track_model.rowCount() == N_TRACKS + 2)


def test_cancel_running_analysis_keeps_rest_new(qtbot, make_window, empty_library, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        write_audio(folder / f"t{i:02d}.wav", seconds=2.0, seed=100 + i, tags={"title": f"T{i}"})
    window = make_window(empty_library)
    started = []
    window.jobs.started.connect(lambda job: started.append(job.kind))
    with qtbot.waitSignal(window.scan_finished, timeout=LONG):
        drop_paths(window, [folder])
    qtbot.waitUntil(lambda: "analysis" in started, timeout=LONG)
    assert window.job_status.isVisible() and window.job_status.cancel_button.isEnabled()
    with qtbot.waitSignal(window.analysis_finished, timeout=LONG) as finished:
        qtbot.mouseClick(window.job_status.cancel_button, Qt.MouseButton.LeftButton)
    report = finished.args[0]
    assert report.cancelled
    wait_jobs_idle(qtbot, window)
    left_new = empty_library.count(["status=new"])
    assert left_new > 0 and left_new + empty_library.count(["status=analyzed"]) == 40
    qtbot.waitUntil(lambda: not window.job_status.isVisible())


# ------------------------------------------------------------------------------------ browse
def test_filter_sort_and_browse_by_tag(qtbot, make_window, library):
    window = make_window(library)
    model = window.track_model
    assert model.rowCount() == N_TRACKS + 1
    # Ctrl+F focuses the filter box; typing filters over title/artist/album/tags.
    window.act_find.trigger()
    assert (
        window.library_view.filter.hasFocus()
        or QApplication.focusWidget() is window.library_view.filter
    )
    qtbot.keyClicks(window.library_view.filter, "storm")
    qtbot.waitUntil(lambda: model.rowCount() == 1)
    assert model.track(0)["title"] == "Storm"
    qtbot.keyClick(window.library_view.filter, Qt.Key.Key_Space)  # typed, not play/pause
    assert window.library_view.filter.text() == "storm " and window.player.state == "stopped"
    window.library_view.filter.setText("Alpha")  # album
    qtbot.waitUntil(lambda: model.rowCount() == 3)
    window.library_view.filter.setText("jazz")  # a tag (the genre read from the file)
    qtbot.waitUntil(lambda: model.rowCount() == 3)
    window.library_view.filter.setText("no such thing")
    qtbot.waitUntil(lambda: model.rowCount() == 0)
    assert window.library_view.stack.currentWidget() is window.library_view.no_match
    window.library_view.filter.clear()
    qtbot.waitUntil(lambda: model.rowCount() == N_TRACKS + 1)
    # Clicking the Title header sorts by title (in SQL), again for descending.
    header = window.library_view.table.horizontalHeader()

    def click_header(section: int) -> None:
        x = header.sectionViewportPosition(section) + 10
        qtbot.mouseClick(
            header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, header.height() // 2)
        )

    click_header(0)
    assert model.order_by == "title"
    titles = [model.track(r)["title"] for r in range(model.rowCount()) if model.track(r)["title"]]
    assert titles == sorted(titles, key=str.lower)
    click_header(0)
    assert model.descending
    # Browse by tag from the sidebar.
    wait_tag(qtbot, window, "Rock")
    window.sidebar.select("tag", "Rock")
    assert window.page == "library" and window.library_view.tag == "Rock"
    assert window.library_view.tag_chip.isVisible()
    qtbot.waitUntil(lambda: model.rowCount() == 2)  # counted on the page-loader thread
    window.library_view.tag_chip.click()
    qtbot.waitUntil(lambda: model.rowCount() == N_TRACKS + 1)


def test_track_table_pages_lazily_over_many_rows(qtbot, library):
    # 20,000 extra rows inserted straight into the DB file: the model must not read them all.
    rows = [
        {
            "path": f"/nowhere/{i:06d}.mp3",
            "title": f"Bulk {i:06d}",
            "artist": f"A{i % 97}",
            "status": "new",
            "missing": 0,
            "added_at": 0.0,
            "updated_at": 0.0,
        }
        for i in range(20000)
    ]
    library.db["tracks"].insert_all(rows, batch_size=5000)
    model = TrackTableModel(library)
    assert model.rowCount() == 20000 + N_TRACKS + 1
    assert model.pages_fetched == 0
    assert model.track(19990) is not None
    assert model.pages_fetched == 1
    model.sort(0, Qt.SortOrder.DescendingOrder)
    assert model.track(0)["title"] == "Storm"
    assert model.pages_fetched == 2
    assert model.track(PAGE_SIZE - 1) is not None and model.pages_fetched == 2


def test_track_table_loads_pages_on_a_worker_thread(qtbot, library):
    loader = PageLoader(library.path)
    try:
        model = TrackTableModel(library, loader=loader)
        model.sort(0, Qt.SortOrder.AscendingOrder)
        # The count too comes from the loader: the first page, shorter than a page, is all.
        qtbot.waitUntil(lambda: model.exact, timeout=10000)
        assert model.rowCount() == N_TRACKS + 1
        index = model.index(N_TRACKS, 0)  # the last row (the untitled broken file sorts first)
        assert index.data() == "Storm"
        # A refresh keeps showing the old rows until the fresh page has arrived.
        library.set_user_tag(model.track_id(0), "x")
        with qtbot.waitSignal(model.dataChanged, timeout=10000):
            model.refresh()
            assert index.data() == "Storm"
        assert index.data() == "Storm"
    finally:
        loader.stop()


# ------------------------------------------------------------------------------------ similar
def test_find_similar_from_context_menu_then_save_and_play(qtbot, make_window, library):
    window = make_window(library)
    ids = select_titles(window, ["Morning"])
    menu = window.build_track_menu(window.selected_track_ids())
    with qtbot.waitSignal(window.similar_finished, timeout=LONG) as found:
        find_action(menu, "Find similar tracks").trigger()
    results = found.args[0]
    assert isinstance(results, list) and results, results
    assert window.page == "similar"
    view = window.similar_view
    assert view.model.rowCount() == len(results)
    assert ids[0] not in [r.track_id for r in results]
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    # Options re-run the query: one per artist, nothing from the seed's album.
    with qtbot.waitSignal(window.similar_finished, timeout=LONG) as found:
        view.per_artist.setValue(1)
        view.exclude_album.setChecked(True)
    artists = [r.artist for r in found.args[0]]
    assert len(artists) == len(set(artists))
    assert all(r.album != "Alpha" for r in found.args[0])
    # Save as playlist: the seed first, then the results.
    window.dialogs.texts.append("Like Morning")
    view.save_button.click()
    pid = library.playlist_id("Like Morning")
    items = playlists.items(library.db, pid)
    assert [i["track_id"] for i in items] == ids + [r.track_id for r in found.args[0]]
    assert window.page == "playlist"
    # Play from the results uses the preview player.
    window.sidebar.setCurrentItem(None)
    with qtbot.waitSignal(window.similar_finished, timeout=LONG):
        window.find_similar(ids)
    assert view.play_button.isEnabled()
    view.play_button.click()
    qtbot.waitUntil(lambda: window.player.state == "playing")
    window.player.stop()


def test_similar_on_unanalysed_track_says_so(qtbot, make_window, library, tmp_path):
    extra = tmp_path / "fresh"
    extra.mkdir()
    write_audio(extra / "fresh.wav", seconds=2.0, seed=42, tags={"title": "Fresh"})
    library.scan([extra])  # scanned, not analysed
    window = make_window(library)
    ids = select_titles(window, ["Fresh"])
    with qtbot.waitSignal(window.similar_finished, timeout=LONG):
        window.find_similar(ids)
    assert "Not analysed yet" in window.similar_view.message.text()


def test_duplicates_view_groups_same_recording(qtbot, make_window, library):
    window = make_window(library)
    with qtbot.waitSignal(window.duplicates_finished, timeout=LONG) as done:
        window.sidebar.select("duplicates")
    groups = done.args[0]
    assert isinstance(groups, list), groups
    # "Morning" and its FLAC copy (same signal, seed 1) must share a group.
    titled = [{t["title"] for t in g} for g in groups]
    assert any({"Morning", "Morning (copy)"} <= g for g in titled)
    assert window.duplicates_view.tree.topLevelItemCount() == len(groups)


# ------------------------------------------------------------------------------------ playlists
def test_playlist_create_drop_reorder_remove_rename_export_delete(
    qtbot, make_window, library, tmp_path
):
    window = make_window(library)
    ids = select_titles(window, ["Morning", "Noon", "Rain"])
    window.dialogs.texts.append("Mix")
    window.act_new_playlist.trigger()
    pid = library.playlist_id("Mix")
    assert window.page == "playlist"
    assert window.sidebar.find("playlist", pid) is not None
    model = window.playlist_model
    assert [i["track_id"] for i in model.items] == ids
    # Drag more tracks from the library onto the playlist in the sidebar.
    window.sidebar.select("library")
    storm = select_titles(window, ["Storm"])
    payload = window.track_model.mimeData(window.library_view.table.selectedIndexes())
    sidebar = window.sidebar
    target = sidebar.visualItemRect(sidebar.find("playlist", pid)).center()
    for event_type in (QDragEnterEvent, QDragMoveEvent):
        event = event_type(
            target, Qt.DropAction.CopyAction, payload, Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )  # fmt: skip
        QApplication.sendEvent(sidebar.viewport(), event)
        assert event.isAccepted()
    drop = QDropEvent(
        QPointF(target), Qt.DropAction.CopyAction, payload, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    QApplication.sendEvent(sidebar.viewport(), drop)
    qtbot.waitUntil(lambda: len(playlists.items(library.db, pid)) == 4)
    window.sidebar.select("playlist", pid)
    assert [i["track_id"] for i in model.items] == ids + storm
    # Drop the library's drag payload into the playlist table at row 1 (insert there).
    mime = window.track_model.mimeData([window.track_model.index(0, 0)])
    first_library_id = window.track_model.track_id(0)
    model.dropMimeData(mime, Qt.DropAction.CopyAction, 1, 0, model.index(-1, -1))
    assert model.items[1]["track_id"] == first_library_id
    model.remove_positions([1])
    # Reorder: drag the last item onto row 0 (internal move payload).
    drag = model.mimeData([model.index(3, 0)])
    model.dropMimeData(drag, Qt.DropAction.MoveAction, 0, 0, model.index(-1, -1))
    order = [i["track_id"] for i in model.items]
    assert order == storm + ids
    # Delete removes the selected item (keyboard, table focused).
    view = window.playlist_view
    view.table.setFocus()
    view.table.select_rows([0])
    qtbot.keyClick(view.table, Qt.Key.Key_Delete)
    assert [i["track_id"] for i in model.items] == ids
    # Rename.
    window.dialogs.texts.append("Evening mix")
    view.rename_button.click()
    assert library.playlists()[0]["name"] == "Evening mix"
    assert "Evening mix" in window.sidebar.find("playlist", pid).text(0)
    # Export in the three formats via the file dialog; read the files back.
    for name, chosen in (
        ("mix.m3u8", "M3U8 playlist (*.m3u8)"),
        ("mix", "XSPF playlist (*.xspf)"),
        ("mix.pls", "PLS playlist (*.pls)"),
    ):
        window.dialogs.save_answers.append((str(tmp_path / name), chosen))
        view.export_button.click()
    paths = [library.track(i)["path"] for i in ids]
    m3u = (tmp_path / "mix.m3u8").read_text(encoding="utf-8")
    lines = [ln for ln in m3u.splitlines() if ln and not ln.startswith("#")]
    assert [os.path.normpath(tmp_path / ln) for ln in lines] == paths
    xspf = ET.parse(tmp_path / "mix.xspf").getroot()
    locations = [e.text for e in xspf.iter() if e.tag.endswith("location")]
    assert len(locations) == 3
    pls = (tmp_path / "mix.pls").read_text(encoding="utf-8")
    assert "NumberOfEntries=3" in pls
    # Delete (after confirming).
    view.delete_button.click()
    assert library.playlists() == []
    assert window.page == "library"


def test_import_m3u_playlist(qtbot, make_window, library, music_dir, tmp_path):
    tracks = library.tracks(["artist=Ben"], order_by="title")
    m3u = tmp_path / "road trip.m3u"
    m3u.write_text("#EXTM3U\n" + "\n".join(t["path"] for t in tracks) + "\n/gone/away.mp3\n")
    window = make_window(library)
    window.dialogs.open_answers.append(str(m3u))
    with qtbot.waitSignal(window.import_finished, timeout=LONG) as imported:
        window.act_import_playlist.trigger()
    result = imported.args[0]
    assert result.matched == len(tracks) and result.missing == ["/gone/away.mp3"]
    assert window.page == "playlist"
    assert [i["track_id"] for i in window.playlist_model.items] == [t["id"] for t in tracks]
    # The analysis queued after an import finds nothing new here; it must not hide the message.
    wait_jobs_idle(qtbot, window)
    assert "not found" in window.statusBar().currentMessage()


# ------------------------------------------------------------------------------------ tags
def test_accept_reject_auto_tags_with_undo(qtbot, make_window, library):
    install_tagging_model(library)
    window = make_window(library)
    with qtbot.waitSignal(window.analysis_finished, timeout=LONG) as analysed:
        window.switch_model(next(m.model_id for m in library.models() if m.name == "test-tagger"))
    assert analysed.args[0].model_trained
    wait_jobs_idle(qtbot, window)
    assert "untrained" not in window.model_label.text()
    [track_id] = select_titles(window, ["Noon"])
    qtbot.waitUntil(lambda: window.details.track is not None)
    details = window.details
    bars = {b.objectName(): b.value() for b in details.findChildren(QProgressBar)}
    assert {"confidence:calm", "confidence:energetic", "confidence:rock"} <= set(bars)
    assert all(0 <= v <= 100 for v in bars.values())

    def user_tags() -> dict[str, float]:
        return {t["tag"]: t["score"] for t in library.tags(track_id) if t["source"] == "user"}

    details.findChild(QToolButton, "accept:calm").click()
    assert user_tags() == {"calm": 1.0}
    details.findChild(QToolButton, "reject:rock").click()
    assert user_tags() == {"calm": 1.0, "rock": 0.0}
    assert window.details.findChild(QToolButton, "reject:rock").isChecked()
    window.act_undo.trigger()
    assert user_tags() == {"calm": 1.0}
    window.act_undo.trigger()
    assert user_tags() == {}
    window.act_redo.trigger()
    assert user_tags() == {"calm": 1.0}
    # Clicking an answer already given takes it back.
    window.details.findChild(QToolButton, "accept:calm").click()
    assert user_tags() == {}


def test_untrained_model_shows_no_auto_tags(qtbot, make_window, library):
    library.use_model("baseline-random-init")
    window = make_window(library)
    assert window.model_label.text() == "Untrained model: similarity only"
    select_titles(window, ["Noon"])
    qtbot.waitUntil(lambda: window.details.track is not None)
    assert window.details.findChildren(QProgressBar) == []
    note = window.details.findChild(object, "untrainedNote")
    assert note is not None and "Untrained model: similarity only" in note.text()


def test_user_tags_add_remove_undo_and_finetune_dialog(qtbot, make_window, library):
    window = make_window(library)
    ids = select_titles(window, ["Rain", "Storm"])
    qtbot.waitUntil(lambda: window.details.track_ids == ids)
    box = window.details.findChild(QLineEdit, "addTag")
    qtbot.keyClicks(box, "road trip")
    qtbot.keyClick(box, Qt.Key.Key_Return)
    for i in ids:
        assert {"tag": "road trip", "source": "user", "score": 1.0} in library.tags(i)
    wait_tag(qtbot, window, "road trip")
    # Browse by the new tag.
    window.sidebar.select("tag", "road trip")
    qtbot.waitUntil(lambda: window.track_model.rowCount() == 2)
    # Remove it on one track from the details pane, then undo.
    window.library_view.table.select_rows([0])
    qtbot.waitUntil(lambda: window.details.track is not None)
    one = window.details.track["id"]
    window.details.findChild(QToolButton, "remove:road trip").click()
    assert all(t["source"] != "user" for t in library.tags(one))
    window.act_undo.trigger()
    assert any(t["source"] == "user" for t in library.tags(one))
    # The fine-tune entry counts user-tagged tracks and shows the command.
    with qtbot.waitSignal(window.user_tag_stats_ready, timeout=LONG) as stats:
        window.act_finetune.trigger()
    counted = stats.args[0]
    assert (counted.tracks, counted.positive, counted.negative) == (2, 2, 0)
    assert [(t.tag, t.positive, t.negative) for t in counted.tags] == [("road trip", 2, 0)]
    dialog = window.finetune_dialog
    assert "2 tracks carry your tags" in dialog.counts.text()
    assert "Per tag: road trip 2." in dialog.counts.text()
    assert dialog.command.text() == f"musicssl-train finetune --library {library.path}"
    assert dialog.status.text().startswith("musicssl-default: trained")
    dialog.close()


# ------------------------------------------------------------------------------------ preview
def test_preview_disabled_without_portaudio(qtbot, make_window, library, monkeypatch):
    real_import = builtins.__import__

    def no_portaudio(name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    player = Player()
    monkeypatch.setattr(builtins, "__import__", real_import)
    assert not player.available
    assert "PortAudio" in player.unavailable_reason and "libportaudio2" in player.unavailable_reason
    window = make_window(library, player=player)
    bar = window.player_bar
    assert not bar.play_button.isEnabled() and not bar.slider.isEnabled()
    assert bar.message.isVisible() and "PortAudio" in bar.message.text()
    # Space and double-click do nothing harmful.
    select_titles(window, ["Noon"])
    window.act_play.trigger()
    assert player.state == "stopped"


def test_preview_without_output_device(monkeypatch):
    class NoDevice:
        def query_devices(self, kind=None):  # noqa: ANN001, ANN202
            raise ValueError("No output device")

    monkeypatch.setitem(sys.modules, "sounddevice", NoDevice())
    sd, reason = player_mod.load_sounddevice()
    assert sd is None and "no audio output device" in reason


def test_preview_play_pause_seek_with_space(qtbot, make_window, library):
    window = make_window(library)
    player = window.player
    select_titles(window, ["Noon"])
    window.library_view.table.setFocus()
    window.act_play.trigger()  # Space
    qtbot.waitUntil(lambda: player.state == "playing")
    assert window.player_bar.title.text() == "Ada — Noon"
    qtbot.waitUntil(lambda: player.position > 0.2, timeout=10000)
    window.act_play.trigger()
    assert player.state == "paused"
    paused_at = player.position
    qtbot.wait(150)
    assert player.position == paused_at
    player.seek(2.0)
    assert player.state == "paused" and abs(player.position - 2.0) < 1e-6
    qtbot.wait(100)  # a seek while paused plays nothing, not even one block
    assert player.position == 2.0 and window.player.track["title"] == "Noon"
    window.act_play.trigger()
    qtbot.waitUntil(lambda: player.state == "stopped", timeout=10000)  # played to the end
    assert player.position >= 2.5


# ------------------------------------------------------------------------------------ map
def test_formatting_helpers():
    from musicssl.app import formatting

    assert formatting.duration(187) == "3:07" and formatting.duration(3723) == "1:02:03"
    assert formatting.duration(None) == ""
    assert formatting.eta(12.2) == "13 s left" and formatting.eta(600) == "about 10 min left"
    assert formatting.plural(1, "file") == "1 file" and formatting.plural(12, "file") == "12 files"
    assert formatting.track_title({"title": None, "path": "/m/Some Song.flac"}) == "Some Song"


def test_pca_and_lasso_helpers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 16)) * np.array([10.0, 3.0] + [0.1] * 14)
    coords = pca_2d(x)
    assert coords.shape == (500, 2) and coords.min() >= 0 and coords.max() <= 1
    # The first axis follows the largest-variance direction.
    assert abs(np.corrcoef(coords[:, 0], x[:, 0])[0, 1]) > 0.99
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    mask = points_in_polygon(np.array([[0.5, 0.5], [2, 2], [0.1, 0.9]]), square)
    assert mask.tolist() == [True, False, True]
    assert pca_2d(np.zeros((0, 4))).shape == (0, 2)


def test_map_click_lasso_colour_and_save(qtbot, make_window, library):
    window = make_window(library)
    with qtbot.waitSignal(window.map_loaded, timeout=LONG):
        window.sidebar.select("map")
    canvas = window.map_view.canvas
    assert len(canvas.ids) == N_TRACKS
    pts = canvas.screen_points()
    # Click a point: it is selected and shown in the details pane.
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(int(pts[0, 0]), int(pts[0, 1])))
    assert canvas.selected_ids() == [int(canvas.ids[0])]
    qtbot.waitUntil(lambda: window.details.track is not None)
    assert window.details.track["id"] == int(canvas.ids[0])
    # Double-click plays it.
    qtbot.mouseDClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(int(pts[0, 0]), int(pts[0, 1])))
    qtbot.waitUntil(lambda: window.player.state == "playing")
    assert window.player.track["id"] == int(canvas.ids[0])
    window.player.stop()
    # Colour by a tag.
    wait_tag(qtbot, window, "Jazz")
    with qtbot.waitSignal(window.map_tag_loaded, timeout=LONG):
        window.map_view.colour.setCurrentIndex(window.map_view.colour.findData("Jazz"))
    assert int(canvas.highlight.sum()) == 3
    # Lasso the whole plot and save the selection as a playlist.
    w, h = canvas.width(), canvas.height()
    ids = canvas.lasso([(1, 1), (w - 1, 1), (w - 1, h - 1), (1, h - 1)])
    assert sorted(ids) == sorted(int(i) for i in canvas.ids)
    window.dialogs.texts.append("Everything")
    window.map_view.save_button.click()
    pid = library.playlist_id("Everything")
    assert len(playlists.items(library.db, pid)) == N_TRACKS


# ------------------------------------------------------------------------------------ settings
def test_settings_dialog_persists_and_switches_model(qtbot, make_window, library, app_settings):
    install_tagging_model(library)
    window = make_window(library)
    dialog = window.open_settings()
    assert dialog.folder_list.count() == 1
    dialog.device.setCurrentIndex(dialog.device.findData("cpu"))
    dialog.policy.setCurrentIndex(dialog.policy.findData("all"))
    assert not dialog.count.isEnabled()
    dialog.model.setCurrentIndex(dialog.model.findText("test-tagger (trained)"))
    new_db = str(library.path.parent / "elsewhere.db")
    dialog.db_path.setText(new_db)
    with qtbot.waitSignal(window.analysis_finished, timeout=LONG) as analysed:
        dialog.accept()
    assert analysed.args[0].model_trained
    assert library.active_model().name == "test-tagger"
    assert window.model_label.text() == "Model: test-tagger"
    reread = AppSettings(QSettings(app_settings.store.fileName(), QSettings.Format.IniFormat))
    assert (reread.device, reread.policy, reread.db_path) == ("cpu", "all", new_db)
    assert any("next time it starts" in text for text in window.dialogs.infos)
    options = reread.analysis_options()
    assert options.device == "cpu" and options.policy.name == "all"


def test_settings_remove_folder_asks_then_forgets_its_tracks(
    qtbot, make_window, library, music_dir
):
    rain = library.tracks(["title=Rain"])[0]["id"]
    library.set_user_tag(rain, "wet")
    window = make_window(library)
    dialog = window.open_settings()
    assert not dialog.remove_button.isEnabled()
    dialog.folder_list.setCurrentRow(0)
    assert dialog.remove_button.isEnabled()
    # Declined: nothing changes. (What goes is counted on the query thread, then asked.)
    window.dialogs.confirm_answer = False
    dialog.remove_button.click()
    qtbot.waitUntil(lambda: len(window.dialogs.questions) == 1)
    assert dialog.folder_list.count() == 1 and dialog.removed_folders == []
    assert dialog.remove_button.isEnabled()
    # Accepted: the question named what goes, and OK removes it in the background.
    window.dialogs.confirm_answer = True
    dialog.remove_button.click()
    qtbot.waitUntil(lambda: dialog.folder_list.count() == 0)
    question = window.dialogs.questions[-1]
    assert f"{N_TRACKS + 1} tracks" in question and "your tags on 1 of them" in question
    with qtbot.waitSignal(window.folders_removed, timeout=LONG) as removed:
        dialog.accept()
    assert [r.tracks for r in removed.args[0]] == [N_TRACKS + 1]
    assert library.folders() == [] and library.count() == 0
    qtbot.waitUntil(lambda: window.track_model.rowCount() == 0)
    assert f"Removed 1 folder and {N_TRACKS + 1} tracks" in window.statusBar().currentMessage()
    assert music_dir.joinpath("alpha", "01 Morning.mp3").exists()


def test_layout_is_remembered(qtbot, make_window, library, app_settings):
    window = make_window(library)
    window.resize(1100, 700)
    window.splitter.setSizes([150, 600, 250])
    window.library_view.table.setColumnWidth(0, 333)
    window.close()
    again = make_window(library, settings=app_settings)
    assert again.library_view.table.columnWidth(0) == 333
    assert again.splitter.sizes()[0] == window.splitter.sizes()[0]
    # The geometry is stored; the offscreen test screen (800×600) clamps what is restored.
    assert app_settings.state("geometry") is not None


def test_main_opens_window_on_db(qtbot, tmp_path, music_dir):
    from musicssl.app import main as main_mod

    db = tmp_path / "launched.db"
    seen = {}

    def close_soon() -> None:
        windows = [
            w
            for w in QApplication.topLevelWidgets()
            if w.objectName() == "" and type(w).__name__ == "MainWindow" and w.isVisible()
        ]
        seen["title"] = windows[0].windowTitle() if windows else None
        seen["db"] = str(windows[0].lib.path) if windows else None
        for w in windows:
            w.close()  # the last window closing ends app.exec() (quitOnLastWindowClosed)

    QTimer.singleShot(1500, close_soon)
    assert main_mod.main(["--db", str(db), "--no-rescan"]) == 0
    assert seen == {"title": "MusicSSL", "db": str(db)}
    assert db.exists()


def test_pyside_keeps_references_to_true_and_none(qtbot):
    """Emits and overridden-virtual calls must not lose references to True/None: PySide6
    6.12.0 lost one per call, which aborts CPython < 3.12 after a few hundred of them (hence
    `!=6.12.0` in pyproject.toml)."""
    from PySide6.QtCore import QObject, Signal
    from PySide6.QtWidgets import QWidget

    class Emitter(QObject):
        ping = Signal(object)

    class Painted(QWidget):
        def paintEvent(self, _event) -> None:  # noqa: N802, ANN001
            pass

    emitter = Emitter()
    widget = Painted()
    qtbot.addWidget(widget)
    widget.show()
    before = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(500):
        emitter.ping.emit(None)
    for _ in range(300):
        widget.repaint()
    after = sys.getrefcount(True), sys.getrefcount(None)
    assert after[0] >= before[0] - 50 and after[1] >= before[1] - 50, (before, after)


def test_failed_job_is_reported_in_the_status_bar(
    qtbot, make_window, library, app_settings, tmp_path
):
    import platform

    if platform.system() == "Darwin":
        pytest.skip("MPS may exist here; the test needs a device that cannot")
    app_settings.device = "mps"
    extra = tmp_path / "one"
    extra.mkdir()
    write_audio(extra / "one.wav", seconds=2.0, seed=3, tags={"title": "One"})
    window = make_window(library)
    with qtbot.waitSignal(window.job_failed, timeout=LONG) as failed:
        window.add_paths([str(extra)])
    assert "MPS" in failed.args[0] or "mps" in failed.args[0]
    assert window.problem_link.isVisible() and "mps" in window.problem_link.text().lower()
    wait_jobs_idle(qtbot, window)
    assert library.count(["status=new"]) == 1  # nothing lost: it is analysed next time
