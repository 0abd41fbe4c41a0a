"""The main window: sidebar | page | details, preview strip, status bar with background jobs.

Why this file only wires things: each page is its own view module, data comes from the
`Library` facade (this thread's connection) or from the two job queues (their own
connections on worker threads), and every long operation goes through a queue so the event
loop never waits on audio, the model or a large query.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from musicssl.engine.analysis_types import AnalysisReport
from musicssl.engine.embeddings import NotAnalyzedError
from musicssl.engine.errors import MusicSSLError
from musicssl.engine.library import Library
from musicssl.engine.models import BundleInfo
from musicssl.engine.scanner import ScanReport
from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QKeySequence,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QMenu,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from . import formatting, icons, mime
from .dialogs import Dialogs
from .jobs import AnalysisRunJob, CallJob, Job, JobQueue, RemoveFoldersJob, ScanJob
from .models.page_loader import PageLoader
from .models.playlist_items import PlaylistItemsModel
from .models.projection import pca_2d
from .models.track_table import TrackTableModel
from .player import Player
from .playlist_actions import PlaylistActions
from .settings import AppSettings
from .undo import UserTagCommand
from .views.details import DetailsPane
from .views.duplicates import DuplicatesView
from .views.empty_state import EmptyState
from .views.errors import ErrorsView
from .views.finetune import FineTuneDialog
from .views.job_status import JobStatus
from .views.map import MapView
from .views.player_bar import PlayerBar
from .views.playlists import PlaylistView
from .views.settings_dialog import SettingsDialog
from .views.sidebar import Sidebar
from .views.similar import SimilarView
from .views.track_views import LibraryView

REFRESH_MS = 700  # while a job runs, the table re-reads at most this often
FILE_FILTER = (
    "Audio files (*.mp3 *.flac *.ogg *.oga *.opus *.m4a *.mp4 *.aac *.wav *.aif *.aiff *.wma "
    "*.ape *.wv *.mka);;All files (*)"
)


class MainWindow(QMainWindow):
    """Signals below exist so tests and the bench can wait for outcomes."""

    scan_finished = Signal(object)  # ScanReport
    analysis_finished = Signal(object)  # AnalysisReport
    similar_finished = Signal(object)  # list[Result] or an exception
    duplicates_finished = Signal(object)
    map_loaded = Signal()
    map_tag_loaded = Signal()
    import_finished = Signal(object)
    job_failed = Signal(str)
    user_tag_stats_ready = Signal(object)  # UserLabelStats
    folders_removed = Signal(object)  # list[FolderRemoval]
    tags_refreshed = Signal()

    def __init__(
        self,
        lib: Library,
        settings: AppSettings | None = None,
        dialogs: Dialogs | None = None,
        player: Player | None = None,
    ) -> None:
        super().__init__()
        self.lib = lib
        # This thread's commits (tag edits, playlists) must not pay for a WAL checkpoint: its
        # fsync took up to 5.7 s on a busy disk (docs/RELIABILITY.md). The worker threads'
        # connections keep checkpointing, and closing the library checkpoints what is left.
        lib.db.execute("PRAGMA wal_autocheckpoint = 0")
        self.settings = settings or AppSettings()
        self.dialogs = dialogs or Dialogs()
        self.setWindowTitle("MusicSSL")
        self.setWindowIcon(icons.app_icon())
        self.setAcceptDrops(True)
        self.resize(1200, 760)

        self.jobs = JobQueue(lib.path, "jobs", self)
        self.queries = JobQueue(lib.path, "queries", self)
        self._callbacks: dict[
            Job, tuple[Callable[[Any], None], Callable[[BaseException], None]]
        ] = {}
        self._latest: dict[str, Job] = {}
        self.undo_stack = QUndoStack(self)
        self.player = player if player is not None else Player(self)
        self.playlist_actions = PlaylistActions(self)
        self.model_info: BundleInfo = lib.active_model()
        self.finetune_dialog: FineTuneDialog | None = None
        self.settings_dialog: SettingsDialog | None = None
        self.last_error = ""
        self._closed = False

        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_MS)
        self._refresh_timer.timeout.connect(self.refresh_progress)
        self._details_timer = QTimer(self)
        self._details_timer.setSingleShot(True)
        self._details_timer.setInterval(40)
        self._details_timer.timeout.connect(self.update_details)
        self._build_views()
        self._build_actions()
        self._build_menus()
        self._connect()
        self._restore_layout()
        self.refresh_all()
        self.navigate("library", None)

    # ================================================================================ building
    def _build_views(self) -> None:
        lib = self.lib
        # Pages of the big tables are read on their own threads (see models/page_loader.py).
        self.page_loaders = [PageLoader(lib.path, self), PageLoader(lib.path, self)]
        self.track_model = TrackTableModel(lib, ["missing=0"], self, self.page_loaders[0])
        self.missing_model = TrackTableModel(lib, ["missing=1"], self, self.page_loaders[1])
        self.playlist_model = PlaylistItemsModel(lib, self)

        self.sidebar = Sidebar()
        self.library_view = LibraryView(self.track_model)
        self.empty_state = EmptyState()
        self.playlist_view = PlaylistView(self.playlist_model)
        self.similar_view = SimilarView()
        self.duplicates_view = DuplicatesView()
        self.errors_view = ErrorsView(self.missing_model)
        self.map_view = MapView()
        self.map_view.canvas.label_for = self._label_for
        self.details = DetailsPane()
        self.details.set_model_trained(self.model_info.trained)

        self.pages = QStackedWidget()
        self.page_widgets: dict[str, QWidget] = {
            "library": self.library_view,
            "empty": self.empty_state,
            "playlist": self.playlist_view,
            "similar": self.similar_view,
            "duplicates": self.duplicates_view,
            "errors": self.errors_view,
            "map": self.map_view,
        }
        self._page_frames: dict[str, QWidget] = {}
        for name, widget in self.page_widgets.items():
            frame = QWidget()
            layout = QVBoxLayout(frame)
            layout.setContentsMargins(6, 6, 6, 0)
            layout.addWidget(widget)
            self.pages.addWidget(frame)
            self._page_frames[name] = frame
        self.page = "library"

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(self.pages)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
        self.splitter.setSizes([210, 700, 290])
        self.splitter.setChildrenCollapsible(False)

        self.player_bar = PlayerBar(self.player)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.splitter, 1)
        layout.addWidget(self.player_bar)
        self.setCentralWidget(central)

        self.job_status = JobStatus(self.jobs)
        self.problem_link = QLabel()
        self.problem_link.setTextFormat(Qt.TextFormat.RichText)
        self.problem_link.linkActivated.connect(lambda _l: self.sidebar.select("errors"))
        self.problem_link.setVisible(False)
        self.model_label = QLabel()
        self.model_label.setObjectName("modelLabel")
        # Permanent (right-hand) widgets: temporary messages on the left never overlap them.
        self.statusBar().addPermanentWidget(self.problem_link)
        self.statusBar().addPermanentWidget(self.job_status)
        self.statusBar().addPermanentWidget(self.model_label)
        self._show_model_label()

    def _action(
        self, text: str, slot: Callable[..., Any], shortcut: Any = None, tip: str = ""
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            shortcuts = shortcut if isinstance(shortcut, list) else [shortcut]
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        key = QKeySequence.StandardKey
        self.act_add_folder = self._action("Add folder…", self.choose_folder, key.Open)
        self.act_add_files = self._action("Add files…", self.choose_files)
        self.act_import_playlist = self._action(
            "Import playlist…", lambda: self.playlist_actions.import_file()
        )
        self.act_rescan = self._action("Rescan library", self.rescan, "F5")
        self.act_settings = self._action("Settings…", self.open_settings, key.Preferences)
        if self.act_settings.shortcut().isEmpty():
            self.act_settings.setShortcut(QKeySequence("Ctrl+,"))
        self.act_quit = self._action("Quit", self.close, key.Quit)
        if self.act_quit.shortcut().isEmpty():
            self.act_quit.setShortcut(QKeySequence("Ctrl+Q"))
        self.act_undo = self.undo_stack.createUndoAction(self, "Undo")
        self.act_undo.setShortcuts(key.Undo)
        self.act_redo = self.undo_stack.createRedoAction(self, "Redo")
        self.act_redo.setShortcuts(key.Redo)
        self.addAction(self.act_undo)
        self.addAction(self.act_redo)
        self.act_find = self._action("Filter tracks", self.focus_filter, key.Find)
        self.act_play = self._action("Play / pause", self.play_pause, "Space")
        self.act_similar = self._action(
            "Find similar tracks", lambda: self.find_similar(self.selected_track_ids()), "Ctrl+E"
        )
        self.act_new_playlist = self._action(
            "New playlist from selection…",
            lambda: self.playlist_actions.new(self.selected_track_ids()),
            key.New,
        )
        self.act_library = self._action("Library", lambda: self.sidebar.select("library"), "Ctrl+1")
        self.act_map = self._action("Library map", lambda: self.sidebar.select("map"), "Ctrl+2")
        self.act_duplicates = self._action(
            "Duplicates", lambda: self.sidebar.select("duplicates"), "Ctrl+3"
        )
        self.act_errors = self._action(
            "Missing & errors", lambda: self.sidebar.select("errors"), "Ctrl+4"
        )
        self.act_details = QAction("Details pane", self, checkable=True, checked=True)
        self.act_details.setShortcut(QKeySequence("Ctrl+I"))
        self.act_details.toggled.connect(self.details.setVisible)
        self.act_finetune = self._action("Fine-tune and models…", self.open_finetune)
        self.act_analyze = self._action("Analyse new tracks now", self.queue_analysis)
        self.act_stop = self._action("Stop background work", self.jobs.cancel_all, "Ctrl+.")
        self.act_about = self._action("About MusicSSL", self.about)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        for a in (self.act_add_folder, self.act_add_files, self.act_import_playlist):
            file.addAction(a)
        file.addSeparator()
        file.addAction(self.act_rescan)
        file.addSeparator()
        file.addAction(self.act_settings)
        file.addSeparator()
        file.addAction(self.act_quit)
        edit = bar.addMenu("&Edit")
        edit.addAction(self.act_undo)
        edit.addAction(self.act_redo)
        edit.addSeparator()
        edit.addAction(self.act_find)
        view = bar.addMenu("&View")
        for a in (self.act_library, self.act_map, self.act_duplicates, self.act_errors):
            view.addAction(a)
        view.addSeparator()
        view.addAction(self.act_details)
        tracks = bar.addMenu("&Tracks")
        tracks.addAction(self.act_play)
        tracks.addAction(self.act_similar)
        tracks.addAction(self.act_new_playlist)
        tools = bar.addMenu("T&ools")
        tools.addAction(self.act_finetune)
        self.model_menu = tools.addMenu("Active model")
        self.model_menu.aboutToShow.connect(self._fill_model_menu)
        tools.addSeparator()
        tools.addAction(self.act_analyze)
        tools.addAction(self.act_stop)
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.act_about)

    def _connect(self) -> None:
        sb = self.sidebar
        sb.navigate.connect(self.navigate)
        sb.tracks_dropped.connect(self.playlist_actions.add)
        sb.new_playlist.connect(lambda: self.playlist_actions.new())
        sb.import_playlist.connect(lambda: self.playlist_actions.import_file())
        sb.rename_playlist.connect(self.playlist_actions.rename)
        sb.delete_playlist.connect(self.playlist_actions.delete)
        sb.export_playlist.connect(self.playlist_actions.export)
        self.empty_state.choose_folder.connect(self.choose_folder)

        for table in (
            self.library_view.table,
            self.playlist_view.table,
            self.similar_view.table,
            self.errors_view.missing,
        ):
            table.play_requested.connect(self.play_track)
            table.menu_requested.connect(self._show_track_menu)
            table.selection_changed.connect(self._details_timer.start)
        self.duplicates_view.play_requested.connect(self.play_track)
        self.duplicates_view.menu_requested.connect(self._show_track_menu)
        self.duplicates_view.tree.itemSelectionChanged.connect(self._details_timer.start)
        self.track_model.rowsInserted.connect(self._maybe_leave_empty_state)

        pv = self.playlist_view
        pv.play_requested.connect(self.play_track)
        pv.export_requested.connect(self.playlist_actions.export)
        pv.rename_requested.connect(self.playlist_actions.rename)
        pv.delete_requested.connect(self.playlist_actions.delete)
        pv.changed.connect(self.refresh_playlists)
        self.playlist_model.rowsInserted.connect(lambda *_: self.refresh_playlists())
        self.playlist_model.modelReset.connect(self.refresh_playlists_soon)

        sv = self.similar_view
        sv.search_requested.connect(self._run_similar)
        sv.play_requested.connect(self.play_track)
        sv.save_requested.connect(self.save_as_playlist)

        mv = self.map_view
        mv.reload_requested.connect(self.load_map)
        mv.tag_requested.connect(self._colour_map)
        mv.selection_changed.connect(self._map_selection)
        mv.play_requested.connect(self.play_track)
        mv.save_requested.connect(self.save_as_playlist)

        d = self.details
        d.tag_edit.connect(self.edit_tag)
        d.play_requested.connect(self.play_track)
        d.similar_requested.connect(self.find_similar)

        for q in (self.jobs, self.queries):
            q.finished.connect(self._job_finished)
            q.failed.connect(self._job_failed)
        self.jobs.started.connect(self._job_started)
        self.jobs.progress.connect(self._job_progress)
        self.jobs.idle.connect(self._jobs_idle)

    # ================================================================================ layout state
    def _restore_layout(self) -> None:
        s = self.settings
        if (g := s.state("geometry")) is not None:
            self.restoreGeometry(g)
        if (st := s.state("window")) is not None:
            self.restoreState(st)
        if (sp := s.state("splitter")) is not None:
            self.splitter.restoreState(sp)
        if (h := s.state("library_header")) is not None:
            self.library_view.table.horizontalHeader().restoreState(h)
            # The saved sort column/order drives the query too.
            header = self.library_view.table.horizontalHeader()
            self.track_model.sort(header.sortIndicatorSection(), header.sortIndicatorOrder())
        if (h := s.state("playlist_header")) is not None:
            self.playlist_view.table.horizontalHeader().restoreState(h)
        if (h := s.state("similar_header")) is not None:
            self.similar_view.table.horizontalHeader().restoreState(h)

    def save_layout(self) -> None:
        s = self.settings
        s.set_state("geometry", self.saveGeometry())
        s.set_state("window", self.saveState())
        s.set_state("splitter", self.splitter.saveState())
        s.set_state("library_header", self.library_view.table.horizontalHeader().saveState())
        s.set_state("playlist_header", self.playlist_view.table.horizontalHeader().saveState())
        s.set_state("similar_header", self.similar_view.table.horizontalHeader().saveState())
        s.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        self.save_layout()
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop playback and the worker threads (analysis keeps what it finished).

        Signals still queued from the workers are ignored from here on (`_closed`): they must
        not reach a library the caller is about to close.
        """
        if self._closed:
            return
        self._closed = True
        self._refresh_timer.stop()
        self._details_timer.stop()
        self.player.shutdown()
        self.jobs.shutdown()
        self.queries.shutdown()
        for loader in self.page_loaders:
            loader.stop()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802
        # The system switched light/dark: views drawn from palette colours repaint themselves;
        # the details pane rebuilds so its muted labels pick up the new palette.
        if event.type() == QEvent.Type.PaletteChange and self.details.track is not None:
            self.details.show_track(self.details.track)
        super().changeEvent(event)

    # ================================================================================ navigation
    def show_page(self, name: str) -> None:
        self.page = name
        self.pages.setCurrentWidget(self._page_frames[name])
        # Nothing to detail on the first-run page: give the invitation the whole width.
        self.details.setVisible(name != "empty" and self.act_details.isChecked())

    def navigate(self, kind: str, value: Any = None) -> None:
        if kind in ("library", "tag"):
            self.library_view.set_tag(value if kind == "tag" else None)
            self._show_library_or_empty()
        elif kind == "playlist":
            playlist = next((p for p in self.lib.playlists() if p["id"] == value), None)
            if playlist is None:
                self.sidebar.select("library")
                return
            self.playlist_view.show_playlist(playlist)
            self.show_page("playlist")
        elif kind == "map":
            self.show_page("map")
            if not self.map_view.loaded:
                self.load_map()
        elif kind == "duplicates":
            self.show_page("duplicates")
            self.show_duplicates()
        elif kind == "errors":
            self.errors_view.show_errors(self.lib.errors())
            self.show_page("errors")
        self._details_timer.start()

    def _show_library_or_empty(self) -> None:
        empty = (
            self.track_model.rowCount() == 0
            and not self.library_view.tag
            and not (self.track_model.search)
        )
        if empty and self.lib.count() == 0:
            self.empty_state.set_busy(self.jobs.has("scan", pending_only=False))
            self.show_page("empty")
        else:
            self.show_page("library")

    def _maybe_leave_empty_state(self, *_args: Any) -> None:
        if self.page == "empty" and self.track_model.rowCount():
            self.show_page("library")

    def _leave_sidebar(self) -> None:
        """A page not in the sidebar is shown: clear its selection so a click there returns."""
        self.sidebar.blockSignals(True)
        self.sidebar.setCurrentItem(None)
        self.sidebar.clearSelection()
        self.sidebar.blockSignals(False)

    def focus_filter(self) -> None:
        if self.page not in ("library", "empty"):
            self.sidebar.select("library")
        self.show_page("library")
        self.library_view.filter.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.library_view.filter.selectAll()

    # ================================================================================ selection
    def selected_track_ids(self) -> list[int]:
        page = self.page
        if page == "library":
            return self.library_view.table.selected_ids()
        if page == "playlist":
            return self.playlist_view.table.selected_ids()
        if page == "similar":
            return self.similar_view.table.selected_ids()
        if page == "duplicates":
            return self.duplicates_view.selected_ids()
        if page == "errors":
            return self.errors_view.missing.selected_ids()
        if page == "map":
            return self.map_view.canvas.selected_ids()
        return []

    def update_details(self) -> None:
        ids = self.selected_track_ids()
        if len(ids) == 1:
            try:
                self.details.show_track(self.lib.track(ids[0]))
            except LookupError:
                self.details.show_nothing()
        elif ids:
            self.details.show_selection(ids)
        else:
            self.details.show_nothing()

    def _map_selection(self, ids: list[int]) -> None:
        self._details_timer.start()

    def _label_for(self, track_id: int) -> str:
        try:
            return formatting.track_label(self.lib.track(track_id))
        except LookupError:
            return ""

    # ================================================================================ track menu
    def build_track_menu(self, ids: Sequence[int]) -> QMenu:
        """The right-click menu for tracks (also used by tests to trigger the same actions)."""
        ids = list(ids)
        menu = QMenu(self)
        has = bool(ids)
        play = menu.addAction("Play", lambda: self.play_track(ids[0]))
        play.setEnabled(has)
        similar = menu.addAction("Find similar tracks", lambda: self.find_similar(ids))
        similar.setEnabled(has)
        add = menu.addMenu("Add to playlist")
        add.setEnabled(has)
        for pl in self.lib.playlists():
            add.addAction(pl["name"], lambda pid=pl["id"]: self.playlist_actions.add(pid, ids))
        if self.lib.playlists():
            add.addSeparator()
        add.addAction("New playlist…", lambda: self.playlist_actions.new(ids))
        menu.addAction("New playlist from selection…", lambda: self.playlist_actions.new(ids))
        if self.page == "playlist":
            menu.addAction(self.playlist_view.remove_action)
        menu.addSeparator()
        menu.addAction("Show duplicates", lambda: self.sidebar.select("duplicates"))
        copy = menu.addAction("Copy file path", lambda: self._copy_paths(ids))
        copy.setEnabled(has)
        return menu

    def _show_track_menu(self, global_pos) -> None:  # noqa: ANN001 - QPoint
        menu = self.build_track_menu(self.selected_track_ids())
        menu.exec(global_pos)
        menu.deleteLater()

    def _copy_paths(self, ids: Sequence[int]) -> None:
        paths = [self.lib.track(i)["path"] for i in ids]
        QGuiApplication.clipboard().setText("\n".join(paths))

    # ================================================================================ import
    @staticmethod
    def _dropped_paths(data) -> list[str]:  # noqa: ANN001 - QMimeData
        """Files/folders from the file manager; our own track drags (which also carry file
        URLs, for other apps) are not imports."""
        return [] if data.hasFormat(mime.TRACK_IDS) else mime.local_paths(data)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if self._dropped_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802, ANN001
        if self._dropped_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = self._dropped_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.add_paths(paths)

    def add_paths(self, paths: Sequence[str]) -> None:
        """Scan these folders/files (playlist files among them are imported), then analyse."""
        paths = [p for p in paths if p]
        if not paths:
            return
        self.jobs.submit(ScanJob(paths))
        self.queue_analysis()
        self.problem_link.setVisible(False)
        names = ", ".join(os.path.basename(p.rstrip("/\\")) or p for p in paths[:3])
        more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
        self.statusBar().showMessage(f"Adding {names}{more}…", 5000)
        if self.page == "empty":
            self._show_library_or_empty()

    def choose_folder(self) -> None:
        folder = self.dialogs.folder(self, "Add a music folder", os.path.expanduser("~"))
        if folder:
            self.add_paths([folder])

    def choose_files(self) -> None:
        files = self.dialogs.open_files(self, "Add music files", FILE_FILTER)
        if files:
            self.add_paths(files)

    def rescan(self) -> None:
        if self.lib.folders():
            self.jobs.submit(ScanJob(None))
            self.queue_analysis()

    def queue_analysis(self) -> None:
        """One waiting analysis is enough: when it runs it takes every pending track."""
        if not self.jobs.has("analysis"):
            self.jobs.submit(AnalysisRunJob(self.settings.analysis_options()))

    def start(self) -> None:
        """What the app does on launch: rescan remembered folders, analyse what is pending.

        Only once the library table has its rows: rescanning a large library on the jobs
        thread shares the GIL and the disk with the page loader and would delay the first paint.
        """
        if self.track_model.exact:
            self._start_jobs()
        else:
            self.track_model.counted.connect(
                self._start_jobs, Qt.ConnectionType.SingleShotConnection
            )

    def _start_jobs(self) -> None:
        if self._closed:
            return
        if self.lib.folders():
            self.rescan()
        elif self.lib.count(["status=new", "missing=0"]):
            self.queue_analysis()

    # ================================================================================ jobs
    def ask(
        self,
        fn: Callable[[Library], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None = None,
        kind: str = "call",
    ) -> Job:
        """Run `fn(library)` on the query thread; only the latest request of a kind answers."""
        job = CallJob(fn, kind=kind)
        self._callbacks[job] = (on_done, on_error or self._query_error)
        self._latest[kind] = job
        return self.queries.submit(job)

    def _query_error(self, exc: BaseException) -> None:
        self.statusBar().showMessage(f"Error: {exc}", 10000)

    def _job_started(self, job: Job) -> None:
        if self._closed:
            return
        if job.kind == "scan" and self.page == "empty":
            self._show_library_or_empty()

    def _job_progress(self, job: Job, done: int, total: int, text: str) -> None:
        if self._closed:
            return
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _job_finished(self, job: Job, result: Any) -> None:
        if self._closed:
            return
        callbacks = self._callbacks.pop(job, None)
        if callbacks is not None:
            if self._latest.get(job.kind) is job:
                callbacks[0](result)
            return
        if isinstance(result, ScanReport):
            self.refresh_all()
            self._report_problems(result.summary(), len(result.errors))
            self.scan_finished.emit(result)
        elif isinstance(result, AnalysisReport):
            self.refresh_all()
            if result.total:  # a run with nothing pending must not hide the last message
                self._report_problems(result.summary(), result.failed)
            if self.page == "map":
                self.load_map()
            self.analysis_finished.emit(result)
        elif job.kind == "remove_folders":
            self.refresh_all()
            self.map_view.loaded = False
            if self.page == "map":
                self.load_map()
            tracks = sum(r.tracks for r in result)
            self.statusBar().showMessage(
                f"Removed {formatting.plural(len(result), 'folder')} and "
                f"{formatting.plural(tracks, 'track')} from the library",
                10000,
            )
            self.folders_removed.emit(result)
        elif job.kind == "import":
            self.refresh_all()
            missing = len(result.missing)
            text = f"Imported a playlist with {formatting.plural(result.matched, 'track')}"
            if missing:
                text += f"; {formatting.plural(missing, 'entry', 'entries')} not found on disk"
            self.statusBar().showMessage(text, 10000)
            self.sidebar.select("playlist", result.playlist_id)
            if result.flagged:  # entries the playlist cannot vouch for: say so, never hide them
                shown = "\n".join(f"{p}\n    {why}" for p, why in list(result.flagged.items())[:10])
                more = len(result.flagged) - 10
                self.dialogs.info(
                    self,
                    "Some playlist entries were not added",
                    f"{shown}" + (f"\n… and {more} more" if more > 0 else "") + "\n\nAdd these "
                    "files with Add Files if you trust them, then import the playlist again.",
                )
            self.import_finished.emit(result)

    def _job_failed(self, job: Job, exc: BaseException, detail: str) -> None:
        if self._closed:
            return
        callbacks = self._callbacks.pop(job, None)
        if callbacks is not None:
            if self._latest.get(job.kind) is job:
                callbacks[1](exc)
            return
        self.last_error = detail
        # Engine errors meant for users (MusicSSLError) read well as they are; anything else is
        # a bug: say which job failed, keep the traceback in the tooltip.
        message = str(exc) if isinstance(exc, MusicSSLError) else f"{job.title} failed: {exc!r}"
        self.statusBar().showMessage(message)
        self.problem_link.setText(f"⚠ {message}")
        self.problem_link.setToolTip(detail)
        self.problem_link.setVisible(True)
        self.refresh_all()
        self.job_failed.emit(message)

    def _jobs_idle(self) -> None:
        if self._closed:
            return
        self.refresh_progress()

    def _report_problems(self, summary: str, problems: int) -> None:
        self.statusBar().showMessage(summary, 15000)
        errors = len(self.lib.errors())
        if problems or errors:
            n = errors or problems
            self.problem_link.setText(
                f"{formatting.plural(n, 'file')} could not be read — <a href='errors'>show them</a>"
            )
            self.problem_link.setToolTip("")
            self.problem_link.setVisible(True)
        else:
            self.problem_link.setVisible(False)

    # ================================================================================ refresh
    def refresh_progress(self) -> None:
        """Cheap refresh while a job runs: table rows and sidebar counts."""
        self.track_model.refresh()
        self.refresh_counts()
        if self.page == "empty":
            self._maybe_leave_empty_state()

    def refresh_all(self) -> None:
        self.track_model.refresh()
        self.refresh_counts()
        self.refresh_playlists()
        self.refresh_tags()
        if self.page in ("empty", "library"):
            self._show_library_or_empty()
        if self.page == "playlist":
            self.playlist_model.reload()
        if self.page == "errors":
            self.errors_view.show_errors(self.lib.errors())
        self._details_timer.start()

    def refresh_counts(self) -> None:
        """Sidebar counts; `Library.status()` takes ~70 ms on 100,000 tracks: query thread."""
        self.ask(lambda lib: lib.status(), self.sidebar.set_counts, kind="status")

    def refresh_playlists(self) -> None:
        self.sidebar.set_playlists(self.lib.playlists())

    def refresh_playlists_soon(self) -> None:
        QTimer.singleShot(0, self.refresh_playlists)

    def refresh_tags(self) -> None:
        """Tag names and counts (a GROUP BY over all tags: on the query thread)."""

        def done(counts: Any) -> None:
            self.sidebar.set_tags(counts)
            names = [row["tag"] for row in counts]
            self.details.set_known_tags(names)
            self.map_view.set_tags(names)
            self.tags_refreshed.emit()

        self.ask(lambda lib: lib.tag_counts(), done, kind="tag_counts")

    # ================================================================================ playback
    def play_track(self, track_id: int) -> None:
        try:
            track = self.lib.track(track_id)
        except LookupError:
            return
        if track.get("missing"):
            self.statusBar().showMessage(f"Cannot play: {track['path']} is missing", 8000)
            return
        self.player.play(track)

    def play_pause(self) -> None:
        if self.player.track is None or self.player.state == "stopped":
            ids = self.selected_track_ids()
            if ids:
                self.play_track(ids[0])
                return
        self.player.toggle()

    # ================================================================================ tags
    def edit_tag(self, track_ids: list[int], tag: str, state: bool | None) -> None:
        """Set (True), reject (False) or remove (None) a user tag, undoably (Ctrl+Z)."""
        if not tag.strip() or not track_ids:
            return
        self.undo_stack.push(UserTagCommand(self.lib, track_ids, tag, state, self._tags_changed))

    def _tags_changed(self, track_ids: list[int]) -> None:
        self.refresh_tags()
        self.track_model.refresh()
        if set(track_ids) & set(self.details.track_ids):
            self.update_details()

    # ================================================================================ similar
    def find_similar(self, ids: Sequence[int]) -> None:
        ids = [int(i) for i in ids]
        if not ids:
            return
        try:
            first = formatting.track_label(self.lib.track(ids[0]))
        except LookupError:
            return
        label = f"“{first}”" + (f" and {len(ids) - 1} more" if len(ids) > 1 else "")
        self._leave_sidebar()
        self.show_page("similar")
        self.similar_view.set_seeds(ids, label)

    def _run_similar(self, seeds: list[int], options: dict) -> None:
        def done(results: Any) -> None:
            self.similar_view.show_results(results)
            self.similar_finished.emit(results)

        def failed(exc: BaseException) -> None:
            if isinstance(exc, NotAnalyzedError):
                text = (
                    "Not analysed yet: similar tracks can be found once the analysis has "
                    "listened to these tracks (see the progress below)."
                )
            else:
                text = f"Could not search: {exc}"
            self.similar_view.show_message(text)
            self.similar_finished.emit(exc)

        self.ask(lambda lib: lib.similar(seeds, **options), done, failed, kind="similar")

    def save_as_playlist(self, track_ids: list[int], suggestion: str) -> None:
        name = self.dialogs.ask_text(self, "Save as playlist", "Name:", suggestion)
        if name:
            self.playlist_actions.new(track_ids, name)

    # ================================================================================ duplicates
    def show_duplicates(self) -> None:
        self.duplicates_view.show_message("Looking for duplicates…")

        def done(groups: Any) -> None:
            self.duplicates_view.show_groups(groups, untrained=not self.model_info.trained)
            self.duplicates_finished.emit(groups)

        def failed(exc: BaseException) -> None:
            self.duplicates_view.show_message(f"Could not look for duplicates: {exc}")
            self.duplicates_finished.emit(exc)

        self.ask(lambda lib: lib.duplicates(), done, failed, kind="duplicates")

    # ================================================================================ map
    def load_map(self) -> None:
        if not self.map_view.loaded:
            self.map_view.show_message("Drawing the map…")

        def compute(lib: Library) -> tuple[Any, Any]:
            ids, matrix = lib.embedding_matrix()
            return ids, pca_2d(matrix)

        def done(result: Any) -> None:
            self.map_view.show_points(*result)
            self.map_loaded.emit()

        def failed(exc: BaseException) -> None:
            self.map_view.show_message(f"Could not draw the map: {exc}")

        self.ask(compute, done, failed, kind="map")

    def _colour_map(self, tag: str | None) -> None:
        if not tag:
            self.map_view.show_tag(None, None)
            self.map_tag_loaded.emit()
            return

        def done(ids: Any) -> None:
            self.map_view.show_tag(tag, ids)
            self.map_tag_loaded.emit()

        self.ask(lambda lib: [t["id"] for t in lib.tracks([f"tag={tag}"])], done, kind="map_tag")

    # ================================================================================ models
    def _show_model_label(self) -> None:
        info = self.model_info
        if info.trained:
            self.model_label.setText(f"Model: {info.name}")
            self.model_label.setToolTip(f"Trained model with {info.n_tags} tags")
        else:
            self.model_label.setText("Untrained model: similarity only")
            self.model_label.setToolTip(
                f"Active model: {info.name}. No trained model is installed yet. Similar-track "
                "search works on the random baseline's features; auto tags are not shown."
            )

    def _fill_model_menu(self) -> None:
        self.model_menu.clear()
        for info in self.lib.models():
            kind = "" if info.trained else " (untrained: similarity only)"
            action = self.model_menu.addAction(f"{info.name}{kind}")
            action.setCheckable(True)
            action.setChecked(info.model_id == self.model_info.model_id)
            action.triggered.connect(lambda _c=False, m=info.model_id: self.switch_model(m))

    def switch_model(self, model_id: str) -> None:
        """Make another model active; tracks lacking its embedding are re-analysed."""
        if model_id == self.model_info.model_id:
            return
        try:
            self.model_info = self.lib.use_model(model_id)
        except LookupError as exc:
            self.dialogs.error(self, "Cannot switch model", str(exc))
            return
        self.details.set_model_trained(self.model_info.trained)
        self._show_model_label()
        current = self.jobs.current
        if current is not None and current.kind == "analysis":
            current.cancel()  # it runs the old model; the queued one takes over
        self.queue_analysis()
        self.map_view.loaded = False
        if self.page == "map":
            self.load_map()
        self.statusBar().showMessage(
            f"Now using {self.model_info.name}; re-analysing in the background", 8000
        )

    def open_finetune(self) -> None:
        dialog = FineTuneDialog(str(self.lib.path), self.lib.models(), self.model_info, self)
        dialog.use_model.connect(self.switch_model)
        self.finetune_dialog = dialog

        def done(stats: Any) -> None:
            dialog.show_counts(stats)
            self.user_tag_stats_ready.emit(stats)

        self.ask(lambda lib: lib.user_label_stats(), done, kind="user_tag_stats")
        dialog.show()

    # ================================================================================ settings
    def open_settings(self) -> SettingsDialog:
        dialog = SettingsDialog(
            self.settings,
            self.lib.folders(),
            self.lib.models(),
            self.model_info.model_id,
            str(self.lib.path),
            self.dialogs,
            lambda folder, answer: self.ask(
                lambda lib: lib.folder_removal(folder), answer, kind="folder_removal"
            ),
            self,
        )
        dialog.accepted.connect(lambda: self._apply_settings(dialog))
        self.settings_dialog = dialog
        dialog.open()
        return dialog

    def _apply_settings(self, dialog: SettingsDialog) -> None:
        changes = dialog.apply()
        if changes.removed_folders:
            self.remove_folders(changes.removed_folders)
        if changes.new_folders:
            self.add_paths(changes.new_folders)
        if changes.model_id:
            self.switch_model(changes.model_id)
        if changes.db_path_changed:
            self.dialogs.info(
                self,
                "Database location",
                "MusicSSL will open the new library database the next time it starts.",
            )

    def remove_folders(self, folders: Sequence[str]) -> None:
        """Take folders out of the library in the background; a running analysis stops first
        (it could be analysing their tracks) and the queued one resumes with the rest."""
        current = self.jobs.current
        analysing = current is not None and current.kind == "analysis"
        if analysing:
            current.cancel()
        self.jobs.submit(RemoveFoldersJob(folders))
        if analysing:
            self.queue_analysis()

    def about(self) -> None:
        self.dialogs.info(
            self,
            "About MusicSSL",
            "MusicSSL organises your music library and learns how it sounds.\n\n"
            f"Library: {self.lib.path}\nModel: {self.model_info.name}",
        )
