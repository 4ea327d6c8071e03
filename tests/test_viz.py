"""Figures: comparison grids, metric-versus-scale plots, feature maps; their commands and bad input."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from _registered import registered

from medsr.checkpoint import save_weights
from medsr.cli import main
from medsr.data.store import robust_scale
from medsr.errors import InputError
from medsr.models.base import SRModel, bicubic_upsample
from medsr.registry import MODELS
from medsr.viz import _ood_spans, auto_zoom, comparison_figure, layer_output, read_results

PNG_MAGIC, PDF_MAGIC = b"\x89PNG", b"%PDF"


class TinyConv(SRModel):
    """One 3x3 convolution with 4 output channels, averaged, upsampled bicubically."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, lr, out_size, ref=None):
        return bicubic_upsample(self.body(self.centre_slice(lr)).mean(1, keepdim=True), out_size)


@pytest.fixture(autouse=True, scope="module")
def _test_models():
    with registered(MODELS, {"_test_conv": TinyConv}):
        yield


def _images(seed=0):
    rng = np.random.default_rng(seed)
    hr = rng.random((48, 40))
    return {"LR": hr[::2, ::2], "noisy": hr + 0.1 * rng.standard_normal(hr.shape), "blur": (hr + np.roll(hr, 1)) / 2}, hr


@pytest.mark.parametrize("name, magic", [("grid.png", PNG_MAGIC), ("grid.pdf", PDF_MAGIC)])
def test_comparison_figure_writes_png_or_pdf(tmp_path, name, magic):
    panels, hr = _images()
    out = comparison_figure(panels, hr, tmp_path / name, title="test", zoom=(4, 6, 12), error_max=0.3)
    assert out == tmp_path / name and out.read_bytes()[:4] == magic
    if magic == PNG_MAGIC:
        width, height = Image.open(out).size
        assert width > height > 300  # four columns, two rows


def test_comparison_figure_rejects_bad_panels_and_outputs(tmp_path):
    panels, hr = _images()
    with pytest.raises(InputError, match="png or .pdf"):
        comparison_figure(panels, hr, tmp_path / "grid.jpg")
    with pytest.raises(InputError, match="non-finite"):
        comparison_figure({"bad": np.full_like(hr, np.nan)}, hr, tmp_path / "grid.png")
    with pytest.raises(InputError, match="does not fit"):
        comparison_figure(panels, hr, tmp_path / "grid.png", zoom=(40, 30, 20))
    assert not list(tmp_path.iterdir())


def test_auto_zoom_finds_the_detailed_square():
    hr = np.zeros((64, 64))
    hr[40:56, 8:24] = np.indices((16, 16)).sum(0) % 2  # a checkerboard
    y, x, size = auto_zoom(hr)
    assert size == 16 and abs(y - 40) <= 2 and abs(x - 8) <= 2


def test_viz_compare_command_with_volumes_of_different_depth(tmp_path, capsys):
    rng = np.random.default_rng(1)
    hr = rng.random((32, 24, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(hr, np.eye(4)), tmp_path / "hr.nii.gz")
    nib.save(nib.Nifti1Image(hr[::2, ::2, ::2], np.eye(4)), tmp_path / "lr.nii.gz")
    np.save(tmp_path / "method.npy", hr + 0.05)
    out = tmp_path / "cmp.png"
    assert main(["viz", "compare", "--hr", str(tmp_path / "hr.nii.gz"), "--lr", str(tmp_path / "lr.nii.gz"),
                 "--method", f"shifted={tmp_path / 'method.npy'}", "--slice", "5", "--zoom", "4,4,8",
                 "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == PNG_MAGIC and "wrote" in capsys.readouterr().out
    for flags, message in ((["--slice", "8"], "outside 0..7"), (["--method", "nofile"], "NAME=FILE"),
                           (["--zoom", "1,2"], "three integers"), ([], "give --lr")):
        assert main(["viz", "compare", "--hr", str(tmp_path / "hr.nii.gz"), "--out", str(tmp_path / "x.png"),
                     *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    assert not (tmp_path / "x.png").exists()


def _results(path, method, scales, ood_from):
    rows = [{"method": method, "scale": s, "ref": None, "psnr": 30 - s, "psnr_std": 0.5, "ssim": 0.9 - s / 50,
             "ssim_std": 0.01, "n_volumes": 2, "ood": s >= ood_from} for s in scales]
    path.write_text(json.dumps({"protocol": {"metric": "psnr"}, "results": rows}))
    return path


def test_scale_plot_from_test_json_with_shaded_ood_scales(tmp_path, capsys):
    a = _results(tmp_path / "a.json", "sakg", [1.5, 2, 3, 4, 6, 8], ood_from=6)
    b = _results(tmp_path / "b.json", "bicubic", [2, 4, 6], ood_from=6)
    rows = read_results([a, b])
    assert _ood_spans(rows) == [(5.0, 7.0), (7.0, 9.0)]  # halfway to the neighbouring scales
    stated = json.loads(a.read_text())
    stated["protocol"]["scales_trained"] = "1.5-4"
    a.write_text(json.dumps(stated))
    assert _ood_spans(read_results([a])) == [(4.0, 7.0), (7.0, 9.0)]  # shaded from the end of training (D27)
    (tmp_path / "c.json").write_text(json.dumps({"results": [{"method": "m", "scale": [2, 8], "psnr": 1, "ssim": 0}]}))
    assert read_results([tmp_path / "c.json"])[0]["x"] == pytest.approx(4.0)  # per-axis scales: geometric mean
    out = tmp_path / "scales.pdf"
    assert main(["viz", "scales", str(a), str(b), "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == PDF_MAGIC
    (tmp_path / "bad.json").write_text('{"protocol": {}}')
    assert main(["viz", "scales", str(tmp_path / "bad.json"), "--out", str(tmp_path / "bad.png")]) == 2
    assert "not a medsr test results file" in capsys.readouterr().err


def test_feature_maps_capture_the_named_layer(tmp_path, capsys):
    model = TinyConv()
    save_weights(tmp_path / "conv.pth", {"type": "_test_conv"}, model.state_dict())
    image = np.random.default_rng(2).random((12, 10)) * 50
    maps = layer_output(tmp_path / "conv.pth", image, "body")
    expected = model.body(torch.from_numpy(image / robust_scale(image)).float()[None, None])[0]
    np.testing.assert_allclose(maps, expected.detach().numpy(), atol=1e-5)
    np.save(tmp_path / "image.npy", image)
    args = ["viz", "features", "--weights", str(tmp_path / "conv.pth"), "--image", str(tmp_path / "image.npy")]
    assert main([*args, "--layer", "body", "--out", str(tmp_path / "maps.png")]) == 0
    assert (tmp_path / "maps.png").read_bytes()[:4] == PNG_MAGIC
    assert main([*args, "--layer", "nope", "--out", str(tmp_path / "none.png")]) == 2
    assert "no module 'nope'" in capsys.readouterr().err
