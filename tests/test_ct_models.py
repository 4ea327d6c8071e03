"""CT denoisers (RED-CNN, DnCNN, CNCL in the paper's configuration, CNCL-lite with both fusions, the Restormer
block), the conditional PatchGAN of ``ct_cncl`` and the CT losses (Gram texture on the DCT filter bank, CNCL's
branch terms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsr.config import load_config, to_dict
from medsr.losses.complementary import ComplementaryLoss, ContentNoiseLoss
from medsr.losses.texture import TextureLoss, dct_filters
from medsr.models.base import ModelOutput, as_image
from medsr.models.restormer import TransformerBlock, channel_attention
from medsr.models.unet import UNet
from medsr.registry import MODELS, TASKS
from medsr.tasks.adversarial import Adversary

SPECS = [
    {"type": "redcnn", "width": 8},
    {"type": "dncnn", "depth": 4, "width": 8},
    {"type": "cncl", "base": 4, "depth": 2},
    {"type": "cncl_lite", "width": 8, "n_blocks": 1},
    {"type": "cncl_lite", "width": 8, "n_blocks": 1, "fusion": "cross_attention"},
    {"type": "cncl_lite", "width": 8, "n_blocks": 1, "block": "restormer", "fusion": "cross_attention"},
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


@pytest.mark.parametrize("spec", [{"type": "cncl", "base": 4, "depth": 2}, {"type": "cncl_lite", "width": 8,
                                                                          "n_blocks": 1}], ids=["cncl", "lite"])
def test_cncl_conv_fusion_starts_as_the_mean_of_its_two_content_estimates(spec):
    torch.manual_seed(1)
    model = MODELS.build(spec)
    x = torch.randn(2, 1, 12, 12)
    out = model(x)
    assert isinstance(out, ModelOutput) and set(out.aux) == {"content", "noise"}
    content2 = x - out.aux["noise"]
    assert torch.allclose(out.image, 0.5 * (out.aux["content"] + content2), atol=1e-6)


def test_cncl_cross_attention_adds_a_feature_level_term_that_starts_at_zero():
    torch.manual_seed(2)
    model = MODELS.build({"type": "cncl_lite", "width": 8, "n_blocks": 1, "fusion": "cross_attention"})
    x = torch.randn(1, 1, 10, 10)
    out = model(x)
    mean = 0.5 * (out.aux["content"] + x - out.aux["noise"])
    assert torch.allclose(out.image, mean, atol=1e-6)
    torch.nn.init.normal_(model.refine.weight, std=0.1)
    assert not torch.allclose(model(x).image, mean, atol=1e-4)


def test_bad_cncl_options_are_value_errors():
    with pytest.raises(ValueError, match="fusion"):
        MODELS.build({"type": "cncl_lite", "fusion": "sum"})
    with pytest.raises(ValueError, match="heads"):
        MODELS.build({"type": "cncl_lite", "width": 9, "heads": 2})


def test_cncl_has_two_full_unets_in_the_reference_codes_parameter_range():
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = MODELS.build({"type": "cncl"})
        unet = UNet(in_channels=1, num_classes=1, base=64, depth=4)
    count = sum(p.numel() for p in model.parameters())
    per_unet = sum(p.numel() for p in unet.parameters())
    assert isinstance(model.content, UNet) and isinstance(model.noise, UNet)
    assert count == 2 * per_unet + 3  # two U-Nets and the 1x1 fusion over [content1, x - noise]
    # The reference code's generator (github.com/gengmufeng/CNCL-denoising, model.py) has 43.8 M parameters; ours
    # (transposed-convolution upsampling, full decoder widths) 62.1 M. CNCL-lite has about 112 k.
    assert 40e6 < count < 65e6


def _tiny_cncl_task(**gan):
    """The denoise task of ct_cncl with tiny U-Nets and discriminator (the config's losses and GAN settings)."""
    overrides = ["model.base=4", "model.depth=2", "train.gan.discriminator.n_feats=4",
                 "train.gan.discriminator.n_layers=2"] + [f"train.gan.{k}={v}" for k, v in gan.items()]
    cfg = load_config("ct_cncl", overrides)
    return TASKS.get(cfg.task)(cfg)


def test_ct_cncl_is_l1_x100_plus_gan_x1_with_a_conditional_discriminator_and_no_texture_term():
    spec = to_dict(load_config("ct_cncl"))
    assert spec["model"]["type"] == "cncl"
    assert spec["loss"] == [{"type": "content_noise", "weight": 100.0}]
    gan = spec["train"]["gan"]
    assert gan["enabled"] and gan["weight"] == 1.0 and gan["loss"] == "lsgan"
    assert gan["condition"] == "ld" and gan["noise"] is True
    task = _tiny_cncl_task()
    assert task.criterion.names == ["content_noise"] and task.criterion.weights == [100.0]
    assert task.adversary.weight == 1.0 and task.adversary.discriminator.net[0].in_channels == 3
    lite = to_dict(load_config("ct_cncl_lite"))
    assert lite["model"]["type"] == "cncl_lite" and "texture" in [t["type"] for t in lite["loss"]]
    assert lite["train"]["gan"]["condition"] is None and lite["train"]["gan"]["weight"] == 0.001


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    fd = torch.nn.functional.avg_pool2d(torch.rand(2, 1, 20, 20, generator=g), 5, stride=1)  # smooth, 16x16
    return {"fd": fd, "ld": fd + 0.1 * torch.randn(fd.shape, generator=g)}


def test_conditional_discriminator_sees_the_input_and_both_predictions():
    torch.manual_seed(6)
    spec = {"type": "patch_discriminator", "n_feats": 4, "n_layers": 2, "norm": "instance"}
    conditional = Adversary(spec, real="fd", condition="ld", noise=True)
    batch = _batch()
    out = ModelOutput(batch["fd"] + 0.05, {"noise": torch.zeros_like(batch["fd"]), "content": batch["fd"]})
    real, fake = conditional.stacks(out, batch)
    assert torch.equal(real, torch.cat([batch["fd"], batch["ld"] - batch["fd"], batch["ld"]], dim=1))
    assert torch.equal(fake, torch.cat([out.image, out.aux["noise"], batch["ld"]], dim=1))
    other = {**batch, "ld": batch["ld"] + 0.3 * torch.randn_like(batch["ld"])}  # same prediction, another input
    change = (conditional.discriminator(conditional.stacks(out, other)[1])
              - conditional.discriminator(fake)).abs().max()
    assert change > 1e-4
    assert not torch.isclose(conditional.generator_loss(out, other), conditional.generator_loss(out, batch))
    plain = Adversary({**spec, "norm": "layer"}, real="fd")  # the test of the test: unconditional D ignores ld
    assert torch.equal(plain.generator_loss(out, other), plain.generator_loss(out, batch))
    with pytest.raises(ValueError, match="condition"):
        Adversary(spec, real="fd", noise=True)
    with pytest.raises(ValueError, match="noise output"):
        conditional.check(MODELS.build({"type": "redcnn", "width": 4}))
    with pytest.raises(ValueError, match="norm"):
        MODELS.build({"type": "patch_discriminator", "norm": "batch"})


def test_cncl_training_steps_decrease_its_loss_on_a_tiny_batch():
    torch.manual_seed(7)
    task = _tiny_cncl_task()
    model, criterion, adversary = task.model, task.criterion, task.adversary
    g_opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))  # the config's 2e-5 needs long runs
    d_opt = torch.optim.Adam(adversary.parameters(), lr=1e-3, betas=(0.5, 0.999))
    batch = _batch(1)
    losses = []
    for _ in range(25):  # the base task's step: generator (pixel x 100 + GAN x 1), then discriminator
        out = model(batch["ld"])
        pixel, _ = criterion(out, batch["fd"], batch)
        g_opt.zero_grad()
        (pixel + adversary.weight * adversary.generator_loss(out, batch)).backward()
        g_opt.step()
        d_opt.zero_grad()
        adversary.discriminator_loss(out, batch).backward()
        d_opt.step()
        losses.append(float(pixel.detach()))
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])  # measured: 0.70


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


def test_content_noise_loss_is_the_reference_codes_two_channel_l1():
    fd, ld = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    out = ModelOutput(torch.full((1, 1, 4, 4), 0.2), {"content": torch.full((1, 1, 4, 4), 0.5),
                                                      "noise": torch.full((1, 1, 4, 4), 0.75)})
    value = ContentNoiseLoss()(out, fd, {"ld": ld})
    stacked = (torch.cat([out.image, out.aux["noise"]], 1) - torch.cat([fd, ld - fd], 1)).abs().mean()
    assert torch.isclose(value, stacked) and torch.isclose(value, torch.tensor((0.2 + 0.25) / 2))


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


@pytest.mark.parametrize("spec", [{"type": "dncnn", "depth": 5, "width": 8}, {"type": "redcnn", "width": 8},
                                  {"type": "cncl_lite", "width": 8}])
def test_the_folded_inference_copy_is_the_same_function(spec):
    from medsr.models.base import as_image, folded_for_inference

    torch.manual_seed(0)
    model = MODELS.build(spec)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # statistics a trained network would have
            m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0), m.weight.data.uniform_(0.5, 1.5)
    model.eval()
    folded = folded_for_inference(model)
    x = torch.rand(2, 1, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(as_image(folded(x)), as_image(model(x)), rtol=1e-5, atol=1e-5)
    if spec["type"] == "dncnn":  # its batch norms are folded away in the copy, kept in the original
        assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) == 0
        assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 3
