"""Settings: library folders, analysis device, excerpt policy, active model, database location.

Why a dialog that only collects answers: applying them has consequences handled by the
window (switching models queues a re-analysis, a new folder queues a scan, a removed one a
background removal, a new DB location needs a restart), so the dialog returns what changed
and the window acts on it. Removing a folder is confirmed here, with what it takes out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from musicssl.engine.folders import FolderRemoval
from musicssl.engine.models import BundleInfo
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..dialogs import Dialogs
from ..settings import DEVICE_LABELS, DEVICES, AppSettings

POLICY_LABELS = {
    "spaced": "Spaced excerpts (fast)",
    "all": "The whole track (thorough, slower)",
}


def model_label(info: BundleInfo) -> str:
    kind = "trained" if info.trained else "untrained: similarity only"
    return f"{info.name} ({kind})"


@dataclass
class SettingsChanges:
    new_folders: list[str]
    removed_folders: list[str]  # confirmed by the user, with what they take out of the library
    model_id: str | None  # set when the user picked another model
    db_path_changed: bool


class SettingsDialog(QDialog):
    def __init__(
        self,
        settings: AppSettings,
        folders: Sequence[str],
        models: Sequence[BundleInfo],
        active_model_id: str,
        current_db: str,
        dialogs: Dialogs,
        removal_plan: Callable[[str, Callable[[FolderRemoval], None]], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)
        self.settings = settings
        self.dialogs = dialogs
        self.active_model_id = active_model_id
        self.removal_plan = removal_plan
        self.new_folders: list[str] = []
        self.removed_folders: list[str] = []

        folders_box = QGroupBox("Library folders")
        self.folder_list = QListWidget()
        self.folder_list.addItems(list(folders))
        self.folder_list.setMaximumHeight(110)
        add = QPushButton("Add folder…")
        add.clicked.connect(self._add_folder)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip(
            "Take the folder's tracks out of the library (the files stay on disk)"
        )
        self.remove_button.setEnabled(False)
        self.remove_button.clicked.connect(self._remove_folder)
        self.folder_list.currentRowChanged.connect(
            lambda row: self.remove_button.setEnabled(row >= 0)
        )
        fl = QVBoxLayout(folders_box)
        fl.addWidget(self.folder_list)
        row = QHBoxLayout()
        note = QLabel("Folders are rescanned at start; only changed files are read again.")
        note.setWordWrap(True)
        note.setEnabled(False)
        row.addWidget(note, 1)
        row.addWidget(add)
        row.addWidget(self.remove_button)
        fl.addLayout(row)

        analysis_box = QGroupBox("Analysis")
        form = QFormLayout(analysis_box)
        self.device = QComboBox()
        for d in DEVICES:
            self.device.addItem(DEVICE_LABELS[d], d)
        self.device.setCurrentIndex(DEVICES.index(settings.device))
        self.device.setToolTip("Where the model runs; Automatic picks a GPU when there is one")
        form.addRow("Device", self.device)
        self.policy = QComboBox()
        for key, label in POLICY_LABELS.items():
            self.policy.addItem(label, key)
        self.policy.setCurrentIndex(max(0, self.policy.findData(settings.policy)))
        self.count = QSpinBox()
        self.count.setRange(1, 64)
        self.count.setValue(settings.excerpt_count)
        self.count.setSuffix(" excerpts per track")
        self.policy.currentIndexChanged.connect(self._policy_changed)
        form.addRow("Listen to", self.policy)
        form.addRow("", self.count)
        self.model = QComboBox()
        for info in models:
            self.model.addItem(model_label(info), info.model_id)
        self.model.setCurrentIndex(max(0, self.model.findData(active_model_id)))
        form.addRow("Model", self.model)
        model_note = QLabel("Switching models re-analyses the library in the background.")
        model_note.setEnabled(False)
        form.addRow("", model_note)

        db_box = QGroupBox("Database")
        dl = QHBoxLayout(db_box)
        self.db_path = QLineEdit(settings.db_path or current_db)
        self.db_path.setPlaceholderText("Default location")
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._choose_db)
        dl.addWidget(self.db_path, 1)
        dl.addWidget(browse)
        self.current_db = current_db
        db_note = QLabel("A new database location takes effect when MusicSSL restarts.")
        db_note.setEnabled(False)

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(folders_box)
        layout.addWidget(analysis_box)
        layout.addWidget(db_box)
        layout.addWidget(db_note)
        layout.addWidget(buttons)
        self._policy_changed()

    def _policy_changed(self) -> None:
        self.count.setEnabled(self.policy.currentData() == "spaced")

    def _add_folder(self) -> None:
        folder = self.dialogs.folder(self, "Add a music folder")
        if folder:
            self.new_folders.append(folder)
            self.folder_list.addItem(folder)

    def _remove_folder(self) -> None:
        """Ask first, naming what goes (tracks, user tags, playlist entries); done on OK.

        What goes is counted on the window's query thread (`removal_plan(folder, answer)`):
        ~0.4 s for a 100,000-track folder on a busy machine, too long for the GUI thread.
        """
        item = self.folder_list.currentItem()
        if item is None:
            return
        folder = item.text()
        if folder in self.new_folders:  # added in this dialog: nothing to take out yet
            self.new_folders.remove(folder)
            self.folder_list.takeItem(self.folder_list.row(item))
            return
        self.remove_button.setEnabled(False)  # until the question has been answered
        self.removal_plan(folder, lambda plan: self._confirm_removal(folder, plan))

    def _confirm_removal(self, folder: str, plan: FolderRemoval) -> None:
        self.remove_button.setEnabled(self.folder_list.currentRow() >= 0)
        text = (
            f"Remove {folder} from the library?\n\nThis takes out {plan.summary()}. "
            "The files stay on disk; adding the folder again scans them anew."
        )
        if plan.user_tagged:
            text += " Your tags on those tracks are not kept."
        if not self.dialogs.confirm(self, "Remove library folder", text):
            return
        self.removed_folders.append(folder)
        for item in self.folder_list.findItems(folder, Qt.MatchFlag.MatchExactly):
            self.folder_list.takeItem(self.folder_list.row(item))

    def _choose_db(self) -> None:
        path, _ = self.dialogs.save_file(
            self, "Library database", self.db_path.text(), "MusicSSL library (*.db)"
        )
        if path:
            self.db_path.setText(path)

    def apply(self) -> SettingsChanges:
        """Store the answers in QSettings and say what else must happen."""
        self.settings.device = self.device.currentData()
        self.settings.policy = self.policy.currentData()
        self.settings.excerpt_count = self.count.value()
        db = self.db_path.text().strip()
        db_changed = bool(db) and db != self.current_db
        if db_changed or not db:
            self.settings.db_path = db
        self.settings.sync()
        chosen = self.model.currentData()
        return SettingsChanges(
            new_folders=list(self.new_folders),
            removed_folders=list(self.removed_folders),
            model_id=chosen if chosen and chosen != self.active_model_id else None,
            db_path_changed=db_changed,
        )
