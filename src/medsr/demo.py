"""``medsr demo``: train the demo config on the embedded MNI data within a time budget, test it scale by scale
against bicubic and zero-filling (and the shipped weights when present), and write a report with a figure."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from medsr.checkpoint import build_from_weights, shipped_weights
from medsr.config import CONFIG_DIR
from medsr.data.ct_pairs import CTPairDataset
from medsr.data.embedded import ensure_mni
from medsr.data.embedded_ct import ensure_ct
from medsr.engine.runs import check_run_dir, train
from medsr.errors import InputError
from medsr.evaluation.report import protocol_header
from medsr.evaluation.testing import BASELINES, TestSetup, results_table, run_test
from medsr.io.atomic import atomic_path
from medsr.metrics.ct import CT_PRESETS, scores_in_windows
from medsr.inference.denoise import denoise_slices
from medsr.viz import comparison_figure, ct_comparison_figure

DEMO_CONFIG = CONFIG_DIR / "demo.yaml"
DEMO_SCALES = (1.5, 2.0, 3.0, 4.0)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(results: Sequence[Mapping[str, Any]], method: str, baselines: Sequence[str]) -> str:
    """A sentence, computed from the results, saying whether ``method`` beats every baseline in PSNR and SSIM at
    every tested scale, and listing where it does not."""
    rows = {(r["method"], r["scale"]): r for r in results}
    scales = sorted({r["scale"] for r in results if r["method"] == method})
    misses = []
    for scale in scales:
        mine = rows[(method, scale)]
        for base in baselines:
            other = rows[(base, scale)]
            for metric in ("psnr", "ssim"):
                if not mine[metric] > other[metric]:
                    misses.append(f"x{scale:g} {metric.upper()} vs {base} ({mine[metric]:.4g} <= {other[metric]:.4g})")
    tested = ", ".join(f"x{s:g}" for s in scales)
    against = " and ".join(baselines)
    if not misses:
        return f"**{method} beats {against} in PSNR and SSIM at every tested scale ({tested}).**"
    return f"**{method} does not beat {against} everywhere:** " + "; ".join(misses) + "."


def run_demo(
    minutes: float, data: Path, out: Path, config: Path = DEMO_CONFIG, scales: Sequence[float] = DEMO_SCALES
) -> Path:
    """Train, test and report; return the path of ``report.md``."""
    if not config.is_file():
        raise InputError(config, "demo config not found (run medsr demo from a medsr source checkout)")
    if not (math.isfinite(minutes) and minutes > 0):
        raise InputError("--minutes", f"must be a positive finite number, got {minutes:g}")
    check_run_dir(out, [data], resume=False, overwrite=True, flag="--out")
    ensure_mni(data)
    if out.exists():
        print(f"medsr demo: replacing {out}")
    overrides = [f"data.root={data}", f"train.max_minutes={minutes}", f"logging.runs_dir={out.parent}"]
    run_dir = train(config, overrides, overwrite=True, name=out.name, argv=["medsr", "demo", *overrides])
    shipped = shipped_weights()
    extra = (shipped,) if shipped is not None else ()
    report, samples = run_test(TestSetup(run_dir / "weights.pth", data, tuple(scales), "hr", extra=extra))
    model = report["results"][0]["method"]
    methods = [r["method"] for r in report["results"] if r["scale"] == scales[0]]
    scale = scales[-1]
    first = next(v for (_, at), v in samples.items() if at == scale)
    panels = {"LR": first["lr"].numpy()}
    panels.update({name: samples[(name, scale)]["sr"].numpy() for name in methods if (name, scale) in samples})
    figure = comparison_figure(panels, first["hr"].numpy(), out / "comparison.png",
                               title=f"x{scale:g}, {report['protocol']['contrasts']}")
    lines = [
        "# medsr demo",
        "",
        f"Trained `{config.name}` for {minutes:g} min at most (run directory `{run_dir}`), then tested on the "
        "test split of the embedded MNI dataset.",
        "",
        "```",
        protocol_header(report["protocol"]),
        "```",
        "",
        markdown_table(*results_table(report)),
        "",
        verdict(report["results"], model, BASELINES),
    ]
    lines += [verdict(report["results"], name, BASELINES) for name in methods[1:] if name not in BASELINES]
    lines += ["", f"![comparison at x{scale:g}]({figure.name})", ""]
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path


CT_DEMO_CONFIG = CONFIG_DIR / "ct_cncl_lite.yaml"
CT_DEMO_WINDOWS = ("redcnn", "ldctbench-abdomen")


def run_ct_demo(minutes: float, data: Path, out: Path, config: Path = CT_DEMO_CONFIG) -> Path:
    """``medsr demo --task ct``: train CNCL-lite on the embedded CT data within ``minutes``, score the low-dose input
    and the trained model on the validation split in the RED-CNN and LDCT-bench abdomen windows, write
    ``report.md`` and ``comparison.png``; return the report's path."""
    if not (math.isfinite(minutes) and minutes > 0):
        raise InputError("--minutes", f"must be a positive finite number, got {minutes:g}")
    check_run_dir(out, [data], resume=False, overwrite=True, flag="--out")
    ensure_ct(data)
    overrides = [f"data.root={data}", f"train.max_minutes={minutes}", f"logging.runs_dir={out.parent}"]
    run_dir = train(config, overrides, overwrite=True, name=out.name,
                    argv=["medsr", "demo", "--task", "ct", *overrides])
    model, meta = build_from_weights(run_dir / "weights.pth", task="denoise")
    rows, panels = [], {}
    for sid, ld, fd in CTPairDataset(data, "val").volumes():
        pred = denoise_slices(model, ld)
        for method, image in (("low dose", ld), (f"{meta['model']['type']} ({meta['steps']} steps)", pred)):
            values = scores_in_windows(image, fd, CT_DEMO_WINDOWS)
            rows.append([sid, method] + [f"{values[f'{m}_{w}']:.{2 if m == 'psnr' else 4}f}"
                                         for w in CT_DEMO_WINDOWS for m in ("psnr", "ssim")])
            panels.setdefault(sid, {})[method] = image[0]
        panels[sid]["full dose"] = fd[0]
    sid = next(iter(panels))
    full = panels[sid].pop("full dose")
    figure = ct_comparison_figure(panels[sid], full, out / "comparison.png", CT_PRESETS["redcnn"], f"{sid},")
    columns = ["subject", "method"] + [f"{m} {w}" for w in CT_DEMO_WINDOWS for m in ("PSNR", "SSIM")]
    lines = [
        "# medsr demo --task ct", "",
        f"Trained `{config.name}` for {minutes:g} min at most (run directory `{run_dir}`) on the embedded CT data "
        "(real CT slices, 25% dose simulated in the projection domain), scored on its validation split. Windows: "
        + "; ".join(CT_PRESETS[w].describe() for w in CT_DEMO_WINDOWS) + ".", "",
        markdown_table(columns, rows), "", f"![comparison]({figure.name})", "",
    ]
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path
