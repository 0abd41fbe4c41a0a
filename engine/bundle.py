"""Model bundles: `model.safetensors` + `config.json` in a folder or a zip, never a pickle.

A bundle is how trained weights travel between training, the shipped resources and the engine:
the config names a registered architecture and its hyper-parameters, the signal contract (sample
rate, excerpt length, embedding size) and the tag vocabulary with per-tag thresholds. Loading
parses JSON and safetensors only, checks the JSON against an explicit schema and the tensors
against the network the config describes, and reports any mismatch as a `BundleError` that names
the file, so a bundle from another version fails loudly instead of producing wrong embeddings.

`model_id` is the first 16 hex digits of the SHA-256 of `model.safetensors`: embeddings are stored
per model_id, so vectors from different weights never share an index. `save_bundle` also records
the architecture and front-end parameters in the safetensors header, so those settings are part of
the hashed bytes too (editing `hop_length` in config.json would otherwise change the embeddings
without changing the id); `load_bundle` rejects a config.json that disagrees with that record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .architectures import ARCHITECTURE_NAMES
from .errors import MusicSSLError

if TYPE_CHECKING:
    import torch

    from .embedding_model import EmbeddingModel

# torch and the encoders are imported where a network is built or its tensors read: listing
# bundles and reading a config (the GUI's start) must not pay torch's import (3.6 s).

FORMAT = "musicssl-bundle"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_ID_HEX = 16
# The config keys weighing engine/statistics.py's STATISTICS ("<name>_weight"), spelled out here
# because that module imports torch (tests/test_rhythm.py keeps the two in step).
STATISTIC_WEIGHTS = ("harmony_weight", "rhythm_weight")

# Refuse absurd members before reading them into memory (a zip bomb, a wrong file).
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_WEIGHTS_BYTES = 4 * 1024**3
_SIGNAL_META_KEY = "musicssl.signal"


class BundleError(MusicSSLError, ValueError):
    """A bundle cannot be used; the message names the file and what is wrong with it."""


# ---------------------------------------------------------------------------------------------
# config.json


@dataclass
class BundleConfig:
    """The JSON half of a bundle. `trained=False` means the tags (if any) must not be shown."""

    name: str
    architecture: str
    arch_params: dict[str, Any]
    sample_rate: int
    excerpt_samples: int
    embedding_dim: int
    tags: list[str] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    trained: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)
    # The weights hold a whitening of the track vector (EmbeddingModel.similarity). Optional in
    # config.json, so bundles written before it existed still load.
    whitened: bool = False
    # > 0: the track vector also weighs each excerpt's pitch-class profile (harmony) or onset
    # autocorrelation (rhythm), by this much against h (engine/statistics.py,
    # EmbeddingModel.similarity). Optional in config.json, like `whitened`.
    harmony_weight: float = 0.0
    rhythm_weight: float = 0.0
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        # JSON round trip: tuples become lists, so the dict equals what a load gives back.
        return json.loads(json.dumps(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def encoder_params(self) -> dict[str, Any]:
        """Keyword arguments for `build_encoder`: the top-level signal fields plus arch_params."""
        return {
            "sample_rate": self.sample_rate,
            "embedding_dim": self.embedding_dim,
            **self.arch_params,
        }

    def signal_record(self) -> str:
        """Canonical JSON of everything that shapes the embedding besides the weights."""
        record = {
            "architecture": self.architecture,
            "arch_params": self.arch_params,
            "sample_rate": self.sample_rate,
            "excerpt_samples": self.excerpt_samples,
            "embedding_dim": self.embedding_dim,
        }
        if self.whitened:  # only then, so the records of older bundles stay what they were
            record["whitened"] = True
        for key in STATISTIC_WEIGHTS:
            if getattr(self, key):
                record[key] = getattr(self, key)
        return json.dumps(record, sort_keys=True, separators=(",", ":"))

    def threshold_for(self, tag: str) -> float:
        return self.thresholds[self.tags.index(tag)]

    @classmethod
    def from_dict(cls, data: Any, source: str = CONFIG_NAME) -> BundleConfig:
        """Build from parsed JSON, checking keys and types explicitly (no schema library)."""
        if not isinstance(data, dict):
            raise BundleError(f"{source}: expected a JSON object, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        required = fields - {"provenance", "whitened", *STATISTIC_WEIGHTS}
        missing = sorted(required - set(data))
        if missing:
            raise BundleError(f"{source}: missing required key(s): {', '.join(missing)}")
        unknown = sorted(set(data) - fields)
        if unknown:
            raise BundleError(f"{source}: unknown key(s): {', '.join(unknown)}")
        if data["format"] != FORMAT:
            raise BundleError(f"{source}: 'format' is {data['format']!r}, expected {FORMAT!r}")
        version = data["format_version"]
        if not _is_int(version):
            raise BundleError(f"{source}: 'format_version' must be an integer")
        if version > FORMAT_VERSION:
            raise BundleError(
                f"{source}: bundle format version {version} is newer than this MusicSSL "
                f"supports ({FORMAT_VERSION}); upgrade MusicSSL to use it"
            )
        if version < 1:
            raise BundleError(f"{source}: invalid format_version {version}")
        config = cls(**{k: data[k] for k in fields if k in data})
        config.validate(source)
        return config

    def validate(self, source: str = CONFIG_NAME) -> None:
        """Raise `BundleError` unless every field has the right type and the lists agree."""

        def fail(problem: str) -> BundleError:
            return BundleError(f"{source}: {problem}")

        if self.format != FORMAT or self.format_version != FORMAT_VERSION:
            raise fail(f"format must be {FORMAT!r} version {FORMAT_VERSION}")
        for key in ("name", "architecture"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value.strip():
                raise fail(f"'{key}' must be a non-empty string")
        for key, low, high in (
            ("sample_rate", 1000, 768_000),
            ("excerpt_samples", 1, 100_000_000),
            ("embedding_dim", 1, 1_000_000),
        ):
            value = getattr(self, key)
            if not _is_int(value) or not low <= value <= high:
                raise fail(f"'{key}' must be an integer in [{low}, {high}], got {value!r}")
        for key in ("trained", "whitened"):
            if not isinstance(getattr(self, key), bool):
                raise fail(f"'{key}' must be true or false, got {getattr(self, key)!r}")
        for key in STATISTIC_WEIGHTS:
            weight = getattr(self, key)
            if not (_is_number(weight) and weight >= 0):
                raise fail(f"'{key}' must be a finite number >= 0, got {weight!r}")
        for key in ("arch_params", "provenance"):
            value = getattr(self, key)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise fail(f"'{key}' must be a JSON object")
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise fail(f"'{key}' is not plain JSON: {exc}") from None
        clash = sorted({"sample_rate", "embedding_dim"} & set(self.arch_params))
        if clash:
            raise fail(f"'arch_params' must not repeat top-level key(s): {', '.join(clash)}")
        if not isinstance(self.tags, list) or not all(
            isinstance(t, str) and t.strip() for t in self.tags
        ):
            raise fail("'tags' must be a list of non-empty strings")
        if len(set(self.tags)) != len(self.tags):
            raise fail("'tags' has duplicates")
        if not isinstance(self.thresholds, list) or not all(
            _is_number(t) and 0.0 <= t <= 1.0 for t in self.thresholds
        ):
            raise fail("'thresholds' must be a list of numbers in [0, 1]")
        if len(self.thresholds) != len(self.tags):
            raise fail(
                f"'thresholds' has {len(self.thresholds)} entries but 'tags' has {len(self.tags)}"
                " (one threshold per tag)"
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def default_config(
    name: str,
    architecture: str,
    arch_params: dict[str, Any] | None = None,
    *,
    tags: list[str] | None = None,
    thresholds: list[float] | None = None,
    trained: bool = False,
    provenance: dict[str, Any] | None = None,
    sample_rate: int | None = None,
    embedding_dim: int | None = None,
    excerpt_samples: int | None = None,
) -> BundleConfig:
    """A config whose unspecified fields take the architecture's own defaults.

    The resolved hyper-parameters are all written out, so a bundle keeps describing the same
    network if the code's defaults change later.
    """
    arch_params = dict(arch_params or {})
    probe_params = dict(arch_params)
    if sample_rate is not None:
        probe_params["sample_rate"] = sample_rate
    if embedding_dim is not None:
        probe_params["embedding_dim"] = embedding_dim
    from .encoders import build_encoder

    encoder = build_encoder(architecture, **probe_params)
    tags = list(tags or [])
    config = BundleConfig(
        name=name,
        architecture=architecture,
        arch_params=json.loads(json.dumps(encoder.arch_params())),
        sample_rate=int(encoder.sample_rate),
        excerpt_samples=int(excerpt_samples or encoder.default_excerpt_samples),
        embedding_dim=int(encoder.embedding_dim),
        tags=tags,
        thresholds=list(thresholds) if thresholds is not None else [0.5] * len(tags),
        trained=trained,
        provenance=dict(provenance or {}),
    )
    config.validate(f"config for {name!r}")
    return config


def build_model(config: BundleConfig, source: str = CONFIG_NAME) -> EmbeddingModel:
    """The (randomly initialised) network a config describes; bad configs raise `BundleError`.

    A config can describe a network far larger than its weights (channels of 100,000 is 360 GB):
    the allocation then fails at once, and that is reported as a bad bundle, not a crash.
    """
    from .embedding_model import EmbeddingModel
    from .encoders import UnknownArchitectureError, build_encoder

    try:
        encoder = build_encoder(config.architecture, **config.encoder_params())
    except UnknownArchitectureError as exc:
        raise BundleError(f"{source}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise BundleError(
            f"{source}: arch_params do not fit architecture {config.architecture!r}: {exc}"
        ) from None
    except (RuntimeError, MemoryError) as exc:
        raise BundleError(
            f"{source}: describes a network too large to build here: {str(exc)[:200]}"
        ) from None
    min_samples = getattr(encoder, "min_samples", 1)
    if config.excerpt_samples < min_samples:
        raise BundleError(
            f"{source}: excerpt_samples={config.excerpt_samples} is shorter than "
            f"{config.architecture!r} accepts ({min_samples})"
        )
    return EmbeddingModel(
        encoder,
        config.embedding_dim,
        config.tags,
        config.whitened,
        harmony_weight=config.harmony_weight,
        rhythm_weight=config.rhythm_weight,
        sample_rate=config.sample_rate,
    )


# ---------------------------------------------------------------------------------------------
# reading


@dataclass
class Bundle:
    """A loaded bundle: validated config, the model in eval mode on CPU, and its weights' id."""

    config: BundleConfig
    model: EmbeddingModel
    model_id: str
    path: Path

    @property
    def name(self) -> str:
        return self.config.name


@dataclass
class _RawBundle:
    config_bytes: bytes
    weights_bytes: bytes
    config_label: str
    weights_label: str


def _read_folder(folder: Path) -> _RawBundle:
    parts = []
    for name, limit in ((CONFIG_NAME, MAX_CONFIG_BYTES), (WEIGHTS_NAME, MAX_WEIGHTS_BYTES)):
        path = folder / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise BundleError(
                f"{path}: missing (a bundle needs {CONFIG_NAME} and {WEIGHTS_NAME})"
            ) from None
        except OSError as exc:
            raise BundleError(f"{path}: cannot read: {exc}") from None
        if size > limit:
            raise BundleError(f"{path}: {size} bytes is larger than the {limit}-byte limit")
        try:
            parts.append(path.read_bytes())
        except OSError as exc:
            raise BundleError(f"{path}: cannot read: {exc}") from None
    return _RawBundle(parts[0], parts[1], str(folder / CONFIG_NAME), str(folder / WEIGHTS_NAME))


def _read_zip(path: Path) -> _RawBundle:
    """Members are read in memory; the pair may sit at the root or under one folder."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"{path}: not a readable zip bundle: {exc}") from None
    with archive:
        listed = archive.namelist()
        unsafe = [n for n in listed if not _safe_member_name(n)]
        if unsafe:
            raise BundleError(
                f"{path}: zip member name(s) {_some([repr(n) for n in unsafe])} point outside the "
                "bundle (absolute, '..', drive or backslash paths); refusing the whole zip"
            )
        names = set(listed)
        if len(names) != len(listed):
            raise BundleError(f"{path}: zip lists the same member name twice; refusing it")
        prefixes = sorted(
            n[: -len(CONFIG_NAME)]
            for n in names
            if n.rsplit("/", 1)[-1] == CONFIG_NAME
            and n[: -len(CONFIG_NAME)] + WEIGHTS_NAME in names
        )
        if not prefixes:
            raise BundleError(
                f"{path}: zip holds no folder with both {CONFIG_NAME} and {WEIGHTS_NAME}"
            )
        if len(prefixes) > 1 and "" not in prefixes:
            raise BundleError(f"{path}: zip holds several bundles ({', '.join(prefixes)})")
        prefix = "" if "" in prefixes else prefixes[0]
        parts = []
        for name, limit in ((CONFIG_NAME, MAX_CONFIG_BYTES), (WEIGHTS_NAME, MAX_WEIGHTS_BYTES)):
            member = prefix + name
            info = archive.getinfo(member)
            if info.file_size > limit:
                raise BundleError(f"{path}!{member}: {info.file_size} bytes is over the limit")
            try:
                parts.append(archive.read(member))
            except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
                raise BundleError(f"{path}!{member}: cannot read: {exc}") from None
    return _RawBundle(
        parts[0], parts[1], f"{path}!{prefix}{CONFIG_NAME}", f"{path}!{prefix}{WEIGHTS_NAME}"
    )


def _safe_member_name(name: str) -> bool:
    """A relative, forward-slash name with no '..' part: what a bundle zip may contain.

    Members are only ever read into memory, never extracted, so a hostile name cannot write
    anywhere here; it is refused anyway because no tool that makes bundles produces one, and a
    user who later unzips the file by hand would be exposed to it.
    """
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        return False
    parts = name.split("/")
    return ".." not in parts and not (len(parts[0]) >= 2 and parts[0][1] == ":")


def _read_raw(path: str | os.PathLike[str]) -> tuple[Path, _RawBundle]:
    path = Path(path)
    if path.is_dir():
        return path, _read_folder(path)
    if path.is_file():
        if zipfile.is_zipfile(path):
            return path, _read_zip(path)
        raise BundleError(f"{path}: not a bundle folder or zip")
    raise BundleError(f"{path}: no such bundle")


def _parse_config(raw: _RawBundle) -> BundleConfig:
    try:
        data = json.loads(raw.config_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{raw.config_label}: not valid JSON: {exc}") from None
    config = BundleConfig.from_dict(data, raw.config_label)
    if config.architecture not in ARCHITECTURE_NAMES:
        known = ", ".join(sorted(ARCHITECTURE_NAMES))
        raise BundleError(
            f"{raw.config_label}: unknown encoder architecture {config.architecture!r} "
            f"(this MusicSSL knows: {known})"
        )
    return config


def _safetensors_metadata(data: bytes, label: str) -> dict[str, str]:
    """The header's `__metadata__`, read by hand so a bad file is reported before any tensor."""
    if len(data) < 8:
        raise BundleError(f"{label}: not a safetensors file (too short)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8 or header_len > 100 * 1024 * 1024:
        raise BundleError(f"{label}: not a safetensors file (bad header length)")
    try:
        header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BundleError(f"{label}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise BundleError(f"{label}: not a safetensors file (header is not an object)")
    meta = header.get("__metadata__") or {}
    return meta if isinstance(meta, dict) else {}


def model_id_of(weights: bytes) -> str:
    """The id embeddings are stored under: a prefix of the weights file's SHA-256."""
    return hashlib.sha256(weights).hexdigest()[:MODEL_ID_HEX]


def _check_signal_record(config: BundleConfig, raw: _RawBundle) -> None:
    recorded = _safetensors_metadata(raw.weights_bytes, raw.weights_label).get(_SIGNAL_META_KEY)
    if recorded is not None and recorded != config.signal_record():
        raise BundleError(
            f"{raw.config_label}: architecture/front-end settings disagree with those recorded in "
            f"{WEIGHTS_NAME} when it was saved ({recorded}); the weights were trained for those"
        )


def bundle_files(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """Raw (config.json, model.safetensors) bytes: copying them keeps the model_id."""
    _, raw = _read_raw(path)
    return raw.config_bytes, raw.weights_bytes


def inspect_bundle(path: str | os.PathLike[str]) -> tuple[BundleConfig, str]:
    """Config and model_id without building the network: cheap enough for listing bundles."""
    _, raw = _read_raw(path)
    config = _parse_config(raw)
    _check_signal_record(config, raw)
    return config, model_id_of(raw.weights_bytes)


def _check_tensors(
    model: EmbeddingModel, tensors: dict[str, torch.Tensor], label: str
) -> dict[str, torch.Tensor]:
    expected = model.state_dict()
    problems = []
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing tensor(s) {_some(missing)}")
    if extra:
        problems.append(f"unexpected tensor(s) {_some(extra)}")
    shapes = [
        f"{k} {tuple(tensors[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in sorted(set(expected) & set(tensors))
        if tensors[k].shape != expected[k].shape
    ]
    if shapes:
        problems.append(f"wrong shape for {_some(shapes)}")
    kinds = [
        f"{k} is {tensors[k].dtype} (expected {expected[k].dtype})"
        for k in sorted(set(expected) & set(tensors))
        if tensors[k].dtype.is_floating_point != expected[k].dtype.is_floating_point
        or tensors[k].dtype.is_complex
    ]
    if kinds:
        problems.append(f"wrong dtype: {_some(kinds)}")
    import torch

    # NaN/inf weights would give NaN embeddings that poison the similarity index silently.
    broken = sorted(
        k
        for k in set(expected) & set(tensors)
        if tensors[k].dtype.is_floating_point and not bool(torch.isfinite(tensors[k]).all())
    )
    if broken:
        problems.append(f"non-finite values (NaN or infinity) in {_some(broken)}")
    if problems:
        raise BundleError(
            f"{label}: does not match the network config.json describes: " + "; ".join(problems)
        )
    # Half-precision bundles are allowed; the engine computes in the network's own dtype.
    return {k: tensors[k].to(expected[k].dtype) for k in expected}


def _some(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Load and fully validate a bundle folder or zip; the model comes back on CPU in eval mode."""
    root, raw = _read_raw(path)
    config = _parse_config(raw)
    model = build_model(config, raw.config_label)
    _check_signal_record(config, raw)
    import safetensors.torch

    try:
        tensors = safetensors.torch.load(raw.weights_bytes)
    except (safetensors.SafetensorError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{raw.weights_label}: not a valid safetensors file: {exc}") from None
    state = _check_tensors(model, tensors, raw.weights_label)
    model.load_state_dict(state, strict=True)
    model.eval()
    return Bundle(config=config, model=model, model_id=model_id_of(raw.weights_bytes), path=root)


# ---------------------------------------------------------------------------------------------
# writing


def weights_bytes(model: EmbeddingModel, config: BundleConfig) -> bytes:
    """The exact bytes `save_bundle` writes as model.safetensors (so callers can know the id)."""
    import safetensors.torch

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # One metadata key only: safetensors serialises metadata from a hash map in random order,
    # and the bytes must be reproducible (they define the model_id).
    metadata = {_SIGNAL_META_KEY: config.signal_record()}
    return safetensors.torch.save(tensors, metadata=metadata)


def save_bundle(model: EmbeddingModel, config: BundleConfig, dest: str | os.PathLike[str]) -> str:
    """Write a bundle folder (or a zip when `dest` ends in .zip); returns its model_id.

    The model is checked against a fresh network built from the config first, so whatever is
    saved is guaranteed to load with this code.
    """
    dest = Path(dest)
    config.validate(f"{dest / CONFIG_NAME}")
    if list(getattr(model, "tags", [])) != list(config.tags):
        raise BundleError(f"{dest}: config tags differ from the model's tag vocabulary")
    if getattr(model, "embedding_dim", config.embedding_dim) != config.embedding_dim:
        raise BundleError(f"{dest}: config embedding_dim differs from the model's")
    for key in STATISTIC_WEIGHTS:
        if getattr(model, key, 0.0) != getattr(config, key):
            raise BundleError(f"{dest}: config {key} differs from the model's")
    reference = build_model(config, str(dest / CONFIG_NAME))
    _check_tensors(reference, dict(model.state_dict()), str(dest / WEIGHTS_NAME))

    weights = weights_bytes(model, config)
    config_text = config.to_json().encode("utf-8")
    if dest.suffix.lower() == ".zip":
        dest.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(CONFIG_NAME, config_text)
            archive.writestr(WEIGHTS_NAME, weights)
        _atomic_write(dest, buffer.getvalue())
    else:
        dest.mkdir(parents=True, exist_ok=True)
        # Weights first: a reader racing the write sees a signal-record mismatch, never a silent
        # old-config/new-weights pair.
        _atomic_write(dest / WEIGHTS_NAME, weights)
        _atomic_write(dest / CONFIG_NAME, config_text)
    return model_id_of(weights)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "Bundle",
    "BundleConfig",
    "BundleError",
    "build_model",
    "bundle_files",
    "default_config",
    "inspect_bundle",
    "load_bundle",
    "model_id_of",
    "save_bundle",
    "weights_bytes",
]
