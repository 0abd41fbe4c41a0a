"""Training metrics against hand-computed values and scikit-learn; config and log plumbing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from musicssl.training import metrics
from musicssl.training.config import (
    ConfigError,
    FinetuneConfig,
    PretrainConfig,
    dump_toml,
    load_config,
)
from musicssl.training.logs import TrainingLog, read_csv
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

# -- tagging ------------------------------------------------------------------------------------


def test_macro_auc_matches_sklearn_and_skips_one_class_tags():
    rng = np.random.default_rng(0)
    targets = (rng.random((40, 4)) > 0.5).astype(np.float32)
    targets[:, 3] = 1.0  # no negative: not evaluable
    scores = targets * 0.3 + rng.random((40, 4))
    expected_roc = np.mean([roc_auc_score(targets[:, t], scores[:, t]) for t in range(3)])
    expected_pr = np.mean([average_precision_score(targets[:, t], scores[:, t]) for t in range(3)])
    assert metrics.macro_roc_auc(scores, targets) == pytest.approx(expected_roc)
    assert metrics.macro_pr_auc(scores, targets) == pytest.approx(expected_pr)
    assert metrics.tagging_metrics(scores, targets)["n_tags"] == 3


def test_fast_auc_and_ap_equal_sklearn_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.random(30) > 0.6
        y[:2] = [True, False]
        s = np.round(rng.random(30), 1)  # many ties
        assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
        assert metrics.average_precision(y, s) == pytest.approx(average_precision_score(y, s))


def test_mask_hides_unknown_labels():
    targets = np.array([[1], [0], [0], [1]], np.float32)
    scores = np.array([[0.9], [0.8], [0.1], [0.2]])
    # all known: pairs (pos, neg): (.9>.8), (.9>.1), (.2<.8), (.2>.1) -> 3/4
    assert metrics.macro_roc_auc(scores, targets) == pytest.approx(0.75)
    mask = np.array([[True], [False], [True], [True]])  # the 0.8 "negative" is unknown
    assert metrics.macro_roc_auc(scores, targets, mask) == pytest.approx(1.0)
    assert math.isnan(metrics.macro_roc_auc(scores, targets, np.zeros_like(mask)))


# -- retrieval ----------------------------------------------------------------------------------


def _toy():
    # Four items on a line of angles; groups a, a, b, b. Cosine order is fixed by angle.
    angles = np.array([0.0, 0.3, 0.2, 1.5])
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return emb, ["a", "a", "b", "b"]


def test_recall_at_k_hand_computed():
    emb, groups = _toy()
    # neighbours: 0 -> [2, 1, 3]; 1 -> [2, 0, 3]; 2 -> [1, 0, 3]; 3 -> [1, 2, 0]
    # relevant:   0: 1 (rank 2)     1: 0 (rank 2)    2: 3 (rank 3)    3: 2 (rank 2)
    r = metrics.recall_at_k(emb, groups, ks=(1, 2, 4))
    assert r == {1: 0.0, 2: 0.75, 4: 1.0}


def test_map_at_k_hand_computed():
    emb, groups = _toy()
    # R = 1 for every query, so AP@K = 1/rank of the single relevant item if rank <= K.
    m = metrics.map_at_k(emb, groups, ks=(1, 2, 3))
    assert m[1] == pytest.approx(0.0)
    assert m[2] == pytest.approx((0.5 + 0.5 + 0 + 0.5) / 4)
    assert m[3] == pytest.approx((0.5 + 0.5 + 1 / 3 + 0.5) / 4)


def test_map_at_k_divides_by_min_k_and_relevant_count():
    # Query 0 has two relevant items at ranks 1 and 3.
    emb = np.array([[1.0, 0.0], [0.99, 0.1], [0.9, 0.4], [0.5, 0.8]])
    groups = ["a", "a", "b", "a"]
    m = metrics.map_at_k(emb[[0, 1, 2, 3]], groups, ks=(4,))
    # query 0: ranking 1 (rel), 2 (not), 3 (rel) -> (1 + 2/3) / min(4, 2)
    q0 = (1 + 2 / 3) / 2
    # query 1: neighbours by cosine: 0 (rel), 2, 3 (rel) -> (1 + 2/3) / 2
    q1 = (1 + 2 / 3) / 2
    # query 3: neighbours 2, 1 (rel), 0 (rel) -> (1/2 + 2/3) / 2
    q3 = (1 / 2 + 2 / 3) / 2
    # query 2 (group b) has no relevant item: skipped
    assert m[4] == pytest.approx((q0 + q1 + q3) / 3)


def test_multilabel_relevance_and_missing_groups():
    tags = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    rel = metrics.relevance_matrix(tags)
    assert rel.tolist() == [
        [False, True, False, False],
        [True, False, True, False],
        [False, True, False, False],
        [False, False, False, False],
    ]
    rel = metrics.relevance_matrix(["x", None, "x", None])
    assert not rel[1, 3] and rel[0, 2]


def test_perfect_embedding_scores_one():
    groups = np.repeat(np.arange(5), 3)
    emb = np.eye(5)[groups] + 0.01 * np.random.default_rng(1).normal(size=(15, 5))
    out = metrics.retrieval_metrics(emb, groups)
    assert all(out[f"R@{k}"] == 1.0 for k in metrics.RECALL_KS)
    assert out["M@1"] == 1.0 and out["M@10"] == pytest.approx(1.0)
    assert out["queries"] == 15


def test_identification_accuracy():
    rng = np.random.default_rng(2)
    first = rng.normal(size=(6, 8))
    second = first + 0.05 * rng.normal(size=(6, 8))
    assert metrics.identification_accuracy(first, second) == 1.0
    shuffled = second[[1, 0, 2, 3, 4, 5]]
    assert metrics.identification_accuracy(first, shuffled) == pytest.approx(4 / 6)
    hits = metrics.identification_hits(first, shuffled)
    assert hits.tolist() == [False, False, True, True, True, True]
    assert metrics.identification_hits(first[:0], second[:0]).shape == (0,)
    assert np.isnan(metrics.identification_accuracy(first[:0], second[:0]))


def test_a_given_ranking_replaces_the_cosine():
    """The app may rank by another score than cosine (excerpt sets): the metrics rank by it."""
    rng = np.random.default_rng(4)
    first = rng.normal(size=(4, 8))
    second = first + 0.05 * rng.normal(size=(4, 8))
    swapped = np.eye(4)[[1, 0, 2, 3]]  # a score that sends tracks 0 and 1 to each other
    hits = metrics.identification_hits(first, second, swapped)
    assert hits.tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match="similarities"):
        metrics.identification_hits(first, second, np.eye(3))
    groups = [0, 0, 1, 1]
    emb = np.eye(2)[groups] + 0.01 * rng.normal(size=(4, 2))
    assert metrics.retrieval_metrics(emb, groups)["R@1"] == 1.0
    wrong = 1.0 - (np.asarray(groups)[:, None] == np.asarray(groups)[None, :])
    out = metrics.retrieval_metrics(emb, groups, similarities=wrong)
    assert out["R@1"] == 0.0 and out["M@1"] == 0.0


def test_macro_f1_matches_sklearn_on_known_labels_and_skips_one_class_tags():
    rng = np.random.default_rng(3)
    targets = (rng.random((40, 4)) < 0.4).astype(float)
    targets[:, 3] = 1.0  # no negative: skipped, as by the AUCs
    mask = rng.random((40, 4)) < 0.8
    decisions = rng.random((40, 4)) < 0.5
    expected = np.mean(
        [f1_score(targets[mask[:, t], t], decisions[mask[:, t], t]) for t in range(3)]
    )
    assert metrics.macro_f1(decisions, targets, mask) == pytest.approx(expected)
    assert math.isnan(metrics.macro_f1(decisions[:, 3:], targets[:, 3:]))


def test_best_f1_threshold():
    scores = np.array([0.1, 0.2, 0.35, 0.4, 0.8, 0.9])
    positives = np.array([0, 0, 1, 0, 1, 1], bool)
    t = metrics.best_f1_threshold(scores, positives)
    # best split: {0.35, 0.4, 0.8, 0.9} -> P=3/4, R=1, F1=6/7 vs {0.8,0.9}: F1=0.8
    assert 0.2 < t < 0.35
    assert metrics.best_f1_threshold(scores, np.zeros(6, bool)) == 0.5


# -- config and logs -----------------------------------------------------------------------------


def test_config_toml_sections_and_overrides(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text(
        'steps = 100\n[data]\nfolder = "/music"\n[optim]\nlr = 0.01\n'
        "[finetune]\nalpha = 0.5\n[finetune.optim]\nlr = 0.001\n",
        encoding="utf-8",
    )
    pre = load_config(PretrainConfig, path, {"batch_size": 8}, "pretrain")
    assert (pre.steps, pre.data.folder, pre.optim.lr, pre.batch_size) == (100, "/music", 0.01, 8)
    fine = load_config(
        FinetuneConfig, path, {"optim.lr": "3e-5", "data.split": "0.7,0.2,0.1"}, "finetune"
    )
    assert fine.alpha == 0.5 and fine.optim.lr == 3e-5 and fine.data.split == [0.7, 0.2, 0.1]
    # round trip through the TOML a run folder records
    again = tmp_path / "again.toml"
    again.write_text(dump_toml(fine), encoding="utf-8")
    assert load_config(FinetuneConfig, again) == fine
    with pytest.raises(ConfigError, match="stpes"):
        load_config(PretrainConfig, None, {"stpes": 3})
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config(PretrainConfig, None, {"optim.lr": "fast"})


def test_training_log_truncates_on_resume_and_plots(tmp_path):
    log = TrainingLog(tmp_path)
    for step in (10, 20, 30):
        log.log({"step": step, "loss": 1.0 / step, "lr": 0.1})
    log.log({"step": 30, "val_roc_auc": 0.7})
    log.flush(plot=True)
    assert (tmp_path / "curves.png").stat().st_size > 1000
    again = TrainingLog(tmp_path)
    again.truncate(20)
    again.flush()
    rows = read_csv(tmp_path / "log.csv")
    assert [r["step"] for r in rows] == [10, 20]
    assert rows[0]["loss"] == pytest.approx(0.1)
