"""CT denoisers (RED-CNN, DnCNN, CNCL with both fusions, the Restormer block) and the CT losses (Gram texture on
the DCT filter bank, CNCL's complementary branch terms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsr.losses.complementary import ComplementaryLoss
from medsr.losses.texture import TextureLoss, dct_filters
from medsr.models.base import ModelOutput, as_image
from medsr.models.restormer import TransformerBlock, channel_attention
from medsr.registry import MODELS

SPECS = [
    {"type": "redcnn", "width": 8},
    {"type": "dncnn", "depth": 4, "width": 8},
    {"type": "cncl", "width": 8, "n_blocks": 1},
    {"type": "cncl", "width": 8, "n_blocks": 1, "fusion": "cross_attention"},
    {"type": "cncl", "width": 8, "n_blocks": 1, "block": "restormer", "fusion": "cross_attention"},
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_denoisers_keep_the_shape_and_train(spec):
    torch.manual_seed(0)
    model = MODELS.build(spec)
    x = torch.rand(2, 1, 27, 30)
    out = as_image(model(x))
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_dncnn_returns_the_input_minus_its_noise_estimate():
    model = MODELS.build({"type": "dncnn", "depth": 3, "width": 4})
    torch.nn.init.zeros_(model.net[-1].weight)
    torch.nn.init.zeros_(model.net[-1].bias)
    x = torch.randn(1, 1, 9, 9)
    assert torch.equal(model(x), x)
    torch.nn.init.constant_(model.net[-1].bias, 0.25)
    assert torch.allclose(model(x), x - 0.25)


def test_redcnn_outer_shortcut_carries_the_input():
    model = MODELS.build({"type": "redcnn", "width": 4})
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    x = torch.randn(1, 1, 25, 23)
    assert torch.equal(model(x), x)  # every layer zero: only the input-to-output shortcut is left


def test_cncl_conv_fusion_starts_as_the_mean_of_its_two_content_estimates():
    torch.manual_seed(1)
    model = MODELS.build({"type": "cncl", "width": 8, "n_blocks": 1})
    x = torch.randn(2, 1, 12, 12)
    out = model(x)
    assert isinstance(out, ModelOutput) and set(out.aux) == {"content", "noise"}
    content2 = x - out.aux["noise"]
    assert torch.allclose(out.image, 0.5 * (out.aux["content"] + content2), atol=1e-6)


def test_cncl_cross_attention_adds_a_feature_level_term_that_starts_at_zero():
    torch.manual_seed(2)
    model = MODELS.build({"type": "cncl", "width": 8, "n_blocks": 1, "fusion": "cross_attention"})
    x = torch.randn(1, 1, 10, 10)
    out = model(x)
    mean = 0.5 * (out.aux["content"] + x - out.aux["noise"])
    assert torch.allclose(out.image, mean, atol=1e-6)
    torch.nn.init.normal_(model.refine.weight, std=0.1)
    assert not torch.allclose(model(x).image, mean, atol=1e-4)


def test_bad_cncl_options_are_value_errors():
    with pytest.raises(ValueError, match="fusion"):
        MODELS.build({"type": "cncl", "fusion": "sum"})
    with pytest.raises(ValueError, match="heads"):
        MODELS.build({"type": "cncl", "width": 9, "heads": 2})


def test_channel_attention_matches_the_explicit_formula():
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 4, 3, 5) for _ in range(3))
    temperature = torch.tensor([2.0, 0.5]).view(2, 1, 1)
    out = channel_attention(q, k, v, heads=2, temperature=temperature)
    for b in range(2):
        for h in range(2):
            rows = slice(2 * h, 2 * h + 2)
            qh, kh, vh = (t[b, rows].reshape(2, -1) for t in (q, k, v))
            qh, kh = qh / qh.norm(dim=1, keepdim=True), kh / kh.norm(dim=1, keepdim=True)
            attn = torch.softmax(temperature[h] * qh @ kh.T, dim=1)
            assert torch.allclose(out[b, rows].reshape(2, -1), attn @ vh, atol=1e-5)


def test_transformer_block_mixes_information_across_the_whole_image():
    torch.manual_seed(4)
    block = TransformerBlock(4, heads=2).eval()
    x = torch.randn(1, 4, 16, 16)
    y = x.clone()
    y[:, 0, 0, 0] += 5.0  # one channel (adding to all channels of a pixel is undone by the layer norm)
    change = (block(y) - block(x)).abs()
    assert change[..., 15, 15].max() > 1e-6  # far beyond the 3x3 depthwise convolutions' reach


def test_dct_filters_are_orthonormal_and_blind_to_constants():
    f = dct_filters().reshape(8, 9).double()
    assert torch.allclose(f @ f.T, torch.eye(8, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(f.sum(dim=1), torch.zeros(8, dtype=torch.float64), atol=1e-6)


def test_texture_loss_tells_noise_textures_apart():
    torch.manual_seed(5)
    loss = TextureLoss(scales=2)
    white = [torch.randn(8, 1, 64, 64) * 0.05 for _ in range(2)]
    smooth = torch.nn.functional.avg_pool2d(torch.randn(8, 1, 66, 66), 3, stride=1) * 0.05 * 3  # same variance
    assert float(loss(white[0], white[0], {})) == 0.0
    same_texture = float(loss(white[0], white[1], {}))
    other_texture = float(loss(smooth, white[1], {}))
    assert other_texture > 3 * same_texture
    assert float(loss(white[0] + 1.0, white[0], {})) < 1e-9  # a constant offset is not texture


def test_complementary_loss_supervises_content_and_noise_branches():
    fd, ld = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    out = ModelOutput(torch.zeros(1, 1, 4, 4), {"content": torch.full((1, 1, 4, 4), 0.5),
                                                "noise": torch.full((1, 1, 4, 4), 0.75)})
    value = ComplementaryLoss()(out, fd, {"ld": ld})
    assert torch.isclose(value, torch.tensor(0.5 + 0.25))


def _nl_means_loop(image: np.ndarray, h: float, patch: int, search: int, sigma: float) -> np.ndarray:
    """Non-local means pixel by pixel (the reference for the vectorised version)."""
    r, p = search // 2, patch // 2
    padded = np.pad(image, r + p, mode="reflect")
    out = np.zeros_like(image)
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            ci, cj = i + r + p, j + r + p
            ref = padded[ci - p : ci + p + 1, cj - p : cj + p + 1]
            num = den = 0.0
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    other = padded[ci + dy - p : ci + dy + p + 1, cj + dx - p : cj + dx + p + 1]
                    w = np.exp(-max(((ref - other) ** 2).mean() - 2 * sigma**2, 0) / h**2)
                    num += w * padded[ci + dy, cj + dx]
                    den += w
            out[i, j] = num / den
    return out


def test_nl_means_matches_the_pixel_by_pixel_definition():
    from medsr.ct.nlm import nl_means

    image = np.random.default_rng(0).normal(size=(9, 7))
    for h, patch, search, sigma in ((0.8, 3, 5, 0.0), (1.5, 5, 3, 0.3)):
        got = nl_means(torch.from_numpy(image), h, patch, search, sigma).numpy()
        assert np.allclose(got, _nl_means_loop(image, h, patch, search, sigma), atol=1e-10)
    smooth = nl_means(torch.from_numpy(image)[None], 5.0, 3, 5)[0].numpy()
    assert smooth.std() < image.std()
