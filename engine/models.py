"""Which model bundles are installed, and which one a library analyses with.

Two places hold bundles: the ones shipped inside the package (`musicssl/resources/models/`) and
the user's own (`data_dir()/models/`: installed or trained here). Each is a folder or a zip in
the bundle format. The library DB remembers the active model by model_id in `settings` and keeps
a `models` row per model it has used, so stored embeddings can always be traced to their weights.

The random-initialised mel-CNN (seed 0) is shipped beside the trained default, so listing and
choosing it never imports torch (3.6 s on the GUI's start); where the package data is not a plain
folder, `ensure_baseline` creates the same bundle once in the user folder. Random conv features
on log-mel are a strong similarity baseline, but the bundle says `trained=False`, so callers
present it as "similarity only, untrained" and never show tags from it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import sqlite_utils

from . import paths
from .bundle import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    Bundle,
    BundleConfig,
    BundleError,
    build_model,
    bundle_files,
    default_config,
    inspect_bundle,
    load_bundle,
    save_bundle,
)
from .db import now, transaction
from .errors import MusicSSLError

log = logging.getLogger(__name__)

SHIPPED = "shipped"
USER = "user"
ACTIVE_MODEL_KEY = "active_model"
BASELINE_NAME = "baseline-random-init"
BASELINE_SEED = 0
BASELINE_ARCHITECTURE = "melcnn"


class ModelNotFoundError(MusicSSLError, LookupError):
    """No installed bundle has the requested model_id or name."""


@dataclass(frozen=True)
class BundleInfo:
    """What listing needs to know about an installed bundle, read without building the network."""

    name: str
    path: Path
    model_id: str
    trained: bool
    architecture: str
    n_tags: int
    source: str  # SHIPPED or USER
    embedding_dim: int
    config: BundleConfig = field(repr=False, compare=False)

    def load(self) -> Bundle:
        return load_bundle(self.path)


def shipped_models_dir() -> Path | None:
    """The package's bundled models, or None when the package data is not a plain folder."""
    root = resources.files("musicssl.resources") / "models"
    if isinstance(root, Path):
        return root
    try:
        return Path(str(root)) if Path(str(root)).is_dir() else None
    except (TypeError, ValueError):
        return None


def user_models_dir() -> Path:
    return paths.data_dir() / "models"


def _info(path: Path, source: str) -> BundleInfo:
    config, model_id = inspect_bundle(path)
    return BundleInfo(
        name=config.name,
        path=path,
        model_id=model_id,
        trained=config.trained,
        architecture=config.architecture,
        n_tags=len(config.tags),
        source=source,
        embedding_dim=config.embedding_dim,
        config=config,
    )


def _scan(root: Path | None, source: str) -> list[BundleInfo]:
    if root is None or not root.is_dir():
        return []
    found = []
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):  # in-progress installs and editor droppings
            continue
        is_bundle_dir = child.is_dir() and (child / CONFIG_NAME).exists()
        if not (is_bundle_dir or (child.is_file() and child.suffix.lower() == ".zip")):
            continue
        try:
            found.append(_info(child, source))
        except BundleError as exc:
            # One broken bundle must not hide the others; it is reported, not fatal.
            log.warning("skipping unusable model bundle: %s", exc)
    return found


def list_bundles() -> list[BundleInfo]:
    """Shipped bundles first, then the user's, each sorted by file name."""
    return _scan(shipped_models_dir(), SHIPPED) + _scan(user_models_dir(), USER)


def find_bundle(key: str, bundles: list[BundleInfo] | None = None) -> BundleInfo:
    """Look up by model_id (exact) first, then by name; raises `ModelNotFoundError`."""
    bundles = list_bundles() if bundles is None else bundles
    for info in bundles:
        if info.model_id == key:
            return info
    for info in bundles:
        if info.name == key:
            return info
    names = ", ".join(f"{b.name} ({b.model_id})" for b in bundles) or "none"
    raise ModelNotFoundError(f"no installed model {key!r}; installed: {names}")


def _folder_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    return cleaned[:80] or "model"


def install_bundle(src: str | os.PathLike[str]) -> BundleInfo:
    """Validate a bundle (folder or zip) and copy it, byte for byte, into the user model folder.

    The bytes are copied rather than re-saved so the model_id, and with it any embeddings already
    computed with these weights, stays valid. Installing the same weights twice is a no-op.
    """
    bundle = load_bundle(src)  # full validation: a bundle that is installed is one that loads
    config_bytes, weights = bundle_files(src)
    target_root = user_models_dir()
    target_root.mkdir(parents=True, exist_ok=True)
    for info in _scan(target_root, USER):
        if info.model_id == bundle.model_id:
            return info
    base = _folder_name(bundle.config.name)
    target = target_root / base
    if target.exists():
        target = target_root / f"{base}-{bundle.model_id[:8]}"
    _write_bundle_dir(target, {CONFIG_NAME: config_bytes, WEIGHTS_NAME: weights})
    return _info(target, USER)


def _write_bundle_dir(target: Path, files: dict[str, bytes]) -> None:
    """Fill a hidden temp folder, then rename it into place, so a listing never sees half of it."""
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ensure_baseline() -> BundleInfo:
    """The shipped random-init mel-CNN bundle, else one in the user folder, created on first use.

    Seeded and built on CPU, so its weights and therefore its model_id are the same on every
    machine with the same torch; concurrent creators race on a rename and the loser reuses it.
    """
    for info in _scan(shipped_models_dir(), SHIPPED):
        if info.name == BASELINE_NAME:
            return info
    root = user_models_dir()
    target = root / BASELINE_NAME
    if target.exists():
        try:
            info = _info(target, USER)
        except BundleError as exc:
            log.warning("recreating broken baseline bundle: %s", exc)
            shutil.rmtree(target, ignore_errors=True)
        else:
            if info.name != BASELINE_NAME:  # never overwrite someone else's bundle
                raise BundleError(
                    f"{target}: expected the {BASELINE_NAME} bundle, found {info.name!r}"
                )
            return info
    import torch  # only to create the baseline (once per data folder): listing needs none

    root.mkdir(parents=True, exist_ok=True)
    config = default_config(
        BASELINE_NAME,
        BASELINE_ARCHITECTURE,
        trained=False,
        provenance={
            "objective": "none: random initialisation",
            "seed": BASELINE_SEED,
            "torch": torch.__version__,
            "note": "random-init conv features on log-mel: a similarity baseline; no tags",
        },
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BASELINE_SEED)
        model = build_model(config)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{BASELINE_NAME}."))
    try:
        save_bundle(model, config, tmp)
        os.rename(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / CONFIG_NAME).exists():
            raise
    return _info(target, USER)


def _rank(info: BundleInfo) -> tuple[bool, bool, str]:
    # Trained before untrained, shipped before user; name only to make the choice deterministic.
    return (not info.trained, info.source != SHIPPED, info.name)


def best_bundle(bundles: list[BundleInfo] | None = None) -> BundleInfo | None:
    bundles = list_bundles() if bundles is None else bundles
    return min(bundles, key=_rank) if bundles else None


# ---------------------------------------------------------------------------------------------
# the library DB side


def register(db: sqlite_utils.Database, bundle: Bundle | BundleInfo) -> None:
    """Record (or refresh) the models row for a bundle; `added_at` keeps its first value."""
    with transaction(db) as conn:
        conn.execute(
            "INSERT INTO models (id, name, path, config, added_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET name = excluded.name, path = excluded.path, "
            "config = excluded.config",
            (
                bundle.model_id,
                bundle.config.name,
                str(Path(bundle.path).resolve()),
                json.dumps(bundle.config.to_dict(), sort_keys=True),
                now(),
            ),
        )


def _setting(db: sqlite_utils.Database, key: str) -> str | None:
    row = db.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def _ensure_registered(db: sqlite_utils.Database, info: BundleInfo) -> None:
    row = db.conn.execute("SELECT path FROM models WHERE id = ?", (info.model_id,)).fetchone()
    if row is None or row[0] != str(info.path.resolve()):
        register(db, info)


def active_model(db: sqlite_utils.Database) -> BundleInfo:
    """The model this library analyses with: the stored choice if still installed, else the best.

    The returned bundle is registered in `models` (analysis writes embeddings under its id and a
    later reader must be able to find the weights), but the setting is left as the user chose:
    a temporarily missing bundle comes back when reinstalled.
    """
    bundles = list_bundles()
    chosen: BundleInfo | None = None
    wanted = _setting(db, ACTIVE_MODEL_KEY)
    if wanted:
        try:
            chosen = find_bundle(wanted, bundles)
        except ModelNotFoundError:
            log.warning(
                "active model %s is not installed; falling back to the best installed", wanted
            )
    if chosen is None:
        chosen = best_bundle(bundles) or ensure_baseline()
    _ensure_registered(db, chosen)
    return chosen


def selectable_bundles() -> list[BundleInfo]:
    """What a user may pick from: the installed bundles and always the random-init baseline.

    It is shipped; only where the package data is not a plain folder is it made here, once.
    """
    bundles = list_bundles()
    if any(b.name == BASELINE_NAME for b in bundles):
        return bundles
    ensure_baseline()
    return list_bundles()  # listed in its usual place (sorted with the user's bundles)


def set_active(db: sqlite_utils.Database, model_id_or_name: str) -> BundleInfo:
    """Make an installed bundle (or the baseline, by name) the library's model.

    Raises `ModelNotFoundError` for anything else that is not installed.
    """
    try:
        info = find_bundle(model_id_or_name)
    except ModelNotFoundError:
        if model_id_or_name != BASELINE_NAME:
            raise
        info = ensure_baseline()  # not created yet (or broken): selecting it must still work
    with transaction(db) as conn:
        register(db, info)  # joins this transaction
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (ACTIVE_MODEL_KEY, info.model_id),
        )
    return info


__all__ = [
    "ACTIVE_MODEL_KEY",
    "BASELINE_NAME",
    "SHIPPED",
    "USER",
    "BundleInfo",
    "ModelNotFoundError",
    "active_model",
    "best_bundle",
    "ensure_baseline",
    "find_bundle",
    "install_bundle",
    "list_bundles",
    "register",
    "selectable_bundles",
    "set_active",
    "shipped_models_dir",
    "user_models_dir",
]
