"""Training logs a person can read without tooling: a CSV of every logged step and a PNG of the
curves, both rewritten in place so an interrupted run still leaves complete files.

Rows are kept in memory and the whole CSV is rewritten on `flush` (atomically): metrics appear at
different cadences (collapse checks, validation), so the column set grows during a run, and a
CSV written row by row would need its header to be known up front. A run log has thousands of
rows at most, so rewriting is cheap. On resume, rows past the checkpoint's step are dropped so
the log of a resumed run equals the log of an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

CSV_NAME = "log.csv"
PNG_NAME = "curves.png"
# Always first, in this order; everything else follows alphabetically.
_LEADING = ("step", "epoch", "loss", "lr")


class TrainingLog:
    """Append rows keyed by column name; `flush` writes CSV (and the PNG when `plot`)."""

    def __init__(
        self, folder: str | os.PathLike[str], enabled: bool = True, plot_interval_s: float = 60.0
    ) -> None:
        self.folder = Path(folder)
        self.enabled = enabled
        # Drawing the PNG costs a few hundred ms; frequent checkpoints should not pay it each time.
        self.plot_interval_s = plot_interval_s
        self._last_plot = -math.inf
        self.rows: list[dict[str, Any]] = []
        if enabled and (self.folder / CSV_NAME).is_file():
            self.rows = read_csv(self.folder / CSV_NAME)

    @property
    def csv_path(self) -> Path:
        return self.folder / CSV_NAME

    @property
    def png_path(self) -> Path:
        return self.folder / PNG_NAME

    def truncate(self, step: int) -> None:
        """Forget rows logged after `step` (they belong to work a resume repeats)."""
        self.rows = [r for r in self.rows if _number(r.get("step"), -1) <= step]

    def log(self, row: Mapping[str, Any]) -> None:
        if "step" not in row:
            raise ValueError("a log row needs a 'step'")
        self.rows.append({k: _plain(v) for k, v in row.items()})

    def flush(self, plot: bool = False, force_plot: bool = False) -> None:
        """Write the CSV; redraw the PNG when `plot` and the last drawing is old (or forced)."""
        if not self.enabled:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        _atomic_text(self.csv_path, to_csv(self.rows))
        now = time.monotonic()
        due = now - self._last_plot >= self.plot_interval_s
        if self.rows and (force_plot or (plot and due)):
            plot_curves(self.rows, self.png_path)
            self._last_plot = now


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    return value


def _number(value: Any, default: float = math.nan) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    seen: set[str] = set()
    for row in rows:
        seen.update(row)
    lead = [c for c in _LEADING if c in seen]
    return lead + sorted(seen - set(lead))


def to_csv(rows: list[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows back with numbers as floats (step/epoch as ints) and blanks dropped."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = []
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if value in ("", None):
                    continue
                number = _number(value)
                if math.isnan(number) and value.lower() != "nan":
                    row[key] = value
                elif key in ("step", "epoch"):
                    row[key] = int(number)
                else:
                    row[key] = number
            rows.append(row)
    return rows


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _series(rows: list[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        y = _number(row.get(key))
        if not math.isnan(y):
            xs.append(_number(row.get("step")))
            ys.append(y)
    return xs, ys


def plot_curves(rows: list[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Loss terms (top), validation/collapse metrics (middle, when logged) and LR (bottom)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cols = columns(rows)
    losses = [c for c in cols if c == "loss" or c.startswith("loss_") or c.endswith("/loss")]
    others = [c for c in cols if c.startswith(("val_", "val/", "collapse/"))]
    panels = [("loss", losses), ("metrics", others), ("learning rate", ["lr"])]
    panels = [(title, keys) for title, keys in panels if any(_series(rows, k)[0] for k in keys)]
    if not panels:
        panels = [("loss", ["loss"])]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.8 * len(panels)), sharex=True)
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            xs, ys = _series(rows, key)
            if xs:
                ax.plot(xs, ys, label=key, marker="." if len(xs) < 30 else None)
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        if title == "learning rate":
            ys = _series(rows, "lr")[1]
            if ys and min(ys) > 0 and max(ys) / min(ys) > 20:
                ax.set_yscale("log")
        if len(keys) > 1:
            ax.legend(fontsize="small", loc="best")
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return path


__all__ = ["CSV_NAME", "PNG_NAME", "TrainingLog", "columns", "plot_curves", "read_csv", "to_csv"]
