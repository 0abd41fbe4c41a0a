"""Training settings as dataclasses, read from TOML and overridden from the command line.

Config lives apart from code (the Deezer SSL framework's lesson): a run is described by one TOML
file plus a few flags, and the resolved settings are written next to the checkpoints, so any run
can be repeated or resumed from what it recorded.

A TOML file holds the command's own keys at the top level and the shared parts as tables:

    objective = "contrastive"
    steps = 20000
    [model]
    architecture = "melcnn"
    [data]
    folder = "~/Music"
    [optim]
    lr = 3e-4

One file can serve several commands: a table named after a command (`[pretrain]`, `[finetune]`,
...) is merged over the shared top-level keys for that command, and the other commands' tables
are ignored. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import tomllib
from musicssl.engine.excerpts import DEFAULT_COUNT

COMMANDS = ("pretrain", "finetune", "measure-ratio", "refit-head", "whiten", "evaluate", "export")


class ConfigError(ValueError):
    """A config file or override that does not fit the settings; the message names the key."""


@dataclass
class ModelConfig:
    """Which encoder to build; None means the architecture's own default."""

    architecture: str = "melcnn"
    arch_params: dict[str, Any] = field(default_factory=dict)
    sample_rate: int | None = None
    embedding_dim: int | None = None
    excerpt_samples: int | None = None  # the crop length the model trains on
    name: str = "musicssl-trained"  # the exported bundle's name


@dataclass
class DataConfig:
    """Where the tracks (and their tags/playlists) come from, and how they are split."""

    folder: str | None = None
    library: str | None = None  # a MusicSSL library DB: its file/user tags and playlists
    sources: list[str] = field(default_factory=lambda: ["file", "user"])
    tags_from_genre: bool = True
    cache_dir: str | None = None  # decoded-audio cache; default: <data dir>/training-cache
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    split_by: str = "album"  # never put one album in two splits: it would leak style
    min_tag_count: int = 1
    # Which unmentioned tags count as "no": "labelled" = on a track with any positive tag, every
    # other vocabulary tag is a negative (the tagging datasets' convention); "explicit" = only
    # the user's explicit "not this tag" entries are negatives; "mixed" = "labelled" for tracks
    # without any explicit "no", "explicit" for the others (teacher labels next to file genres).
    negatives: str = "labelled"
    label_fraction: float = 1.0  # keep this share of the training labels (limited-label runs)
    decode_workers: int = 1
    loader_workers: int = 0  # DataLoader processes; 0 keeps runs bit-reproducible
    seed: int = 0


@dataclass
class OptimConfig:
    optimizer: str = "adamw"  # "adam" (CLMR) or "adamw"
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    schedule: str = "cosine"  # "cosine" (to min_lr_ratio * lr) or "constant", after warm-up
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 = off


@dataclass
class AugmentSection:
    """The waveform augmentation chain; `params` are `AugmentConfig` fields (CLMR defaults)."""

    enabled: bool = True
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """What every training command shares: output, device, seed and bookkeeping."""

    out: str = "runs/run"
    device: str = "auto"  # auto | cpu | cuda | mps
    threads: int | None = None  # torch intra-op threads on CPU; None = torch's default
    seed: int = 0
    batch_size: int = 48
    steps: int = 10000
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    resume: str | None = None  # "latest" or a checkpoint path
    stop_after: int | None = None  # end this session after N more steps (resume later)
    max_minutes: float | None = None  # end this session after this long (resume later)
    progress: bool = True


@dataclass
class PretrainConfig(RunConfig):
    out: str = "runs/pretrain"
    objective: str = "contrastive"
    objective_params: dict[str, Any] = field(default_factory=dict)
    pair_mode: str = "random"  # playlist objective: "random" or "top" co-occurring partner
    collapse_every: int = 100
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(optimizer="adam"))
    augment: AugmentSection = field(default_factory=AugmentSection)


@dataclass
class FinetuneConfig(RunConfig):
    """Metric learning + SSL auxiliary (PLOS ONE 2023): L = L_ML + (alpha / ratio) * L_SSL.

    The learning rate follows ReduceLROnPlateau on validation ROC-AUC, as in the paper, so
    `optim.schedule` and `optim.warmup_steps` do not apply here.
    """

    out: str = "runs/finetune"
    batch_size: int = 32
    steps: int = 5000
    init: str | None = None  # a pretrain run/checkpoint or a model bundle
    ssl_objective: str = "contrastive"
    ssl_params: dict[str, Any] = field(default_factory=dict)
    # SSL batches made of runs of this many tracks of one album (hard negatives that teach track
    # identity, see pretrain.grouped_order); 0 = random batches.
    ssl_album_run: int = 0
    alpha: float = 1.0
    ratio: float | None = None  # r = converged L_ML / L_SSL; None = read ratio_file
    ratio_file: str | None = None  # default: <out>/ratio.json, written by measure-ratio
    ratio_steps: int = 200  # measure-ratio: steps of each loss alone
    eval_every: int = 100
    val_excerpts: int = 4
    patience: int = 10  # evaluations without a better validation ROC-AUC before stopping
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    min_lr: float = 1e-6
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=1e-4, schedule="constant", weight_decay=1e-4)
    )
    augment: AugmentSection = field(default_factory=lambda: AugmentSection(enabled=False))


@dataclass
class EvaluateConfig:
    out: str = "runs/evaluate"
    checkpoint: str | None = None  # a run, checkpoint or bundle; None = baselines only
    baselines: list[str] = field(default_factory=lambda: ["mfcc", "random-init"])
    probes: list[str] = field(default_factory=lambda: ["linear", "mlp"])
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    retrieval_label: str = "album"  # album | artist: the class R@K / M@K count as relevant
    excerpts: int = DEFAULT_COUNT  # excerpts per track (evenly spread), as analysis takes them
    batch_size: int = 32
    probe_hidden: int = 256
    probe_epochs: int = 500
    probe_patience: int = 30
    probe_lr: float = 1e-3
    probe_weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)  # for the random-init baseline
    data: DataConfig = field(default_factory=DataConfig)


@dataclass
class RefitConfig:
    """Settings of `refit-head` (training/head_refit.py)."""

    checkpoint: str = ""  # the fine-tuning run (its best weights) or a checkpoint file
    out: str = ""  # run folder for the refitted weights; default: <run>/refit
    # L2 penalties tried; validation macro ROC-AUC picks one (or keeps the fine-tuned head)
    weight_decays: list[float] = field(default_factory=lambda: [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8])
    excerpts: int = DEFAULT_COUNT  # evenly spread excerpts per track, as analysis takes them
    max_iter: int = 300  # L-BFGS iterations per penalty
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    data: DataConfig | None = None  # default: the data the checkpoint was trained on


@dataclass
class WhitenConfig:
    """Settings of `whiten` (training/whitening.py)."""

    checkpoint: str = ""  # the run (its best weights) or a checkpoint file
    out: str = ""  # run folder for the whitened weights; default: <run>/whiten
    # Chosen on the corpus's validation soundtracks (docs/MODEL_CARD.md): identification and
    # soundtrack retrieval both rose there, synthetic-genre retrieval held.
    alpha: float = 0.75  # 1: full whitening; 0.5: square-root scaling
    eps: float = 0.003  # added to each variance, as a share of the largest
    # Then the within-track spread, in the PCA-whitened space (WCCN); within_alpha 0: skip it.
    within_alpha: float = 1.0
    within_eps: float = 0.001
    # How much the excerpts' pitch-class profile counts against h in the track vector (engine/
    # harmony.py); 0: not at all. Chosen on the validation soundtracks like the rest.
    harmony_weight: float = 0.2
    # The same for the excerpts' onset autocorrelation (engine/rhythm.py).
    rhythm_weight: float = 0.1
    excerpts: int = 0  # evenly spread excerpts per track; 0: every excerpt
    batch_size: int = 64
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    data: DataConfig | None = None  # default: the data the checkpoint was trained on


@dataclass
class ExportConfig:
    checkpoint: str = ""
    out: str = ""  # bundle folder, or a .zip; default: <run>/bundle
    name: str | None = None
    install: bool = False
    thresholds: bool = True  # tune per-tag thresholds on validation data (else 0.5)
    val_excerpts: int = DEFAULT_COUNT  # as analysis takes them
    # A labelled library of held-out tracks of the music the model is for (the corpus's
    # val.db, once `corpus teacher` labelled it): where its labels hold enough yes and a no, they
    # set the tag's threshold.
    threshold_library: str = ""
    device: str = "auto"
    data: DataConfig | None = None  # default: the data the checkpoint was trained on


C = TypeVar("C")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-able dict (what checkpoints and run folders record)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type[C], data: Mapping[str, Any], where: str = "") -> C:
    """Build `cls` from a (possibly partial) dict; unknown keys and wrong types raise."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _convert(value, hints[key], f"{where}.{key}" if where else key)
    return cls(**kwargs)


def _dataclass_in(hint: Any) -> type | None:
    for option in _options(hint):
        if dataclasses.is_dataclass(option):
            return option
    return None


def _options(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check (and gently coerce) one value against its annotation."""
    options = _options(hint)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{where}: may not be empty")
    nested = _dataclass_in(hint)
    if nested is not None and isinstance(value, Mapping):
        return from_dict(nested, value, where)
    if (
        isinstance(value, str)
        and str not in options
        and not any(typing.get_origin(o) in (list, dict) for o in options)
    ):
        value = parse_value(value)
    for option in options:
        if option is type(None):
            continue
        origin = typing.get_origin(option) or option
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is str and isinstance(value, str):
            return value
        if origin is list:
            if isinstance(value, str):
                value = _parse_list(value)
            if isinstance(value, (list, tuple)):
                (item_hint,) = typing.get_args(option) or (Any,)
                if item_hint is Any:
                    return list(value)
                return [_convert(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value)]
        if origin is dict:
            if isinstance(value, str):
                value = parse_value(value)
            if isinstance(value, Mapping):
                return dict(value)
        if option is Any:
            return value
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{where}: expected {names}, got {value!r}")


def parse_value(text: str) -> Any:
    """A command-line value as TOML would read it (`3e-4`, `true`, `[1, 2]`, `{a = 1}`), else
    the plain string, so `--set data.folder=~/Music` needs no quoting."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _parse_list(text: str) -> list[Any]:
    parsed = parse_value(text)
    if isinstance(parsed, list):
        return parsed
    return [parse_value(part.strip()) for part in text.split(",") if part.strip()]


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: tables merge key by key, anything else in `update` replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def read_toml(path: str | Path, command: str | None = None) -> dict[str, Any]:
    """The settings a TOML file gives `command` (shared keys merged with its own table)."""
    data = _parse(Path(path).expanduser())
    shared = {k: v for k, v in data.items() if k not in COMMANDS}
    own = data.get(command, {}) if command else {}
    if not isinstance(own, Mapping):
        raise ConfigError(f"{path}: [{command}] must be a table")
    return merge(shared, own)


def _command_fields() -> dict[str, set[str]]:
    classes = {
        "pretrain": PretrainConfig,
        "finetune": FinetuneConfig,
        "measure-ratio": FinetuneConfig,
        "refit-head": RefitConfig,
        "evaluate": EvaluateConfig,
        "export": ExportConfig,
    }
    return {name: {f.name for f in dataclasses.fields(cls)} for name, cls in classes.items()}


def _shared_for(cls: type, shared: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Shared top-level keys this command uses; a key no command knows is still an error.

    A file shared by all commands has, say, a [model] table that `export` has no use for; that
    must not stop `export --config`, but a misspelt key must still be reported.
    """
    mine = {f.name for f in dataclasses.fields(cls)}
    anyone = set().union(*_command_fields().values())
    unknown = sorted(set(shared) - anyone)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    return {k: v for k, v in shared.items() if k in mine}


def dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """{"optim.lr": 1e-3} -> {"optim": {"lr": 1e-3}} (how command-line overrides are given)."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with another override")
        node[parts[-1]] = value
    return out


def load_config(
    cls: type[C],
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    command: str | None = None,
) -> C:
    """Defaults, then the TOML file, then overrides (dotted keys; None values are skipped)."""
    data: dict[str, Any] = {}
    where = f"{path}" if path else cls.__name__
    if path:
        raw = _parse(Path(path).expanduser())
        own = raw.get(command, {}) if command else {}
        if not isinstance(own, Mapping):
            raise ConfigError(f"{path}: [{command}] must be a table")
        shared = {k: v for k, v in raw.items() if k not in COMMANDS}
        data = merge(_shared_for(cls, shared, where), own)
    if overrides:
        data = merge(data, dotted({k: v for k, v in overrides.items() if v is not None}))
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def dump_toml(config: Any) -> str:
    """A TOML rendering of a config (None values are omitted: TOML has no null)."""
    data = to_dict(config)
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []

    def emit(prefix: str, table: dict[str, Any], out: list[str]) -> None:
        for key, value in table.items():
            if value is None:
                continue
            if isinstance(value, dict) and _is_section(prefix, key, config):
                tables.append((f"{prefix}{key}", value))
            else:
                out.append(f"{key} = {_toml_value(value)}")

    emit("", data, lines)
    for name, table in tables:
        lines.append("")
        lines.append(f"[{name}]")
        for key, value in table.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _is_section(prefix: str, key: str, config: Any) -> bool:
    return not prefix and dataclasses.is_dataclass(getattr(config, key, None))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if value == value and abs(value) != float("inf") else "nan"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(
            f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None
        )
        return "{" + inner + "}"
    raise ConfigError(f"cannot write {value!r} as TOML")


__all__ = [
    "COMMANDS",
    "AugmentSection",
    "ConfigError",
    "DataConfig",
    "EvaluateConfig",
    "ExportConfig",
    "FinetuneConfig",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "RefitConfig",
    "RunConfig",
    "dump_toml",
    "from_dict",
    "load_config",
    "merge",
    "parse_value",
    "read_toml",
    "to_dict",
]
