"""Fair quality benchmark (issue 11): controlled factors, per-method learning rates, seeds with t-intervals,
paired ablations, leakage rows, leak-reduced data, brain-masked metrics, and the semantic-prior and wrong-scale
probes of SAKG.

Protocol (the header of ``results.md`` prints every number)
----------------------------------------------------------
* Data: the embedded MNI store (T2 target, T1 reference, 3 adjacent slices); train on the train split, choose
  the learning rate on the val split, test on the test split and on leak-reduced generated slices (the
  domain-randomised generator of ``medsr.data.synth`` over the TEST split's label maps at seeds no training run
  uses: target and reference rendered independently, so neither the reference nor the labels fix the target).
* Variants (CPU-sized models from the package configs): single-contrast (trained and tested without reference):
  LIIF and MetaSR, each as published (bicubic head) and with the k-space head, LIIF with a SwinIR-light encoder
  (as published) and SAKG trained without reference; multi-contrast (reference at a random LR scale in
  [1, 4], dropped for a quarter of the batches; tested with HR, LR and no reference): the Dual-ArbNet-style model
  (both heads), SAKG (both heads) and SAKG without each semantic component.
* Training: the same curriculum (target scale U(1.5, 4)), batches, steps, L1 loss (SAKG with its semantic
  component adds the 0.05-weighted tissue cross-entropy), Adam, warm-up + cosine schedule and gradient clipping
  for every method; equal steps are the primary axis. Each method's learning rate is the best of a sweep on the
  val split at seed 0 under the same budget; ablations use the full SAKG's. Seeds set the batches and the
  per-module initialisation (``models.base.seeded_init``), so same-seed runs are paired.
* Statistics: per run the mean over test volumes; over seeds mean ± 95% t-interval; ablations and heads as
  paired differences (same seeds). A component "helps" only if its paired gain is significantly positive in most
  primary cells and significantly negative in none; "hurts" if significantly negative in most; else "not shown".
* Leakage rows: the reference LUT (256 bins of the HR T1 -> mean T2, fitted on the training slabs), k-space
  zero-filling plus the LUT's out-of-band part, and the label-mean image (mean T2 per tissue on the training
  slabs). A multi-contrast model that does not beat the LUT with an HR reference has shown nothing.
* Probes (full SAKG, every seed): the semantic prior replaced by the ground truth (area-downsampled one-hot
  labels of the centre slice) or a uniform prior; and a wrong scale fed to its scale conditioning (the cell
  claimed twice as large).

* Component study (``--components``, results ``components.md``): SAKG's old design next to its redesign
  ``sakg2`` (an external frozen tissue prior trained first, on its own, by :func:`train_segmenter`; residual slice
  attention; log-scale conditioning) and sakg2 without each new component, paired; slice fusion again where
  neighbouring slices carry information (``@noisy``: independent Gaussian noise on every LR slice, ``--noise``);
  the scale conditioning on asymmetric, x6/x8 and mismatched-reference cells; the prior probes of each design.

    python benchmarks/fair.py [--quick | --components] [--budget-minutes 40] [--seeds 3] [--steps N] [--workers 2]
                              [--device auto] [--bf16] [--out benchmarks/results/quality] [--work runs/fair]
    make bench                # the CPU protocol: both, then benchmarks/twostage.py (flags in the Makefile)
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SYNTH_SEED = 10**9  # evaluation seeds of generated slices (as benchmarks/transfer.py); training seeds differ
CURRICULA = {
    "single": [{"until_step": None, "scale": {"type": "uniform", "low": 1.5, "high": 4.0}, "ref": "none"}],
    "multi": [{"until_step": None, "scale": {"type": "uniform", "low": 1.5, "high": 4.0}, "ref": "lr",
               "ref_scale": {"type": "uniform", "low": 1.0, "high": 4.0}, "ref_dropout": 0.25}],
}
REFS = {"single": ("none",), "multi": ("hr", "lr", "none")}
PRIOR = "<prior>"  # stands for the weights of the frozen tissue segmenter trained in the benchmark's first stage
SAKG2 = {"prior": "external", "prior_init": PRIOR, "prior_dropout": 0.2, "fusion": "residual",
         "scale_embedding": "log"}
# variant: (config name, model overrides, mode, learning rate from: None = own sweep, else that variant's)
VARIANTS: dict[str, tuple[str, dict[str, Any], str, str | None]] = {
    "liif": ("liif", {}, "single", None),
    "liif+k": ("liif", {"head": "kspace"}, "single", None),
    "metasr": ("metasr", {}, "single", None),
    "metasr+k": ("metasr", {"head": "kspace"}, "single", None),
    "liif-swinir": ("liif_swinir", {}, "single", None),
    "sakg-noref": ("sakg", {}, "single", None),
    "dualarb": ("dualarb", {}, "multi", None),
    "dualarb+k": ("dualarb", {"head": "kspace"}, "multi", None),
    "sakg": ("sakg", {}, "multi", None),
    "sakg-bicubic": ("sakg", {"head": "bicubic"}, "multi", None),
    "sakg-no-semantic": ("sakg", {"semantic": False}, "multi", "sakg"),
    "sakg-no-attention": ("sakg", {"slice_attention": False}, "multi", "sakg"),
    "sakg-no-scalecond": ("sakg", {"scale_conditioning": False}, "multi", "sakg"),
    # the redesigned components (issue 11, item 6): external frozen prior with prior dropout at two depths,
    # residual slice attention, log-scale conditioning; each ablated from it, paired
    "sakg2": ("sakg", SAKG2, "multi", None),
    "sakg2-learned-prior": ("sakg", {**SAKG2, "prior": "learned", "prior_init": None}, "multi", "sakg2"),
    "sakg2-no-semantic": ("sakg", {**SAKG2, "semantic": False, "prior_init": None}, "multi", "sakg2"),
    "sakg2-no-attention": ("sakg", {**SAKG2, "slice_attention": False}, "multi", "sakg2"),
    "sakg2-mean-fusion": ("sakg", {**SAKG2, "fusion": "mean"}, "multi", "sakg2"),
    "sakg2-no-scalecond": ("sakg", {**SAKG2, "scale_conditioning": False}, "multi", "sakg2"),
    # where neighbouring slices carry information: every LR slice with its own Gaussian noise (train and test)
    "sakg2@noisy": ("sakg", SAKG2, "multi", "sakg2"),
    "sakg2-mean-fusion@noisy": ("sakg", {**SAKG2, "fusion": "mean"}, "multi", "sakg2"),
    "sakg2-no-attention@noisy": ("sakg", {**SAKG2, "slice_attention": False}, "multi", "sakg2"),
}
COMPONENT_VARIANTS = ("sakg", "sakg2", "sakg2-learned-prior", "sakg2-no-semantic", "sakg2-no-attention",
                      "sakg2-mean-fusion", "sakg2-no-scalecond", "sakg2@noisy", "sakg2-mean-fusion@noisy",
                      "sakg2-no-attention@noisy")
QUICK_VARIANTS = ("liif", "liif+k", "dualarb", "dualarb+k", "sakg", "sakg-no-semantic")
HEAD_PAIRS = {"liif": "liif+k", "metasr": "metasr+k", "dualarb": "dualarb+k", "sakg-bicubic": "sakg"}
ABLATIONS = {"semantic": "sakg-no-semantic", "slice attention": "sakg-no-attention",
             "scale conditioning": "sakg-no-scalecond"}
ABLATIONS2 = {"external prior (vs none)": "sakg2-no-semantic", "external vs learned prior": "sakg2-learned-prior",
              "residual attention (vs centre only)": "sakg2-no-attention",
              "residual attention vs mean fusion": "sakg2-mean-fusion",
              "log-scale conditioning (vs none)": "sakg2-no-scalecond"}
NOISY_PAIRS = {"residual attention (vs centre only)": ("sakg2@noisy", "sakg2-no-attention@noisy"),
               "residual attention vs mean fusion": ("sakg2@noisy", "sakg2-mean-fusion@noisy"),
               "mean fusion (vs centre only)": ("sakg2-mean-fusion@noisy", "sakg2-no-attention@noisy")}
SCALE_PAIRS = {"log-scale conditioning (vs none): sakg2 - sakg2-no-scalecond": ("sakg2", "sakg2-no-scalecond")}
PROBED = ("sakg", "sakg2", "sakg2-learned-prior")  # variants whose priors and scale inputs are probed
# scale-conditioning cells (test set): asymmetric target scales, scales beyond training, a mismatched LR reference
SCALE_CELLS = {"test|none|x2x4": ((2.0, 4.0), None), "test|none|x6": ((6.0, 6.0), None),
               "test|none|x8": ((8.0, 8.0), None), "test|lr1.5|x4": ((4.0, 4.0), (1.5, 1.5))}
PRIMARY_REFS = ("lr", "none")  # where semantics could matter (issue 11, item 4)
# the flagship against the baselines under the same inputs (same seeds = same batches; different models)
COMPARISONS = {"single": {"sakg-noref - liif+k": ("sakg-noref", "liif+k"), "sakg-noref - liif": ("sakg-noref", "liif"),
                          "sakg-noref - liif-swinir": ("sakg-noref", "liif-swinir")},
               "multi": {"sakg - dualarb+k": ("sakg", "dualarb+k"), "sakg - dualarb": ("sakg", "dualarb"),
                         "sakg2 - dualarb+k": ("sakg2", "dualarb+k")}}


# ----------------------------------------------------------------------------------------------- settings


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The protocol's sizes from the flags (``--quick``: a smoke-sized run of a few minutes; ``--components``:
    SAKG's old design and its redesigned components, ablated one at a time)."""
    quick = args.quick
    suite = COMPONENT_VARIANTS if args.components else QUICK_VARIANTS if quick else VARIANTS
    return {
        "variants": [v for v in suite if not args.only or v in args.only],
        "seeds": args.seeds or (2 if quick else 3),
        "lrs": args.lrs or ([1e-3, 4e-3] if quick else [5e-4, 1.5e-3, 4e-3]),
        "scales": args.scales or [2.0, 4.0],
        "patch": args.patch or 16,
        "batch": args.batch or (4 if quick else 8),
        "synth_fov": 64 if quick else 96,
        "synth_items": args.synth_items or (4 if quick else 8),
        "test_slices": args.test_slices or (1 if quick else 3),
        "curve_points": args.curve_points or (3 if quick else 4),
        "val_slices": args.val_slices or 2,
        "device": args.device,
        "bf16": args.bf16,
        "noise": args.noise,
        "prior_steps": args.prior_steps,
    }


def model_spec(variant: str, cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """The variant's model spec; the prior placeholder becomes ``cfg["prior_weights"]`` (the first stage's)."""
    from medsr.config import find_config, load_config, to_dict

    name, overrides, _, _ = VARIANTS[variant]
    spec = {**to_dict(load_config(find_config(name)))["model"], **overrides}
    if spec.get("prior_init") == PRIOR:
        spec["prior_init"] = (cfg or {}).get("prior_weights")
    return spec


def noise_of(variant: str, cfg: dict[str, Any]) -> float:
    """Standard deviation of the Gaussian noise on every LR slice (normalised units) for ``variant``."""
    return cfg["noise"] if variant.endswith("@noisy") else 0.0


class Noisy:
    """A dataset view whose items' LR slices carry independent Gaussian noise, fixed by the item's spec (so
    every variant sees the same noise for the same sample: paired)."""

    def __init__(self, data: Any, sigma: float):
        self.data, self.sigma = data, sigma

    def __getattr__(self, name: str) -> Any:
        return getattr(self.data, name)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, spec: Any) -> dict[str, Any]:
        import torch

        item = dict(self.data[spec])
        rng = np.random.default_rng([7, spec.index, spec.seed, int(round(spec.scale[0] * 1000))])
        noise = torch.from_numpy(rng.standard_normal(tuple(item["lr"].shape)).astype(np.float32))
        item["lr"] = item["lr"] + self.sigma * noise
        return item


def with_noise(data: Any, sigma: float) -> Any:
    return Noisy(data, sigma) if sigma > 0 else data


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


# ----------------------------------------------------------------------------------------------- training


def loss_specs(spec: dict[str, Any]) -> list[dict[str, Any]]:
    terms = [{"type": "l1", "weight": 1.0}]
    if spec["type"] == "sakg" and spec.get("semantic", True) and spec.get("prior", "learned") == "learned":
        terms.append({"type": "sakg_semantic", "weight": 0.05})
    return terms


def build_model(variant: str, seed: int, cfg: dict[str, Any] | None = None) -> Any:
    from medsr import checkpoint
    from medsr.models.base import seeded_init

    return seeded_init(checkpoint.build_model(model_spec(variant, cfg)), seed)


def dataset(cfg: dict[str, Any], split: str, mode: str, patch: int | None) -> Any:
    from medsr.data.datasets import SRSliceDataset

    return SRSliceDataset(cfg["data"], split, "T2", ref="T1" if mode == "multi" else None, n_adjacent=1,
                          patch_size=patch, use_labels=True)


def val_subset(data: Any, n: int) -> list[int]:
    """Evenly spaced item indices of the first val subject (the curve and lr-selection slices)."""
    first = data.items[0][0]
    idx = [i for i, (sid, _) in enumerate(data.items) if sid == first]
    return [idx[round(j)] for j in np.linspace(0, len(idx) - 1, min(n, len(idx)))]


def quick_psnr(model: Any, data: Any, indices: list[int], ref: str, scales: list[float], device: str) -> float:
    """Mean PSNR over ``indices`` and ``scales`` (whole field, ``volume_score`` on the stacked slices)."""
    from medsr.data.datasets import eval_specs
    from medsr.evaluation.scores import predict_volumes, volume_score

    values = []
    for s in scales:
        specs = eval_specs(data, s, ref, s if ref == "lr" else None)
        for sid, sr, hr, _ in predict_volumes(model, data, [specs[i] for i in indices], device=device):
            values.append(volume_score(sid, sr, hr).psnr)
    model.train()
    return float(np.mean(values))


def adam_cosine(params: Any, lr: float, steps: int) -> tuple[Any, Any]:
    """The protocol's optimiser: Adam at ``lr``, 5% linear warm-up, then cosine decay to 0 over ``steps``."""
    from medsr.optim import make_optimizer, make_scheduler

    optimiser = make_optimizer(params, lr)
    return optimiser, make_scheduler(optimiser, steps, {"type": "cosine", "warmup_steps": max(1, steps // 20)})


def train_run(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (variant, seed, lr) for ``steps``; record the val learning curve; save the weights. Optional job
    keys (a second training stage, ``benchmarks/twostage.py``): ``init`` (state dict to start from), ``extra_loss``
    (loss specs added to the variant's), ``batch_seed`` (batches other than the seed's) and ``tag`` (run name)."""
    import torch

    torch.set_num_threads(1)
    from medsr.data.datasets import ScaleBatchSampler
    from medsr.scales import Curriculum
    from medsr.evaluation.scores import collate
    from medsr.losses import WeightedSum
    from medsr.optim import clip_norm, update

    variant, seed, lr, steps, cfg = job["variant"], job["seed"], job["lr"], job["steps"], job["cfg"]
    mode, device = VARIANTS[variant][2], resolve_device(cfg["device"])
    torch.manual_seed(job.get("batch_seed", seed))  # in-forward randomness (prior dropout): a run repeats exactly
    model = build_model(variant, seed, cfg)
    if job.get("init"):
        model.load_state_dict(torch.load(job["init"], weights_only=True))
    model = model.to(device).train()
    criterion = WeightedSum(loss_specs(model_spec(variant, cfg)) + list(job.get("extra_loss", [])))
    train = with_noise(dataset(cfg, "train", mode, cfg["patch"]), noise_of(variant, cfg))
    val = with_noise(dataset(cfg, "val", mode, None), noise_of(variant, cfg))
    val_idx = val_subset(val, cfg["val_slices"])
    val_ref = "lr" if mode == "multi" else "none"
    sampler = ScaleBatchSampler(len(train), cfg["batch"], Curriculum.from_config(CURRICULA[mode]),
                                job.get("batch_seed", seed), num_steps=steps)
    optimiser, scheduler = adam_cosine(model.parameters(), lr, steps)
    clip = clip_norm(model, 1.0)
    marks = set(np.linspace(0, steps, cfg["curve_points"]).round().astype(int).tolist())
    curve, seconds = [], 0.0
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=cfg["bf16"])
    for step, specs in enumerate(sampler):
        if step in marks:
            curve.append([step, seconds, quick_psnr(model, val, val_idx, val_ref, [2.0, 4.0], device)])
        start = time.perf_counter()
        batch = collate([train[s] for s in specs])
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        with autocast:
            output = model(batch["lr"], tuple(batch["hr"].shape[-2:]), batch.get("ref"))
            loss, _ = criterion(output, batch["hr"], batch)
        update(optimiser, scheduler, loss.float(), clip=clip)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
    curve.append([steps, seconds, quick_psnr(model, val, val_idx, val_ref, [2.0, 4.0], device)])
    path = Path(job["work"]) / "runs" / f"{variant}{job.get('tag', '')}-s{seed}-lr{lr:g}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return progress(job, {"variant": variant, "tag": job.get("tag", ""), "seed": seed, "lr": lr, "steps": steps,
                          "seconds": seconds,
                          "curve": curve, "val_psnr": curve[-1][2], "weights": str(path),
                          "params": sum(p.numel() for p in model.parameters() if p.requires_grad)})


def soft_labels(label: Any, size: tuple[int, int], n_classes: int) -> Any:
    """Tissue fractions ``[B, n_classes, h, w]`` of HR label maps ``[B, H, W]`` on an LR grid (area-averaged
    one-hot; the prior's training target and its ground-truth probe)."""
    import torch.nn.functional as F

    onehot = F.one_hot(label, n_classes).permute(0, 3, 1, 2).float()
    return F.interpolate(onehot, size=size, mode="area")


HR_SEGMENTER = {"in_channels": 1, "base": 8, "depth": 2}  # the feature network of seg_perceptual


def segmenter_batch(batch: dict[str, Any], kind: str) -> tuple[Any, Any]:
    """A segmenter's inputs and soft targets from a batch: ``prior``, the centre LR slice with the reference on
    its grid (SAKG's external prior, targets on the LR grid); ``hr``, the HR target image (its own labels)."""
    from medsr.models.sakg import ExternalPrior, resize

    if kind == "hr":
        return batch["hr"], soft_labels(batch["label"], tuple(batch["hr"].shape[-2:]), 4)
    c = batch["lr"].shape[1] // 2
    lr = batch["lr"][:, c : c + 1]
    ref = batch.get("ref")
    x = ExternalPrior.inputs(lr, None if ref is None else resize(ref, lr.shape[-2:]))
    return x, soft_labels(batch["label"], tuple(lr.shape[-2:]), 4)


def train_segmenter(cfg: dict[str, Any], work: Path, kind: str = "prior") -> dict[str, Any]:
    """A tissue segmenter (``unet``) trained alone on the train split: ``prior``, the one
    SAKG's external prior freezes (first stage of the component study: LR slice, reference on the LR grid or
    zeros, reference present, with the multi-contrast curriculum's random scales and references); ``hr``, the
    feature network of the segmentation-guided perceptual loss (HR images). Soft cross-entropy against the
    area-averaged labels, Adam 2e-3 with cosine decay, batch 16, ``cfg["prior_steps"]`` steps; its val accuracy
    (argmax against the majority label of each pixel: x2 and x4, LR reference and none, for the prior) is
    reported."""
    import torch

    from medsr.checkpoint import save_weights
    from medsr.data.datasets import ScaleBatchSampler, eval_specs
    from medsr.evaluation.scores import collate
    from medsr.models.base import seeded_init
    from medsr.models.sakg import DEFAULT_PRIOR_NET
    from medsr.models.unet import UNet
    from medsr.optim import update
    from medsr.scales import Curriculum

    torch.set_num_threads(2)
    start = time.perf_counter()
    spec = HR_SEGMENTER if kind == "hr" else {k: v for k, v in DEFAULT_PRIOR_NET.items() if k != "type"}
    net = seeded_init(UNet(**spec), 0).train()
    train = dataset(cfg, "train", "multi", cfg["patch"])
    steps = cfg["prior_steps"]
    sampler = ScaleBatchSampler(len(train), 16, Curriculum.from_config(CURRICULA["multi"]), 424242, num_steps=steps)
    optimiser, scheduler = adam_cosine(net.parameters(), 2e-3, steps)
    for specs in sampler:
        x, target = segmenter_batch(collate([train[s] for s in specs]), kind)
        loss = -(target * net(x).log_softmax(dim=1)).sum(dim=1).mean()
        update(optimiser, scheduler, loss)
    net.eval()
    val = dataset(cfg, "val", "multi", None)
    accuracy = {}
    cells = [("lr", 2.0), ("lr", 4.0), ("none", 2.0), ("none", 4.0)] if kind == "prior" else [("none", 2.0)]
    with torch.no_grad():
        for ref, scale in cells:
            specs = eval_specs(val, scale, ref, scale if ref == "lr" else None)[:: max(1, len(val) // 16)]
            hits = total = 0
            for i in range(0, len(specs), 8):
                x, target = segmenter_batch(collate([val[s] for s in specs[i : i + 8]]), kind)
                hits += int((net(x).argmax(1) == target.argmax(1)).sum())
                total += target[:, 0].numel()
            accuracy[f"val|{ref}|x{scale:g}" if kind == "prior" else "val|hr"] = hits / total
    path = work / kind / "weights.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(path, {"type": "unet", **spec}, net.state_dict(), meta={"task": "segmentation"})
    record = {"weights": str(path), "steps": steps, "seconds": time.perf_counter() - start, "accuracy": accuracy}
    print(f"fair: {kind} segmenter {steps} steps in {record['seconds']:.0f} s, val accuracy "
          + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()), flush=True)
    return record


def progress(job: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Append ``record`` to ``<work>/progress.jsonl`` as soon as a run is done (one line each), and return it."""
    line = json.dumps({k: v for k, v in record.items() if k != "cfg"}) + "\n"
    Path(job["work"]).mkdir(parents=True, exist_ok=True)
    with open(Path(job["work"]) / "progress.jsonl", "a") as f:
        f.write(line)
    return record


# ----------------------------------------------------------------------------------------------- evaluation


def synth_dataset(cfg: dict[str, Any], n_items: int) -> Any:
    from medsr.config import SynthConfig
    from medsr.data.synth import SynthSliceDataset

    params = SynthConfig(real_fraction=0.0, region=cfg["synth_fov"])
    return SynthSliceDataset(cfg["data"], params, split="test", n_adjacent=1, patch_size=None, use_labels=True,
                             length=n_items)


def specs_for(data: Any, name: str, scale: float, ref: str, cfg: dict[str, Any]) -> list[Any]:
    """Evaluation specs: the embedded test split (every slice, or evenly spaced ones per subject in ``--quick``)
    or the generated slices at seeds ``SYNTH_SEED + i``."""
    from medsr.data.datasets import SampleSpec, eval_specs

    ref_scale = (scale, scale) if ref == "lr" else None
    if name == "synth":
        return [SampleSpec(index=i, scale=(scale, scale), ref_scale=ref_scale, use_ref=ref != "none",
                           seed=SYNTH_SEED + i) for i in range(len(data))]
    specs = eval_specs(data, scale, ref, scale if ref == "lr" else None)
    if cfg["test_slices"] is None:
        return specs
    keep = []
    for sid in dict.fromkeys(s for s, _ in data.items):
        idx = [i for i, (s, _) in enumerate(data.items) if s == sid]
        keep += [idx[round(j)] for j in np.linspace(0, len(idx) - 1, min(cfg["test_slices"], len(idx)))]
    return [specs[i] for i in keep]


def eval_sets(cfg: dict[str, Any], sigma: float = 0.0) -> dict[str, Any]:
    from medsr.data.datasets import SRSliceDataset

    test = SRSliceDataset(cfg["data"], "test", "T2", ref="T1", n_adjacent=1, patch_size=None, use_labels=True)
    return {"test": with_noise(test, sigma), "synth": with_noise(synth_dataset(cfg, cfg["synth_items"]), sigma)}


def scale_specs(data: Any, name: str, cfg: dict[str, Any]) -> list[Any]:
    """Specs of a :data:`SCALE_CELLS` cell on the test set (the same slices as :func:`specs_for`)."""
    from dataclasses import replace

    scale, ref_scale = SCALE_CELLS[name]
    base = specs_for(data, "test", 2.0, "none", cfg)
    return [replace(s, scale=scale, ref_scale=ref_scale, use_ref=ref_scale is not None) for s in base]


def score(model: Any, data: Any, specs: list[Any], device: str, on_batch: Any = None) -> dict[str, float]:
    """Whole-field and brain-masked PSNR/SSIM, means over volumes (subjects) of the specs."""
    from medsr.evaluation.scores import brain_mask, masked_score, predict_volumes, volume_score

    rows = []
    for sid, sr, hr, _ in predict_volumes(model, data, specs, device=device, on_batch=on_batch):
        whole = volume_score(str(sid), sr, hr)
        mp_, ms_ = masked_score(sr, hr, brain_mask(hr))
        rows.append((whole.psnr, whole.ssim, mp_, ms_))
    psnr, ssim, mpsnr, mssim = (float(v) for v in np.mean(rows, axis=0))
    return {"psnr": psnr, "ssim": ssim, "psnr_mask": mpsnr, "ssim_mask": mssim}


def eval_run(job: dict[str, Any]) -> dict[str, Any]:
    """Scores of one trained run on every evaluation set, scale and reference mode (+ SAKG's probes)."""
    import torch

    torch.set_num_threads(1)
    cfg, variant = job["cfg"], job["variant"]
    device = resolve_device(cfg["device"])
    model = build_model(variant, 0, cfg)
    model.load_state_dict(torch.load(job["weights"], weights_only=True))
    model = model.to(device).eval()
    sets = eval_sets(cfg, noise_of(variant, cfg))
    cells = {}
    for name, data in sets.items():
        for ref in REFS[VARIANTS[variant][2]]:
            for s in cfg["scales"]:
                cells[f"{name}|{ref}|x{s:g}"] = score(model, data, specs_for(data, name, s, ref, cfg), device)
    if variant.startswith("sakg2") or variant in PROBED:
        for name in SCALE_CELLS:
            cells[name] = score(model, sets["test"], scale_specs(sets["test"], name, cfg), device)
    if variant in PROBED and job.get("probes", True):
        cells.update(probes(model, sets, cfg, device))
    return progress(job, {**job, "cells": cells})


def probes(model: Any, sets: dict[str, Any], cfg: dict[str, Any], device: str) -> dict[str, dict[str, float]]:
    """Semantic-prior test (predicted / ground-truth / uniform prior) and wrong-scale test, without reference and
    with an LR reference, on both evaluation sets."""
    import torch

    labels: dict[str, torch.Tensor] = {}

    def truth(logits: torch.Tensor) -> torch.Tensor:
        """The ground-truth tissue map as logits: every slice of the stack gets the centre's labels."""
        prob = soft_labels(labels["label"].to(logits.device), tuple(logits.shape[-2:]), logits.shape[1])
        repeat = logits.shape[0] // prob.shape[0]
        return torch.log(prob.clamp_min(1e-4)).repeat_interleave(repeat, dim=0).to(logits.dtype)

    def wrong(code: torch.Tensor) -> torch.Tensor:
        """The scale claimed half the true one: the cell twice as large (linear), log-scale minus 1/3 (log)."""
        return code - 1 / 3 if model.scale_embedding == "log" else code * 2.0

    settings = (("prior=truth", {"prior_logits": truth}), ("prior=uniform", {"prior_logits": torch.zeros_like}),
                ("wrong-scale", {"scale_code": wrong}))
    out = {}
    for name, data in sets.items():
        for ref in PRIMARY_REFS:
            for s in cfg["scales"]:
                specs = specs_for(data, name, s, ref, cfg)
                for probe, options in settings:
                    with model.probe(**options):
                        out[f"{name}|{ref}|x{s:g}|{probe}"] = score(
                            model, data, specs, device, on_batch=lambda b: labels.__setitem__("label", b["label"]))
    return out


def fixed_rows(cfg: dict[str, Any], sigma: float = 0.0) -> dict[str, dict[str, dict[str, float]]]:
    """Zero-filling, bicubic and the leakage rows on every evaluation set and scale (deterministic); with input
    noise ``sigma``, zero-filling and bicubic of the noisy inputs only."""
    import torch

    from medsr.registry import MODELS

    torch.set_num_threads(1)
    sets = eval_sets(cfg, sigma)
    methods = {"zerofill": (MODELS.build({"type": "zerofill"}), "none"),
               "bicubic": (MODELS.build({"type": "bicubic"}), "none")}
    if sigma == 0:  # the leakage rows read clean references and labels: fitted once, on the training slabs
        lut, label_means = fit_leaks(dataset(cfg, "train", "multi", None))
        methods |= {"leak: ref LUT": (LeakModel("lut", lut, label_means), "hr"),
                    "leak: zero-fill + LUT out-of-band": (LeakModel("zf+lut", lut, label_means), "hr"),
                    "leak: label mean": (LeakModel("labels", lut, label_means), "none")}
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for method, (model, ref) in methods.items():
        cells = {}
        for name, data in sets.items():
            for s in cfg["scales"]:
                hook = model.take if isinstance(model, LeakModel) else None
                cells[f"{name}|{ref}|x{s:g}"] = score(model, data, specs_for(data, name, s, ref, cfg), "cpu", hook)
        rows[method] = cells
    return rows


def fit_leaks(train: Any) -> tuple[np.ndarray, np.ndarray]:
    """The 256-bin reference LUT (HR T1 bin -> mean HR T2, empty bins interpolated; T1 clipped to [0, 1.5]) and
    the mean T2 per tissue label, both over every training slice."""
    t1, t2, labels = [], [], []
    store = train.store
    for sid in store.subjects("train"):
        t1.append(store.volume(sid, "T1").ravel())
        t2.append(store.volume(sid, "T2").ravel())
        labels.append(store.volume(sid, "label").ravel())
    x, y, lab = np.concatenate(t1), np.concatenate(t2), np.concatenate(labels).astype(int)
    bins = lut_bins(x)
    sums, counts = np.bincount(bins, y, 256), np.bincount(bins, minlength=256)
    filled = counts > 0
    lut = np.interp(np.arange(256), np.flatnonzero(filled), sums[filled] / counts[filled])
    means = np.bincount(lab, y) / np.maximum(np.bincount(lab), 1)
    return lut.astype(np.float32), means.astype(np.float32)


def lut_bins(x: np.ndarray) -> np.ndarray:
    return np.clip((x / 1.5 * 255).round(), 0, 255).astype(int)


class LeakModel:
    """A leakage 'method' behind the model interface: the LUT of the reference, zero-filling plus the LUT's
    out-of-band part, or the label-mean image (labels handed over by ``take`` before each batch)."""

    def __init__(self, kind: str, lut: np.ndarray, label_means: np.ndarray):
        self.kind, self.lut, self.label_means, self.label = kind, lut, label_means, None

    def take(self, batch: dict[str, Any]) -> None:
        self.label = batch["label"]

    def eval(self) -> "LeakModel":
        return self

    def __call__(self, lr: Any, out_size: tuple[int, int], ref: Any) -> Any:
        import torch

        from medsr.kspace import zero_fill_upsample
        from medsr.kspace import band_projection

        if self.kind == "labels":
            return torch.from_numpy(self.label_means[self.label.numpy()])[:, None]
        guess = torch.from_numpy(self.lut[lut_bins(ref.numpy())])
        if self.kind == "lut":
            return guess
        centre = lr[:, lr.shape[1] // 2 : lr.shape[1] // 2 + 1]
        base = zero_fill_upsample(centre, out_size, magnitude=False).real
        return base + guess - band_projection(guess, centre.shape[-2:])


# ----------------------------------------------------------------------------------------------- statistics


def t_interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t interval (NaN for one value), from the evaluation package."""
    from medsr.evaluation.report import mean_half_width

    return mean_half_width(values)


def per_seed(evals: list[dict[str, Any]], variant: str, cell: str, metric: str) -> dict[int, float]:
    return {e["seed"]: e["cells"][cell][metric] for e in evals if e["variant"] == variant and cell in e["cells"]}


def paired(evals: list[dict[str, Any]], a: str, b: str, cell: str, metric: str) -> tuple[float, float]:
    """Mean ± t-interval of ``a - b`` over the seeds both ran (same seed = same batches and shared init)."""
    xa, xb = per_seed(evals, a, cell, metric), per_seed(evals, b, cell, metric)
    diffs = [xa[s] - xb[s] for s in sorted(xa) if s in xb]
    return t_interval(diffs) if diffs else (math.nan, math.nan)


def verdict(gains: list[tuple[float, float]]) -> str:
    """"helps" / "hurts" / "not shown" from the paired gains (mean, half-width) of the primary cells."""
    pos = sum(1 for m, h in gains if m - h > 0)
    neg = sum(1 for m, h in gains if m + h < 0)
    if pos > len(gains) / 2 and neg == 0:
        return "helps"
    if neg > len(gains) / 2 and pos == 0:
        return "hurts"
    return "not shown"


# ----------------------------------------------------------------------------------------------- report


def cell_names(cfg: dict[str, Any], refs: tuple[str, ...]) -> list[str]:
    return [f"{d}|{r}|x{s:g}" for d in ("test", "synth") for r in refs for s in cfg["scales"]]


def fmt(m: float, h: float, digits: int = 2) -> str:
    return f"{m:.{digits}f}" if math.isnan(h) else f"{m:.{digits}f} ± {h:.{digits}f}"


def results_table(evals: list[dict[str, Any]], fixed: dict[str, Any], cfg: dict[str, Any], variants: list[str],
                  refs: tuple[str, ...], metric: str, leak_rows: list[str]) -> list[str]:
    digits = 4 if metric.startswith("ssim") else 2
    cols = cell_names(cfg, refs)
    lines = ["| method | " + " | ".join(c.replace("|", " ") for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for name in leak_rows:
        ref = fixed_ref(name)
        data_ref_scale = [c.split("|") for c in cols]  # a reference-reading row only under its own reference mode
        vals = [None if ref == "hr" and r != "hr" else fixed[name].get(f"{d}|{ref}|{s}") for d, r, s in data_ref_scale]
        lines.append(f"| {name} ({ref} ref) | " + " | ".join(
            "" if v is None else f"{v[metric]:.{digits}f}" for v in vals) + " |")
    for v in variants:
        vals = [t_interval(list(per_seed(evals, v, c, metric).values())) for c in cols]
        lines.append(f"| {v} | " + " | ".join(fmt(m, h, digits) for m, h in vals) + " |")
    return lines


def fixed_ref(name: str) -> str:
    return "hr" if "LUT" in name else "none"


def diff_table(evals: list[dict[str, Any]], pairs: dict[str, tuple[str, str]], cells: list[str], metric: str,
               verdicts: bool) -> list[str]:
    lines = ["| comparison | " + " | ".join(c.replace("|", " ") for c in cells) + (" | verdict |" if verdicts else " |"),
             "|---|" + "---|" * (len(cells) + int(verdicts))]
    for label, (a, b) in pairs.items():
        gains = [paired(evals, a, b, c, metric) for c in cells]
        if all(math.isnan(m) for m, _ in gains):
            continue
        row = f"| {label} | " + " | ".join(fmt(m, h) for m, h in gains) + " |"
        lines.append(row + (f" {verdict(gains)} |" if verdicts else ""))
    return lines


def probe_table(evals: list[dict[str, Any]], cfg: dict[str, Any], variant: str) -> list[str]:
    cells = cell_names(cfg, PRIMARY_REFS)
    lines = [f"| probe ({variant}, PSNR dB) | " + " | ".join(c.replace("|", " ") for c in cells) + " |",
             "|---|" + "---|" * len(cells)]
    runs = [e for e in evals if e["variant"] == variant]
    if not runs:
        return []
    for label, key in (("predicted prior", None), ("ground-truth prior", "prior=truth"),
                       ("uniform prior", "prior=uniform"), ("wrong scale (claimed half)", "wrong-scale")):
        vals = [t_interval([r["cells"][c if key is None else f"{c}|{key}"]["psnr"] for r in runs]) for c in cells]
        lines.append(f"| {label} | " + " | ".join(fmt(m, h) for m, h in vals) + " |")
    for label, key_a, key_b in (("truth - predicted", "prior=truth", None), ("predicted - uniform", None, "prior=uniform"),
                                ("correct - wrong scale", None, "wrong-scale")):
        vals = []
        for c in cells:
            a = [r["cells"][c if key_a is None else f"{c}|{key_a}"]["psnr"] for r in runs]
            b = [r["cells"][c if key_b is None else f"{c}|{key_b}"]["psnr"] for r in runs]
            vals.append(t_interval([x - y for x, y in zip(a, b)]))
        lines.append(f"| paired: {label} | " + " | ".join(fmt(m, h) for m, h in vals) + " |")
    return lines


def equal_time(trains: list[dict[str, Any]], variants: list[str]) -> tuple[float, list[str]]:
    """Val PSNR of each variant at the wall time of the fastest method's full budget (linear interpolation of the
    mean learning curve), next to its equal-steps figure."""
    curves = {v: [t for t in trains if t["variant"] == v and t.get("final")] for v in variants}
    curves = {v: c for v, c in curves.items() if c}
    budget = min(np.mean([t["seconds"] for t in c]) for c in curves.values())
    lines = [f"| method | train s (mean) | val PSNR at equal steps | val PSNR at {budget:.0f} s |", "|---|---|---|---|"]
    for v, runs in curves.items():
        at_t = [float(np.interp(budget, [p[1] for p in r["curve"]], [p[2] for p in r["curve"]])) for r in runs]
        lines.append(f"| {v} | {np.mean([r['seconds'] for r in runs]):.0f} | "
                     f"{fmt(*t_interval([r['val_psnr'] for r in runs]))} | {fmt(*t_interval(at_t))} |")
    return budget, lines


def plot_curves(trains: list[dict[str, Any]], variants: list[str], budget: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for v in variants:
        runs = [t for t in trains if t["variant"] == v and t.get("final")]
        if not runs:
            continue
        steps = [p[0] for p in runs[0]["curve"]]
        psnr = np.mean([[p[2] for p in r["curve"]] for r in runs], axis=0)
        secs = np.mean([[p[1] for p in r["curve"]] for r in runs], axis=0)
        axes[0].plot(steps, psnr, marker="o", label=v)
        axes[1].plot(secs, psnr, marker="o", label=v)
    axes[1].axvline(budget, color="grey", linestyle="--", linewidth=1)
    axes[0].set(xlabel="training step", ylabel="val PSNR (dB, x2 and x4)", title="equal steps")
    axes[1].set(xlabel="training seconds", title="equal wall time (dashed: read-off)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def protocol(cfg: dict[str, Any], steps: int, wall: float) -> dict[str, Any]:
    from medsr.evaluation.scores import BRAIN_MASK, MASK_FRACTION, PROTOCOL

    return {
        **PROTOCOL,
        "mask": "whole field, and brain-masked (" + BRAIN_MASK.format(fraction=MASK_FRACTION) + ")",
        "sets": f"test = embedded test split ({'every' if cfg['test_slices'] is None else cfg['test_slices']} "
                f"slice(s) per subject); synth = {cfg['synth_items']} generated {cfg['synth_fov']}px slices over "
                f"the test split's label maps, seeds {SYNTH_SEED}+i (unit: the slices of one label subject)",
        "target/ref": "T2 / T1, 3 adjacent slices; LR reference at the target's scale",
        "steps": steps,
        "batch": f"{cfg['batch']} x LR patch {cfg['patch']}",
        "seeds": cfg["seeds"],
        "lr sweep": ", ".join(f"{x:g}" for x in cfg["lrs"]) + " (val split, seed 0; val PSNR at x2/x4, "
                    f"{cfg['val_slices']} slices, LR ref for multi-contrast models)",
        "curricula": json.dumps(CURRICULA),
        "optimiser": "Adam, warm-up 5% + cosine to 0, grad clip 1, L1 (+0.05 tissue CE for SAKG's learned prior)",
        "models": "CPU-sized: " + "; ".join(f"{v}: {json.dumps(model_spec(v, cfg))}" for v in cfg["variants"]
                                             if not v.endswith(("+k", "-bicubic", "@noisy")) and "-no-" not in v),
        "device": f"{resolve_device(cfg['device'])}{', bf16 autocast' if cfg['bf16'] else ''}",
        "interval": "mean ± 95% Student-t half-width over seeds (paired over seeds for differences)",
        "wall time": f"{wall / 60:.1f} min",
    }


def component_sections(evals: list[dict[str, Any]], fixed: dict[str, Any], cfg: dict[str, Any],
                       prior: dict[str, Any] | None) -> list[str]:
    """The redesign study (issue 11, item 6): old vs new design, paired ablations of each new component, slice
    fusion under noisy inputs, the scale-conditioning cells, and the external prior's own accuracy."""
    variants = cfg["variants"]
    present = set(variants)
    primary, hr_cells = cell_names(cfg, PRIMARY_REFS), cell_names(cfg, ("hr",))
    rule = ("Verdict rule: 'helps' only if significantly positive in most primary cells (LR and no reference, both "
            "sets) and significantly negative in none.")
    lines = ["## Redesigned components (sakg2: external frozen prior + prior dropout at two depths, residual slice "
             "attention, log-scale conditioning)", ""]
    if prior is not None:
        lines += [f"First stage: the frozen tissue segmenter, {prior['steps']} steps in {prior['seconds']:.0f} s; "
                  "val accuracy (argmax vs majority label per LR pixel): "
                  + ", ".join(f"{k.replace('|', ' ')} {v:.3f}" for k, v in prior["accuracy"].items()), ""]
    if {"sakg2", "sakg"} <= present:
        lines += ["Redesign vs old design (paired, PSNR dB):", ""]
        lines += diff_table(evals, {"sakg2 - sakg": ("sakg2", "sakg")}, primary + hr_cells, "psnr", True) + [""]
    abl = {f"{c}: sakg2 - {v}": ("sakg2", v) for c, v in ABLATIONS2.items() if {"sakg2", v} <= present}
    if abl:
        lines += ["Paired ablations of sakg2 (gain of the component, PSNR dB). " + rule, ""]
        lines += diff_table(evals, abl, primary, "psnr", True)
        lines += ["", "Brain-masked PSNR, primary cells:", ""] + diff_table(evals, abl, primary, "psnr_mask", True)
        lines += ["", "With an HR reference (not primary):", ""] + diff_table(evals, abl, hr_cells, "psnr", False)
    noisy = {k: p for k, p in NOISY_PAIRS.items() if set(p) <= present}
    if noisy:
        lines += ["", f"Slice fusion where neighbours carry information: every LR slice with independent Gaussian "
                  f"noise (std {cfg['noise']:g} of the normalised intensity; trained and tested so). Results:", ""]
        noisy_variants = [v for v in variants if v.endswith("@noisy")]
        lines += results_table(evals, fixed, cfg, noisy_variants, ("hr", "lr", "none"), "psnr",
                               ["zerofill (noisy input)", "bicubic (noisy input)"])
        lines += ["", "Paired (PSNR dB). " + rule, ""] + diff_table(evals, noisy, primary, "psnr", True)
    scale_pairs = {k: p for k, p in SCALE_PAIRS.items() if set(p) <= present}
    cells = list(SCALE_CELLS)
    if any(c in e["cells"] for e in evals for c in cells):
        lines += ["", "Scale conditioning off the training grid (test set): asymmetric x2 by x4, x6 and x8 beyond the "
                  "training range, target x4 with an LR reference at x1.5. PSNR dB:", ""]
        lines += ["| method | " + " | ".join(c.replace("|", " ") for c in cells) + " |", "|---|" + "---|" * len(cells)]
        for v in [v for v in variants if any(c in e["cells"] for e in evals if e["variant"] == v for c in cells)]:
            vals = [t_interval(list(per_seed(evals, v, c, "psnr").values())) for c in cells]
            lines.append(f"| {v} | " + " | ".join(fmt(m, h) for m, h in vals) + " |")
        if scale_pairs:
            lines += ["", "Paired:", ""] + diff_table(evals, scale_pairs, cells, "psnr", True)
    for v in PROBED:
        if v in variants and v != "sakg":
            lines += ["", f"Probes of {v} (every seed): the prior replaced by the ground truth or a uniform prior, and "
                      "a wrong scale fed to the conditioning:", ""] + probe_table(evals, cfg, v)
    return lines + [""]


def markdown(cfg: dict[str, Any], steps: int, wall: float, trains: list[dict[str, Any]],
             evals: list[dict[str, Any]], fixed: dict[str, Any], sweep: dict[str, Any], out: Path,
             prior: dict[str, Any] | None = None, name: str = "fair") -> str:
    from medsr.evaluation.report import protocol_header

    variants = cfg["variants"]
    single = [v for v in variants if VARIANTS[v][2] == "single"]
    multi = [v for v in variants if VARIANTS[v][2] == "multi" and not v.endswith("@noisy")]
    curves = "curves.png" if name == "fair" else f"{name}_curves.png"
    title = "Fair quality benchmark" if name == "fair" else "SAKG component study"
    lines = [f"# {title} (issue 11)", "", "```", protocol_header(protocol(cfg, steps, wall)), "```", ""]
    for title, metric in (("PSNR (dB), whole field", "psnr"), ("PSNR (dB), brain mask", "psnr_mask"),
                          ("SSIM, whole field", "ssim"), ("SSIM, brain mask", "ssim_mask")):
        lines += [f"## {title}", "", "Single-contrast (no reference), mean ± 95% t over seeds:", ""]
        lines += results_table(evals, fixed, cfg, single, ("none",), metric,
                               ["zerofill", "bicubic", "leak: label mean"])
        lines += ["", "Multi-contrast (HR, LR and no reference):", ""]
        lines += results_table(evals, fixed, cfg, multi, ("hr", "lr", "none"), metric,
                               ["leak: ref LUT", "leak: zero-fill + LUT out-of-band", "zerofill", "leak: label mean"])
        lines.append("")
    heads = {f"{k} - {b}": (k, b) for b, k in HEAD_PAIRS.items() if k in variants and b in variants}
    if heads:
        lines += ["## Paired differences (PSNR dB, same seeds): k-space head minus bicubic head", ""]
        lines += diff_table(evals, {n: p for n, p in heads.items() if VARIANTS[p[0]][2] == "single"},
                            cell_names(cfg, ("none",)), "psnr", True)
        lines += [""] + diff_table(evals, {n: p for n, p in heads.items() if VARIANTS[p[0]][2] == "multi"},
                                   cell_names(cfg, ("hr", "lr", "none")), "psnr", True) + [""]
    versus = {mode: {k: p for k, p in pairs.items() if p[0] in variants and p[1] in variants}
              for mode, pairs in COMPARISONS.items()}
    if any(versus.values()):
        lines += ["## SAKG against the baselines (paired over seeds: same batches; PSNR dB)", "",
                  "Single-contrast models against SAKG trained and tested without reference; multi-contrast against "
                  "multi-contrast. Same verdict rule ('helps' = SAKG significantly better in most cells, worse in "
                  "none).", ""]
        lines += diff_table(evals, versus["single"], cell_names(cfg, ("none",)), "psnr", True) + [""]
        lines += diff_table(evals, versus["multi"], cell_names(cfg, ("hr", "lr", "none")), "psnr", True) + [""]
    abl = {f"{c}: sakg - {v}": ("sakg", v) for c, v in ABLATIONS.items() if v in variants and "sakg" in variants}
    if abl:
        lines += ["## Paired ablations (PSNR dB gain of the component: full SAKG minus SAKG without it)", "",
                  "Primary cells: LR and no reference (where the components could matter), both sets. Verdict rule: "
                  "'helps' only if significantly positive in most primary cells and significantly negative in none.",
                  ""]
        lines += diff_table(evals, abl, cell_names(cfg, PRIMARY_REFS), "psnr", True)
        lines += ["", "With an HR reference (not primary):", ""]
        lines += diff_table(evals, abl, cell_names(cfg, ("hr",)), "psnr", False)
        lines += ["", "Brain-masked PSNR, primary cells:", ""] + diff_table(
            evals, abl, cell_names(cfg, PRIMARY_REFS), "psnr_mask", True)
    if "sakg" in variants:
        lines += ["", "## Semantic-prior and wrong-scale probes (full SAKG, every seed)", ""]
        lines += probe_table(evals, cfg, "sakg")
    if any(v.startswith("sakg2") for v in variants):
        lines += [""] + component_sections(evals, fixed, cfg, prior)
    budget, eq = equal_time(trains, variants)
    lines += ["", f"## Equal steps vs equal wall time (val split, x2 and x4; curves: {curves})", ""] + eq
    plot_curves(trains, variants, budget, out / curves)
    lines += ["", "## Learning-rate sweep (val PSNR dB at the end, seed 0)", "",
              "| method | " + " | ".join(f"lr {x:g}" for x in cfg["lrs"]) + " | chosen |",
              "|---|" + "---|" * (len(cfg["lrs"]) + 1)]
    for v, rec in sweep.items():
        lines.append(f"| {v} | " + " | ".join(f"{rec['scores'].get(str(x), math.nan):.2f}" for x in cfg["lrs"])
                     + f" | {rec['chosen']:g} |")
    params = {t["variant"]: t["params"] for t in trains}
    lines += ["", "Trainable parameters (a frozen prior network not counted): "
              + ", ".join(f"{v} {params[v] / 1e6:.3f} M" for v in variants if v in params)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- driver


def pool_map(fn: Any, jobs: list[dict[str, Any]], workers: int) -> list[dict[str, Any]]:
    if workers <= 1 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        return pool.map(fn, jobs, chunksize=1)


def estimate_steps(cfg: dict[str, Any], budget_minutes: float, workers: int, n_jobs: dict[str, int],
                   work: Path) -> int:
    """Steps that fit ``workers x budget`` (85% of it, for start-up and reports): per variant, the time of 3
    training steps (after a warm-up step) and of one whole-slice forward, which prices its evaluation (slices x
    scales x reference modes, both sets, the probes of SAKG) and its learning-curve points."""
    import torch

    torch.set_num_threads(1)
    probe_cfg = {**cfg, "curve_points": 0, "val_slices": 1, "device": "cpu", "bf16": False}
    test = eval_sets(cfg)["test"]
    item = test[specs_for(test, "test", 2.0, "hr", {**cfg, "test_slices": 1})[0]]
    train_cost, fixed_cost = 0.0, 0.0
    for v, runs in n_jobs.items():
        record = train_run({"variant": v, "seed": 0, "lr": 1e-3, "steps": 4, "cfg": probe_cfg,
                            "work": str(work / "probe")})
        model = build_model(v, 0, cfg).eval()
        start = time.perf_counter()
        with torch.no_grad():
            model(item["lr"][None], tuple(item["hr"].shape[-2:]), item["ref"][None])
        forward = time.perf_counter() - start
        n_sets = len(cfg["scales"]) * len(REFS[VARIANTS[v][2]])
        slices = 2 * cfg["test_slices"] + 0.4 * cfg["synth_items"]  # generated slices are smaller
        evals = n_sets * slices * (1 + (3 * len(PRIMARY_REFS) / len(REFS["multi"]) if v in PROBED else 0))
        curve = cfg["curve_points"] * 2 * cfg["val_slices"]
        train_cost += runs * record["seconds"] / 4
        fixed_cost += runs * curve * forward + cfg["seeds"] * evals * forward
    steps = max(10, int((0.85 * budget_minutes * 60 * workers - fixed_cost) / train_cost))
    print(f"fair: estimate on one core: {train_cost:.1f} s per step of all runs, {fixed_cost / 60:.1f} min of "
          f"evaluation and curves; {steps} steps fit {budget_minutes:g} min on {workers} workers", flush=True)
    return steps


def render(path: Path) -> int:
    """Re-render ``<name>.md`` and ``curves.png`` beside a results JSON written by :func:`main` (same tables)."""
    from medsr.io.atomic import atomic_path

    r = json.loads(path.read_text())
    text = markdown(r["cfg"], r["steps"], r["wall_s"], r["train"], r["eval"], r["fixed"], r["sweep"], path.parent,
                    r.get("prior"), path.stem)
    with atomic_path(path.with_suffix(".md")) as tmp:
        tmp.write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-sized protocol (a few minutes on one core)")
    parser.add_argument("--components", action="store_true",
                        help="SAKG's component study: old design, redesign (sakg2) and its paired ablations")
    parser.add_argument("--noise", type=float, default=0.05, help="LR noise std of the @noisy variants")
    parser.add_argument("--prior-steps", type=int, default=300, help="steps of the external prior's stage")
    parser.add_argument("--budget-minutes", type=float, default=40.0, help="wall-time budget; sets the steps")
    parser.add_argument("--steps", type=int, help="training steps of every run (overrides --budget-minutes)")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--lrs", type=lambda s: [float(x) for x in s.split(",")])
    parser.add_argument("--scales", type=lambda s: [float(x) for x in s.split(",")])
    parser.add_argument("--patch", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--test-slices", type=int, help="evenly spaced test slices per subject")
    parser.add_argument("--synth-items", type=int, help="generated evaluation slices")
    parser.add_argument("--curve-points", type=int, help="learning-curve points per run (start and end included)")
    parser.add_argument("--val-slices", type=int, help="val slices of the curves and the lr choice")
    parser.add_argument("--only", type=lambda s: s.split(","), help="comma-separated subset of variants")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU protocol)")
    parser.add_argument("--data", type=Path, default=Path("data/mni"))
    parser.add_argument("--report", type=Path, help="only re-render the report of a results JSON (next to it)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quality"))
    parser.add_argument("--work", type=Path, default=Path("runs/fair"))
    args = parser.parse_args(argv)

    from medsr.data.embedded import ensure_mni
    from medsr.io.atomic import atomic_path

    if args.report is not None:
        return render(args.report)
    start = time.time()
    store = args.data if (args.data / "manifest.json").is_file() else ensure_mni(args.data)  # any prepared store
    cfg = {**settings(args), "data": str(store.resolve())}
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    prior = None
    if any(VARIANTS[v][1].get("prior_init") == PRIOR for v in cfg["variants"]):
        prior = train_segmenter(cfg, args.work)
        cfg["prior_weights"] = prior["weights"]
    swept = [v for v in cfg["variants"] if VARIANTS[v][3] is None]
    followers = [v for v in cfg["variants"] if VARIANTS[v][3] is not None]
    n_jobs = {v: len(cfg["lrs"]) + cfg["seeds"] - 1 for v in swept} | {v: cfg["seeds"] for v in followers}
    steps = args.steps or (20 if args.quick else estimate_steps(cfg, args.budget_minutes, args.workers, n_jobs,
                                                                         args.work))
    print(f"fair: {len(cfg['variants'])} variants, {sum(n_jobs.values())} training runs of {steps} steps",
          flush=True)

    def job(v: str, seed: int, lr: float) -> dict[str, Any]:
        return {"variant": v, "seed": seed, "lr": lr, "steps": steps, "cfg": cfg, "work": str(args.work)}

    trains = pool_map(train_run, [job(v, 0, lr) for v in swept for lr in cfg["lrs"]], args.workers)
    sweep = {}
    for v in swept:
        runs = {t["lr"]: t for t in trains if t["variant"] == v}
        chosen = max(runs, key=lambda lr: runs[lr]["val_psnr"])
        runs[chosen]["final"] = True
        sweep[v] = {"scores": {f"{lr:g}": r["val_psnr"] for lr, r in runs.items()}, "chosen": chosen}
    print(f"fair: sweep done ({(time.time() - start) / 60:.1f} min)", flush=True)
    lr_of = {v: sweep[VARIANTS[v][3] or v]["chosen"] for v in cfg["variants"]}
    more = [job(v, s, lr_of[v]) for v in swept for s in range(1, cfg["seeds"])]
    more += [job(v, s, lr_of[v]) for v in followers for s in range(cfg["seeds"])]
    for t in pool_map(train_run, more, args.workers):
        trains.append({**t, "final": True})
    print(f"fair: training done ({(time.time() - start) / 60:.1f} min)", flush=True)
    finals = [t for t in trains if t.get("final")]
    fixed = fixed_rows(cfg)
    if any(noise_of(v, cfg) for v in cfg["variants"]):
        fixed |= {f"{k} (noisy input)": v for k, v in fixed_rows(cfg, cfg["noise"]).items()}
    evals = pool_map(eval_run, [{"variant": t["variant"], "seed": t["seed"], "weights": t["weights"], "cfg": cfg,
                                 "work": str(args.work)} for t in finals], args.workers)
    wall = time.time() - start
    for e in evals:
        e.pop("cfg")
    name = "components" if args.components else "fair"
    text = markdown(cfg, steps, wall, trains, evals, fixed, sweep, args.out, prior, name)
    with atomic_path(args.out / f"{name}.md") as tmp:
        tmp.write_text(text)
    with atomic_path(args.out / f"{name}.json") as tmp:
        tmp.write_text(json.dumps({"protocol": protocol(cfg, steps, wall), "cfg": cfg, "wall_s": wall,
                                   "steps": steps, "sweep": sweep, "prior": prior, "train": trains, "eval": evals,
                                   "fixed": fixed}, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
