"""Tiny synthetic stores and configs for the engine tests (imported by tests/test_engine*.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from medsr.data.store import StoreWriter

TINY_MODEL = {"type": "liif", "encoder": {"type": "edsr", "n_feats": 4, "n_blocks": 1}, "hidden": [8]}


def smooth_volume(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """A positive volume made of a few Gaussian blobs (band-limited enough for k-space degradation)."""
    z, y, x = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    vol = np.full(shape, 0.1, dtype=np.float32)
    for _ in range(4):
        c = rng.uniform(0, 1, 3) * np.array(shape)
        s = rng.uniform(3, 6)
        vol += rng.uniform(0.5, 1.0) * np.exp(-((z - c[0]) ** 2 / 4 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / (2 * s * s))
    return vol


def write_store(root: Path, shape: tuple[int, int, int] = (3, 24, 24), seed: int = 0, labels: bool = True) -> Path:
    """Five subjects (three train, one val, one test) with contrasts T1 and T2 and (unless ``labels`` is False)
    labels."""
    rng = np.random.default_rng(seed)
    writer = StoreWriter(root, ["T1", "T2"], {0: "background", 1: "tissue"})
    sids = [f"s{i}" for i in range(5)]
    for sid in sids:
        t2 = smooth_volume(rng, shape)
        writer.add_subject(sid, {"T1": 1.5 - t2, "T2": t2}, labels=(t2 > 0.5).astype(np.uint8) if labels else None)
    writer.finish("tiny", {"train": sids[:3], "val": sids[3:4], "test": sids[4:]}, {})
    return root


def write_config(path: Path, store: Path, runs: Path, **sections: dict) -> Path:
    """A tiny CPU config; ``sections`` update data/train/val/logging key by key and replace model/loss."""
    cfg = {
        "seed": 3,
        "data": {"root": str(store), "target": "T2", "ref": "T1", "patch_size": 8, "batch_size": 2,
                 "curriculum": [{"until_step": 2, "scale": {"type": "choice", "values": [2]}, "ref": "hr"},
                                {"until_step": None, "scale": {"type": "uniform", "low": 1.5, "high": 2.5,
                                                               "asymmetric": True}, "ref": "none"}]},
        "model": TINY_MODEL,
        "loss": [{"type": "l1", "weight": 1.0}],
        "train": {"steps": 6, "lr": 1e-3, "checkpoint_every": 2, "ema": 0.9, "accelerator": "cpu", "devices": 1,
                  "deterministic": True, "scheduler": {"type": "cosine", "warmup_steps": 2}},
        "val": {"every": 3, "scales": [2.0], "ref": "none", "batch_size": 4},
        "logging": {"runs_dir": str(runs), "log_every": 1, "image_every": 1},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg[key], **value} if key in ("data", "train", "val", "logging") else value
    path.write_text(yaml.safe_dump(cfg))
    return path
