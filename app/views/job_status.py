"""The status-bar strip for background work: what runs, a progress bar, time left, Cancel.

Why: scans and analyses take minutes on a big library; the user must see that something is
happening, how long it will take, and be able to stop it (analysis resumes later).
"""

from __future__ import annotations

import time

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from .. import formatting
from ..jobs import Job, JobQueue


class JobStatus(QWidget):
    def __init__(self, jobs: JobQueue, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(220)
        self.bar.setTextVisible(True)
        self.eta = QLabel()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the background work; analysis continues next time")
        self.cancel_button.clicked.connect(self.jobs.cancel_all)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for w in (self.label, self.bar, self.eta, self.cancel_button):
            layout.addWidget(w)
        self._started_at = 0.0
        self._first_done: tuple[float, int] | None = None
        jobs.started.connect(self._on_started)
        jobs.progress.connect(self._on_progress)
        jobs.idle.connect(self._on_idle)
        jobs.cancelled_before_start.connect(lambda _job: self._maybe_hide())
        self.setVisible(False)

    def _on_started(self, job: Job) -> None:
        if not job.visible:
            return
        self._started_at = time.monotonic()
        self._first_done = None
        self.label.setText(f"{job.title}…")
        self.bar.setRange(0, 0)  # busy until the total is known
        self.eta.setText("")
        self.cancel_button.setEnabled(job.cancellable)
        self.setVisible(True)

    def _on_progress(self, job: Job, done: int, total: int, text: str) -> None:
        if not job.visible:
            return
        if total < 0:
            self.bar.setRange(0, 0)
            self.label.setText(f"{job.title}: {formatting.plural(done, 'file')} found…")
            return
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(min(done, total))
        self.bar.setFormat(f"{done:,} / {total:,}")
        self.label.setText(f"{job.title}{': ' + text if text else ''}")
        self.label.setToolTip(text)
        now = time.monotonic()
        # The rate is measured from the first progress report, so start-up (loading the model)
        # does not make the estimate pessimistic for the whole run.
        if self._first_done is None:
            self._first_done = (now, done)
            self.eta.setText("")
            return
        t0, d0 = self._first_done
        if done > d0 and now > t0:
            rate = (done - d0) / (now - t0)
            self.eta.setText(formatting.eta((total - done) / rate))

    def _on_idle(self) -> None:
        self._maybe_hide()

    def _maybe_hide(self) -> None:
        if not self.jobs.busy():
            self.setVisible(False)
