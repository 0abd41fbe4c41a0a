"""The analysis job's options and report, apart from the job itself.

Why a module of their own: `engine/analysis.py` imports torch (3.6 s of the GUI's 4.9 s start)
and the app only needs these two dataclasses (its settings, its job queue, its result handling);
analysis itself runs in a child process (`engine/analysis_process.py`). Nothing here may import
torch: tests/test_app_window.py checks that building the main window does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .excerpts import ExcerptPolicy


@dataclass
class AnalysisOptions:
    policy: ExcerptPolicy = field(default_factory=ExcerptPolicy)
    batch_size: int = 32
    device: str = "auto"
    backend: str = "auto"
    decode_threads: int = 1
    commit_every: int = 16  # tracks per transaction: the most a crash can cost
    limit: int | None = None
    retry_errors: bool = False


@dataclass
class AnalysisReport:
    model_id: str = ""
    model_trained: bool = False
    total: int = 0
    analyzed: int = 0
    failed: int = 0
    cancelled: bool = False
    seconds: float = 0.0
    audio_seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def speed(self) -> float:
        """× real time, end to end."""
        return self.audio_seconds / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        text = (
            f"analysed {self.analyzed} of {self.total} tracks in {self.seconds:.1f} s "
            f"({self.speed:.0f}× real time), {self.failed} failed"
        )
        if self.cancelled:
            text += "; cancelled — run again to continue"
        if not self.model_trained:
            text += "; untrained model: similarity only, no auto tags"
        return text
