"""Losses on hand-made inputs whose values are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from musicssl.training.losses import (
    barlow_twins,
    byol_loss,
    nt_xent,
    positive_mask,
    sinkhorn,
    supcon,
    swav,
    vicreg,
    vicreg_terms,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_nt_xent_matches_its_formula_and_prefers_aligned_pairs():
    # Orthogonal unit vectors: every negative has cosine 0, each positive cosine 1.
    n, t = 4, 0.5
    z = torch.eye(n)
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + (2 * n - 2) * math.exp(0.0)))
    assert nt_xent(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-5)
    # Scale does not matter (views are normalised inside).
    assert nt_xent(3 * z, 0.5 * z, t).item() == pytest.approx(expected, rel=1e-5)
    a = torch.randn(32, 16, generator=gen(1))
    b = torch.randn(32, 16, generator=gen(2))
    assert nt_xent(a, a + 0.01 * b).item() < nt_xent(a, b).item()
    assert nt_xent(a, b).item() == pytest.approx(math.log(63), rel=0.1)  # chance level


def test_byol_loss_is_two_minus_two_cos_averaged_not_summed_over_the_batch():
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[1.0, 0.0], [0.0, 5.0], [0.0, -1.0]])
    per_sample = 2 - 2 * F.cosine_similarity(p, z)  # 0, 2, 4
    assert byol_loss(p, z).item() == pytest.approx(per_sample.mean().item())
    assert byol_loss(p, z).item() == pytest.approx(2.0)
    # Doubling the batch (same samples twice) leaves a mean unchanged; a batch sum would double.
    assert byol_loss(p.repeat(2, 1), z.repeat(2, 1)).item() == pytest.approx(2.0)


def _decorrelated(n: int = 64, d: int = 8) -> torch.Tensor:
    """Columns of a Hadamard-like +-1 matrix: zero mean, unit variance, mutually uncorrelated."""
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h[:, 1 : d + 1]


def test_barlow_twins_is_zero_for_identical_decorrelated_features():
    z = _decorrelated()
    assert barlow_twins(z, z).item() == pytest.approx(0.0, abs=1e-4)
    assert barlow_twins(2 * z + 1, z).item() == pytest.approx(0.0, abs=1e-4)  # standardised
    # Anti-correlated views: every diagonal entry is -1, so the loss is D * (1 - (-1))^2.
    assert barlow_twins(z, -z).item() == pytest.approx(4.0 * z.shape[1], rel=1e-3)
    # Two identical features: one off-diagonal pair correlates fully, weighted by lambda.
    dup = torch.cat([z[:, :1], z[:, :1]], dim=1)
    assert barlow_twins(dup, dup, off_diagonal_weight=0.1).item() == pytest.approx(0.2, rel=1e-3)


def test_vicreg_terms_on_known_inputs():
    z = _decorrelated(64, 8) * 2.0  # std 2 > gamma: no variance penalty, no covariance
    terms = vicreg_terms(z, z)
    assert terms["invariance"].item() == pytest.approx(0.0)
    assert terms["variance"].item() == pytest.approx(0.0)
    assert terms["covariance"].item() == pytest.approx(0.0, abs=1e-6)
    constant = torch.zeros(16, 4)
    collapsed = vicreg_terms(constant, constant + 1.0)
    assert collapsed["invariance"].item() == pytest.approx(1.0)
    # std = sqrt(1e-4) = 0.01 per feature in each view: hinge 0.99, summed over the two views.
    assert collapsed["variance"].item() == pytest.approx(2 * 0.99, rel=1e-4)
    total = vicreg(constant, constant + 1.0)
    assert total.item() == pytest.approx(25 * 1.0 + 25 * 1.98, rel=1e-4)
    assert vicreg(constant, constant + 1.0, inv=0.0, var=1.0, cov=0.0).item() == pytest.approx(
        1.98, rel=1e-4
    )


def test_sinkhorn_rows_and_columns_sum_correctly():
    scores = F.normalize(torch.randn(48, 12, generator=gen(3)), dim=1)
    q = sinkhorn(scores, epsilon=0.05, iters=3)
    assert q.shape == (48, 12) and torch.all(q >= 0)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(48))
    # Three iterations balance the prototypes only roughly, but far better than a softmax does
    # when the scores favour some prototypes.
    skewed = scores + torch.linspace(0, 0.3, 12)
    softmax = F.softmax(skewed / 0.05, dim=1).sum(dim=0)
    codes = sinkhorn(skewed, 0.05, 3).sum(dim=0)
    assert (codes - 4).abs().max() < 0.5 * (softmax - 4).abs().max()
    converged = sinkhorn(scores, epsilon=0.05, iters=200)
    torch.testing.assert_close(converged.sum(dim=0), torch.full((12,), 4.0), rtol=1e-3, atol=1e-3)
    # Even when every sample prefers one prototype, the codes spread over all of them.
    biased = torch.zeros(48, 12)
    biased[:, 0] = 1.0
    spread = sinkhorn(biased + 0.01 * scores, 0.05, 50)
    assert spread.argmax(dim=1).unique().numel() > 6


def test_swav_rewards_consistent_assignments():
    g = gen(4)
    scores = F.normalize(torch.randn(32, 8, generator=g), dim=1)
    same = swav(scores, scores)
    other = swav(scores, F.normalize(torch.randn(32, 8, generator=g), dim=1))
    assert same.item() < other.item()
    s = scores.clone().requires_grad_(True)
    swav(s, s.roll(1, 0)).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_supcon_positives_from_labels_groups_and_masks():
    labels = torch.tensor([0, 0, 1, 1])
    groups = torch.tensor([[0, -1], [5, 0], [1, -1], [7, 1]])
    mask = positive_mask(labels)
    assert mask.tolist() == [
        [False, True, False, False],
        [True, False, False, False],
        [False, False, False, True],
        [False, False, True, False],
    ]
    assert torch.equal(positive_mask(groups), mask)
    assert torch.equal(positive_mask(mask.clone()), mask)
    # Two tight clusters matching the labels: low loss; labels crossing the clusters: high loss.
    z = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    assert supcon(z, labels).item() < 0.1
    assert supcon(z, torch.tensor([0, 1, 0, 1])).item() > 5
    # One positive per anchor reduces to the NT-Xent-style formula.
    n, t = 3, 0.1
    eye = torch.eye(n)
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + (2 * n - 2)))
    pairs = torch.arange(n).repeat(2)
    assert supcon(torch.cat([eye, eye]), pairs, t).item() == pytest.approx(expected, abs=1e-5)
    # Anchors with no positive are left out; none at all gives a zero that still backpropagates.
    lonely = torch.randn(3, 4, requires_grad=True)
    loss = supcon(lonely, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and lonely.grad is not None
