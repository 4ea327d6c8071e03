"""Quality benchmark of issue 5: ``sakg`` against LIIF, MetaSR and the Dual-ArbNet-style model, bicubic and
zero-filling, on the embedded MNI data, with ablations and downstream segmentation.

Protocol
--------
* Every trained method uses the data, curriculum, steps, seed, optimiser and schedule of ``configs/sakg.yaml``
  (target T2, reference T1, 3 adjacent slices) and its pixel losses (L1 + 0.2 SSIM); the baselines take their
  model from ``configs/<name>.yaml``; ``sakg`` adds its auxiliary semantic loss. All run through the engine
  (``medsr train``).
* Ablations: ``sakg`` without the semantic embedding, without slice attention, without the scale-conditioned
  decoder, and single-contrast (trained and tested with no reference).
* Test: the test split's whole volumes (``medsr.evaluation.scores``) at 1.5, 2, 2.5, 3, 4 (in distribution)
  and 6, 8 (out of distribution), with an HR reference, an LR reference at the target's scale, and none.
* Downstream: a UNet trained on HR T2 slices and labels (``configs/unet.yaml``), frozen, segments HR and each
  method's output (HR reference); Dice per tissue per volume against the labels.
* Everything runs in parallel subprocesses (``--workers``, one CPU thread each, ``nice``). The resolved configs,
  runs, logs and per-method scores (``scores/*.json``) go to ``--work``; ``results.md``, ``results.json`` and
  ``comparison.png`` to ``--out``.

    python benchmarks/quality.py [--out benchmarks/results/quality] [--work runs/quality] [--steps 300]
                                 [--workers 2] [--data data/mni]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "src" / "medsr" / "configs"
SCALES = (1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0)
GOAL_SCALES = (2.0, 2.5, 3.0, 4.0)
DICE_SCALES = (2.0, 4.0)
BASELINES = ("liif", "metasr", "dualarb")
ABLATIONS = {
    "sakg-no-semantic": {"semantic": False},
    "sakg-no-attention": {"slice_attention": False},
    "sakg-no-scalecond": {"scale_conditioning": False},
}
FIXED = ("bicubic", "zerofill")


def load_yaml(path: Path) -> dict[str, Any]:
    from medsr.config import load_config, to_dict

    return to_dict(load_config(path))


def run_configs(data: Path, steps: int | None, unet_steps: int | None) -> dict[str, dict[str, Any]]:
    """The resolved config of every trained method: sakg's protocol, each method's model and losses."""
    base = load_yaml(CONFIG_DIR / "sakg.yaml")
    base["data"]["root"] = str(data)
    if steps is not None:
        base["train"]["steps"] = steps
    base["val"]["every"] = 0
    base["train"]["checkpoint_every"] = base["train"]["steps"]
    configs = {"sakg": base}
    for name, flags in ABLATIONS.items():
        cfg = copy.deepcopy(base)
        cfg["model"].update(flags)
        if not flags.get("semantic", True):
            cfg["loss"] = [t for t in cfg["loss"] if t["type"] != "sakg_semantic"]
        configs[name] = cfg
    single = copy.deepcopy(base)
    single["data"]["ref"] = None
    single["data"]["curriculum"] = [{"until_step": s["until_step"], "scale": s["scale"], "ref": "none"}
                                    for s in base["data"]["curriculum"]]
    single["val"]["ref"] = "none"
    configs["sakg-single"] = single
    for name in BASELINES:
        cfg = copy.deepcopy(base)
        cfg["model"] = load_yaml(CONFIG_DIR / f"{name}.yaml")["model"]
        cfg["loss"] = [t for t in base["loss"] if t["type"] != "sakg_semantic"]
        configs[name] = cfg
    unet = load_yaml(CONFIG_DIR / "unet.yaml")
    unet["data"]["root"] = str(data)
    if unet_steps is not None:
        unet["train"]["steps"] = unet_steps
    configs["unet"] = unet
    for name, cfg in configs.items():
        cfg["name"] = name
    return configs


def ref_modes(name: str, cfg: dict[str, Any]) -> list[str]:
    """Reference modes a method is tested with: all three for multi-contrast models, HR only for the ablations."""
    from medsr.registry import MODELS

    multi = cfg["data"]["ref"] is not None and MODELS.get(cfg["model"]["type"]).uses_ref
    return ["none"] if not multi else ["hr"] if name in ABLATIONS else ["hr", "lr", "none"]


def test_dataset(data: Path, cfg: dict[str, Any] | None = None) -> Any:
    from medsr.data.datasets import SRSliceDataset

    d = (cfg or load_yaml(CONFIG_DIR / "sakg.yaml"))["data"]
    return SRSliceDataset(data, "test", d["target"], ref=d["ref"] or "T1", n_adjacent=d["n_adjacent"], use_labels=True)


def score_model(model: Any, dataset: Any, modes: list[str], trained: list[float] | None,
                scales: tuple[float, ...]) -> list[dict[str, Any]]:
    """PSNR/SSIM rows (mean and std over test volumes) for every scale and reference mode."""
    from medsr.evaluation import testing as evaluation
    from medsr.evaluation.scores import evaluate_scale, moments, summarise

    rows = []
    for ref in modes:
        for scale in scales:
            scores, _ = evaluate_scale(model, dataset, scale, ref)
            s = summarise(moments(scores))
            rows.append({"scale": scale, "ref": ref, "psnr": s.psnr, "psnr_std": s.psnr_std, "ssim": s.ssim,
                         "ssim_std": s.ssim_std, "n_volumes": s.n_volumes,
                         "ood": evaluation.is_ood(scale, trained)})
    return rows


def job(name: str, work: Path, data: Path, scales: tuple[float, ...]) -> None:
    """Train one method (or none for bicubic/zero-filling) and write ``scores/<name>.json``."""
    import torch

    torch.set_num_threads(1)
    from medsr.checkpoint import build_from_weights
    from medsr.engine.runs import train
    from medsr.registry import MODELS

    start = time.time()
    if name in FIXED:
        model, modes, trained, steps = MODELS.build({"type": name}), ["none"], None, 0
    else:
        run = train(work / "configs" / f"{name}.yaml", [f"logging.runs_dir={work / 'runs'}"], overwrite=True,
                    argv=["benchmarks/quality.py", "--job", name])
        if name == "unet":
            return
        model, meta = build_from_weights(run / "weights.pth")
        cfg = json.loads((work / "configs" / f"{name}.json").read_text())
        modes, trained, steps = ref_modes(name, cfg), meta["scales"], meta["steps"]
    train_s = time.time() - start
    rows = score_model(model, test_dataset(data), modes, trained, scales)
    params = sum(p.numel() for p in model.parameters())
    record = {"method": name, "steps": steps, "params": params, "train_seconds": train_s,
              "total_seconds": time.time() - start, "rows": rows}
    (work / "scores").mkdir(exist_ok=True)
    (work / "scores" / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")


def launch(names: list[str], work: Path, data: Path, workers: int, scales: str) -> None:
    """Run the jobs ``workers`` at a time in niced subprocesses with one CPU thread each; UNet first."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pending, running = list(names), []
    while pending or running:
        while pending and len(running) < workers:
            name = pending.pop(0)
            log = open(work / "logs" / f"{name}.log", "w")
            cmd = ["nice", "-n", "10", sys.executable, str(Path(__file__)), "--job", name, "--work", str(work),
                   "--data", str(data), "--scales", scales]
            running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
            print(f"started {name}", file=sys.stderr, flush=True)
        time.sleep(2)
        for entry in list(running):
            name, proc, log = entry
            if proc.poll() is not None:
                log.close()
                running.remove(entry)
                state = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see logs/{name}.log)"
                print(f"{name}: {state}", file=sys.stderr, flush=True)


def downstream_dice(work: Path, data: Path, methods: list[str]) -> dict[str, Any]:
    """Dice per tissue of the frozen UNet on HR and on each method's output (HR reference), per scale."""
    import torch

    from medsr.checkpoint import build_from_weights
    from medsr.data.datasets import eval_specs
    from medsr.evaluation.scores import predict_volumes
    from medsr.tasks.segmentation import dice_per_class, segment
    from medsr.registry import MODELS

    unet, _ = build_from_weights(work / "runs" / "unet" / "weights.pth")
    dataset = test_dataset(data)
    names = dataset.label_names
    classes = [1, 2, 3]

    def labels(sid: str) -> torch.Tensor:
        return torch.from_numpy(dataset.store.volume(sid, "label").astype("int64"))

    result: dict[str, Any] = {"tissues": [names[str(c)] for c in classes], "rows": []}
    hr_dice = []
    for sid in dataset.store.subjects("test"):
        hr = torch.from_numpy(dataset.store.volume(sid, dataset.target))[:, None].float()
        hr_dice.append(dice_per_class(segment(unet, hr), labels(sid), classes))
    result["rows"].append({"method": "HR", "scale": None, "dice": torch.stack(hr_dice).mean(0).tolist()})
    for name in methods:
        if name in FIXED:
            model, ref = MODELS.build({"type": name}), "none"
        else:
            model, _ = build_from_weights(work / "runs" / name / "weights.pth")
            ref = ref_modes(name, json.loads((work / "configs" / f"{name}.json").read_text()))[0]
        for scale in DICE_SCALES:
            specs = eval_specs(dataset, (scale, scale), ref, (scale, scale) if ref == "lr" else None)
            per_volume = [dice_per_class(segment(unet, sr[:, None]), labels(sid), classes)
                          for sid, sr, _, _ in predict_volumes(model, dataset, specs)]
            result["rows"].append({"method": name, "ref": ref, "scale": scale,
                                   "dice": torch.stack(per_volume).mean(0).tolist()})
    return result


def figure(work: Path, out: Path, data: Path, scale: float = 4.0) -> Path:
    """LR, bicubic, LIIF, Dual-ArbNet-style, SAKG, HR and error maps of one test slice at ``scale`` (HR reference)."""
    import torch

    from medsr.checkpoint import build_from_weights
    from medsr.data.datasets import eval_specs
    from medsr.evaluation.scores import collate
    from medsr.registry import MODELS
    from medsr.viz import comparison_figure

    dataset = test_dataset(data)
    specs = eval_specs(dataset, (scale, scale), "hr")
    batch = collate([dataset[specs[(3 * len(specs)) // 4]]])
    lr, hr, ref = batch["lr"], batch["hr"], batch["ref"]
    panels = {"LR": lr[0, lr.shape[1] // 2].numpy()}
    methods = {"bicubic": MODELS.build({"type": "bicubic"})}
    for name, label in (("liif", "LIIF"), ("dualarb", "Dual-ArbNet-style"), ("sakg", "SAKG")):
        if (work / "runs" / name / "weights.pth").is_file():
            methods[label] = build_from_weights(work / "runs" / name / "weights.pth")[0]
    with torch.no_grad():
        for label, model in methods.items():
            panels[label] = model.eval()(lr, tuple(hr.shape[-2:]), ref)[0, 0].numpy()
    return comparison_figure(panels, hr[0, 0].numpy(), out / "comparison.png",
                             title=f"test slice {batch['key'][0]}, x{scale:g}, T1 reference (HR)")


def markdown(protocol: dict[str, Any], records: dict[str, dict[str, Any]], dice: dict[str, Any] | None) -> str:
    from medsr.evaluation.report import protocol_header

    lines = ["# Quality benchmark (issue 5)", "", "```", protocol_header(protocol), "```", ""]
    scales = sorted({r["scale"] for rec in records.values() for r in rec["rows"]})
    head = "| method | ref | " + " | ".join(f"x{s:g}{' (OOD)' if s > 4 else ''}" for s in scales) + " |"
    lines += ["PSNR (dB) / SSIM, mean over test volumes:", "", head, "|---|---|" + "---|" * len(scales)]
    for name, rec in records.items():
        for ref in dict.fromkeys(r["ref"] for r in rec["rows"]):
            cells = [f"{r['psnr']:.2f} / {r['ssim']:.4f}" for r in rec["rows"] if r["ref"] == ref]
            lines.append(f"| {name} | {ref} | " + " | ".join(cells) + " |")
    lines += ["", "Training: " + ", ".join(f"{n} {r['steps']} steps in {r['train_seconds'] / 60:.1f} min "
                                            f"({r['params'] / 1e6:.2f} M params)"
                                            for n, r in records.items() if r["steps"]), ""]
    lines += checks(records)
    if dice:
        lines += ["", "Downstream Dice of the frozen UNet (mean over test volumes; SR with its first reference mode):",
                  "", "| method | scale | " + " | ".join(dice["tissues"]) + " |", "|---|---|" + "---|" * 3]
        for row in dice["rows"]:
            scale = "-" if row["scale"] is None else f"x{row['scale']:g}"
            lines.append(f"| {row['method']} | {scale} | " + " | ".join(f"{d:.4f}" for d in row["dice"]) + " |")
    return "\n".join(lines) + "\n"


def lookup(records: dict[str, dict[str, Any]], name: str, ref: str, scale: float) -> dict[str, Any] | None:
    for row in records.get(name, {}).get("rows", []):
        if row["ref"] == ref and row["scale"] == scale:
            return row
    return None


def checks(records: dict[str, dict[str, Any]]) -> list[str]:
    """The issue's goals, computed from the table (not asserted)."""
    lines = ["Goals (computed):", ""]
    rivals = [(n, r) for n in (*FIXED, *BASELINES) for r in ("hr", "lr", "none") if lookup(records, n, r, 2.0)]
    for ref in ("hr", "lr", "none"):
        for scale in sorted({r["scale"] for r in records.get("sakg", {}).get("rows", [])}):
            ours = lookup(records, "sakg", ref, scale)
            if ours is None:
                continue
            others = [(n, lookup(records, n, r, scale)) for n, r in rivals if r in (ref, "none")]
            best_psnr = max(others, key=lambda o: o[1]["psnr"])
            best_ssim = max(others, key=lambda o: o[1]["ssim"])
            dp, ds = ours["psnr"] - best_psnr[1]["psnr"], ours["ssim"] - best_ssim[1]["ssim"]
            need = 0.3 if scale in GOAL_SCALES else 0.0
            ok = dp > need and ds > 0
            lines.append(f"- sakg ({ref} ref) x{scale:g}: {dp:+.2f} dB vs best {best_psnr[0]}, {ds:+.4f} SSIM vs best "
                         f"{best_ssim[0]}: {'met' if ok else 'NOT met'} (needs > {need:g} dB and > 0 SSIM)")
    for scale in GOAL_SCALES:
        full = lookup(records, "sakg", "hr", scale)
        if full is None:
            continue
        parts = []
        for name, ref in (("sakg", "none"), ("sakg-single", "none"), *((n, "hr") for n in ABLATIONS)):
            row = lookup(records, name, ref, scale)
            if row is not None:
                parts.append(f"{name} ({ref}) {row['psnr'] - full['psnr']:+.2f} dB")
        lines.append(f"- x{scale:g}, change vs sakg with HR reference: " + ", ".join(parts))
    return lines


def protocol(configs: dict[str, dict[str, Any]], data: Path) -> dict[str, Any]:
    from medsr.evaluation.scores import PROTOCOL

    base = configs["sakg"]
    return {
        **PROTOCOL,
        "dataset": str(data),
        "split": "test",
        "target": base["data"]["target"],
        "reference": base["data"]["ref"],
        "adjacent_slices": 2 * base["data"]["n_adjacent"] + 1,
        "lr_ref_scale": "the target's scale",
        "steps": base["train"]["steps"],
        "seed": base["seed"],
        "batch": f"{base['data']['batch_size']} x LR patch {base['data']['patch_size']}",
        "curriculum": json.dumps(base["data"]["curriculum"]),
        "ood_scales": "> 4 (trained range 1.5-4)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quality"))
    parser.add_argument("--work", type=Path, default=Path("runs/quality"))
    parser.add_argument("--data", type=Path, default=Path("data/mni"))
    parser.add_argument("--steps", type=int, help="training steps of every method (default: configs/sakg.yaml)")
    parser.add_argument("--unet-steps", type=int, help="training steps of the UNet (default: configs/unet.yaml)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", help="comma-separated subset of methods to (re)run")
    parser.add_argument("--scales", default=",".join(f"{s:g}" for s in SCALES), help="test scales")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        job(args.job, args.work, args.data, tuple(float(x) for x in args.scales.split(",")))
        return 0

    from medsr.data.embedded import ensure_mni
    from medsr.io.atomic import atomic_path

    data = ensure_mni(args.data)
    out, work = args.out, args.work
    for folder in (out, work / "configs", work / "logs"):
        folder.mkdir(parents=True, exist_ok=True)
    configs = run_configs(data.resolve(), args.steps, args.unet_steps)
    import yaml

    for name, cfg in configs.items():
        (work / "configs" / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        (work / "configs" / f"{name}.json").write_text(json.dumps(cfg) + "\n")
    names = ["unet", "sakg", "dualarb", "liif", "metasr", *ABLATIONS, "sakg-single", *FIXED]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    launch(names, work, data.resolve(), args.workers, args.scales)
    records = {}
    for name in ["sakg", "sakg-single", *ABLATIONS, *BASELINES, *FIXED]:
        path = work / "scores" / f"{name}.json"
        if path.is_file():
            records[name] = json.loads(path.read_text())
    dice = None
    if (work / "runs" / "unet" / "weights.pth").is_file():
        dice = downstream_dice(work, data, [n for n in ("sakg", *BASELINES, *FIXED) if n in records])
    if (work / "runs" / "sakg" / "weights.pth").is_file():
        figure(work, out, data)
    proto = protocol(configs, args.data)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(markdown(proto, records, dice))
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps({"protocol": proto, "methods": records, "dice": dice}, indent=2) + "\n")
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
