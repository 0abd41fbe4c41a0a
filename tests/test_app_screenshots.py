"""PNG screenshots of the main views, for a human to look at (artifacts/screenshots/).

They are rendered offscreen from the real widgets on a real analysed library, so they show
what a user sees (layout, empty states, messages); the test checks each file was written and
is not blank.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

from conftest_app import *  # noqa: F403 - the fixtures
from conftest_app import wait_tag
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QApplication
from test_app_window import install_tagging_model, select_titles

OUT = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
LONG = 60000


def shoot(qtbot, widget, name: str) -> Path:  # noqa: ANN001
    qtbot.wait(120)  # let debounced updates (details pane, filter) land first
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    assert widget.grab().save(str(path)), path
    image = QImage(str(path))
    assert image.width() > 200 and image.height() > 150
    # Not one flat colour: something was drawn.
    colours = {
        image.pixel(x, y) for x in range(0, image.width(), 37) for y in range(0, image.height(), 23)
    }
    assert len(colours) > 3, name
    return path


def test_screenshot_empty_state(qtbot, make_window, empty_library):
    window = make_window(empty_library)
    window.resize(1200, 760)
    qtbot.wait(50)
    shoot(qtbot, window, "01-empty-state")


def test_screenshots_of_main_views(qtbot, make_window, library):
    install_tagging_model(library)
    window = make_window(library)
    window.resize(1280, 800)
    with qtbot.waitSignal(window.analysis_finished, timeout=LONG):
        window.switch_model(next(m.model_id for m in library.models() if m.name == "test-tagger"))
    qtbot.waitUntil(lambda: not window.jobs.busy(), timeout=LONG)

    # Library with the details pane: auto tags with confidence bars, a user tag, a rejection.
    [noon] = select_titles(window, ["Noon"])
    qtbot.waitUntil(lambda: window.details.track is not None)
    window.edit_tag([noon], "late night", True)
    window.edit_tag([noon], "rock", False)
    window.update_details()
    shoot(qtbot, window, "02-library-details")
    shoot(qtbot, window.details, "03-details-pane")

    # Similar results.
    select_titles(window, ["Morning"])
    with qtbot.waitSignal(window.similar_finished, timeout=LONG):
        window.find_similar(window.selected_track_ids())
    window.similar_view.table.select_rows([0])
    shoot(qtbot, window, "04-similar-results")

    # A playlist.
    ids = select_titles(window, ["Morning", "Rain", "Dusk", "Storm"])
    window.sidebar.select("library")
    window.playlist_actions.new(ids, "Sunday afternoon")
    window.playlist_actions.new(ids[:2], "Road trip")
    window.sidebar.select("playlist", library.playlist_id("Sunday afternoon"))
    shoot(qtbot, window, "05-playlist")

    # The library map, coloured by a tag, with a lasso selection.
    with qtbot.waitSignal(window.map_loaded, timeout=LONG):
        window.sidebar.select("map")
    wait_tag(qtbot, window, "Jazz")
    with qtbot.waitSignal(window.map_tag_loaded, timeout=LONG):
        window.map_view.colour.setCurrentIndex(window.map_view.colour.findData("Jazz"))
    canvas = window.map_view.canvas
    w, h = canvas.width(), canvas.height()
    canvas.lasso([(0, 0), (w // 2, 0), (w // 2, h), (0, h)])
    qtbot.wait(50)
    shoot(qtbot, window, "06-map")

    # Missing & errors.
    window.sidebar.select("errors")
    shoot(qtbot, window, "07-errors")

    # Duplicates.
    with qtbot.waitSignal(window.duplicates_finished, timeout=LONG):
        window.sidebar.select("duplicates")
    shoot(qtbot, window, "08-duplicates")

    # Settings and the fine-tune dialog.
    dialog = window.open_settings()
    qtbot.waitExposed(dialog)
    shoot(qtbot, dialog, "09-settings")
    dialog.reject()
    with qtbot.waitSignal(window.user_tag_stats_ready, timeout=LONG):
        window.act_finetune.trigger()
    qtbot.waitExposed(window.finetune_dialog)
    shoot(qtbot, window.finetune_dialog, "10-finetune")
    window.finetune_dialog.close()


def dark_palette() -> QPalette:
    """What a desktop in dark mode hands to Qt apps."""
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#2b2b2b",
        QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#1e1e1e",
        QPalette.ColorRole.AlternateBase: "#262626",
        QPalette.ColorRole.Text: "#e6e6e6",
        QPalette.ColorRole.Button: "#353535",
        QPalette.ColorRole.ButtonText: "#e6e6e6",
        QPalette.ColorRole.Highlight: "#3d7ae0",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.PlaceholderText: "#8a8a8a",
        QPalette.ColorRole.ToolTipBase: "#353535",
        QPalette.ColorRole.ToolTipText: "#e6e6e6",
    }
    for role, colour in roles.items():
        p.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText,
                 QPalette.ColorRole.ButtonText):  # fmt: skip
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7a7a"))
    return p


def test_screenshots_follow_dark_palette(qtbot, make_window, library):
    app = QApplication.instance()
    light = app.palette()
    app.setPalette(dark_palette())
    try:
        window = make_window(library)
        window.resize(1280, 800)
        select_titles(window, ["Rain"])
        shoot(qtbot, window, "11-dark-library")
        with qtbot.waitSignal(window.map_loaded, timeout=LONG):
            window.sidebar.select("map")
        shoot(qtbot, window, "12-dark-map")
        # The map is drawn from palette colours: its background is the dark Base colour.
        image = window.map_view.canvas.grab().toImage()
        assert QColor(image.pixel(image.width() // 2, 3)).lightness() < 80
    finally:
        app.setPalette(light)
