"""Frozen-encoder evaluation: probes, limited-label sweeps, retrieval, identification, baselines.

The protocol is the one DESIGN.md asks for, so a new model can be judged against the numbers a
reader already knows:
- track embeddings as the engine computes them: excerpt h's averaged, then the model's
  `similarity` map (so what is measured is what the app will search with);
- tagging with a linear and a 1-hidden-layer MLP probe on the frozen track embeddings, early
  stopped on the validation split's macro ROC-AUC, at 1 %, 10 % and 100 % of the training labels
  (`subsample_labels`); a fine-tuned model's own tag head is scored as "head";
- retrieval on the test split with album (or artist) as the class: R@K, M@K (see `metrics`);
- excerpt -> track identification: the first half of each test track must find its second half;
- the same for baselines: hand-crafted MFCC/spectral statistics (the bliss-style peer) and the
  same architecture at random initialisation (a strong baseline on log-mel input, DESIGN.md).

Outputs: results.json, results.md (tables) and results.png (metric vs label fraction).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from musicssl.engine.bundle import build_model
from musicssl.engine.device import configure_cpu_threads, select_device
from musicssl.engine.embedding_model import EmbeddingModel
from musicssl.engine.excerpt_sets import SetBuilder, as_stored
from musicssl.engine.excerpts import DEFAULT_COUNT
from torch import nn
from tqdm import tqdm

from . import metrics
from .audio_cache import AudioCache
from .checkpoint import load_model, seed_everything
from .config import ConfigError, DataConfig, EvaluateConfig, from_dict, to_dict
from .datasets import TrackItem, label_matrix, subsample_labels, vocabulary
from .pretrain import bundle_config_for, load_items, open_cache, split_items, warm_cache
from .sampler import excerpts_of

log = logging.getLogger(__name__)

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_PNG = "results.png"
NEGATIVE_POLICIES = ("labelled", "explicit", "mixed")


# ---------------------------------------------------------------------------------------------
# labels


def known_labels(
    items: Sequence[TrackItem], vocab: Sequence[str], negatives: str = "labelled"
) -> tuple[np.ndarray, np.ndarray]:
    """(targets, mask) with the data config's negative policy applied (see DataConfig)."""
    targets, mask = label_matrix(items, vocab)
    return targets, widen_mask(targets, mask, negatives)


def labelled_items(
    items: Sequence[TrackItem], vocab: Sequence[str], negatives: str = "labelled"
) -> tuple[list[TrackItem], np.ndarray, np.ndarray]:
    """The tracks with at least one known label, with their (targets, mask) rows."""
    targets, mask = known_labels(items, vocab, negatives)
    keep = mask.any(axis=1)
    return [item for item, k in zip(items, keep, strict=True) if k], targets[keep], mask[keep]


def widen_mask(targets: ArrayLike, mask: ArrayLike, negatives: str = "labelled") -> ArrayLike:
    """Under "labelled", a row with any known positive knows all its tags (absent = negative).

    Under "mixed", only rows without any explicit negative do: a row that says "no" somewhere
    was labelled tag by tag (a teacher's confident calls, a careful user), so what it leaves
    out is unknown, while a file's genre list still means "these and nothing else".
    Works on numpy arrays and torch tensors alike, since training applies it per batch.
    """
    if negatives not in NEGATIVE_POLICIES:
        raise ConfigError(
            f"data.negatives: unknown {negatives!r} (use {', '.join(NEGATIVE_POLICIES)})"
        )
    if negatives == "explicit":
        return mask
    if isinstance(targets, torch.Tensor):
        implicit = ((targets >= 0.5) & mask).any(dim=1, keepdim=True)
        if negatives == "mixed":
            implicit &= ~((targets < 0.5) & mask).any(dim=1, keepdim=True)
        return mask | implicit
    implicit = ((targets >= 0.5) & mask).any(axis=1, keepdims=True)
    if negatives == "mixed":
        implicit &= ~((targets < 0.5) & mask).any(axis=1, keepdims=True)
    return mask | implicit


# ---------------------------------------------------------------------------------------------
# track embeddings


@dataclass
class TrackOutputs:
    """Per-track model outputs, aggregated the way the engine's analysis does."""

    h: np.ndarray  # (N, D) mean of excerpt h's
    z: np.ndarray  # (N, D') model.similarity(mean descriptor): the vector the index stores
    probs: np.ndarray  # (N, T) mean of excerpt tag probabilities
    first: np.ndarray  # (N, D') z of the first half of the excerpts (NaN rows: < 2 excerpts)
    second: np.ndarray  # (N, D') z of the second half
    # Excerpt sets (engine/excerpt_sets.py) of the whole track and of each half ((0, D') arrays
    # where the track has < 2 excerpts); only when asked for (`with_sets`).
    sets: list[np.ndarray] | None = None
    first_sets: list[np.ndarray] | None = None
    second_sets: list[np.ndarray] | None = None


@torch.no_grad()
def embed_tracks(
    model: EmbeddingModel,
    items: Sequence[TrackItem],
    cache: AudioCache,
    crop_samples: int,
    device: torch.device | str = "cpu",
    max_excerpts: int | None = DEFAULT_COUNT,
    batch_size: int = 32,
    progress: bool = False,
    with_sets: bool = False,
) -> TrackOutputs:
    """Run the model over evenly spread non-overlapping excerpts of every track; `with_sets` also
    keeps the excerpt sets the app ranks "find similar" with."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    # Sums of descriptors: h, followed by the statistics the model weighs (engine/statistics.py).
    n, dim, n_tags = len(items), model.descriptor_dim, model.n_tags
    h_sum = np.zeros((n, dim), np.float64)
    half_sums = np.zeros((2, n, dim), np.float64)
    p_sum = np.zeros((n, n_tags), np.float64)
    counts = np.zeros(n, np.int64)
    # Per track: whole, first half, second half.
    builders = [[SetBuilder() for _ in range(3)] for _ in range(n)] if with_sets else []
    pending: list[tuple[int, int, int, np.ndarray]] = []  # (track, excerpt no, excerpts, audio)

    def run(chunk: list[tuple[int, int, int, np.ndarray]]) -> None:
        x = torch.from_numpy(np.stack([c[3] for c in chunk])).to(device)
        h, p = model(x)
        h = model.descriptor(x, h)
        h, p = h.double().cpu().numpy(), p.double().cpu().numpy()
        for (track, k, total, _), hk, pk in zip(chunk, h, p, strict=True):
            h_sum[track] += hk
            p_sum[track] += pk
            counts[track] += 1
            half = 0 if k < total // 2 else 1
            if total >= 2:
                half_sums[half, track] += hk
            if with_sets:
                builders[track][0].add(hk)
                if total >= 2:
                    builders[track][1 + half].add(hk)

    for i, item in enumerate(tqdm(items, desc="embedding", disable=not progress, leave=False)):
        excerpts = excerpts_of(cache, item, crop_samples, max_excerpts)
        for k, x in enumerate(excerpts):
            pending.append((i, k, len(excerpts), x))
        while len(pending) >= batch_size:
            run(pending[:batch_size])
            pending = pending[batch_size:]
    if pending:
        run(pending)
    model.train(was_training)

    safe = np.maximum(counts, 1)[:, None]
    h_mean = h_sum / safe
    halves = np.full((2, n, dim), np.nan)
    multi = counts >= 2
    for half in range(2):
        size = np.where(half == 0, counts // 2, counts - counts // 2)
        mean = half_sums[half] / np.maximum(size, 1)[:, None]
        halves[half, multi] = _z(model, mean[multi])

    def set_of(builder: SetBuilder) -> np.ndarray:
        if not len(builder):
            return np.zeros((0, dim), np.float32)
        return as_stored(_z(model, builder.means()))

    outputs = TrackOutputs(
        h=h_mean[:, : model.embedding_dim].astype(np.float32),
        z=_z(model, h_mean),
        probs=(p_sum / safe).astype(np.float32),
        first=halves[0].astype(np.float32),
        second=halves[1].astype(np.float32),
    )
    if with_sets:
        sets = [[set_of(b) for b in track] for track in builders]
        outputs.sets, outputs.first_sets, outputs.second_sets = (
            [track[part] for track in sets] for part in range(3)
        )
    return outputs


def _z(model: EmbeddingModel, h: np.ndarray) -> np.ndarray:
    """The track vectors the engine would index for these mean descriptors."""
    if not len(h):
        return np.zeros_like(h, dtype=np.float32)
    with torch.no_grad():
        return model.similarity(torch.from_numpy(np.asarray(h, np.float32))).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# hand-crafted baseline


class Handcrafted(nn.Module):
    """MFCC mean/std (20 coefficients) + spectral centroid, rolloff, flatness and zero-crossing
    rate (mean/std each): 48 statistics per excerpt, the bliss-style peer of DESIGN.md.

    Tempo, which bliss also uses, is left out: a beat tracker is outside torch/torchaudio, and
    the other statistics are what carries its retrieval numbers.
    """

    def __init__(self, sample_rate: int, n_mfcc: int = 20, n_fft: int = 2048, hop: int = 512):
        super().__init__()
        import torchaudio

        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop = hop
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=sample_rate,
            n_mfcc=n_mfcc,
            melkwargs={"n_fft": n_fft, "hop_length": hop, "n_mels": 64},
        )
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
        self.register_buffer("freqs", freqs, persistent=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N) waveforms -> (B, 48) statistics."""
        mfcc = self.mfcc(x)  # (B, n_mfcc, frames)
        spec = torch.stft(
            x, self.n_fft, self.hop, window=self.window, center=True, return_complex=True
        )
        power = spec.abs().pow(2) + 1e-12  # (B, F, frames)
        total = power.sum(dim=1)
        centroid = (power * self.freqs[:, None]).sum(dim=1) / total
        cumulative = power.cumsum(dim=1)
        rolloff_bin = (
            (cumulative < 0.85 * total[:, None, :]).sum(dim=1).clamp(max=len(self.freqs) - 1)
        )
        rolloff = self.freqs[rolloff_bin]
        flatness = torch.exp(torch.log(power).mean(dim=1)) / power.mean(dim=1)
        frames = x.unfold(-1, self.n_fft, self.hop)
        signs = torch.signbit(frames)
        zcr = (signs[..., 1:] != signs[..., :-1]).float().mean(dim=-1)
        parts = [
            mfcc.mean(-1),
            mfcc.std(-1),
            *(torch.stack([f.mean(-1), f.std(-1)], dim=1) for f in (centroid, rolloff)),
            torch.stack([flatness.mean(-1), flatness.std(-1)], dim=1),
            torch.stack([zcr.mean(-1), zcr.std(-1)], dim=1),
        ]
        return torch.cat(parts, dim=1)


@dataclass
class HandcraftedStats:
    """Per-track MFCC/spectral statistics, raw scale: whole track and its two halves."""

    whole: np.ndarray  # (N, 48) mean over the same excerpts the models see
    first: np.ndarray  # (N, 48) mean over the first half of them (NaN rows: < 2 excerpts)
    second: np.ndarray  # (N, 48) the second half

    def zscored(self, reference: np.ndarray) -> HandcraftedStats:
        """All three standardised with `reference`'s column statistics (`zscore`), so halves
        and whole tracks are compared on one scale."""
        parts = (self.whole, self.first, self.second)
        return HandcraftedStats(*(zscore(part, reference) for part in parts))


def handcrafted_features(
    items: Sequence[TrackItem],
    cache: AudioCache,
    crop_samples: int,
    max_excerpts: int | None = DEFAULT_COUNT,
    progress: bool = False,
) -> HandcraftedStats:
    """Statistics per track, with halves so the baseline is scored on identification too.

    Z-score them (`zscore`) over a corpus before cosine retrieval, as bliss does, or the
    centroid in Hz would dominate every distance.
    """
    extractor = Handcrafted(cache.sample_rate)
    rows: list[list[np.ndarray]] = [[], [], []]
    nan = np.full(48, np.nan)
    for item in tqdm(items, desc="mfcc", disable=not progress, leave=False):
        excerpts = torch.from_numpy(excerpts_of(cache, item, crop_samples, max_excerpts))
        if excerpts.shape[-1] < extractor.n_fft:
            excerpts = F.pad(excerpts, (0, extractor.n_fft - excerpts.shape[-1]))
        stats = extractor(excerpts).double().numpy()
        half = len(stats) // 2
        rows[0].append(stats.mean(0))
        rows[1].append(stats[:half].mean(0) if half else nan)
        rows[2].append(stats[half:].mean(0) if half else nan)
    return HandcraftedStats(*(np.stack(r) if r else np.zeros((0, 48)) for r in rows))


def zscore(features: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Standardise each column with the mean/std of `reference` (default: `features` itself)."""
    ref = features if reference is None else reference
    mean = ref.mean(axis=0)
    std = ref.std(axis=0)
    return ((features - mean) / np.where(std > 1e-12, std, 1.0)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# probes


@dataclass
class ProbeSettings:
    hidden: int = 256
    epochs: int = 500
    patience: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


def _masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weight = mask.float()
    loss = F.binary_cross_entropy_with_logits(logits, targets, weight=weight, reduction="sum")
    return loss / weight.sum().clamp(min=1.0)


def train_probe(
    kind: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    m_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    m_val: np.ndarray,
    settings: ProbeSettings | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """Fit a linear or MLP tag probe on frozen features; returns `predict(x) -> probabilities`.

    Torch rather than scikit-learn because the labels are partial: the loss only counts known
    entries (mask), which sklearn's multi-label estimators cannot express. Full-batch Adam;
    early stopping keeps the epoch with the best validation macro ROC-AUC (validation BCE when
    no tag is evaluable there).
    """
    s = settings or ProbeSettings()
    generator = torch.Generator().manual_seed(s.seed)
    mean, std = x_train.mean(0), x_train.std(0)
    std = np.where(std > 1e-12, std, 1.0)

    def prep(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x - mean) / std).astype(np.float32))

    d, t = x_train.shape[1], y_train.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        if kind == "linear":
            probe: nn.Module = nn.Linear(d, t)
        elif kind == "mlp":
            probe = nn.Sequential(nn.Linear(d, s.hidden), nn.ReLU(), nn.Linear(s.hidden, t))
        else:
            raise ConfigError(f"unknown probe {kind!r} (use linear or mlp)")
    xt, yt, mt = prep(x_train), torch.from_numpy(y_train), torch.from_numpy(m_train)
    xv, yv, mv = prep(x_val), torch.from_numpy(y_val), torch.from_numpy(m_val)
    can_auc = len(metrics.evaluable_tags(y_val, m_val)) > 0
    can_bce = bool(m_val.any())
    optimizer = torch.optim.Adam(probe.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    best_score, best_state, bad = -math.inf, copy.deepcopy(probe.state_dict()), 0
    epochs = s.epochs if (can_auc or can_bce) else min(s.epochs, 100)
    for _ in range(epochs):
        probe.train()
        optimizer.zero_grad()
        _masked_bce(probe(xt), yt, mt).backward()
        optimizer.step()
        if not (can_auc or can_bce):
            continue
        probe.eval()
        with torch.no_grad():
            logits = probe(xv)
        if can_auc:
            score = metrics.macro_roc_auc(logits.numpy(), y_val, m_val)
        else:
            score = -float(_masked_bce(logits, yv, mv))
        if score > best_score + 1e-6:
            best_score, best_state, bad = score, copy.deepcopy(probe.state_dict()), 0
        else:
            bad += 1
            if bad >= s.patience:
                break
    if can_auc or can_bce:
        probe.load_state_dict(best_state)
    probe.eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(probe(prep(x))).numpy()

    return predict


# ---------------------------------------------------------------------------------------------
# the evaluation run


@dataclass
class FeatureSet:
    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    retrieval: np.ndarray  # test-split vectors used for cosine retrieval
    first: np.ndarray | None = None
    second: np.ndarray | None = None
    head: np.ndarray | None = None  # the model's own test tag probabilities (vocab order)


def _model_features(
    name: str,
    model: EmbeddingModel,
    parts: dict[str, list[TrackItem]],
    cache: AudioCache,
    crop_samples: int,
    device: torch.device,
    cfg: EvaluateConfig,
    vocab: Sequence[str],
) -> FeatureSet:
    model = model.to(device)
    outs = {
        part: embed_tracks(
            model, items, cache, crop_samples, device, cfg.excerpts, cfg.batch_size, cfg.progress
        )
        for part, items in parts.items()
    }
    head = None
    if model.n_tags and name != "random-init":
        # The model's own head only answers for tags it knows; other columns stay at 0.5 and are
        # dropped from the head's score (see `_score_head`).
        head = np.full((len(parts["test"]), len(vocab)), np.nan, np.float32)
        for j, tag in enumerate(vocab):
            if tag in model.tags:
                head[:, j] = outs["test"].probs[:, model.tags.index(tag)]
    return FeatureSet(
        name=name,
        train=outs["train"].h,
        val=outs["val"].h,
        test=outs["test"].h,
        retrieval=outs["test"].z,
        first=outs["test"].first,
        second=outs["test"].second,
        head=head,
    )


def _handcrafted_set(
    parts: dict[str, list[TrackItem]], cache: AudioCache, crop_samples: int, cfg: EvaluateConfig
) -> FeatureSet:
    stats = {
        part: handcrafted_features(items, cache, crop_samples, cfg.excerpts, cfg.progress)
        for part, items in parts.items()
    }
    raw = {part: s.whole for part, s in stats.items()}
    corpus = np.concatenate([raw["train"], raw["val"], raw["test"]])
    test = stats["test"].zscored(corpus)
    return FeatureSet(
        name="mfcc",
        train=raw["train"],
        val=raw["val"],
        test=raw["test"],
        retrieval=test.whole,
        first=test.first,
        second=test.second,
    )


def _score_head(head: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    known = ~np.isnan(head).all(axis=0)
    if not known.any():
        return {}
    return metrics.tagging_metrics(head[:, known], targets[:, known], mask[:, known])


def _retrieval_labels(items: Sequence[TrackItem], kind: str) -> list[object]:
    if kind == "album":
        return [item.album for item in items]
    if kind == "artist":
        return [item.artist.casefold() if item.artist else None for item in items]
    raise ConfigError(f"retrieval_label: unknown {kind!r} (use album or artist)")


def json_safe(value: Any) -> Any:
    """JSON without NaN (null instead): results files must load in strict parsers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Run the whole protocol; writes results.json/.md/.png into `config.out` and returns them."""
    cfg = config
    if cfg.threads:
        configure_cpu_threads(cfg.threads)
    device = select_device(cfg.device)
    seed_everything(cfg.seed)
    out = Path(cfg.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    model = None
    state: dict[str, Any] = {}
    data = cfg.data
    if cfg.checkpoint:
        model, bundle_config, state = load_model(cfg.checkpoint)
        if data.folder is None and data.library is None and state.get("config"):
            data = from_dict(DataConfig, state["config"]["data"], "checkpoint data")
    else:
        bundle_config = bundle_config_for(cfg.model)
    sample_rate, crop_samples = bundle_config.sample_rate, bundle_config.excerpt_samples

    items = load_items(data)
    cache = open_cache(data, sample_rate)
    items = warm_cache(cache, items, data, cfg.progress)
    train, val, test = split_items(data, items)
    parts = {"train": train, "val": val, "test": test}
    vocab = vocabulary(train, data.min_tag_count)
    targets = {p: known_labels(parts[p], vocab, data.negatives) for p in parts}

    feature_sets: list[FeatureSet] = []
    if model is not None:
        feature_sets.append(
            _model_features("model", model, parts, cache, crop_samples, device, cfg, vocab)
        )
    for baseline in cfg.baselines:
        if baseline == "mfcc":
            feature_sets.append(_handcrafted_set(parts, cache, crop_samples, cfg))
        elif baseline == "random-init":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                random_model = build_model(bundle_config)
            feature_sets.append(
                _model_features(
                    "random-init", random_model, parts, cache, crop_samples, device, cfg, vocab
                )
            )
        else:
            raise ConfigError(f"unknown baseline {baseline!r} (use mfcc, random-init)")

    settings = ProbeSettings(
        hidden=cfg.probe_hidden,
        epochs=cfg.probe_epochs,
        patience=cfg.probe_patience,
        lr=cfg.probe_lr,
        weight_decay=cfg.probe_weight_decay,
        seed=cfg.seed,
    )
    y_val, m_val = targets["val"]
    y_test, m_test = targets["test"]
    retrieval_labels = _retrieval_labels(test, cfg.retrieval_label)
    results: dict[str, Any] = {}
    for fs in feature_sets:
        entry: dict[str, Any] = {"dim": int(fs.train.shape[1]), "tagging": {}}
        for fraction in cfg.fractions:
            # data.seed, as fine-tuning uses: a probe at fraction f sees exactly the labels a
            # fine-tuning run with label_fraction = f trained on, so the two compare fairly.
            subset = subsample_labels(train, fraction, seed=data.seed) if fraction < 1 else train
            y_tr, m_tr = known_labels(subset, vocab, data.negatives)
            rows = m_tr.any(axis=1)
            for probe in cfg.probes:
                key = f"{fraction:g}"
                if not vocab or not rows.any():
                    score: dict[str, Any] = {"roc_auc": None, "pr_auc": None, "n_tags": 0}
                else:
                    predict = train_probe(
                        probe, fs.train[rows], y_tr[rows], m_tr[rows], fs.val, y_val, m_val,
                        settings,
                    )  # fmt: skip
                    score = metrics.tagging_metrics(predict(fs.test), y_test, m_test)
                score["labelled_tracks"] = int(rows.sum())
                entry["tagging"].setdefault(probe, {})[key] = score
        if fs.head is not None:
            entry["tagging"]["head"] = {"trained": _score_head(fs.head, y_test, m_test)}
        entry["retrieval"] = metrics.retrieval_metrics(fs.retrieval, retrieval_labels)
        if fs.first is not None:
            ok = ~np.isnan(fs.first).any(axis=1)
            entry["identification"] = metrics.identification_accuracy(fs.first[ok], fs.second[ok])
            entry["identification_tracks"] = int(ok.sum())
        results[fs.name] = entry

    report = json_safe(
        {
            "features": results,
            "vocab": vocab,
            "splits": {p: len(v) for p, v in parts.items()},
            "retrieval_label": cfg.retrieval_label,
            "checkpoint": cfg.checkpoint,
            "config": to_dict(cfg),
        }
    )
    (out / RESULTS_JSON).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / RESULTS_MD).write_text(markdown_report(report), encoding="utf-8")
    plot_results(report, out / RESULTS_PNG)
    return report


# ---------------------------------------------------------------------------------------------
# reports


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown_report(report: dict[str, Any]) -> str:
    """Two tables: tagging (per probe and label fraction) and retrieval/identification."""
    features = report["features"]
    fractions = report["config"]["fractions"]
    lines = [
        "# Evaluation",
        "",
        f"Splits: {report['splits']}; tags: {len(report['vocab'])}; "
        f"retrieval class: {report['retrieval_label']}.",
        "",
        "## Tagging (test split, macro over tags with a positive and a negative)",
        "",
    ]
    head = ["features", "probe"]
    head += [f"ROC-AUC {f:g}" for f in fractions] + [f"PR-AUC {f:g}" for f in fractions]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in features.items():
        for probe, by_fraction in entry["tagging"].items():
            if probe == "head":
                trained = by_fraction.get("trained", {})
                cells = [name, "own head"]
                cells += [_fmt(trained.get("roc_auc"))] + ["–"] * (len(fractions) - 1)
                cells += [_fmt(trained.get("pr_auc"))] + ["–"] * (len(fractions) - 1)
            else:
                cells = [name, probe]
                cells += [_fmt(by_fraction.get(f"{f:g}", {}).get("roc_auc")) for f in fractions]
                cells += [_fmt(by_fraction.get(f"{f:g}", {}).get("pr_auc")) for f in fractions]
            lines.append("| " + " | ".join(cells) + " |")
    keys = [f"R@{k}" for k in metrics.RECALL_KS] + [f"M@{k}" for k in metrics.MAP_KS]
    lines += [
        "",
        "## Retrieval (test split) and excerpt → track identification",
        "",
        "| features | " + " | ".join(keys) + " | identification |",
        "|" + "---|" * (len(keys) + 2),
    ]
    for name, entry in features.items():
        cells = [_fmt(entry["retrieval"].get(k)) for k in keys]
        cells.append(_fmt(entry.get("identification")))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_results(report: dict[str, Any], path: str | Path) -> Path:
    """ROC-AUC and PR-AUC against the share of training labels, one line per features+probe."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fractions = report["config"]["fractions"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("roc_auc", "pr_auc"), strict=True):
        for name, entry in report["features"].items():
            for probe, by_fraction in entry["tagging"].items():
                if probe == "head":
                    value = by_fraction.get("trained", {}).get(metric)
                    if value is not None:
                        ax.axhline(value, linestyle="--", label=f"{name} head", color="grey")
                    continue
                xs, ys = [], []
                for f in fractions:
                    value = by_fraction.get(f"{f:g}", {}).get(metric)
                    if value is not None:
                        xs.append(100 * f)
                        ys.append(value)
                if xs:
                    ax.plot(xs, ys, marker="o", label=f"{name} {probe}")
        ax.set_xscale("log")
        ax.set_xlabel("training labels (%)")
        ax.set_ylabel(metric.replace("_", "-").upper())
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = [
    "Handcrafted",
    "ProbeSettings",
    "TrackOutputs",
    "embed_tracks",
    "evaluate",
    "HandcraftedStats",
    "handcrafted_features",
    "known_labels",
    "labelled_items",
    "markdown_report",
    "plot_results",
    "train_probe",
    "widen_mask",
    "zscore",
]
