"""What the procedural CT anatomy (``medsr.data.ct_anatomy``) looks like, next to real CT: sample slices, and the
share of pixels per tissue class and the pixel sizes of the synthetic slices against a folder of real CT volumes.

Tissue classes by HU inside the object (pixels above -950 HU): lung/gas [-950, -500), fat [-500, -30), water and
soft tissue [-30, 100), enhanced tissue [100, 300), bone [300, inf). The real volumes are the development CT
(``../shared/data/ct``: TCIA Colorectal-Liver-Metastases, CC BY 4.0, doi:10.7937/QXK2-QG03; see its README), read
as the training store reads them; the held-out patient of ``heldout.json`` is skipped, as every preparer skips
it. Writes ``OUT/anatomy.md`` and ``OUT/anatomy.png`` (the first noise-free slices of each kind, and the
simulator's low-dose scan of one body and one head with its noise).

    python benchmarks/ct_anatomy.py ../shared/data/ct [--slices 64]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medsr.data.ct_anatomy import KINDS
from medsr.data.prepare.ct_volumes import read_ct_volume, synthetic_slice, synthetic_subject, volume_files

OUT = Path("benchmarks/results/ct_dev")
CLASSES = {"lung/gas": (-950, -500), "fat": (-500, -30), "water/soft tissue": (-30, 100),
           "enhanced": (100, 300), "bone": (300, np.inf)}


def shares(hu: np.ndarray) -> dict[str, float]:
    """Share of the object's pixels (above -950 HU) in each tissue class."""
    inside = hu[hu >= -950]
    return {name: float(((inside >= lo) & (inside < hi)).mean()) for name, (lo, hi) in CLASSES.items()}


def mean_shares(images: list[np.ndarray]) -> dict[str, float]:
    rows = [shares(h) for h in images]
    return {name: float(np.mean([r[name] for r in rows])) for name in CLASSES}


def figure(path: Path, count: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 5, figsize=(15, 7.2))
    for row, kind in enumerate(KINDS):
        window = (-160, 240) if kind == "body" else (-20, 100)
        for col in range(3):
            index = row + 2 * col  # synthetic slices alternate body, head
            image = synthetic_slice(index)[0]
            axes[row, col].imshow(image.hu, cmap="gray", vmin=window[0], vmax=window[1])
            axes[row, col].set_title(f"{kind} {index}, {image.pixel_mm:.2f} mm (noise-free)", fontsize=8)
        _, subject = synthetic_subject(row, 1)
        record, ld = subject["record"], subject["ld"][0, 0]
        axes[row, 3].imshow(ld, cmap="gray", vmin=window[0], vmax=window[1])
        axes[row, 3].set_title(f"{kind} {row}: low dose (I0 {record['i0']:.3g}, dose {record['dose']:.2f})", fontsize=8)
        axes[row, 4].imshow(ld - subject["fd"][0], cmap="gray", vmin=-100, vmax=100)
        axes[row, 4].set_title(f"{kind} {row}: low dose - noise-free target [-100, 100] HU", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"medsr.data.ct_anatomy: the first slices of `medsr prepare ctvol --synthetic {count}` "
                 "(body window [-160, 240], head [-20, 100] HU)", fontsize=10)
    fig.tight_layout(h_pad=2.0)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder of real full-dose CT NIfTI volumes (../shared/data/ct)")
    parser.add_argument("--slices", type=int, default=64, help="procedural slices, as --synthetic N (default 64)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    synthetic = {kind: [] for kind in KINDS}
    for index in range(args.slices):
        image = synthetic_slice(index)[0]
        synthetic[image.kind].append(image)
    files, _ = volume_files(args.data)
    real = {}
    for path in files:
        hu, _, pixel_mm = read_ct_volume(path)
        real[path.name] = (list(hu), pixel_mm)
    lines = ["# Procedural CT anatomy next to real CT", "",
             f"`python benchmarks/ct_anatomy.py {' '.join(argv) if argv else args.data}`. Share of the object's "
             "pixels (above -950 HU) per tissue class (HU: lung/gas [-950, -500), fat [-500, -30), water/soft "
             "tissue [-30, 100), enhanced [100, 300), bone >= 300), mean over slices; pixel sizes on 512 pixels.",
             "", "| images | slices | pixel mm | " + " | ".join(CLASSES) + " |",
             "|---|---|---|" + "---|" * len(CLASSES)]
    for kind, images in synthetic.items():
        sizes = [s.pixel_mm for s in images]
        values = mean_shares([s.hu for s in images])
        lines.append(f"| procedural {kind} | {len(images)} | {min(sizes):.2f}-{max(sizes):.2f} | "
                     + " | ".join(f"{values[c]:.3f}" for c in CLASSES) + " |")
    for name, (images, pixel_mm) in real.items():
        values = mean_shares(images)
        lines.append(f"| real {name} | {len(images)} | {pixel_mm:.2f} | "
                     + " | ".join(f"{values[c]:.3f}" for c in CLASSES) + " |")
    (args.out / "anatomy.md").write_text("\n".join(lines) + "\n")
    figure(args.out / "anatomy.png", args.slices)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
