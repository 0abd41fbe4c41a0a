"""`musicssl-train experiments`: the comparison arms of docs/EXPERIMENTS.md, and that document.

Every training run gets the same budget (`steps`, batch size, data) and is scored by the same
held-out protocol (`corpus.heldout`): probes on synthetic test pieces rendered with the other
soundfont, retrieval and identification on real soundtracks no run has seen.

Arms:
  a  the six pretext objectives -> frozen MLP probe (tags) and retrieval;
  b  metric + SSL fine-tuning vs frozen-probe SSL vs supervised-only, at 1 %, 10 %, 100 % of
     the labels, fine-tuning with and without augmentation;
  c  baselines: the same network at random init, MFCC/spectral statistics;
  d  probe tasks at different perception levels (instrument, genre, tempo class, mode) on the
     features of arms a and c (no extra training).
Finished runs and evaluations are reused, so arms can be run one evening at a time; the document
always says which arms have results and prints the command for those that do not.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count, product, takewhile
from pathlib import Path
from typing import Any

from musicssl.engine.device import configure_cpu_threads
from musicssl.engine.excerpts import DEFAULT_COUNT

from .checkpoint import list_checkpoints, load_model
from .config import FinetuneConfig, PretrainConfig, from_dict
from .corpus.heldout import FACETS, TAGS, HeldoutConfig, evaluate_heldout, write_results
from .finetune import RATIO_NAME, finetune, measure_ratio
from .pretrain import bundle_config_for, pretrain

log = logging.getLogger(__name__)

__all__ = ["ARMS", "OBJECTIVES", "ExperimentsConfig", "render_doc", "run_experiments"]

ARMS = ("a", "b", "c", "d")
OBJECTIVES = ("contrastive", "byol", "clustering", "barlow", "vicreg", "playlist")
FRACTIONS = (0.01, 0.1, 1.0)
TASKS = (TAGS, *FACETS)
# Arm b's fine-tuning runs: (name, fine-tune augmentation, SSL init + auxiliary loss).
FINETUNE_VARIANTS = (
    ("metric+ssl", False, True),
    ("metric+ssl-aug", True, True),
    ("supervised", False, False),
    ("supervised-aug", True, False),
)
FINETUNED = tuple(name for name, _, _ in FINETUNE_VARIANTS)
SSL_INIT = "contrastive"  # the pre-trained encoder arm b fine-tunes and probes
# Arm b's fine-tuning LR: the shipped model's (training/corpus/default_model.toml). The paper's
# 1e-4 (finetune's default) left a fresh tag head nearly untrained within such small budgets.
FINETUNE_LR = 1e-3


@dataclass
class ExperimentsConfig:
    corpus: Path
    out: Path
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    steps: int = 300  # every training run's budget
    # Seeds 0 … seeds-1: arm a's pre-training seeds, and arm b's fine-tuning seeds (each
    # fine-tunes seed 0's pre-training on the same labelled subset; only the training seed moves).
    seeds: int = 1
    batch_size: int = 32
    max_minutes: float | None = None  # a safety stop per run; a stopped run resumes next time
    cache_dir: Path | None = None
    doc: Path | None = None
    threads: int | None = None


def _data(cfg: ExperimentsConfig, fraction: float = 1.0) -> dict[str, Any]:
    return {
        "library": str(cfg.corpus / "train.db"),
        "cache_dir": str(cfg.cache_dir) if cfg.cache_dir else None,
        "split": [0.85, 0.15, 0.0],  # the manifest's val/test stay outside train.db entirely
        "label_fraction": fraction,
    }


def _steps_done(run: Path) -> int:
    """The step of the newest checkpoint in `run` (0 when there is none)."""
    found = list_checkpoints(run)
    return int(found[-1].stem.split("-")[-1]) if found else 0


def _timed(run: Path, steps: int | None, train: Callable[[], Any]) -> dict[str, Any] | None:
    """Train (or resume); returns the run's record once it is finished, else None.

    A pre-training session cut short by `max_minutes` is not finished (fewer than `steps`), so
    the next invocation resumes it instead of reporting a run with less than the shared budget.
    Fine-tuning (`steps=None`) runs without the time limit; early stopping ends it for good.
    """
    record = run / "experiment.json"
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8"))
    started = time.monotonic()
    train()
    done = _steps_done(run)
    info = {"minutes": round((time.monotonic() - started) / 60, 2), "steps": done}
    if steps is not None and done < steps:
        return None
    record.write_text(json.dumps(info) + "\n", encoding="utf-8")
    return info


def _common(cfg: ExperimentsConfig, out: Path) -> dict[str, Any]:
    return {
        "out": str(out),
        "device": "cpu",
        "threads": cfg.threads,
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "max_minutes": cfg.max_minutes,
        "resume": "auto",
        "progress": False,
        "checkpoint_every": max(50, cfg.steps // 4),
    }


def _pretraining_dir(cfg: ExperimentsConfig, objective: str, seed: int) -> Path:
    return cfg.out / "a" / (objective if seed == 0 else f"{objective}-seed{seed}")


def _pretrained(cfg: ExperimentsConfig, objective: str, seed: int = 0) -> Path | None:
    """The finished pre-training run of `objective` (None while it is unfinished)."""
    out = _pretraining_dir(cfg, objective, seed)
    config = from_dict(
        PretrainConfig,
        {**_common(cfg, out), "objective": objective, "data": _data(cfg), "seed": seed},
    )
    return out if _timed(out, cfg.steps, lambda: pretrain(config)) else None


def _finetuning_dir(cfg: ExperimentsConfig, name: str, fraction: float, seed: int) -> Path:
    return cfg.out / "b" / (f"{name}-{fraction:g}" + (f"-seed{seed}" if seed else ""))


def _finetuned(
    cfg: ExperimentsConfig,
    ssl_run: Path,
    name: str,
    fraction: float,
    augment: bool,
    ssl: bool,
    seed: int = 0,
) -> Path:
    """One arm-b fine-tuning run; metric+SSL starts from `ssl_run`, supervised from scratch."""
    out = _finetuning_dir(cfg, name, fraction, seed)
    settings: dict[str, Any] = {
        **_common(cfg, out),
        "seed": seed,
        "data": _data(cfg, fraction),
        "augment": {"enabled": augment},
        "optim": {"lr": FINETUNE_LR},
        "eval_every": max(25, cfg.steps // 6),
        "max_minutes": None,
    }
    if ssl:
        ratio_dir = cfg.out / "b" / "ratio"
        if not (ratio_dir / RATIO_NAME).is_file():
            measure_ratio(
                from_dict(
                    FinetuneConfig,
                    {
                        **_common(cfg, ratio_dir),
                        "data": _data(cfg),
                        "init": str(ssl_run),
                        "optim": {"lr": FINETUNE_LR},
                        "ratio_steps": max(20, cfg.steps // 5),
                    },
                )
            )
        settings["init"] = str(ssl_run)
        settings["ratio_file"] = str(ratio_dir / RATIO_NAME)
    else:
        settings["alpha"] = 0.0  # L = L_ML: supervised only, from random init
        settings["ratio"] = 1.0
    _timed(out, None, lambda: finetune(from_dict(FinetuneConfig, settings)))
    return out


def _scored(
    cfg: ExperimentsConfig, folder: Path, models: dict[str, Path], hc: dict[str, Any]
) -> dict[str, Any]:
    """Held-out results for `models` (+ baselines in `hc`), computed once into `folder`.

    The arms compare features, as the papers do: retrieval and identification by cosine of the
    track vectors, without the app's excerpt-set re-ranking (`HeldoutConfig.excerpt_sets`)."""
    results = folder / "results.json"
    if results.is_file():
        return json.loads(results.read_text(encoding="utf-8"))
    loaded, bundle_config = {}, None
    for name, path in models.items():
        model, bundle_config, _ = load_model(path)
        loaded[name] = model
    if bundle_config is None:
        bundle_config = bundle_config_for(from_dict(PretrainConfig, {}).model)
    report = evaluate_heldout(
        HeldoutConfig(root=cfg.corpus, cache_dir=cfg.cache_dir, excerpt_sets=False, **hc),
        loaded,
        bundle_config,
    )
    write_results(report, folder)
    return report


def _arm_a(cfg: ExperimentsConfig) -> None:
    for seed in range(cfg.seeds):
        for objective in OBJECTIVES:
            run = _pretrained(cfg, objective, seed)
            if run is not None:
                _scored(
                    cfg,
                    run / "heldout",
                    {objective: run},
                    {"tasks": list(TASKS), "baselines": []},
                )


def _arm_b(cfg: ExperimentsConfig) -> None:
    ssl_run = _pretrained(cfg, SSL_INIT)
    if ssl_run is None:
        log.warning("arm b waits for the %s pre-training run to finish", SSL_INIT)
        return
    _scored(
        cfg,
        cfg.out / "b" / "frozen-probe",
        {"frozen-probe SSL": ssl_run},
        {"tasks": [TAGS], "baselines": [], "fractions": list(FRACTIONS)},
    )
    for seed, fraction in product(range(cfg.seeds), FRACTIONS):
        for name, augment, ssl in FINETUNE_VARIANTS:
            run = _finetuned(cfg, ssl_run, name, fraction, augment, ssl, seed)
            # The fine-tuned head and, for a like-for-like encoder comparison, the frozen row's
            # MLP probe on this encoder's features with the same share of labels.
            _scored(
                cfg,
                run / "heldout",
                {name: run},
                {"tasks": [TAGS], "baselines": [], "fractions": [fraction]},
            )


def _arm_c(cfg: ExperimentsConfig) -> None:
    _scored(cfg, cfg.out / "c", {}, {"tasks": list(TASKS)})


def run_experiments(cfg: ExperimentsConfig) -> Path:
    """Run the requested arms (reusing finished runs), then write the document."""
    unknown = sorted(set(cfg.arms) - set(ARMS))
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; choose from {', '.join(ARMS)}")
    if cfg.threads:
        configure_cpu_threads(cfg.threads)
    for arm, run in (("c", _arm_c), ("a", _arm_a), ("b", _arm_b)):
        if arm in cfg.arms:
            run(cfg)
    doc = cfg.doc or cfg.out / "EXPERIMENTS.md"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render_doc(cfg), encoding="utf-8")
    return doc


# ---------------------------------------------------------------------------------------------
# the document


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def _seeded(values: list[Any]) -> str:
    """One cell over seeds: the value, or with several seeds their mean ± half their range."""
    found = [v for v in values if v is not None]
    if len(found) < 2:
        return _f(found[0] if found else None)
    half_range = (max(found) - min(found)) / 2
    return f"{sum(found) / len(found):.3f} ± {half_range:.3f}"


def _command(cfg: ExperimentsConfig, arms: str) -> str:
    cache = f" --cache {cfg.cache_dir}" if cfg.cache_dir else ""
    return (
        f"musicssl-train experiments --corpus {cfg.corpus} --out {cfg.out} --arms {arms} "
        f"--steps {cfg.steps}{f' --seeds {cfg.seeds}' if cfg.seeds > 1 else ''} "
        f"--batch-size {cfg.batch_size}{cache} --doc docs/EXPERIMENTS.md"
    )


def _excerpt_counts(cfg: ExperimentsConfig) -> list[int]:
    """Excerpts per track the stored results were scored with (the default has changed)."""
    counts = {
        report.get("config", {}).get("excerpts")
        for report in map(_load, sorted(cfg.out.rglob("results.json")))
        if report is not None
    }
    return sorted(c for c in counts if c is not None)


FeatureRow = tuple[str, list[dict[str, Any]], list[dict[str, Any]]]


def _feature_rows(cfg: ExperimentsConfig) -> list[FeatureRow]:
    """(name, held-out entry per seed, run info per seed) for every scored arm-a/c feature set."""
    rows: list[FeatureRow] = []
    baselines = _load(cfg.out / "c" / "results.json")
    for name, entry in (baselines or {}).get("features", {}).items():
        rows.append((f"{name} (baseline)", [entry], [{}]))
    for objective in OBJECTIVES:
        runs = takewhile(Path.is_dir, (_pretraining_dir(cfg, objective, s) for s in count()))
        entries, infos = [], []
        for run in runs:
            report = _load(run / "heldout" / "results.json")
            if report:
                entries.append(report["features"][objective])
                infos.append(_load(run / "experiment.json") or {})
        if entries:
            name = objective if len(entries) == 1 else f"{objective} ({len(entries)} seeds)"
            rows.append((name, entries, infos))
    return rows


def _mlp_scores(entry: dict[str, Any], task: str, fraction: float = 1.0) -> dict[str, Any]:
    """The MLP probe's scores for `task` trained with `fraction` of the labels ({} if absent)."""
    return entry.get("probes", {}).get(task, {}).get("mlp", {}).get(f"{fraction:g}", {})


def _probe_score(entry: dict[str, Any], task: str, key: str = "roc_auc") -> Any:
    return _mlp_scores(entry, task).get(key)


BRow = tuple[str, list[list[dict[str, Any]]]]  # (method, per label fraction: scores per seed)


def _finetuned_rows(
    cfg: ExperimentsConfig, pick: Callable[[dict[str, Any], float], dict[str, Any]]
) -> list[BRow]:
    """(name, scores per seed for each label fraction) for arm b's runs that have any result."""
    rows = []
    for name in FINETUNED:
        cells = []
        for fraction in FRACTIONS:
            seeds = takewhile(
                Path.is_dir, (_finetuning_dir(cfg, name, fraction, s) for s in count())
            )
            scores = []
            for run in seeds:
                report = _load(run / "heldout" / "results.json")
                entry = (report or {}).get("features", {}).get(name)
                if entry and (score := pick(entry, fraction)):
                    scores.append(score)
            cells.append(scores)
        if any(cells):
            rows.append((name, cells))
    return rows


def _b_table(rows: list[BRow]) -> list[str]:
    if not rows:
        return []
    # How many synthetic pieces a share of labels leaves (the frozen probe records it): at 1 %
    # it is a handful, which no method can be expected to learn 29 tags from.
    pieces = [
        next(
            (c[i][0]["labelled_tracks"] for _, c in rows if c[i] and "labelled_tracks" in c[i][0]),
            None,
        )
        for i in range(len(FRACTIONS))
    ]
    header = [
        f"{f:.0%} labels" + (f" ({n} pieces)" if n is not None else "")
        for f, n in zip(FRACTIONS, pieces, strict=True)
    ]
    lines = [
        "| method | " + " | ".join(header) + " |",
        "|---" * (len(FRACTIONS) + 1) + "|",
    ]
    for name, cells in rows:
        text = [
            f"{_seeded([c.get('roc_auc') for c in seeds])} / "
            f"{_seeded([c.get('pr_auc') for c in seeds])} (n={seeds[0].get('n_tags', '?')})"
            if seeds
            else "not run"
            for seeds in cells
        ]
        if max(len(seeds) for seeds in cells) > 1:
            name = f"{name} ({max(len(seeds) for seeds in cells)} seeds)"
        lines.append(f"| {name} | " + " | ".join(text) + " |")
    return lines


def render_doc(cfg: ExperimentsConfig) -> str:
    """EXPERIMENTS.md from whatever results exist under `cfg.out` (never from anything else)."""
    lines = [
        "# Experiments",
        "",
        "Generated by `musicssl-train experiments` (training/experiments.py) from the run folder "
        f"`{cfg.out}`; do not edit by hand. Corpus: `{cfg.corpus}` (recipe: "
        "`musicssl-train corpus build`, see MODEL_CARD.md). Every training run: "
        f"{cfg.steps} steps × batch {cfg.batch_size}, melcnn, CPU. Scores are on held-out data "
        "only: synthetic test pieces rendered with the other soundfont (TimGM6mb) for tagging, "
        "real test soundtracks (soundtrack = class) for retrieval R@K / M@K and first-half → "
        "second-half identification. Where an objective was pre-trained (a, d) or a method "
        "fine-tuned (b) with several seeds, a cell is their mean ± half their range (minutes: the "
        "mean); elsewhere one seed, so treat "
        "differences of a few hundredths as noise. Minutes are wall time on whatever machine ran "
        "the arm (a shared 2-core VM for the committed numbers), not a speed measurement. How "
        "the numbers read against the papers these arms reproduce in small: docs/MODEL_CARD.md, "
        'section "The comparison arms against the papers".',
        "",
    ]
    counts = _excerpt_counts(cfg)
    if counts:
        lines[-1:] = [
            f"Tracks are embedded from {' or '.join(map(str, counts))} evenly spread 3 s excerpts "
            "(the mean of their embeddings; the app's default is "
            f"{DEFAULT_COUNT}).",
            "",
        ]
    rows = _feature_rows(cfg)
    missing: list[str] = []
    lines += ["## (a) pretext objectives and (c) baselines", ""]
    if rows:
        lines += [
            "| features | tags ROC-AUC (MLP) | tags PR-AUC | R@1 | R@4 | M@1 | M@10 | "
            "identification | minutes |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, entries, infos in rows:
            cells = [
                _seeded([_probe_score(e, TAGS) for e in entries]),
                _seeded([_probe_score(e, TAGS, "pr_auc") for e in entries]),
                *(
                    _seeded([e["retrieval"].get(k) for e in entries])
                    for k in ("R@1", "R@4", "M@1", "M@10")
                ),
                _seeded([e.get("identification") for e in entries]),
            ]
            minutes = [i["minutes"] for i in infos if "minutes" in i]
            cells.append(f"{sum(minutes) / len(minutes):.3g}" if minutes else "–")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    done = {n.split(" ")[0] for n, _, _ in rows}
    not_run = [o for o in OBJECTIVES if o not in done]
    if not_run:
        missing.append(f"(a) objectives not run: {', '.join(not_run)}")
    seeds_short = [
        n for n, entries, _ in rows if not n.endswith("(baseline)") and len(entries) < cfg.seeds
    ]
    if seeds_short:
        missing.append(f"(a) fewer than {cfg.seeds} seeds: {', '.join(seeds_short)}")
    if not any(n.endswith("(baseline)") for n, _, _ in rows):
        missing.append("(c) baselines not run")

    lines += ["", "## (d) probe tasks at different perception levels (MLP probe ROC-AUC)", ""]
    if rows:
        lines += ["| features | " + " | ".join(FACETS) + " |", "|---" * (len(FACETS) + 1) + "|"]
        for name, entries, _ in rows:
            if not entries[0]["probes"]:  # a retrieval-only peer (musicnn's own features)
                continue
            cells = [_seeded([_probe_score(e, t) for e in entries]) for t in FACETS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    else:
        missing.append("(d) needs the features of arms a or c")

    lines += [
        "",
        "## (b) fine-tuning vs frozen probe vs supervised-only (tags ROC-AUC / PR-AUC)",
        "",
        f"Fine-tuning runs: `finetune` with lr {FINETUNE_LR:g} (the shipped model's; halved on "
        f"validation plateaus), {cfg.steps} steps, metric+SSL from the `{SSL_INIT}` run of arm a, "
        "supervised-only from random init with the SSL weight at 0; the frozen probe is an MLP on "
        f"the `{SSL_INIT}` features. A fine-tuned head is scored on the tags its run saw (n = how "
        "many), so cells with small n are not comparable with the others. Pieces: the labelled "
        "synthetic pieces the probe trains on; fine-tuning draws the same share of labels from "
        "its own training split.",
        "",
    ]
    frozen = _load(cfg.out / "b" / "frozen-probe" / "results.json")
    frozen_cells = (
        [
            [score]
            if (score := _mlp_scores(frozen["features"]["frozen-probe SSL"], TAGS, f))
            else []
            for f in FRACTIONS
        ]
        if frozen
        else []
    )
    heads = [("frozen-probe SSL (MLP)", frozen_cells)] if frozen_cells else []
    heads += _finetuned_rows(cfg, lambda entry, fraction: entry.get("head", {}))
    lines += _b_table(heads)
    lines += [
        "",
        "The same comparison with the head taken out: the frozen row's MLP probe, trained on each "
        "encoder's features with the same share of labels (all tags the probe's labelled pieces "
        "carry), so only the encoder differs between rows.",
        "",
    ]
    encoders = [(f"{SSL_INIT} encoder, frozen", frozen_cells)] if frozen_cells else []
    encoders += _finetuned_rows(cfg, lambda entry, fraction: _mlp_scores(entry, TAGS, fraction))
    lines += _b_table(encoders)
    expected = 1 + len(FINETUNED)
    if any(
        len(rows) < expected or any(not c for _, cells in rows for c in cells)
        for rows in (heads, encoders)
    ):
        missing.append("(b) incomplete: rows or cells marked 'not run' (or absent) have no result")
    short = [n for n, cells in heads if n in FINETUNED and any(len(c) < cfg.seeds for c in cells)]
    if short:
        missing.append(f"(b) fewer than {cfg.seeds} fine-tuning seeds: {', '.join(short)}")

    lines += ["", "## Not run yet", ""]
    if missing:
        lines += [f"- {m}" for m in missing]
        lines += [
            "",
            "To run them with the same budget (finished runs are reused):",
            "",
            "```sh",
            _command(cfg, ",".join(ARMS)),
            "```",
        ]
    else:
        lines += [
            "Every arm has results at this budget. For a larger one, use a new `--out` and a "
            "larger `--steps`:",
            "",
            "```sh",
            _command(cfg, ",".join(ARMS)),
            "```",
        ]
    return "\n".join(lines) + "\n"
