"""Fetches pages of the track table on a worker thread, newest request first.

Why: on a 100,000-track library SQLite needs ~40 ms for the first page in artist order and
close to a second for a page near the end (ORDER BY … LIMIT/OFFSET sorts everything before
the offset). On the GUI thread that is a visible freeze on every scroll; here the view shows
placeholders for a moment instead. Requests are served newest first and only the last few
are kept, so dragging the scrollbar across the library does not queue a hundred stale pages.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

from musicssl.engine.library import Library
from PySide6.QtCore import QThread, Signal

MAX_PENDING = 6


class PageLoader(QThread):
    loaded = Signal(int, int, object)  # generation, page number, rows (list of dicts) or None

    def __init__(self, db_path: str | os.PathLike[str], parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.setObjectName("musicssl-pages")
        self.db_path = db_path
        self._cond = threading.Condition()
        self._requests: OrderedDict[tuple[int, int], dict[str, Any]] = OrderedDict()
        self._stopping = False
        self.start()

    def request(self, generation: int, page: int, query: dict[str, Any]) -> list[int]:
        """Queue a page (keyword arguments for `Library.tracks`); returns pages dropped to
        make room, which the caller may ask for again later."""
        dropped = []
        with self._cond:
            key = (generation, page)
            if key in self._requests:
                self._requests.move_to_end(key)
            else:
                self._requests[key] = query
            while len(self._requests) > MAX_PENDING:
                (_gen, old), _q = self._requests.popitem(last=False)
                dropped.append(old)
            self._cond.notify()
        return dropped

    def forget_before(self, generation: int) -> None:
        """Drop queued requests of older queries (the filter or order changed)."""
        with self._cond:
            for key in [k for k in self._requests if k[0] < generation]:
                del self._requests[key]

    def run(self) -> None:
        lib: Library | None = None
        try:
            while True:
                with self._cond:
                    while not self._requests and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        return
                    (generation, page), query = self._requests.popitem(last=True)
                if lib is None:
                    lib = Library(self.db_path)
                try:
                    rows = lib.tracks(**query)
                except Exception:  # noqa: BLE001 - a failed page shows empty, the GUI goes on
                    rows = None
                self.loaded.emit(generation, page, rows)
        finally:
            if lib is not None:
                lib.close()

    def stop(self, wait_ms: int = 5000) -> None:
        with self._cond:
            self._stopping = True
            self._requests.clear()
            self._cond.notify()
        self.wait(wait_ms)
