"""Encoders and the embedding model: shapes, parameter plans, normalisation, tag probabilities."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from musicssl.engine.embedding_model import EmbeddingModel, normalize
from musicssl.engine.encoders import (
    ARCHITECTURES,
    MelCNN,
    SampleCNN,
    UnknownArchitectureError,
    build_encoder,
)
from musicssl.engine.encoders.samplecnn import CLMR_CHANNELS

TINY_SAMPLECNN = [4, 4, 4, 8, 8, 8, 8, 8, 8, 16]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registry_names_and_unknown_architecture():
    assert set(ARCHITECTURES) >= {"samplecnn", "melcnn"}
    assert isinstance(build_encoder("melcnn", channels=[4]), MelCNN)
    with pytest.raises(UnknownArchitectureError, match="'nope'.*melcnn.*samplecnn"):
        build_encoder("nope")
    with pytest.raises(TypeError):
        build_encoder("melcnn", not_a_param=3)


def test_samplecnn_clmr_plan_shape_and_parameter_count():
    enc = SampleCNN().eval()
    assert enc.channels == CLMR_CHANNELS
    assert enc.default_excerpt_samples == 59049 == 3**10
    # The parameter count follows from the paper's plan: strided conv3 front, nine
    # conv3 + BN blocks, a final kernel-1 conv + BN to D; convs carry no bias (BN follows).
    c = CLMR_CHANNELS
    expected = 3 * c[0] + 2 * c[0]
    expected += sum(3 * a * b + 2 * b for a, b in zip(c[:-1], c[1:], strict=True))
    expected += 1 * c[-1] * 512 + 2 * 512
    assert n_params(enc) == expected
    with torch.inference_mode():
        body_out = enc.body(enc.frontend(torch.randn(2, 59049)))
    # Nine maxpool3 after the stride-3 front leave exactly one time step, pooled into h.
    assert body_out.shape == (2, 512, 1)
    assert enc.forward_features(enc.frontend(torch.zeros(1, 59049))).shape == (1, 512)


def test_samplecnn_configurable_plan_and_longer_input():
    enc = SampleCNN(channels=[4, 8, 8, 16], embedding_dim=12, final_kernel=3).eval()
    assert enc.default_excerpt_samples == 3**4
    with torch.inference_mode():
        assert enc(torch.randn(3, 81)).shape == (3, 12)
        assert enc(torch.randn(3, 81 * 5)).shape == (3, 12)  # leftover steps are averaged
    with pytest.raises(ValueError):
        SampleCNN(channels=[4])
    with pytest.raises(ValueError):
        SampleCNN(final_kernel=2)


def test_melcnn_default_is_compact_and_outputs_d():
    enc = MelCNN().eval()
    assert 300_000 <= n_params(enc) <= 1_000_000
    assert enc.default_excerpt_samples == 66150
    x = torch.randn(4, 66150) * 0.1
    with torch.inference_mode():
        feats = enc.frontend(x)
        h = enc(x)
    assert feats.shape == (4, 1, 96, 66150 // 512 + 1)
    assert h.shape == (4, 256)
    assert torch.isfinite(h).all()


def test_melcnn_params_change_the_network():
    enc = MelCNN(channels=[8, 16, 32], n_mels=64, hop_length=256, embedding_dim=32).eval()
    with torch.inference_mode():
        feats = enc.frontend(torch.randn(2, 22050))
        assert feats.shape == (2, 1, 64, 22050 // 256 + 1)
        assert enc(torch.randn(2, 22050)).shape == (2, 32)
    assert enc.proj.in_features == 2 * 32
    assert n_params(MelCNN(channels=[8, 16, 32])) < n_params(MelCNN(channels=[16, 32, 64]))


def test_melcnn_time_pooling_keeps_the_bands_and_sees_register():
    """Time-only pooling: one mean/max pair per remaining band, so moving a pattern up the
    spectrum changes the features; global pooling cannot tell the two positions apart."""
    time_enc = MelCNN(channels=[4, 8], n_mels=24, embedding_dim=6, pooling="time").eval()
    assert time_enc.proj.in_features == 2 * 8 * 6  # 24 bands -> 12 -> 6
    assert time_enc.arch_params()["pooling"] == "time"
    assert "pooling" not in MelCNN(channels=[4]).arch_params()  # old bundles stay valid
    torch.manual_seed(0)
    glob_enc = MelCNN(channels=[4, 8], n_mels=24, embedding_dim=6).eval()
    # The same patch two pooling periods apart, clear of the borders (zero padding would
    # otherwise clip one of them).
    low = torch.zeros(1, 1, 24, 20)
    high = torch.zeros(1, 1, 24, 20)
    low[..., 4:6, 4:8] = 1.0
    high[..., 12:14, 4:8] = 1.0
    with torch.inference_mode():
        assert not torch.allclose(time_enc.forward_features(low), time_enc.forward_features(high))
        assert torch.allclose(glob_enc.forward_features(low), glob_enc.forward_features(high))
        assert time_enc(torch.randn(2, 8000) * 0.1).shape == (2, 6)
    with pytest.raises(ValueError, match="pooling"):
        MelCNN(pooling="freq")


@pytest.mark.parametrize(
    "name,params,n",
    [("melcnn", {"channels": [4, 8]}, 8000), ("samplecnn", {"channels": TINY_SAMPLECNN}, 59049)],
)
def test_excerpt_embedding_does_not_depend_on_its_batch(name, params, n):
    """Eval mode must treat excerpts independently (no batch statistics, no per-batch dB clamp)."""
    torch.manual_seed(0)
    enc = build_encoder(name, **params).eval()
    x = torch.randn(3, n) * 0.1
    x[1] *= 30  # a loud neighbour must not change the others
    with torch.inference_mode():
        together = enc(x)
        alone = torch.cat([enc(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_arch_params_rebuild_the_same_network(name):
    kwargs = {"channels": TINY_SAMPLECNN} if name == "samplecnn" else {"channels": [4, 8]}
    enc = build_encoder(name, **kwargs)
    again = build_encoder(
        name, sample_rate=enc.sample_rate, embedding_dim=enc.embedding_dim, **enc.arch_params()
    )
    shapes = {k: v.shape for k, v in enc.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}
    assert again.arch_params() == enc.arch_params()


def test_normalize_unit_norm_scale_and_shift_invariant():
    torch.manual_seed(0)
    h = torch.randn(6, 32) * 5 + 3
    z = normalize(h)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(6))
    torch.testing.assert_close(normalize(h * 7.5), z, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(normalize(h + 100.0), z, rtol=1e-4, atol=1e-5)
    # Same as the library LayerNorm (no affine) followed by L2.
    reference = F.normalize(F.layer_norm(h, (32,)), dim=-1)
    torch.testing.assert_close(z, reference, rtol=1e-5, atol=1e-6)
    # Mean of centred vectors is ~0 per row: LayerNorm, not just L2.
    assert z.mean(dim=-1).abs().max() < 1e-6


def test_embedding_model_forward_probs_and_head():
    torch.manual_seed(0)
    enc = MelCNN(channels=[4, 8], embedding_dim=16)
    model = EmbeddingModel(enc, 16, ["rock", "jazz", "ambient"]).eval()
    assert model.tag_head.bias is None
    assert model.tag_head.weight.shape == (3, 16)
    x = torch.randn(4, 8000) * 0.1
    with torch.inference_mode():
        h, probs = model(x)
        assert h.shape == (4, 16) and probs.shape == (4, 3)
        assert ((probs >= 0) & (probs <= 1)).all()
        torch.testing.assert_close(h, model.encode(x))
        torch.testing.assert_close(model.normalize(h), normalize(h))
        expected = torch.sigmoid(normalize(h) @ model.tag_head.weight.T)
        torch.testing.assert_close(probs, expected)
        feats = enc.frontend(x)
        h2, p2 = model.forward_features(feats)
        torch.testing.assert_close(h2, h)
        torch.testing.assert_close(p2, probs)


def test_embedding_model_without_tags_and_bad_dims():
    model = EmbeddingModel(MelCNN(channels=[4], embedding_dim=8), 8, []).eval()
    with torch.inference_mode():
        h, probs = model(torch.randn(3, 4000))
    assert h.shape == (3, 8) and probs.shape == (3, 0)
    with pytest.raises(ValueError, match="embedding_dim"):
        EmbeddingModel(MelCNN(channels=[4], embedding_dim=8), 16, [])
    with pytest.raises(ValueError, match="duplicates"):
        EmbeddingModel(MelCNN(channels=[4], embedding_dim=8), 8, ["a", "a"])
