"""Reads for the track table (pages, the ordered id list) on a worker thread, newest first.

Why: on a 100,000-track library the ordered id list takes up to a couple of seconds on a busy
machine (bench/paging_bench.py), and even a page can take tens of milliseconds; on the GUI
thread that is a visible freeze, here the view shows placeholders for a moment instead.
Requests are served newest first and only the last few are kept, so dragging the scrollbar
across the library does not queue a hundred stale pages.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from musicssl.engine.library import Library
from PySide6.QtCore import QThread, Signal

MAX_PENDING = 6
Read = Callable[[Library], Any]


class PageLoader(QThread):
    loaded = Signal(int, int, object)  # generation, key, what the read returned (None: failed)

    def __init__(self, db_path: str | os.PathLike[str], parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.setObjectName("musicssl-pages")
        self.db_path = db_path
        self._cond = threading.Condition()
        self._requests: OrderedDict[tuple[int, int], Read] = OrderedDict()
        self._stopping = False
        self.start()

    def request(self, generation: int, key: int, read: Read) -> list[int]:
        """Queue `read(library)` under a key (a page number, say); returns the keys dropped to
        make room, which the caller may ask for again later."""
        dropped = []
        with self._cond:
            entry = (generation, key)
            if entry in self._requests:
                self._requests.move_to_end(entry)
            else:
                self._requests[entry] = read
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
                    (generation, key), read = self._requests.popitem(last=True)
                if lib is None:
                    lib = Library(self.db_path)
                try:
                    result = read(lib)
                except Exception:  # noqa: BLE001 - a failed read shows empty, the GUI goes on
                    result = None
                self.loaded.emit(generation, key, result)
        finally:
            if lib is not None:
                lib.close()

    def stop(self, wait_ms: int = 5000) -> None:
        with self._cond:
            self._stopping = True
            self._requests.clear()
            self._cond.notify()
        self.wait(wait_ms)
