"""The app's own preferences (QSettings): analysis device, excerpt policy, DB location, layout.

Why separate from the library DB: these belong to the person at this computer (window size,
which GPU to use), while the library DB holds the music data and travels with it. Library
folders and the active model live in the DB (the CLI must see them too), so they are not here.
Tests pass their own `QSettings` (an INI file in a temp folder) so they never touch the user's.
"""

from __future__ import annotations

from musicssl.engine.analysis_types import AnalysisOptions
from musicssl.engine.excerpts import DEFAULT_COUNT, POLICIES, ExcerptPolicy
from PySide6.QtCore import QByteArray, QSettings

ORGANIZATION = "MusicSSL"
APPLICATION = "MusicSSL"
DEVICES = ("auto", "cpu", "cuda", "mps")
DEVICE_LABELS = {
    "auto": "Automatic",
    "cpu": "CPU",
    "cuda": "CUDA (NVIDIA GPU)",
    "mps": "MPS (Apple)",
}
# Tracks per analysis commit: smaller than the engine's default so the table fills in steadily.
COMMIT_EVERY = 8


class AppSettings:
    """Typed accessors over one QSettings store."""

    def __init__(self, store: QSettings | None = None) -> None:
        self.store = store if store is not None else QSettings(ORGANIZATION, APPLICATION)

    # -- analysis --------------------------------------------------------------------------
    @property
    def device(self) -> str:
        value = str(self.store.value("analysis/device", "auto"))
        return value if value in DEVICES else "auto"

    @device.setter
    def device(self, value: str) -> None:
        if value not in DEVICES:
            raise ValueError(f"unknown device {value!r}")
        self.store.setValue("analysis/device", value)

    @property
    def policy(self) -> str:
        value = str(self.store.value("analysis/policy", "spaced"))
        return value if value in POLICIES else "spaced"

    @policy.setter
    def policy(self, value: str) -> None:
        if value not in POLICIES:
            raise ValueError(f"unknown excerpt policy {value!r}")
        self.store.setValue("analysis/policy", value)

    @property
    def excerpt_count(self) -> int:
        try:
            value = int(self.store.value("analysis/count", DEFAULT_COUNT))
        except (TypeError, ValueError):
            value = DEFAULT_COUNT
        return max(1, min(64, value))

    @excerpt_count.setter
    def excerpt_count(self, value: int) -> None:
        self.store.setValue("analysis/count", int(value))

    def analysis_options(self) -> AnalysisOptions:
        """What the next analysis job runs with."""
        return AnalysisOptions(
            policy=ExcerptPolicy(name=self.policy, count=self.excerpt_count),
            device=self.device,
            commit_every=COMMIT_EVERY,
        )

    # -- library location --------------------------------------------------------------------
    @property
    def db_path(self) -> str:
        """'' means the engine's default location (MUSICSSL_DB or the user data folder)."""
        return str(self.store.value("library/db_path", "") or "")

    @db_path.setter
    def db_path(self, value: str) -> None:
        self.store.setValue("library/db_path", value or "")

    # -- layout ------------------------------------------------------------------------------
    def state(self, key: str) -> QByteArray | None:
        value = self.store.value(f"layout/{key}")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_state(self, key: str, value: QByteArray) -> None:
        self.store.setValue(f"layout/{key}", value)

    def sync(self) -> None:
        self.store.sync()
