"""Fine-tune and models: how many labels the user has given, the command that trains on them,
and the choice of the active model.

Why show the command rather than run it: training is a long, resource-hungry job that belongs
to the `musicssl-train` CLI (it may run on another machine with a GPU); the app's part is to
make the labels visible and the next step obvious.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from musicssl.engine.models import BundleInfo
from musicssl.engine.user_labels import UserLabelStats
from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import formatting
from .settings_dialog import model_label

MAX_TAGS_SHOWN = 12


def finetune_command(db_path: str) -> str:
    return f"musicssl-train finetune --library {shlex.quote(str(db_path))}"


class FineTuneDialog(QDialog):
    use_model = Signal(str)  # model id

    def __init__(
        self,
        db_path: str,
        models: Sequence[BundleInfo],
        active: BundleInfo,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fine-tune and models")
        self.setMinimumWidth(560)
        self.active = active
        labels_box = QGroupBox("Your labels")
        self.counts = QLabel("Counting your tags…")
        self.counts.setWordWrap(True)
        self.counts.setObjectName("userTagCounts")
        explain = QLabel(
            "Every tag you add, and every auto tag you accept (✓) or reject (✗), is a label. "
            "Fine-tuning trains the model on them (and keeps learning from your untagged "
            "tracks), so its similarity and tags follow your own categories. Run this in a "
            "terminal; when it finishes, pick the new model below."
        )
        explain.setWordWrap(True)
        self.command = QLineEdit(finetune_command(db_path))
        self.command.setReadOnly(True)
        self.command.setObjectName("finetuneCommand")
        copy = QPushButton("Copy")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.command.text()))
        row = QHBoxLayout()
        row.addWidget(self.command, 1)
        row.addWidget(copy)
        ll = QVBoxLayout(labels_box)
        ll.addWidget(self.counts)
        ll.addWidget(explain)
        ll.addLayout(row)

        model_box = QGroupBox("Active model")
        self.model = QComboBox()
        for info in models:
            self.model.addItem(model_label(info), info.model_id)
        self.model.setCurrentIndex(max(0, self.model.findData(active.model_id)))
        self.status = QLabel(self._describe(active))
        self.status.setWordWrap(True)
        self.status.setObjectName("modelStatus")
        use = QPushButton("Use this model")
        use.clicked.connect(self._use)
        mr = QHBoxLayout()
        mr.addWidget(self.model, 1)
        mr.addWidget(use)
        ml = QVBoxLayout(model_box)
        ml.addLayout(mr)
        ml.addWidget(self.status)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(labels_box)
        layout.addWidget(model_box)
        layout.addWidget(buttons)

    @staticmethod
    def _describe(info: BundleInfo) -> str:
        if info.trained:
            return f"{info.name}: trained, {formatting.plural(info.n_tags, 'tag')}."
        return (
            f"{info.name}: untrained model — similarity only. Its random features already "
            "group similar sounds, but it shows no auto tags."
        )

    def show_counts(self, stats: UserLabelStats) -> None:
        if stats.tracks == 0:
            self.counts.setText(
                "No tracks carry your tags yet. Add tags in the details pane, or accept/reject "
                "auto tags, then come back."
            )
            return
        text = (
            f"{formatting.plural(stats.tracks, 'track carries', 'tracks carry')} your tags: "
            f"{formatting.plural(stats.positive, 'yes label')} and "
            f"{formatting.plural(stats.negative, 'rejection')}."
        )
        shown = stats.tags[:MAX_TAGS_SHOWN]
        per_tag = ", ".join(
            f"{t.tag} {t.positive}" + (f" (✗ {t.negative})" if t.negative else "") for t in shown
        )
        more = len(stats.tags) - len(shown)
        text += f"\nPer tag: {per_tag}" + (f" and {more} more" if more > 0 else "") + "."
        self.counts.setText(text)

    def _use(self) -> None:
        model_id = self.model.currentData()
        if model_id and model_id != self.active.model_id:
            self.use_model.emit(model_id)
            self.status.setText("Switched; the library is being re-analysed in the background.")
