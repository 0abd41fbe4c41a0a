"""Where MusicSSL keeps its files, so the CLI, the GUI and training agree on one library."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "musicssl"
DB_ENV_VAR = "MUSICSSL_DB"
DATA_ENV_VAR = "MUSICSSL_DATA_DIR"


def data_dir() -> Path:
    """User data folder (DB, user-trained models); `MUSICSSL_DATA_DIR` overrides it for tests/CI."""
    override = os.environ.get(DATA_ENV_VAR)
    return (
        Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    )


def default_db_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """An explicit `--db` wins, then `MUSICSSL_DB`, then the platform's user data folder."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(DB_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return data_dir() / "library.db"
