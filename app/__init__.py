"""The MusicSSL desktop app (PySide6): the main window, its views, and the background jobs."""
