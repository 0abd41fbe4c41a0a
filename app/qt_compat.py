"""Work around reference-counting bugs in PySide6 6.12.0 that abort the interpreter.

Measured here (Python 3.11, PySide6-Essentials 6.12.0; 6.11.3 does not have them):
- `SignalInstance.emit()` returns `True` without owning a reference: every emit from Python
  drops one reference to `True`;
- each call Qt makes into a Python override of many virtuals (`paintEvent`, `resizeEvent`,
  `event`, `eventFilter`, `QAbstractItemModel.sort`, `QThread.run`) and each
  `QTimer.singleShot(ms, callable)` drops one reference to `None`.
On Python < 3.12 these singletons are ordinary objects (~600 references to `True` at start,
~70,000 to `None` once the app is imported), so after a few hundred signal emits, or some
minutes of mouse movement over the map, CPython frees a singleton and aborts ("Fatal Python
error: bool_dealloc / none_dealloc"). Python 3.12 made them immortal for exactly this kind of
reason; here we do the same by hand: when the emit leak is detected, `None`, `True` and `False`
get 2**40 extra references, so the lost ones can never bring them to zero. With a fixed
PySide6 (or Python >= 3.12) the probe finds no leak and nothing is touched.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

EXTRA_REFERENCES = 1 << 40
PROBE_EMITS = 8
installed = False


class _Probe(QObject):
    ping = Signal()


def emit_leak() -> int:
    """References to `True` lost per `emit()` (0 on a correct PySide6)."""
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(PROBE_EMITS):
        probe.ping.emit()
    lost = before - sys.getrefcount(True)
    return round(lost / PROBE_EMITS)


def _add_references(obj: object, count: int) -> bool:
    """Add `count` to the object's reference count (CPython: `ob_refcnt` is the first field
    of a release build's object header); verified, and undone if the layout is different."""
    before = sys.getrefcount(obj)
    cell = ctypes.c_ssize_t.from_address(id(obj))
    cell.value += count
    if sys.getrefcount(obj) - before == count:
        return True
    cell.value -= count
    return False


def install() -> bool:
    """Make None/True/False effectively immortal when the PySide6 bug is present."""
    global installed
    if installed:
        return True
    if sys.implementation.name != "cpython" or emit_leak() <= 0:
        return False
    installed = all(_add_references(o, EXTRA_REFERENCES) for o in (None, True, False))
    return installed


install()
