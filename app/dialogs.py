"""Every modal question the app asks, behind one object.

Why: modal dialogs block the event loop, which would hang automated tests and makes the
call sites hard to read. The window calls `self.dialogs.ask_text(...)` etc.; tests replace
these methods with canned answers.
"""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QInputDialog, QLineEdit, QMessageBox, QWidget


class Dialogs:
    def folder(self, parent: QWidget, title: str, start: str = "") -> str:
        return QFileDialog.getExistingDirectory(parent, title, start)

    def open_files(self, parent: QWidget, title: str, filters: str, start: str = "") -> list[str]:
        files, _ = QFileDialog.getOpenFileNames(parent, title, start, filters)
        return files

    def open_file(self, parent: QWidget, title: str, filters: str, start: str = "") -> str:
        path, _ = QFileDialog.getOpenFileName(parent, title, start, filters)
        return path

    def save_file(self, parent: QWidget, title: str, start: str, filters: str) -> tuple[str, str]:
        """(path, chosen filter) — the filter tells which playlist format was picked."""
        return QFileDialog.getSaveFileName(parent, title, start, filters)

    def ask_text(self, parent: QWidget, title: str, label: str, text: str = "") -> str | None:
        value, ok = QInputDialog.getText(parent, title, label, QLineEdit.EchoMode.Normal, text)
        return value.strip() if ok and value.strip() else None

    def confirm(self, parent: QWidget, title: str, text: str) -> bool:
        answer = QMessageBox.question(parent, title, text)
        return answer == QMessageBox.StandardButton.Yes

    def error(self, parent: QWidget, title: str, text: str) -> None:
        QMessageBox.warning(parent, title, text)

    def info(self, parent: QWidget, title: str, text: str) -> None:
        QMessageBox.information(parent, title, text)
