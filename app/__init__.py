"""The MusicSSL desktop app (PySide6). Importing it applies `qt_compat` (a PySide6 6.12.0 fix)."""

from . import qt_compat  # noqa: F401 - must run before any signal is emitted
