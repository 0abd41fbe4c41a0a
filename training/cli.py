"""`musicssl-train`: pretrain | finetune | measure-ratio | soup | refit-head | whiten | evaluate |
export | corpus | experiments.

Settings come from dataclass defaults, then `--config file.toml`, then flags (`--set key=value`
reaches any setting, e.g. `--set optim.warmup_steps=500`). Every command also runs under
`torchrun --nproc_per_node N -m musicssl.training.cli ...` (see distributed.py).

Exit codes: 0 done, 1 the run failed (bad checkpoint/bundle/data), 2 bad settings, 130 Ctrl-C
(after a checkpoint was saved, so `--resume` continues).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from musicssl.engine.excerpts import DEFAULT_COUNT

from .config import (
    ConfigError,
    EvaluateConfig,
    ExportConfig,
    FinetuneConfig,
    PretrainConfig,
    RefitConfig,
    WhitenConfig,
    load_config,
    parse_value,
)

log = logging.getLogger("musicssl.training")

# flag dest -> dotted config key (flags left at None do not override anything)
_KEYS: dict[str, str] = {
    "out": "out",
    "device": "device",
    "threads": "threads",
    "seed": "seed",
    "steps": "steps",
    "batch_size": "batch_size",
    "lr": "optim.lr",
    "optimizer": "optim.optimizer",
    "warmup": "optim.warmup_steps",
    "data": "data.folder",
    "library": "data.library",
    "cache": "data.cache_dir",
    "split_by": "data.split_by",
    "label_fraction": "data.label_fraction",
    "decode_workers": "data.decode_workers",
    "arch": "model.architecture",
    "name": "model.name",
    "stop_after": "stop_after",
    "max_minutes": "max_minutes",
    "checkpoint_every": "checkpoint_every",
    "log_every": "log_every",
    "objective": "objective",
    "init": "init",
    "ssl_objective": "ssl_objective",
    "alpha": "alpha",
    "ratio": "ratio",
    "ratio_file": "ratio_file",
    "ratio_steps": "ratio_steps",
    "eval_every": "eval_every",
    "patience": "patience",
    "checkpoint": "checkpoint",
    "excerpts": "excerpts",
    "eps": "eps",
    "within_alpha": "within_alpha",
    "within_eps": "within_eps",
    "harmony_weight": "harmony_weight",
    "rhythm_weight": "rhythm_weight",
}


def _set_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


# Paths given on the command line are made absolute: the run's config.toml must still point at
# the same files when `--resume` is run from another directory.
_PATH_FLAGS = frozenset({"out", "data", "library", "cache", "init", "ratio_file", "checkpoint"})


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for dest, key in _KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            if dest in _PATH_FLAGS:
                value = str(Path(value).expanduser().absolute())
            values[key] = value
    if getattr(args, "no_progress", False):
        values["progress"] = False
    if getattr(args, "augment", None) is not None:
        values["augment.enabled"] = args.augment
    if getattr(args, "resume", None):
        values["resume"] = args.resume
    if getattr(args, "baselines", None) is not None:
        values["baselines"] = [b for b in args.baselines.split(",") if b]
    if getattr(args, "probes", None) is not None:
        values["probes"] = [p for p in args.probes.split(",") if p]
    if getattr(args, "fractions", None) is not None:
        values["fractions"] = [float(f) for f in args.fractions.split(",") if f]
    values.update(_set_pairs(getattr(args, "set", None) or []))
    return values


def _config_path(args: argparse.Namespace) -> Path | None:
    """--config, or on --resume the run folder's recorded config.toml."""
    if args.config:
        return Path(args.config)
    if getattr(args, "resume", None):
        out = args.out
        if out is None and args.resume not in ("latest", "auto"):
            resume = Path(args.resume).expanduser()
            run = resume.parent.parent if resume.is_file() else resume
            if resume.is_dir() and not (resume / "config.toml").exists():
                run = resume.parent
            if (run / "config.toml").is_file():
                args.out = str(run)
                return run / "config.toml"
        if out is not None and (Path(out).expanduser() / "config.toml").is_file():
            return Path(out).expanduser() / "config.toml"
    return None


# ---------------------------------------------------------------------------------------------
# commands


def cmd_pretrain(args: argparse.Namespace) -> int:
    from .pretrain import pretrain

    config = load_config(PretrainConfig, _config_path(args), _overrides(args), "pretrain")
    out = pretrain(config)
    print(f"pre-training run: {out}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from .finetune import finetune

    config = load_config(FinetuneConfig, _config_path(args), _overrides(args), "finetune")
    out = finetune(config)
    best = out / "best.pt"
    print(f"fine-tuning run: {out}" + (f" (best weights: {best})" if best.is_file() else ""))
    return 0


def cmd_measure_ratio(args: argparse.Namespace) -> int:
    from .finetune import RATIO_NAME, measure_ratio

    config = load_config(FinetuneConfig, _config_path(args), _overrides(args), "measure-ratio")
    result = measure_ratio(config)
    print(json.dumps(result, indent=2))
    print(f"written to {Path(config.out).expanduser() / RATIO_NAME}")
    return 0


def cmd_soup(args: argparse.Namespace) -> int:
    from .soup import soup

    out = soup(args.sources, args.out)
    print(f"averaged {len(args.sources)} runs: {out / 'best.pt'} (refit-head and whiten it next)")
    return 0


def cmd_refit_head(args: argparse.Namespace) -> int:
    from .head_refit import RESULT_NAME, refit_head

    config = load_config(RefitConfig, args.config, _overrides(args), "refit-head")
    out = refit_head(config)
    result = json.loads((out / RESULT_NAME).read_text(encoding="utf-8"))
    for name, score in result["validation"].items():
        mark = "*" if name == result["chosen"] else " "
        print(f"{mark} {name:<20} validation ROC-AUC {score['roc_auc']:.4f}")
    print(f"refitted weights: {out / 'best.pt'} (export this run folder)")
    return 0


def cmd_whiten(args: argparse.Namespace) -> int:
    from .whitening import RESULT_NAME, fit_whitening

    config = load_config(WhitenConfig, args.config, _overrides(args), "whiten")
    out = fit_whitening(config)
    result = json.loads((out / RESULT_NAME).read_text(encoding="utf-8"))
    print(
        f"whitening alpha {result['alpha']:g}, eps {result['eps']:g}, within-track alpha "
        f"{result['within_alpha']:g}, eps {result['within_eps']:g}, harmony weight "
        f"{result['harmony_weight']:g}, rhythm weight {result['rhythm_weight']:g}: fitted on "
        f"{result['excerpts']} excerpts of {result['tracks']} training tracks"
    )
    print(f"whitened weights: {out / 'best.pt'} (export this run folder)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import RESULTS_MD, evaluate

    config = load_config(EvaluateConfig, args.config, _overrides(args), "evaluate")
    evaluate(config)
    print((Path(config.out).expanduser() / RESULTS_MD).read_text(encoding="utf-8"))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    overrides: dict[str, Any] = {"checkpoint": args.source}
    if args.out is not None:
        overrides["out"] = args.out
    if args.name is not None:
        overrides["name"] = args.name
    if args.install:
        overrides["install"] = True
    if args.no_thresholds:
        overrides["thresholds"] = False
    if args.device is not None:
        overrides["device"] = args.device
    if args.data is not None:
        overrides["data.folder"] = args.data
    if args.library is not None:
        overrides["data.library"] = args.library
    if args.threshold_library is not None:
        overrides["threshold_library"] = str(Path(args.threshold_library).expanduser().absolute())
    overrides.update(_set_pairs(args.set or []))
    config = load_config(ExportConfig, args.config, overrides, "export")
    result = export(config, use_in=args.use_in)
    print(f"bundle: {result.path}  model_id: {result.model_id}  tags: {len(result.config.tags)}")
    if result.installed is not None:
        print(f"installed: {result.installed.path}")
    if args.use_in:
        print(f"active model of {args.use_in}: {result.model_id}")
    return 0


def cmd_corpus_build(args: argparse.Namespace) -> int:
    from .corpus.build import BuildConfig, build

    cfg = BuildConfig(
        root=Path(args.root).expanduser().absolute(),
        real=not args.no_real,
        synth=not args.no_synth,
        album_size=args.album_size,
        train_albums=args.train_albums,
        val_albums=args.val_albums,
        test_albums=args.test_albums,
        seconds=args.seconds,
        workers=args.workers,
        seed=args.seed,
    )
    entries = build(cfg)
    for source in ("real", "synth"):
        for part in ("train", "val", "test"):
            chosen = [e for e in entries if e.source == source and e.split == part]
            hours = sum(e.duration for e in chosen) / 3600
            print(f"{source:5s} {part:5s} {len(chosen):5d} files {hours:6.2f} h")
    print(f"manifest: {cfg.root / 'manifest.jsonl'}  training library: {cfg.root / 'train.db'}")
    return 0


def cmd_corpus_teacher(args: argparse.Namespace) -> int:
    from musicssl.engine.bundle import load_bundle
    from musicssl.engine.models import shipped_models_dir

    from .corpus.teacher import label_tracks, run_teacher

    root = Path(args.root).expanduser().absolute()
    out = run_teacher(root, args.python, args.patches)
    print(f"teacher output: {out}")
    if args.library:
        source = args.vocabulary_from or shipped_models_dir() / "musicssl-default"
        vocab = load_bundle(source).config.tags
        counts = label_tracks(root, Path(args.library).expanduser(), vocab)
        print(
            f"labelled {counts['tracks']} real tracks of {args.library}: "
            f"{counts['yes']} yes, {counts['no']} no"
        )
    return 0


def cmd_corpus_evaluate(args: argparse.Namespace) -> int:
    from musicssl.engine.device import configure_cpu_threads

    from .checkpoint import load_model
    from .corpus.heldout import HeldoutConfig, evaluate_heldout, markdown, write_results

    model, bundle_config, _ = load_model(args.checkpoint)
    cfg = HeldoutConfig(
        root=Path(args.root).expanduser(),
        cache_dir=Path(args.cache).expanduser() if args.cache else None,
        excerpts=args.excerpts,
        tasks=[t for t in args.tasks.split(",") if t],
        baselines=[b for b in args.baselines.split(",") if b],
        split=args.split,
        progress=not args.no_progress,
    )
    if args.threads:
        configure_cpu_threads(args.threads)
    report = evaluate_heldout(cfg, {"model": model}, bundle_config)
    write_results(report, Path(args.out).expanduser())
    print(markdown(report))
    return 0


def cmd_experiments(args: argparse.Namespace) -> int:
    from .experiments import ExperimentsConfig, run_experiments

    cfg = ExperimentsConfig(
        corpus=Path(args.corpus).expanduser().absolute(),
        out=Path(args.out).expanduser().absolute(),
        arms=[a for a in args.arms.split(",") if a],
        steps=args.steps,
        seeds=args.seeds,
        batch_size=args.batch_size,
        max_minutes=args.max_minutes,
        cache_dir=Path(args.cache).expanduser().absolute() if args.cache else None,
        doc=Path(args.doc).expanduser() if args.doc else None,
        threads=args.threads,
    )
    doc = run_experiments(cfg)
    print(f"written: {doc}")
    return 0


# ---------------------------------------------------------------------------------------------
# parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML settings file")
    p.add_argument("--out", help="run folder (checkpoints, logs, results)")
    p.add_argument("--device", help="auto | cpu | cuda | mps (default: auto)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--seed", type=int)
    p.add_argument("--data", help="audio folder to train on")
    p.add_argument("--library", help="MusicSSL library DB to train on (its tags and playlists)")
    p.add_argument("--cache", help="decoded-audio cache folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any setting, e.g. optim.weight_decay=0.01 (repeatable)",
    )


def _training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, help="total optimisation steps")
    p.add_argument("--batch-size", type=int, help="tracks per batch per process")
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=("adam", "adamw"))
    p.add_argument("--warmup", type=int, help="linear warm-up steps")
    p.add_argument("--arch", help="encoder architecture (melcnn, samplecnn)")
    p.add_argument("--name", help="model name recorded in the exported bundle")
    p.add_argument("--split-by", choices=("album", "artist", "track"))
    p.add_argument("--label-fraction", type=float, help="keep this share of training labels")
    p.add_argument("--decode-workers", type=int)
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        help="continue the run in --out (or from this checkpoint) exactly where it stopped",
    )
    p.add_argument("--stop-after", type=int, help="end this session after N steps")
    p.add_argument("--max-minutes", type=float, help="end this session after M minutes")
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--log-every", type=int)


def _finetune_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--init", help="pre-trained run/checkpoint or model bundle to start from")
    p.add_argument("--ssl-objective", help="auxiliary SSL objective (default: contrastive)")
    p.add_argument("--alpha", type=float, help="SSL weight before dividing by the ratio")
    p.add_argument("--ratio", type=float, help="r = converged L_ML / L_SSL (skips ratio.json)")
    p.add_argument("--ratio-file", help="ratio JSON from measure-ratio (default <out>/ratio.json)")
    p.add_argument("--ratio-steps", type=int, help="measure-ratio: steps of each loss alone")
    p.add_argument("--eval-every", type=int, help="validate every N steps")
    p.add_argument("--patience", type=int, help="validations without improvement before stop")
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="augment fine-tuning crops (the paper's default is off)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicssl-train",
        description="Train, evaluate and export MusicSSL audio models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_text: str):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command("pretrain", cmd_pretrain, "self-supervised pre-training of an encoder")
    _common(p)
    _training(p)
    p.add_argument(
        "--objective", help="contrastive | byol | clustering | barlow | vicreg | playlist"
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the CLMR augmentation chain (default on)",
    )

    for name, handler, text in (
        ("finetune", cmd_finetune, "metric learning on tags + SSL auxiliary loss (PLOS ONE 2023)"),
        ("measure-ratio", cmd_measure_ratio, "measure r = converged L_ML / L_SSL for finetune"),
    ):
        p = command(name, handler, text)
        _common(p)
        _training(p)
        _finetune_flags(p)

    p = command("soup", cmd_soup, "average the weights of fine-tuning runs of one pre-training")
    p.add_argument("sources", nargs="+", help="fine-tuning run folders or checkpoints")
    p.add_argument("--out", required=True, help="run folder for the averaged weights")

    p = command("refit-head", cmd_refit_head, "refit the tag head on frozen fine-tuned features")
    p.add_argument("checkpoint", metavar="source", help="fine-tuning run folder or checkpoint")
    p.add_argument("--config", help="TOML settings file (its [refit-head] table)")
    p.add_argument("--out", help="run folder for the result (default: <run>/refit)")
    p.add_argument("--library", help="library DB (default: the one the run trained on)")
    p.add_argument("--device", help="auto | cpu | cuda | mps")
    p.add_argument("--threads", type=int, help="torch threads on CPU")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")

    p = command("whiten", cmd_whiten, "fit the whitening of the track vector (similarity)")
    p.add_argument("checkpoint", metavar="source", help="training run folder or checkpoint")
    p.add_argument("--config", help="TOML settings file (its [whiten] table)")
    p.add_argument("--out", help="run folder for the result (default: <run>/whiten)")
    p.add_argument("--alpha", type=float, help="1: full whitening (default 0.75)")
    p.add_argument("--eps", type=float, help="variance floor, share of the largest")
    p.add_argument(
        "--within-alpha", type=float, help="then whiten the within-track spread (0: skip; def. 1)"
    )
    p.add_argument("--within-eps", type=float, help="its variance floor, share of the largest")
    p.add_argument(
        "--harmony-weight", type=float, help="weight of the pitch-class profile (0: none; def. 0.2)"
    )
    p.add_argument(
        "--rhythm-weight", type=float, help="weight of the onset autocorrelation (0: none; 0.1)"
    )
    p.add_argument("--excerpts", type=int, help="excerpts per track (0: every excerpt)")
    p.add_argument("--library", help="library DB (default: the one the run trained on)")
    p.add_argument("--device", help="auto | cpu | cuda | mps")
    p.add_argument("--threads", type=int, help="torch threads on CPU")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")

    p = command("evaluate", cmd_evaluate, "frozen-encoder probes, retrieval and baselines")
    _common(p)
    p.add_argument("--checkpoint", help="run, checkpoint or bundle to evaluate (else baselines)")
    p.add_argument("--baselines", help="comma list: mfcc,random-init ('' for none)")
    p.add_argument("--probes", help="comma list: linear,mlp")
    p.add_argument("--fractions", help="label fractions, e.g. 0.01,0.1,1")
    p.add_argument("--excerpts", type=int, help="excerpts per track")
    p.add_argument("--batch-size", type=int)

    p = command("export", cmd_export, "turn a checkpoint into a model bundle the app can use")
    p.add_argument("source", help="run folder, checkpoint file or bundle")
    p.add_argument("--config", help="TOML settings file")
    p.add_argument("--out", help="bundle folder or .zip (default: <run>/bundle)")
    p.add_argument("--name", help="model name shown in the app")
    p.add_argument("--install", action="store_true", help="install into the user model folder")
    p.add_argument("--use-in", metavar="DB", help="also make it the active model of this library")
    p.add_argument("--no-thresholds", action="store_true", help="keep 0.5 for every tag")
    p.add_argument("--device", help="device for threshold tuning")
    p.add_argument("--data", help="audio folder for threshold tuning (default: training data)")
    p.add_argument("--library", help="library DB for threshold tuning")
    p.add_argument(
        "--threshold-library",
        metavar="DB",
        help="labelled held-out library whose labels set a tag's threshold where they suffice",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE")

    help_text = "build the default model's corpus; score a model on its held-out parts"
    corpus = sub.add_parser("corpus", help=help_text, description=help_text)
    corpus_sub = corpus.add_subparsers(dest="corpus_command", required=True)
    p = corpus_sub.add_parser("build", help="download soundtracks, render synthetic pieces")
    p.set_defaults(handler=cmd_corpus_build)
    p.add_argument("--root", required=True, help="corpus folder (outside the repository)")
    p.add_argument("--no-real", action="store_true", help="skip the Debian soundtracks")
    p.add_argument("--no-synth", action="store_true", help="skip the synthetic pieces")
    p.add_argument("--album-size", type=int, default=6, help="synthetic pieces per album")
    p.add_argument("--train-albums", type=int, default=3, help="synthetic albums per genre")
    p.add_argument("--val-albums", type=int, default=1)
    p.add_argument("--test-albums", type=int, default=1)
    p.add_argument("--seconds", type=float, default=30.0, help="synthetic piece length")
    p.add_argument("--workers", type=int, default=2, help="parallel FluidSynth renders")
    p.add_argument("--seed", type=int, default=0)
    p = corpus_sub.add_parser("teacher", help="musicnn tags for the real files (recipe only)")
    p.set_defaults(handler=cmd_corpus_teacher)
    p.add_argument("--root", required=True, help="corpus folder")
    p.add_argument(
        "--python",
        default=".venv-teacher/bin/python",
        help="interpreter with tensorflow-cpu, tf-keras and musicnn (make teacher)",
    )
    p.add_argument("--patches", type=int, default=20, help="3 s patches per file")
    p.add_argument("--library", help="write yes/no labels into this training library")
    p.add_argument(
        "--vocabulary-from", help="bundle whose tags the labels use (default: the shipped model)"
    )
    p = corpus_sub.add_parser("evaluate", help="score a model on the corpus's held-out parts")
    p.set_defaults(handler=cmd_corpus_evaluate)
    p.add_argument("checkpoint", help="run, checkpoint or bundle")
    p.add_argument("--root", required=True, help="corpus folder")
    p.add_argument("--out", required=True, help="folder for results.json / results.md")
    p.add_argument("--cache", help="decoded-audio cache folder")
    p.add_argument("--excerpts", type=int, default=DEFAULT_COUNT)
    p.add_argument("--tasks", default="tags", help="probe tasks: tags,instrument,genre,tempo,mode")
    p.add_argument("--baselines", default="mfcc,random-init")
    p.add_argument(
        "--split",
        choices=("test", "val"),
        default="test",
        help="val: compare candidate runs without touching the test split",
    )
    p.add_argument("--threads", type=int)
    p.add_argument("--no-progress", action="store_true")

    p = command("experiments", cmd_experiments, "run the EXPERIMENTS.md arms, write the doc")
    p.add_argument("--corpus", required=True, help="corpus folder from `corpus build`")
    p.add_argument("--out", required=True, help="runs folder (finished arms are reused)")
    p.add_argument(
        "--arms", default="a,b,c,d", help="arms to run now: a,b,c (d is read off a and c)"
    )
    p.add_argument("--steps", type=int, default=300, help="training steps of every run")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="pre-training seeds per objective (arm a), fine-tuning seeds per method (arm b)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-minutes", type=float, help="safety stop per run (resumed next time)")
    p.add_argument("--cache", help="decoded-audio cache folder")
    p.add_argument("--doc", help="markdown file to write (default: <out>/EXPERIMENTS.md)")
    p.add_argument("--threads", type=int)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)
    warnings.simplefilter("default", RuntimeWarning)
    from musicssl.engine.bundle import BundleError
    from musicssl.engine.device import DeviceUnavailableError

    from .checkpoint import CheckpointError

    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"musicssl-train: {exc}", file=sys.stderr)
        return 2
    except (
        CheckpointError,
        BundleError,
        DeviceUnavailableError,
        FileNotFoundError,
        NotADirectoryError,
    ) as exc:
        print(f"musicssl-train: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("musicssl-train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
