"""The best PSNR a k-space head can reach when its band is fixed, with the sign correction, and zero-filling.

The LR input is the magnitude of a band-limited image, ``LR = |x_lr|`` (``medsr.kspace.downsample``); where
ringing next to a sharp edge dips below zero, ``abs`` rectifies it, so the band of ``|x_lr|`` is not the HR's.
For each image and scale four oracles are scored against the HR (issue 19, item 8; ``models.base``):

* ``fixed band``: the HR with its k-space band replaced by the band of ``|x_lr|`` (everything outside the
  band perfect): the ceiling of ``in_band_correction: false``, the shipped head;
* ``sign head``: the same with the band of ``s * |x_lr|``, ``s = -1`` where ``Re x_lr < 0`` and ``|x_lr|`` is
  below the head's gate (``SIGN_GATE`` = 0.1 times the 99.5th percentile of the non-zero LR pixels, medsr's
  intensity scale), else ``+1``: the oracle negative map of ``in_band_correction: sign``, its ceiling;
* ``sign, no gate``: the same with every negative pixel flipped. At an odd LR size ``x_lr`` is real and this is
  the HR itself (float64 round-off); at an even one the crop keeps one Nyquist line without its mirror, so
  ``x_lr`` has an imaginary part no real LR image can carry, and the oracle stops short of the HR;
* ``zero-filling``: k-space zero-filling of ``LR`` (magnitude), the floor.

Oracle images are clamped at 0 as every model's evaluation output is. Images: the test split of the embedded
MNI store (every contrast of every test slab; ``medsr prepare mni data/mni``) and the transfer benchmark's real
scans (``benchmarks/transfer.py``'s cases, loaded from their installed packages, in-plane only). PSNR with data
range = the HR volume's maximum, whole field of view, per volume, capped at 100 dB (an exact
reconstruction's PSNR only measures round-off); the tables give the mean over volumes.

    python benchmarks/kspace_ceiling.py [--data data/mni] [--scales 2,3,4] [--out benchmarks/results/transfer]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import transfer  # noqa: E402

METHODS = ("fixed band", "sign head", "sign, no gate", "zero-filling")
CAP = 100.0  # dB


def oracles(hr: torch.Tensor, scale: float) -> dict[str, torch.Tensor]:
    """The three oracle reconstructions (module docstring) of the planes ``hr [N, H, W]`` (float64) at ``scale``."""
    from medsr.data.store import robust_scale
    from medsr.kspace import downsample, lr_shape, zero_fill_upsample
    from medsr.models.base import SIGN_GATE

    size = tuple(hr.shape[-2:])
    x_lr = downsample(hr, size=lr_shape(size, scale), magnitude=False)
    lr = x_lr.abs()
    outside = hr - zero_fill_upsample(x_lr, size, magnitude=False).real

    def with_band(band: torch.Tensor) -> torch.Tensor:
        return (outside + zero_fill_upsample(band, size, magnitude=False).real).clamp_min(0)

    negative = x_lr.real < 0
    gated = negative & (lr < SIGN_GATE * robust_scale(lr.numpy()))
    return {"fixed band": with_band(lr), "sign head": with_band(torch.where(gated, -lr, lr)),
            "sign, no gate": with_band(torch.where(negative, -lr, lr)), "zero-filling": zero_fill_upsample(lr, size)}


def psnr(pred: torch.Tensor, hr: torch.Tensor) -> float:
    from medsr.metrics.image import psnr as image_psnr

    return min(float(image_psnr(pred[None, None], hr[None, None], float(hr.max()))[0]), CAP)


def volume_rows(name: str, hr: np.ndarray, scales: list[float]) -> list[dict[str, object]]:
    """PSNR of every oracle for the planes ``hr [N, H, W]`` at each scale."""
    planes = torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float64))
    return [{"image": name, "scale": s, "method": m, "psnr": psnr(pred, planes)}
            for s in scales for m, pred in oracles(planes, s).items()]


def mni_volumes(root: Path) -> list[tuple[str, np.ndarray]]:
    """Every contrast of every test-split slab of the embedded MNI store, as ``[Z, H, W]``."""
    from medsr.data.embedded import ensure_mni
    from medsr.data.store import SliceStore

    store = SliceStore(ensure_mni(root))
    return [(f"{sid} {c}", store.volume(sid, c)) for sid in store.subjects("test") for c in store.contrasts]


def transfer_volumes() -> list[tuple[str, np.ndarray]]:
    """The transfer benchmark's MR cases whose packages are installed, as ``[Z, X, Y]`` in-plane planes."""
    from medsr.data.heldout import cases, locate

    found = [c for c in cases() if c.get("modality", "MR") == "MR" and locate(c) is not None]
    return [(c["id"], np.moveaxis(transfer.load_case(c)[0], 2, 0)) for c in found]


def table(rows: list[dict[str, object]], images: list[str]) -> list[str]:
    """Mean PSNR over ``images`` per scale and oracle, the sign head's gain over the fixed band, and how many
    volumes the sign head reconstructs exactly (at the cap)."""
    lines = [f"| scale | {' | '.join(METHODS)} | sign head - fixed band (dB) | sign head exact |",
             "|---|" + "---|" * (len(METHODS) + 2)]
    for s in dict.fromkeys(r["scale"] for r in rows):
        sub = [r for r in rows if r["scale"] == s and r["image"] in images]
        mean = {m: np.mean([r["psnr"] for r in sub if r["method"] == m]) for m in METHODS}
        exact = sum(r["psnr"] >= CAP for r in sub if r["method"] == "sign head")
        cells = " | ".join(f"{mean[m]:.2f}" for m in METHODS)
        lines.append(f"| x{s:g} | {cells} | {mean['sign head'] - mean['fixed band']:+.2f} | {exact} of {len(images)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    from medsr.errors import InputError
    from medsr.io.atomic import atomic_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/mni"), help="embedded MNI store (test split)")
    parser.add_argument("--scales", default="2,3,4")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/transfer"))
    args = parser.parse_args(argv)
    try:
        scales = [float(s) for s in args.scales.split(",")]
        sets = {"MNI test split": mni_volumes(args.data), "transfer scans (real MR)": transfer_volumes()}
    except (InputError, ValueError) as err:
        print(f"kspace_ceiling: {err}", file=sys.stderr)
        return 2
    rows = [r for volumes in sets.values() for name, hr in volumes for r in volume_rows(name, hr, scales)]
    lines = ["# k-space head ceilings (issue 19, item 8)", "", "\n\n".join(__doc__.split("\n\n")[1:4]), "",
             f"Command: `python benchmarks/kspace_ceiling.py --scales {args.scales}`", ""]
    for title, volumes in sets.items():
        names = [n for n, _ in volumes]
        lines += [f"## {title}: {', '.join(names)}", ""] + table(rows, names) + [""]
    text = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "kspace_ceiling.md") as tmp:
        tmp.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
