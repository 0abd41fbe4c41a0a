"""Decoded audio on disk as raw int16 at the model's rate, memory-mapped for training.

Decoding an MP3 and resampling it costs far more than a training step's crop of it, and training
visits every track once per epoch, so each file is decoded once and kept as 16-bit PCM (half the
size of float32; 16 bits is what the sources hold anyway). Crops then read a few pages of a
memory map instead of a whole file, and several DataLoader workers share the OS page cache.

A cache file is named by a hash of (absolute path, size, mtime, rate): an edited or replaced file
is decoded again, and models at different rates never share entries. Files are written to a
temporary name and renamed, so a crash or two processes decoding the same track never leave a
truncated entry. Decode failures are remembered the same way (`.err` files), so a broken track
costs one decode attempt per change of the file, not one per epoch.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from musicssl.engine.decode import DecodeError, stream

__all__ = ["AudioCache", "DecodeError"]

Progress = Callable[[int, "int | None", str], None]

# Decode in blocks so an 80-minute mix never sits in memory as float32 all at once.
BLOCK_SECONDS = 60.0
# Open memory maps kept around: each holds a file descriptor, and a library has more tracks
# than a process may have descriptors.
MAX_OPEN_MAPS = 256
_SUFFIX = ".pcm"
_ERROR_SUFFIX = ".err"


def to_int16(x: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16 with rounding; out-of-range samples are clipped."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float32) * 32767.0), -32768, 32767).astype("<i2")


def to_float32(x: np.ndarray) -> np.ndarray:
    """int16 samples -> float32 in [-1, 1] (the inverse of `to_int16` up to rounding)."""
    return np.asarray(x, dtype=np.float32) * np.float32(1.0 / 32767.0)


class AudioCache:
    """`get(path)` -> read-only int16 memmap of the mono track at `sample_rate`."""

    def __init__(self, folder: str | os.PathLike[str], sample_rate: int) -> None:
        if int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        self.folder = Path(folder)
        self.sample_rate = int(sample_rate)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.decodes = 0  # decodes this object performed (tests and progress reports use it)
        self._maps: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    # -- keys ---------------------------------------------------------------------------------
    def key(self, path: str | os.PathLike[str]) -> str:
        """The cache key of the file as it is now on disk; a missing file raises DecodeError."""
        name = os.path.abspath(os.fspath(path))
        try:
            st = os.stat(name)
        except OSError as exc:
            raise DecodeError(name, exc.strerror or str(exc)) from exc
        text = f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0{self.sample_rate}"
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]

    def entry_path(self, path: str | os.PathLike[str]) -> Path:
        """Where the decoded samples of `path` live (whether or not decoded yet)."""
        key = self.key(path)
        return self.folder / key[:2] / f"{key}{_SUFFIX}"

    # -- reading ------------------------------------------------------------------------------
    def get(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The decoded track, decoding it first if needed; raises DecodeError for broken files."""
        entry = self.entry_path(path)
        key = entry.stem
        with self._lock:
            cached = self._maps.get(key)
            if cached is not None:
                self._maps.move_to_end(key)
                return cached
        if not entry.exists():
            error = entry.with_suffix(_ERROR_SUFFIX)
            if error.exists():
                raise DecodeError(os.path.abspath(os.fspath(path)), _read_error(error))
            self._decode_to(path, entry)
        samples = np.memmap(entry, dtype="<i2", mode="r")
        with self._lock:
            self._maps[key] = samples
            self._maps.move_to_end(key)
            while len(self._maps) > MAX_OPEN_MAPS:
                self._maps.popitem(last=False)
        return samples

    def __contains__(self, path: str | os.PathLike[str]) -> bool:
        try:
            return self.entry_path(path).exists()
        except DecodeError:
            return False

    def _decode_to(self, path: str | os.PathLike[str], entry: Path) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        name = os.path.abspath(os.fspath(path))
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=f".{entry.stem}.", suffix=".tmp")
        try:
            total = 0
            with os.fdopen(fd, "wb") as handle:
                for block in stream(name, self.sample_rate, BLOCK_SECONDS):
                    handle.write(to_int16(block).tobytes())
                    total += len(block)
            if total == 0:
                raise DecodeError(name, "no audio samples")
            os.replace(tmp, entry)
        except DecodeError as exc:
            Path(tmp).unlink(missing_ok=True)
            _write_atomic(entry.with_suffix(_ERROR_SUFFIX), exc.reason)
            raise
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        finally:
            with self._lock:
                self.decodes += 1

    # -- bulk ---------------------------------------------------------------------------------
    def warm(
        self,
        paths: Iterable[str | os.PathLike[str]],
        progress: Progress | None = None,
        workers: int = 1,
    ) -> list[tuple[str, str]]:
        """Decode everything not cached yet; returns the (path, message) of files that failed.

        Threads, not processes: PyAV and soxr release the GIL while decoding, so `workers`
        threads keep that many cores busy without pickling audio between processes.
        """
        paths = [os.fspath(p) for p in paths]
        failures: list[tuple[str, str]] = []
        total = len(paths)

        def one(path: str) -> tuple[str, str] | None:
            try:
                self.get(path)
            except DecodeError as exc:
                return path, exc.reason
            return None

        def report(done: int, path: str) -> None:
            if progress is not None:
                progress(done, total, path)

        if workers <= 1:
            for done, path in enumerate(paths, 1):
                result = one(path)
                if result:
                    failures.append(result)
                report(done, path)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = zip(paths, pool.map(one, paths), strict=True)
                for done, (path, result) in enumerate(results, 1):
                    if result:
                        failures.append(result)
                    report(done, path)
        return failures

    def close(self) -> None:
        """Drop the open memory maps (their descriptors close when no array refers to them)."""
        with self._lock:
            self._maps.clear()

    def __getstate__(self) -> dict:
        # DataLoader workers get a copy: memory maps and locks are per process.
        state = dict(self.__dict__)
        state["_maps"] = OrderedDict()
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _read_error(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "decoding failed earlier"
    except OSError:
        return "decoding failed earlier"


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
