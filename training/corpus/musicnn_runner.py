"""Run musicnn's MagnaTagATune model over audio files; a script for the teacher's own venv.

This file never runs inside MusicSSL: `training/corpus/teacher.py` starts it with the Python of
a separate environment holding tensorflow-cpu + tf-keras + musicnn (`make .venv-teacher`), so
neither the app nor the training module ever imports TensorFlow. It imports nothing from
musicssl for the same reason.

Why not musicnn's own `extractor`: its `batch_data` casts the mel spectrogram to float16 before
the log, which overflows to inf on loud audio (max float16 is 65504); it also tags every 3 s of
a file, where a fixed number of evenly spread patches gives the same track-level average at a
fraction of the cost. The graph, weights and front-end settings are musicnn's own.

Usage: python musicnn_runner.py OUT.json [--patches N] < paths.txt
Writes {"tags": [...50 MTT tags], "tracks": {path: {"probs": [...], "max_pool": [...]}},
"errors": {path: message}}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # musicnn builds tf.compat.v1 layers
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import librosa  # noqa: E402 - after the environment the imports read
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from musicnn import configuration, models  # noqa: E402

MODEL = "MTT_musicnn"


def log_mel_patches(path: str, patches: int, n_frames: int) -> np.ndarray:
    """(P, n_frames, 96) float32 patches of musicnn's log-mel, evenly spread over the file."""
    audio, sr = librosa.load(path, sr=configuration.SR, mono=True)
    mel = librosa.feature.melspectrogram(
        y=audio,
        sr=sr,
        hop_length=configuration.FFT_HOP,
        n_fft=configuration.FFT_SIZE,
        n_mels=configuration.N_MELS,
    ).T.astype(np.float32)
    rep = np.log10(10000.0 * mel + 1.0)  # musicnn's compression, kept in float32
    if rep.shape[0] < n_frames:
        rep = np.pad(rep, ((0, n_frames - rep.shape[0]), (0, 0)))
    starts = np.unique(np.linspace(0, rep.shape[0] - n_frames, patches).round().astype(int))
    return np.stack([rep[s : s + n_frames] for s in starts])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="JSON file to write")
    parser.add_argument("--patches", type=int, default=20, help="3 s patches per file")
    args = parser.parse_args(argv)
    paths = [line.rstrip("\n") for line in sys.stdin if line.strip()]

    tf.compat.v1.disable_eager_execution()
    n_frames = (
        librosa.time_to_frames(
            3, sr=configuration.SR, n_fft=configuration.FFT_SIZE, hop_length=configuration.FFT_HOP
        )
        + 1
    )
    labels = configuration.MTT_LABELS
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, configuration.N_MELS])
        training = tf.compat.v1.placeholder(tf.bool)
        outputs = models.define_model(x, training, MODEL, len(labels))
        logits, max_pool = outputs[0], outputs[7]
        probs = tf.nn.sigmoid(logits)
    session = tf.compat.v1.Session()
    session.run(tf.compat.v1.global_variables_initializer())
    weights = os.path.join(os.path.dirname(models.__file__), MODEL) + "/"
    tf.compat.v1.train.Saver().restore(session, weights)

    tracks: dict[str, dict[str, list[float]]] = {}
    errors: dict[str, str] = {}
    for i, path in enumerate(paths, 1):
        try:
            batch = log_mel_patches(path, args.patches, n_frames)
        except Exception as exc:  # noqa: BLE001 - a file the teacher cannot read is reported
            errors[path] = f"{type(exc).__name__}: {exc}"
            continue
        p, pooled = session.run([probs, max_pool], {x: batch, training: False})
        tracks[path] = {
            "probs": np.mean(p, axis=0).round(5).tolist(),
            "max_pool": np.mean(pooled, axis=0).round(5).tolist(),
        }
        print(f"{i}/{len(paths)} {os.path.basename(path)}", file=sys.stderr, flush=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"model": MODEL, "tags": labels, "tracks": tracks, "errors": errors}, f)
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
