"""Whole-volume super-resolution cost: a 256x256x150 volume at x2 in-plane and at 6.5 mm -> 1 mm through-plane.

Prints time and peak memory per case on CPU, and on CUDA when one is present, with the shipped sakg weights when
installed, else the default-config sakg with random weights (same cost, meaningless output). Each case runs in a
fresh process so its peak memory (max RSS on CPU, max allocated on CUDA) is its own. With ``--planes N`` only the
first N planes of each pass are super-resolved and the time is extrapolated to the whole pass (the default on
CPU, where the full volume takes hours); the side-by-side ratio of tiled to whole-plane inference is measured on
the same planes.

    python benchmarks/volume.py [--device cpu|cuda|all] [--planes N] [--batch-size B] [--tile T]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from typing import Any

import numpy as np

SHAPE = (256, 256, 150)
CASES = {"x2 in-plane": (512, 512, 150), "6.5 mm -> 1 mm through-plane": (256, 256, 975)}


def phantom(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A smooth positive volume (random Gaussian blobs) normalised to about [0, 1]."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij", sparse=True)
    volume = np.zeros(shape, np.float32)
    for _ in range(12):
        centre, width = rng.uniform(-0.7, 0.7, 3), rng.uniform(0.1, 0.4)
        volume += np.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre)) / (2 * width**2)).astype(np.float32)
    return volume / volume.max()


def load_model() -> tuple[Any, int, str]:
    from medsr.errors import InputError
    from medsr.infer.super_resolve import default_weights
    from medsr.infer.volume import model_slices

    try:
        from medsr.checkpoint import build_from_weights

        model, meta = build_from_weights(default_weights())
        return model, model_slices(model, meta), "shipped sakg_synth.pth"
    except InputError:
        from medsr.registry import MODELS

        model = MODELS.build({"type": "sakg"}).eval()
        return model, model_slices(model), "default-config sakg, RANDOM weights (no shipped file)"


def passes(out_shape: tuple[int, int, int]) -> list[tuple[tuple[int, ...], tuple[int, int], int]]:
    """(stack axes order, plane output size, number of planes) of each pass of :func:`super_resolve`."""
    X, Y, Z = out_shape
    if Z == SHAPE[2]:
        return [((2, 0, 1), (X, Y), SHAPE[2])]
    return [((0, 1, 2), (Y, Z), X), ((1, 0, 2), (X, Z), Y)]


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(name: str, device_name: str, planes: int | None, batch_size: int, tile: int) -> dict[str, Any]:
    """Time one case in this process; returns the figures."""
    import torch

    from medsr.infer.volume import super_resolve
    from medsr.inference.planes import InferenceOptions, predict_planes

    torch.set_num_threads(torch.get_num_threads() if device_name == "cuda" else 2)
    device = torch.device(device_name)
    model, n_slices, source = load_model()
    model.to(device)
    volume = phantom(SHAPE)
    out_shape = CASES[name]
    whole = InferenceOptions(batch_size=batch_size, device=device, progress=False)
    tiled = InferenceOptions(batch_size=batch_size, tile=tile, device=device, progress=False)
    figures: dict[str, Any] = {"case": name, "device": device_name, "model": source, "n_slices": n_slices}
    with torch.inference_mode():
        if planes is None:
            super_resolve(volume[:, :, :2], out_shape[:2] + (2,), model, n_slices=n_slices, options=whole)  # warm-up
            _sync(device)
            start = time.perf_counter()
            super_resolve(volume, out_shape, model, n_slices=n_slices, options=whole)
            _sync(device)
            figures.update(seconds=time.perf_counter() - start, extrapolated=False)
        else:
            total, ratio_parts = 0.0, []
            for order, size, count in passes(out_shape):
                stack = np.ascontiguousarray(volume.transpose(order)[: planes + 1])
                predict_planes(model, stack[:1], size, n_slices=n_slices, options=whole)  # warm-up
                timings = []
                for options in (whole, tiled):
                    _sync(device)
                    start = time.perf_counter()
                    predict_planes(model, stack[1:], size, n_slices=n_slices, options=options)
                    _sync(device)
                    timings.append((time.perf_counter() - start) / planes)
                total += timings[0] * count
                ratio_parts.append(timings[1] / timings[0])
            figures.update(seconds=total, extrapolated=True, planes_timed=planes,
                           tiled_ratio=float(np.mean(ratio_parts)), tile=tile)
    outputs = len(passes(out_shape))
    figures["buffers_mib"] = 4 * (np.prod(SHAPE) + outputs * np.prod(out_shape)) / 2**20
    if device.type == "cuda":
        figures["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        figures["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    parser.add_argument("--planes", type=int, help="planes timed per pass (default: one batch on CPU, all on CUDA)")
    parser.add_argument("--batch-size", type=int, help="planes per model call (default: 2 on CPU, 8 on CUDA)")
    parser.add_argument("--tile", type=int, default=128, help="tile size of the tiled-vs-whole ratio")
    args = parser.parse_args()

    import torch

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    print(f"volume {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]}; CUDA available: {torch.cuda.is_available()}")
    ctx = multiprocessing.get_context("spawn")
    for device in devices:
        batch = args.batch_size or (2 if device == "cpu" else 8)
        planes = args.planes if args.planes is not None else (batch if device == "cpu" else None)
        for name in CASES:
            with ctx.Pool(1) as pool:
                f = pool.apply(run_case, (name, device, planes, batch, args.tile))
            how = f"extrapolated from {f['planes_timed']} planes per pass" if f["extrapolated"] else "measured"
            line = (f"{f['case']:<30} {f['device']:<5} {f['seconds']:9.1f} s ({how})  peak {f['peak_mib']:8.0f} MiB")
            if f["extrapolated"]:
                line += (f" + {f['buffers_mib']:.0f} MiB whole-volume buffers not allocated here;"
                         f"  tiled/whole time ratio {f['tiled_ratio']:.2f} (tile {f['tile']})")
            print(line + f"  [batch {batch}; {f['model']}, {f['n_slices']} slice(s)]", flush=True)


if __name__ == "__main__":
    main()
