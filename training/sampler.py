"""torch Datasets that cut training crops out of cached tracks.

Randomness: every random crop comes from a numpy Generator seeded with (seed, epoch, index,
draw), never from global state, so a run is reproducible and DataLoader workers do not repeat
each other's crops. `epoch` is what `set_epoch` set, and then the crops of an epoch depend on
nothing else (not on the number of workers, nor on where a resumed run restarted). Without
calls to it, each worker process mixes in its torch seed (a DataLoader gives workers a new one
every epoch, itself drawn from the seeded main-process generator) and `draw` counts how often
this process has served the index, so crops still change from epoch to epoch with
`num_workers=0` or persistent workers.

Short tracks are zero-padded at the end, as the engine's excerpter does, so a 1-second jingle is
still a valid (if easy) example rather than an error.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from .audio_cache import AudioCache, to_float32
from .datasets import TrackItem, label_matrix

__all__ = [
    "PAIR_SOURCES",
    "CropDataset",
    "PairDataset",
    "TwoViewDataset",
    "crop",
    "excerpts_of",
]

# PairDataset's "source" values: where x2 came from.
PAIR_SOURCES = ("playlist", "album", "artist", "self")
SOURCE_PLAYLIST, SOURCE_ALBUM, SOURCE_ARTIST, SOURCE_SELF = range(4)
# Group ids per item handed to the playlist objective (padded with -1); more are dropped.
MAX_GROUPS = 16


def crop(samples: np.ndarray, n: int, start: int) -> np.ndarray:
    """float32 (n,) from int16 `samples` at `start`, zero-padded past the end."""
    piece = to_float32(samples[start : start + n])
    if piece.shape[0] < n:
        piece = np.pad(piece, (0, n - piece.shape[0]))
    return piece


def _centre_start(length: int, n: int) -> int:
    return max(0, (length - n) // 2)


class _Base(Dataset):
    """Shared bookkeeping: items, cache, labels as tensors, reproducible per-draw generators."""

    def __init__(
        self,
        items: Sequence[TrackItem],
        cache: AudioCache,
        crop_samples: int,
        vocab: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        if crop_samples < 1:
            raise ValueError(f"crop_samples must be >= 1, got {crop_samples}")
        self.items = list(items)
        self.cache = cache
        self.crop_samples = int(crop_samples)
        self.vocab = list(vocab) if vocab is not None else []
        self.seed = int(seed)
        self.epoch: int | None = None
        targets, mask = label_matrix(self.items, self.vocab)
        self._targets = torch.from_numpy(targets)
        self._mask = torch.from_numpy(mask)
        self._draws: Counter[int] = Counter()

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Fix the crops to a function of (seed, epoch, index): exact reruns of one epoch."""
        self.epoch = int(epoch)
        self._draws.clear()

    def rng(self, index: int) -> np.random.Generator:
        # After set_epoch, each index is served once per epoch: (seed, epoch, index) alone fix
        # the crops, whichever worker serves them, so a resumed run repeats them exactly.
        info = get_worker_info()
        stream = info.seed if info is not None and self.epoch is None else 0
        epoch = self.epoch if self.epoch is not None else 0
        draw = self._draws[index]
        self._draws[index] += 1
        return np.random.default_rng([self.seed, epoch, stream % (2**63), index, draw])

    def random_crop(self, index: int, rng: np.random.Generator) -> np.ndarray:
        samples = self.cache.get(self.items[index].path)
        span = samples.shape[0] - self.crop_samples
        start = int(rng.integers(0, span + 1)) if span > 0 else 0
        return crop(samples, self.crop_samples, start)

    def labels(self, index: int) -> dict[str, torch.Tensor]:
        return {"targets": self._targets[index], "mask": self._mask[index]}


class CropDataset(_Base):
    """One crop per item: random for training, the centre one with `deterministic=True`."""

    def __init__(
        self,
        items: Sequence[TrackItem],
        cache: AudioCache,
        crop_samples: int,
        vocab: list[str] | None = None,
        seed: int = 0,
        deterministic: bool = False,
    ) -> None:
        super().__init__(items, cache, crop_samples, vocab, seed)
        self.deterministic = bool(deterministic)

    def __getitem__(self, index: int) -> dict:
        if self.deterministic:
            samples = self.cache.get(self.items[index].path)
            start = _centre_start(samples.shape[0], self.crop_samples)
            x = crop(samples, self.crop_samples, start)
        else:
            x = self.random_crop(index, self.rng(index))
        return {"x": torch.from_numpy(x), "index": index, **self.labels(index)}


class TwoViewDataset(_Base):
    """Two independent random crops of one track: SimCLR/CLMR positives (the same recording)."""

    def __getitem__(self, index: int) -> dict:
        rng = self.rng(index)
        x1 = self.random_crop(index, rng)
        x2 = self.random_crop(index, rng)
        return {
            "x1": torch.from_numpy(x1),
            "x2": torch.from_numpy(x2),
            "index": index,
            **self.labels(index),
        }


class PairDataset(_Base):
    """x1 from a track, x2 from a different track that belongs with it.

    Partner choice, first that exists: a track sharing a playlist (`mode="random"`: pick one of
    the item's playlists, then a member, so partners co-occurring in more playlists are drawn
    more often; `mode="top"`: among the tracks sharing the most playlists with it), then one
    from the same album, then the same artist, then a second crop of the track itself. Only
    tracks in this dataset are candidates, so a training split never pairs with held-out
    tracks. "source" says which rule applied (see PAIR_SOURCES).

    Playlists holding more than `max_playlist_share` of the dataset ("All music", "Liked")
    say nothing about style and would make most of a batch positives of each other: they are
    ignored for pairing and grouping (in small datasets the limit is at least half the
    tracks, up to 50).

    "groups1"/"groups2" (int64, MAX_GROUPS, padded with -1) are ids of the playlists, album and
    track of x1/x2, for objectives that treat every batch member sharing a group as a positive.
    """

    def __init__(
        self,
        items: Sequence[TrackItem],
        cache: AudioCache,
        crop_samples: int,
        vocab: list[str] | None = None,
        seed: int = 0,
        mode: str = "random",
        fallback: Sequence[str] = ("album", "artist"),
        max_playlist_share: float = 0.25,
    ) -> None:
        super().__init__(items, cache, crop_samples, vocab, seed)
        if mode not in ("random", "top"):
            raise ValueError(f"mode must be 'random' or 'top', got {mode!r}")
        bad = sorted(set(fallback) - {"album", "artist"})
        if bad:
            raise ValueError(f"unknown fallback(s) {bad}; choose from album, artist")
        self.mode = mode
        self.fallback = tuple(fallback)
        # Small libraries keep playlists of up to half the tracks (or 50): a 15-track playlist
        # in a 40-track library is still a choice someone made.
        n_items = len(self.items)
        limit = max(2, int(max_playlist_share * n_items), min(50, n_items // 2))

        members: dict[int, list[int]] = defaultdict(list)
        for i, item in enumerate(self.items):
            for playlist in dict.fromkeys(item.playlists):
                members[playlist].append(i)
        # Playlists with one member in this dataset cannot pair anything either.
        self.playlist_members = {p: m for p, m in members.items() if 2 <= len(m) <= limit}
        self.item_playlists = [
            [p for p in dict.fromkeys(item.playlists) if p in self.playlist_members]
            for item in self.items
        ]
        self.album_members = self._by(lambda item: item.album)
        self.artist_members = self._by(lambda item: item.artist.casefold() if item.artist else None)
        self._top: dict[int, list[int]] = {}
        # Group ids in disjoint ranges: track indices, then playlists, then albums.
        n = len(self.items)
        self._playlist_gid = {p: n + k for k, p in enumerate(sorted(self.playlist_members))}
        base = n + len(self._playlist_gid)
        self._album_gid = {a: base + k for k, a in enumerate(sorted(self.album_members))}
        self._groups = [self._group_ids(i) for i in range(len(self.items))]

    def _by(self, key) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, item in enumerate(self.items):
            value = key(item)
            if value is not None:
                groups[value].append(i)
        return {k: v for k, v in groups.items() if len(v) >= 2}

    def _group_ids(self, index: int) -> torch.Tensor:
        # Album before playlists: a track in many playlists loses playlists, never its album.
        ids = [index]
        album = self.items[index].album
        if album is not None and album in self._album_gid:
            ids.append(self._album_gid[album])
        ids += [self._playlist_gid[p] for p in self.item_playlists[index]]
        out = torch.full((MAX_GROUPS,), -1, dtype=torch.int64)
        ids = ids[:MAX_GROUPS]
        out[: len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out

    def top_partners(self, index: int) -> list[int]:
        """The tracks sharing the most playlists with `index` (computed on first use)."""
        if index not in self._top:
            counts: Counter[int] = Counter()
            for playlist in self.item_playlists[index]:
                counts.update(j for j in self.playlist_members[playlist] if j != index)
            if counts:
                best = max(counts.values())
                self._top[index] = sorted(j for j, c in counts.items() if c == best)
            else:
                self._top[index] = []
        return self._top[index]

    def partner(self, index: int, rng: np.random.Generator) -> tuple[int, int]:
        """(partner index, source code) following the documented fallback order."""
        if self.item_playlists[index]:
            if self.mode == "top":
                candidates = self.top_partners(index)
                return int(candidates[rng.integers(len(candidates))]), SOURCE_PLAYLIST
            playlists = self.item_playlists[index]
            members = self.playlist_members[playlists[rng.integers(len(playlists))]]
            others = [j for j in members if j != index]
            return int(others[rng.integers(len(others))]), SOURCE_PLAYLIST
        item = self.items[index]
        for kind in self.fallback:
            if kind == "album":
                key, table, source = item.album, self.album_members, SOURCE_ALBUM
            else:
                key = item.artist.casefold() if item.artist else None
                table, source = self.artist_members, SOURCE_ARTIST
            group = table.get(key) if key is not None else None
            if group:
                others = [j for j in group if j != index]
                return int(others[rng.integers(len(others))]), source
        return index, SOURCE_SELF

    def __getitem__(self, index: int) -> dict:
        rng = self.rng(index)
        other, source = self.partner(index, rng)
        x1 = self.random_crop(index, rng)
        x2 = self.random_crop(other, rng)
        return {
            "x1": torch.from_numpy(x1),
            "x2": torch.from_numpy(x2),
            "index": index,
            "index2": other,
            "source": source,
            "groups1": self._groups[index],
            "groups2": self._groups[other],
            **self.labels(index),
        }


def excerpts_of(
    cache: AudioCache, item: TrackItem, crop_samples: int, max_excerpts: int | None = None
) -> np.ndarray:
    """(E, N) float32 non-overlapping excerpts covering the track, for track-level evaluation.

    Same tail rule as the engine's "all" policy: a final partial excerpt is kept (zero-padded)
    when it is the whole track or at least half an excerpt long. With `max_excerpts`, that many
    evenly spaced excerpts are kept, so evaluation cost per track is bounded for long mixes.
    """
    if crop_samples < 1:
        raise ValueError(f"crop_samples must be >= 1, got {crop_samples}")
    samples = cache.get(item.path)
    n = int(crop_samples)
    total = samples.shape[0]
    starts = list(range(0, total - n + 1, n))
    tail = total - len(starts) * n
    if not starts or tail >= n // 2 and tail > 0:
        starts.append(len(starts) * n)
    if max_excerpts is not None and len(starts) > max_excerpts:
        if max_excerpts < 1:
            raise ValueError(f"max_excerpts must be >= 1, got {max_excerpts}")
        picks = np.linspace(0, len(starts) - 1, max_excerpts).round().astype(int)
        starts = [starts[k] for k in picks]
    return np.stack([crop(samples, n, s) for s in starts]).astype(np.float32, copy=False)
