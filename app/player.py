"""Preview playback: decode in a thread, play through sounddevice, report position to the GUI.

Why this shape: PortAudio calls our callback on its own real-time thread, which must never
block or decode; a decoder thread keeps a small queue of ready blocks (decoded with the
engine's `decode.decode(offset, duration)`, so seeking is just "decode from there") and the
callback only copies samples. When PortAudio or an output device is missing (`import
sounddevice` raises OSError without libportaudio2), the player stays usable as an object but
`available` is False and `unavailable_reason` says why, so the app shows a disabled preview
with a clear message instead of crashing.
"""

from __future__ import annotations

import queue
import threading
from types import ModuleType
from typing import Any

import numpy as np
from musicssl.engine import decode
from PySide6.QtCore import QObject, QTimer, Signal

CHUNK_SECONDS = 2.0  # decoded per step: small enough to start fast, big enough to be efficient
QUEUE_CHUNKS = 3  # decoded look-ahead (seconds = CHUNK_SECONDS * this)
POLL_MS = 100


def load_sounddevice() -> tuple[ModuleType | None, str]:
    """(module, '') when preview can work, else (None, a message for the user)."""
    try:
        import sounddevice as sd  # noqa: PLC0415 - imported late: PortAudio may be missing
    except OSError:
        return None, (
            "Preview is off: the PortAudio library is missing. "
            "Install it (Debian/Ubuntu: sudo apt install libportaudio2) and restart MusicSSL."
        )
    except ImportError:
        return None, "Preview is off: the Python package 'sounddevice' is not installed."
    try:
        sd.query_devices(kind="output")
    except Exception:  # noqa: BLE001 - PortAudioError or ValueError: no default output
        return None, "Preview is off: no audio output device was found."
    return sd, ""


class _Decoder(threading.Thread):
    """Fills `blocks` with mono float32 chunks from `start` seconds on; None marks the end."""

    def __init__(self, path: str, rate: int, start: float, on_error) -> None:  # noqa: ANN001
        super().__init__(daemon=True, name="preview-decode")
        self.path = path
        self.rate = rate
        self.start_s = start
        self.blocks: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.stop = threading.Event()
        self.on_error = on_error

    def run(self) -> None:
        offset = self.start_s
        want = round(CHUNK_SECONDS * self.rate)
        try:
            while not self.stop.is_set():
                block = decode.decode(self.path, self.rate, offset=offset, duration=CHUNK_SECONDS)
                if block.size:
                    self._put(block.astype(np.float32, copy=False))
                if block.size < want:
                    break
                offset += CHUNK_SECONDS
        except Exception as exc:  # noqa: BLE001 - shown to the user, playback just stops
            self.on_error(str(exc))
        self._put(None)

    def _put(self, item: np.ndarray | None) -> None:
        while not self.stop.is_set():
            try:
                self.blocks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


class Player(QObject):
    """Play/pause/seek one track at a time. Signals are delivered on the GUI thread."""

    state_changed = Signal(str)  # "stopped" | "playing" | "paused"
    position_changed = Signal(float, float)  # seconds, duration (0 when unknown)
    track_changed = Signal(object)  # the track dict now loaded (or None)
    error = Signal(str)
    _finished = Signal(int)  # generation whose stream ended (from the PortAudio thread)
    _decode_failed = Signal(str)

    def __init__(self, parent: QObject | None = None, sounddevice: ModuleType | None = None):
        super().__init__(parent)
        if sounddevice is None:
            self._sd, self.unavailable_reason = load_sounddevice()
        else:
            self._sd, self.unavailable_reason = sounddevice, ""
        self.state = "stopped"
        self.track: dict[str, Any] | None = None
        self.duration = 0.0
        self.rate = 44100
        self._stream = None
        self._decoder: _Decoder | None = None
        self._start_s = 0.0
        self._frames = 0  # frames played since `_start_s`
        self._current: np.ndarray | None = None
        self._current_pos = 0
        self._generation = 0
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._finished.connect(self._on_finished)
        self._decode_failed.connect(self._on_decode_failed)
        if self._sd is not None:
            try:
                info = self._sd.query_devices(kind="output")
                self.rate = int(info.get("default_samplerate") or 44100)
            except Exception:  # noqa: BLE001
                self.rate = 44100

    @property
    def available(self) -> bool:
        return self._sd is not None

    @property
    def position(self) -> float:
        return self._start_s + self._frames / self.rate

    # -- commands ----------------------------------------------------------------------------
    def play(self, track: dict[str, Any], start: float = 0.0) -> None:
        """Start a track (a dict with at least `path`; `duration` and `title` help the UI)."""
        if not self.available:
            self.error.emit(self.unavailable_reason)
            return
        self._teardown()
        self.track = dict(track)
        self.duration = float(track.get("duration") or 0.0)
        self.track_changed.emit(self.track)
        self._start(start)

    def toggle(self) -> None:
        if self.state == "playing":
            self.pause()
        elif self.state == "paused":
            self.resume()
        elif self.track is not None:
            self.play(self.track)

    def pause(self) -> None:
        if self.state == "playing" and self._stream is not None:
            self._stream.stop()
            self._set_state("paused")

    def resume(self) -> None:
        if self.state == "paused" and self._stream is not None:
            self._stream.start()
            self._set_state("playing")
            self._timer.start()

    def seek(self, seconds: float) -> None:
        if self.track is None or not self.available:
            return
        seconds = max(0.0, min(seconds, self.duration or seconds))
        was_paused = self.state == "paused"
        self._teardown()
        self._start(seconds, paused=was_paused)

    def stop(self) -> None:
        self._teardown()
        self._set_state("stopped")
        self.position_changed.emit(0.0, self.duration)

    # -- internals ---------------------------------------------------------------------------
    def _start(self, start: float, paused: bool = False) -> None:
        """Open a stream at `start`; `paused` leaves it unstarted (a seek while paused must not
        play the first block, nor move the position past the seek target)."""
        self._generation += 1
        generation = self._generation
        self._start_s = start
        self._frames = 0
        self._current = None
        self._current_pos = 0
        decoder = _Decoder(self.track["path"], self.rate, start, self._decode_failed.emit)
        self._decoder = decoder
        decoder.start()

        def callback(outdata, frames, _time, _status) -> None:  # noqa: ANN001 - PortAudio API
            out = outdata[:, 0]
            filled = 0
            ended = False
            while filled < frames:
                if self._current is None or self._current_pos >= len(self._current):
                    try:
                        block = decoder.blocks.get_nowait()
                    except queue.Empty:
                        break  # underrun: a short silence, playback goes on
                    if block is None:
                        ended = True
                        break
                    self._current, self._current_pos = block, 0
                take = min(frames - filled, len(self._current) - self._current_pos)
                out[filled : filled + take] = self._current[
                    self._current_pos : self._current_pos + take
                ]
                self._current_pos += take
                filled += take
            out[filled:] = 0
            self._frames += filled
            if ended:
                raise self._sd.CallbackStop

        self._stream = self._sd.OutputStream(
            samplerate=self.rate,
            channels=1,
            dtype="float32",
            callback=callback,
            finished_callback=lambda: self._finished.emit(generation),
        )
        if paused:
            self._set_state("paused")
            return
        self._stream.start()
        self._set_state("playing")
        self._timer.start()

    def _teardown(self) -> None:
        self._generation += 1  # a late "finished" from the old stream is ignored
        self._timer.stop()
        if self._decoder is not None:
            self._decoder.stop.set()
            self._decoder = None
        if self._stream is not None:
            stream, self._stream = self._stream, None
            try:
                stream.abort()
                stream.close()
            except Exception:  # noqa: BLE001 - a device that vanished must not break stop
                pass

    def _poll(self) -> None:
        self.position_changed.emit(self.position, self.duration)

    def _on_finished(self, generation: int) -> None:
        if generation != self._generation:
            return
        self._teardown()
        self._set_state("stopped")
        self.position_changed.emit(self.duration, self.duration)

    def _on_decode_failed(self, message: str) -> None:
        self.error.emit(f"Cannot play this file: {message}")

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    def shutdown(self) -> None:
        self._teardown()
