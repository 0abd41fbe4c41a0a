"""Reads for the track table (pages, the ordered id list) on a worker thread, newest first.

Why: on a 100,000-track library the ordered id list takes up to a couple of seconds on a busy
machine (bench/paging_bench.py), and even a page can take tens of milliseconds; on the GUI
thread that is a visible freeze, here the view shows placeholders for a moment instead.
Requests are served newest first and only the last few are kept, so dragging the scrollbar
across the library does not queue a hundred stale pages. Pages (keys >= 0) go before the id
list (a negative key): a page is what the user waits to see, and the list takes up to ~270 ms
over 100,000 tracks, so after a new sort or filter the first rows appear after one short query.
A read still running for an older query is interrupted (sqlite3 `interrupt()`), so the new
query's first page does not wait for an id list nobody will use.
"""

from __future__ import annotations

import os
import sqlite3
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
        self._lib: Library | None = None  # the loader thread's own connection
        self._running = -1  # generation of the read in progress (-1: none)
        self._newest = 0  # reads of older generations are not wanted any more
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
        """Drop queued requests of older queries (the filter or order changed), and stop the
        one running, if it is of an older query."""
        with self._cond:
            self._newest = max(self._newest, generation)
            for key in [k for k in self._requests if k[0] < generation]:
                del self._requests[key]
            if 0 <= self._running < generation and self._lib is not None:
                self._lib.db.conn.interrupt()  # thread-safe; a no-op once the statement ended

    def run(self) -> None:
        self._lib = Library(self.db_path)  # opened at once: the first page is asked for soon
        try:
            while True:
                with self._cond:
                    while not self._requests and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        return
                    entry = next((e for e in reversed(self._requests) if e[1] >= 0), None)
                    if entry is None:
                        entry = next(reversed(self._requests))
                    generation, key = entry
                    read = self._requests.pop(entry)
                    self._running = generation
                result = self._read(read, generation)
                with self._cond:
                    self._running = -1
                self.loaded.emit(generation, key, result)
        finally:
            self._lib.close()

    def _read(self, read: Read, generation: int) -> Any:
        """`read(library)`, None if it failed or was interrupted as stale. An interrupt meant
        for the previous read can land just as this one starts: a current read is retried."""
        assert self._lib is not None
        for _attempt in range(2):
            try:
                return read(self._lib)
            except sqlite3.OperationalError as exc:
                if "interrupt" not in str(exc) or generation < self._newest:
                    return None
            except Exception:  # noqa: BLE001 - a failed read shows empty, the GUI goes on
                return None
        return None

    def stop(self, wait_ms: int = 5000) -> None:
        with self._cond:
            self._stopping = True
            self._requests.clear()
            self._cond.notify()
        self.wait(wait_ms)
