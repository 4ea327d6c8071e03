"""PSNR + SSIM over N pairs of float images: batched torch (medsr.metrics.image) vs a per-image scikit-image loop
with the same settings (Gaussian sigma 1.5, 11x11, population covariance, data range 1), in one run.

    python benchmarks/metrics_speed.py [--pairs 1000] [--size 256] [--threads T] [--device cpu|cuda]

By default torch runs on one thread, like the scikit-image loop: the ratio compares one core with one core.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medsr.metrics.image import psnr, ssim


def skimage_loop(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = [peak_signal_noise_ratio(g, x, data_range=1.0) for x, g in zip(pred, gt)]
    s = [structural_similarity(g, x, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
         for x, g in zip(pred, gt)]
    return np.asarray(p), np.asarray(s)


def torch_batched(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p, s = psnr(pred, gt, 1.0), ssim(pred, gt, 1.0)
    if pred.is_cuda:
        torch.cuda.synchronize()
    return p, s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    gt = rng.random((args.pairs, args.size, args.size), dtype=np.float32)
    pred = np.clip(gt + 0.05 * rng.standard_normal(gt.shape, dtype=np.float32), 0, 1)
    tp = torch.from_numpy(pred)[:, None].to(args.device)
    tg = torch.from_numpy(gt)[:, None].to(args.device)
    torch_batched(tp[:2], tg[:2])

    start = time.perf_counter()
    p_t, s_t = torch_batched(tp, tg)
    t_torch = time.perf_counter() - start
    start = time.perf_counter()
    p_s, s_s = skimage_loop(pred, gt)
    t_skimage = time.perf_counter() - start

    print(f"{args.pairs} pairs of {args.size}x{args.size} float32, PSNR + SSIM (wang), device {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"scikit-image loop: {t_skimage:8.3f} s  ({1e3 * t_skimage / args.pairs:.3f} ms/pair)")
    print(f"medsr batched:     {t_torch:8.3f} s  ({1e3 * t_torch / args.pairs:.3f} ms/pair)")
    print(f"speed-up:          {t_skimage / t_torch:8.1f}x")
    print(f"max |diff|: PSNR {np.abs(p_t.cpu().double().numpy() - p_s).max():.2e} dB, "
          f"SSIM {np.abs(s_t.cpu().double().numpy() - s_s).max():.2e}")


if __name__ == "__main__":
    main()
