"""CT simulation speed and accuracy (CPU; about 5 minutes on 2 cores):

1. Seconds per 512 x 512 slice of the dose simulation's projector + FBP (Hann) on a real CT slice (the embedded
   abdomen of pydicom-data, 0.859 mm pixels) in the scanner geometry (parallel beam, 0.7 mm at the isocentre,
   1152 views): the code before the fast simulator (``--old-rev``, read from git: ray-driven projection and
   pixel-driven backprojection, one slice at a time as ``medsr degrade`` ran it), the current code (one slice,
   first call, and per slice in a batch of 8 as ``medsr degrade`` runs it now) and scikit-image radon/iradon (its
   own detector: one bin per pixel). The same slice's projections and the FBP of the same noise sinogram are
   compared between old and new code.
2. Parallel projection and FBP against scikit-image; fan projection of a Gaussian against exact line integrals.
3. Per FBP filter, the 30 cm water cylinder's noise at I0 = 1e5, sigma_e^2 = 10, and the I0 calibrated for 20 HU
   at full dose, checked by Poisson simulation at full and at a quarter dose against the noise model (256 x 256,
   1.4 mm pixels, ``REALISATIONS`` noise realisations of the central ROI: about 1 % sampling error on the std).

Run: ``python benchmarks/ct_simulation.py > benchmarks/results/ct/simulation.md`` (torch with 2 threads).
"""

from __future__ import annotations

import argparse
import importlib
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from skimage.transform import iradon, radon

from medsr.ct.dose import attenuation, calibrate_i0, noise_terms, water_noise_hu
from medsr.ct.fbp import FILTERS, fbp
from medsr.ct.geometry import Geometry, default_geometry, scanner_geometry
from medsr.ct.phantom import body_phantom, ellipse_image
from medsr.ct import projector
from medsr.ct.projector import forward_project
from medsr.data.embedded_ct import SOURCES, read_ct_slice, source_path

SKIMAGE_FILTERS = {"ram-lak": "ramp", "shepp-logan": "shepp-logan", "hann": "hann"}
BATCH = 8
REALISATIONS = 6  # of the water cylinder's 40 mm ROI (about 15,000 pixels)
ROOT = Path(__file__).resolve().parents[1]


def old_code(rev: str, folder: Path):
    """The projector and FBP modules of git revision ``rev``, importable as ``old_ct.projector``/``old_ct.fbp``."""
    package = folder / "old_ct"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("projector", "fbp"):
        source = subprocess.run(["git", "show", f"{rev}:src/medsr/ct/{name}.py"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
        (package / f"{name}.py").write_text(source.replace("from medsr.ct.projector", "from old_ct.projector"))
    sys.path.insert(0, str(folder))
    return importlib.import_module("old_ct.projector"), importlib.import_module("old_ct.fbp")


def _timed(function, *args):
    start = time.perf_counter()
    out = function(*args)
    return out, time.perf_counter() - start


def speed(rev: str) -> None:
    sid, package, distribution, relative, _, sha = next(s for s in SOURCES if s[0] == "abdomen")
    hu, pixel = read_ct_slice(source_path(package, distribution, relative, sha))
    mu = attenuation(torch.from_numpy(hu))
    geometry = scanner_geometry("parallel", mu.shape, pixel)
    noise = torch.randn(geometry.n_views, geometry.n_det, generator=torch.Generator().manual_seed(0)) * 0.01
    print(f"## Speed: one {mu.shape[0]}x{mu.shape[1]} slice, {pixel:.3f} mm, parallel beam {geometry.n_views} views x "
          f"{geometry.n_det} bins (0.7 mm), Hann FBP, float32, {torch.get_num_threads()} threads\n")
    print("| code | projection s/slice | FBP s/slice | total s/slice |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        old_projector, old_fbp = old_code(rev, Path(folder))
        old_p, t_fp = _timed(old_projector.forward_project, mu, geometry)
        old_n, t_fbp = _timed(old_fbp.fbp, noise, geometry, "hann")
    old_total = t_fp + t_fbp
    print(f"| before ({rev}), one slice at a time | {t_fp:.2f} | {t_fbp:.2f} | {old_total:.2f} |")
    projector._polar.cache_clear()
    new_p, n_fp = _timed(forward_project, mu, geometry)
    new_n, n_fbp = _timed(fbp, noise, geometry, "hann")
    print(f"| now, one slice, first call (builds the plan) | {n_fp:.2f} | {n_fbp:.2f} | {n_fp + n_fbp:.2f} "
          f"({old_total / (n_fp + n_fbp):.1f}x) |")
    batch, noises = mu.expand(BATCH, -1, -1), noise.expand(BATCH, -1, -1)
    _, b_fp = _timed(forward_project, batch, geometry)
    _, b_fbp = _timed(fbp, noises, geometry, "hann")
    per = (b_fp + b_fbp) / BATCH
    print(f"| now, batch of {BATCH} (as medsr degrade) | {b_fp / BATCH:.2f} | {b_fbp / BATCH:.2f} | {per:.2f} "
          f"({old_total / per:.1f}x) |")
    degrees = np.degrees(geometry.angles(dtype=torch.float64).numpy())
    image = mu.double().numpy()
    sk_p, s_fp = _timed(radon, image, degrees, False)
    _, s_fbp = _timed(lambda: iradon(sk_p, degrees, output_size=image.shape[0], filter_name="hann", circle=False))
    print(f"| scikit-image radon/iradon (own detector: {sk_p.shape[0]} bins of one pixel) | {s_fp:.2f} | {s_fbp:.2f} "
          f"| {s_fp + s_fbp:.2f} |\n")
    peak = float(old_p.abs().max())
    print(f"Same slice, new vs old code: projection max |diff| / peak {float((new_p - old_p).abs().max()) / peak:.2e}, "
          f"rms / peak {float((new_p - old_p).pow(2).mean().sqrt()) / peak:.2e}; FBP of the same noise sinogram: "
          f"std ratio new/old {float(new_n.std() / old_n.std()):.4f}, rms diff / std "
          f"{float((new_n - old_n).pow(2).mean().sqrt() / old_n.std()):.3f}\n")


def projector_figures() -> None:
    print("## Accuracy\n")
    n = 129
    geometry = Geometry("parallel", (n, n), 1.0, 180, n, 1.0)
    image = ellipse_image(body_phantom(n / 400), geometry)
    x, y = geometry.pixel_centres(dtype=torch.float64)
    image = image * (x**2 + y**2 < (0.45 * n) ** 2)
    degrees = np.degrees(geometry.angles(dtype=torch.float64).numpy())
    ours = forward_project(image, geometry)
    theirs = radon(image.numpy(), degrees, circle=True).T
    print(f"- parallel projection vs skimage radon ({n}x{n}, 180 views): max |diff| / peak = "
          f"{np.abs(ours.numpy() - theirs).max() / theirs.max():.2e}")
    rows, cols = np.mgrid[:n, :n] - n // 2
    inside = rows**2 + cols**2 < (0.45 * n) ** 2
    for name in FILTERS:
        mine = fbp(ours, geometry, name).numpy()
        ref = iradon(ours.numpy().T, degrees, filter_name=SKIMAGE_FILTERS[name], circle=True)
        print(f"- FBP {name} vs iradon (same sinogram): max |diff| / peak = "
              f"{np.abs(mine - ref)[inside].max() / ref.max():.2e}")
    fan = default_geometry("fan", (128, 128), 2.5)
    fx, fy = fan.pixel_centres(dtype=torch.float64)
    sigma = 15.0
    blob = torch.exp(-((fx - 30) ** 2 + (fy + 20) ** 2) / (2 * sigma**2))
    theta, s = fan.parallel_rays(dtype=torch.float64)
    exact = math.sqrt(2 * math.pi) * sigma * torch.exp(-((s - 30 * torch.cos(theta) + 20 * torch.sin(theta)) ** 2)
                                                       / (2 * sigma**2))
    error = (forward_project(blob, fan) - exact).abs().max() / exact.max()
    print(f"- fan projection of a Gaussian (sigma 6 px) vs exact line integrals: max |diff| / peak = {error:.2e}\n")


def noise_figures() -> None:
    print("## Water cylinder noise\n")
    for px, n in ((1.4, 256),):
        geometry = scanner_geometry("parallel", (n, n), px)
        print(f"{n}x{n} at {px} mm, parallel beam {geometry.n_views} views x {geometry.n_det} bins (0.7 mm):\n")
        print("| filter | I0 = 1e5 | I0 for 20 HU | simulated full dose | model at 25 % | simulated at 25 % |\n"
              "|---|---|---|---|---|---|")
        for name in FILTERS:
            at_1e5 = water_noise_hu(geometry, 1e5, 1.0, 10.0, name, realisations=REALISATIONS)
            i0 = calibrate_i0(20.0, geometry, name, electronic_noise=10.0)
            measured = water_noise_hu(geometry, i0, 1.0, 10.0, name, realisations=REALISATIONS, seed=1)
            model = noise_terms(geometry, name).noise_hu(i0, 0.25, 10.0)
            quarter = water_noise_hu(geometry, i0, 0.25, 10.0, name, realisations=REALISATIONS, seed=1)
            print(f"| {name} | {at_1e5:.2f} HU | {i0:.4g} | {measured:.2f} HU ({100 * (measured / 20 - 1):+.1f}%) "
                  f"| {model:.2f} HU | {quarter:.2f} HU ({100 * (quarter / model - 1):+.1f}%) |")
        print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-rev", default="218e744", help="git revision of the code before the fast simulator")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print("# CT simulation: speed and accuracy\n\n`python benchmarks/ct_simulation.py > "
          "benchmarks/results/ct/simulation.md` (2 torch threads, 2-core CPU)\n")
    speed(args.old_rev)
    projector_figures()
    noise_figures()
