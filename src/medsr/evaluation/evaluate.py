"""Evaluate matched prediction/reference files with full-reference image metrics (``medsr evaluate``).

Every result comes with the protocol that produced it: data-range rule and values, SSIM window, mask, crop.
With a CT window (:mod:`medsr.metrics.ct`) both images must look like CT in HU (:func:`medsr.ct.units.check_ct`),
they are windowed first, its data range and SSIM preset apply, and volumes are reduced per slice (mean over
slices, as the CT papers do) unless ``ct_reduction="volume"``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsr import registry
from medsr.ct.units import check_ct
from medsr.errors import InputError, require
from medsr.evaluation.pairing import Loaded, MaskSource, load_pair, match_files
from medsr.evaluation.report import render, report_dict, write_csv, write_json
from medsr.metrics import image
from medsr.metrics.ct import REDUCTIONS, CTWindow, reduction_text
from medsr.metrics.lpips import load_lpips, min_input_size

METRICS = tuple(registry.METRICS.names())
DEFAULT_METRICS = ("psnr", "ssim", "nrmse")


def parse_metrics(text: str | None, known: tuple[str, ...], default: tuple[str, ...], flag: str = "--metrics"
                  ) -> tuple[str, ...]:
    """Comma-separated metric names, checked against ``known``; ``default`` when ``text`` is empty."""
    if not text:
        return default
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in known]
    require(bool(names) and not unknown, flag, f"unknown metric(s) {', '.join(unknown) or '(none given)'} "
                                               f"(known: {', '.join(known)})")
    return names


@dataclass
class EvalOptions:
    """The knobs of ``medsr evaluate``; ``data_range=None`` uses the preset's rule or the dtype default;
    ``ssim_preset=None`` the CT window's preset, else ``wang``."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    data_range: str | None = None
    ssim_preset: str | None = None
    mask: Path | None = None
    crop_border: int = 0
    per_slice: bool = False
    gray: bool = False
    lpips_weights: Path | None = None
    allow_missing: bool = False
    ct_window: CTWindow | None = None
    ct_reduction: str = "slice"


@dataclass
class Evaluation:
    """Protocol, per-item records and unmatched-file lines of one evaluation, with its renderings."""

    protocol: dict[str, Any]
    metrics: list[str]
    records: list[dict[str, Any]]
    key_columns: list[str]
    extra_columns: list[str]
    unmatched: list[str] = field(default_factory=list)
    pooled: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        parts = [render(self.protocol, self.key_columns, self.metrics, self.records, self.extra_columns)]
        if self.pooled:
            parts.append("\n".join(f"{k}: {v}" for k, v in _pooled_lines(self.pooled)))
        if self.unmatched:
            parts.append("\n".join(f"not matched: {line}" for line in self.unmatched))
        return "\n\n".join(parts)

    def as_dict(self) -> dict[str, Any]:
        content = report_dict(self.protocol, self.metrics, self.records)
        content["pooled"] = self.pooled
        content["unmatched"] = self.unmatched
        return content

    def write(self, json_path: Path | None, csv_path: Path | None) -> None:
        """Write the JSON report and/or the per-item CSV (atomically)."""
        if json_path is not None:
            write_json(json_path, self.as_dict())
        if csv_path is not None:
            write_csv(csv_path, [*self.key_columns, *self.metrics, *self.extra_columns], self.records)


def _pooled_lines(pooled: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, v if isinstance(v, str) else f"{v:.6g}") for k, v in pooled.items() if not isinstance(v, dict)]


def _preset_text(preset: image.SSIMPreset) -> str:
    shape = f"Gaussian sigma {preset.sigma:g}" if preset.window == "gaussian" else "uniform"
    covariance = "sample" if preset.sample_covariance else "population"
    return (f"{preset.name}: {shape} {preset.win_size}x{preset.win_size} window, {covariance} covariance, "
            f"K1 {preset.k1:g}, K2 {preset.k2:g}, mean over the valid region; smaller images use the largest odd "
            f"window that fits (noted per item)")


def _range_text(values: list[float]) -> str:
    if not values:
        return "none"
    if min(values) == max(values):
        return f"{values[0]:.6g} (every item)"
    return f"{min(values):.6g} .. {max(values):.6g} (median {float(np.median(values)):.6g})"


def _data_floor(rule: str, gt: torch.Tensor, dtype: np.dtype) -> torch.Tensor:
    """Lower end of the data range (gt-range: reference minimum; dtype: type minimum; otherwise 0), ``[B]``."""
    if rule == "gt-range":
        return gt.flatten(1).amin(1)
    if rule == "dtype":
        return torch.full((gt.shape[0],), image.dtype_bounds(dtype)[0], dtype=gt.dtype)
    return torch.zeros(gt.shape[0], dtype=gt.dtype)


@dataclass
class _Context:
    options: EvalOptions
    preset: image.SSIMPreset
    lpips_model: Any
    rules: set[str] = field(default_factory=set)
    ranges: list[float] = field(default_factory=list)
    volumes: bool = False


def _ssim_note(ctx: _Context, spatial: tuple[int, ...]) -> str:
    window = image.ssim_window(spatial, ctx.preset.win_size)
    if window == 0:
        return "ssim n/a: smaller than 3x3"
    return f"ssim window {window}x{window}" if window != ctx.preset.win_size else ""


def _lpips_note(ctx: _Context, spatial: tuple[int, ...]) -> str:
    if ctx.lpips_model is None:
        return ""
    smallest = min_input_size(ctx.lpips_model.net)
    return f"lpips n/a: smaller than {smallest}x{smallest}" if min(spatial) < smallest else ""


def _evaluate_pair(key: str, pred: Loaded, gt: Loaded, mask: np.ndarray | None, ctx: _Context
                   ) -> list[dict[str, Any]]:
    opts = ctx.options
    window = opts.ct_window
    rule = (f"{window.data_range:g}" if window else
            opts.data_range or ctx.preset.data_range_rule or image.default_data_range_rule(gt.dtype))
    ctx.rules.add(rule)
    x, y = torch.from_numpy(np.array(pred.data, np.float64))[None], torch.from_numpy(np.array(gt.data))[None]
    if window:
        x, y = window.apply(x), window.apply(y)
    x, y = image.crop_border(x, opts.crop_border), image.crop_border(y, opts.crop_border)
    require(min(y.shape[-2:]) > 0, "--crop-border", f"{opts.crop_border} leaves nothing of {key} "
                                                    f"({'x'.join(map(str, gt.data.shape[-2:]))})")
    y = y.to(torch.float64)
    peak = image.resolve_data_range(rule, y, gt.dtype)
    floor = torch.full_like(peak, window.floor) if window else _data_floor(rule, y, gt.dtype)
    m = None if mask is None else image.crop_border(torch.from_numpy(mask)[None, None], opts.crop_border)
    keys = [{"file": key}]
    slice_mean = gt.volume and not opts.per_slice and window is not None and opts.ct_reduction == "slice"
    if gt.volume and (opts.per_slice or slice_mean):
        x, y = x[0].transpose(0, 1), y[0].transpose(0, 1)
        m = None if m is None else m[0].transpose(0, 1)
        peak, floor = peak.expand(x.shape[0]), floor.expand(x.shape[0])
        keys = [{"file": key, "slice": z} for z in range(x.shape[0])]
    ctx.volumes |= gt.volume
    values = _metric_values(x, y, peak, floor, m, ctx)
    if slice_mean:
        values = {name: v.nanmean(0, keepdim=True) for name, v in values.items()}  # slices with an empty mask
        peak, keys, m = peak[:1], [{"file": key}], None if m is None else m.reshape(1, -1)  # skipped
    notes = [pred.note or gt.note, _ssim_note(ctx, tuple(y.shape[-2:])) if "ssim" in opts.metrics else "",
             _lpips_note(ctx, tuple(y.shape[-2:]))]
    records = []
    for i, item_key in enumerate(keys):
        item_notes = list(notes)
        if peak[i] <= 0:
            item_notes.append("data range is 0 (constant reference): give --data-range N")
        span = float(y.max() - y.min()) if len(keys) == 1 else float(y[i].max() - y[i].min())
        if rule == "dtype" and 0 < span < 0.1 * float(peak[i]):
            item_notes.append(f"the reference spans {span:.6g} of the dtype range {float(peak[i]):.6g}: PSNR and SSIM "
                              "are inflated; --data-range gt-range scores the data")
        if m is not None and not bool(m[i].any()):
            item_notes.append("mask is empty")
        ctx.ranges.append(float(peak[i]))
        records.append({**item_key, **{k: float(v[i]) for k, v in values.items()}, "range": float(peak[i]),
                        "note": "; ".join(n for n in item_notes if n)})
    return records


def _metric_values(x: torch.Tensor, y: torch.Tensor, peak: torch.Tensor, floor: torch.Tensor,
                   mask: torch.Tensor | None, ctx: _Context) -> dict[str, torch.Tensor]:
    """Each asked metric of ``METRICS`` on the inputs its parameters name; NaN where a metric that reads the data
    range meets a range of 0."""
    bad = peak <= 0
    safe = torch.where(bad, torch.ones_like(peak), peak)
    nan = torch.full_like(peak, float("nan"))
    inputs = {"data_range": safe, "floor": floor, "mask": mask, "preset": ctx.preset.name, "model": ctx.lpips_model}
    values: dict[str, torch.Tensor] = {}
    for name in ctx.options.metrics:
        metric = registry.METRICS.get(name)
        reads = inspect.signature(metric).parameters
        value = metric(x, y, **{k: v for k, v in inputs.items() if k in reads})
        values[name] = torch.where(bad, nan, value) if "data_range" in reads else value
    return values


def _protocol(pred: Path, gt: Path, n_pairs: int, ctx: _Context) -> dict[str, Any]:
    opts = ctx.options
    given = opts.data_range is not None
    rule_text = ", ".join(sorted(ctx.rules))
    if opts.ct_window:
        rule_text += " (the CT window's)"
    elif not given:
        rule_text += (f" (the {ctx.preset.name} preset's rule)" if ctx.preset.data_range_rule
                      else " (default: dtype range for integer images, gt-range for float images)")
    protocol: dict[str, Any] = {
        "prediction": str(pred), "reference": str(gt), "pairs": n_pairs,
        "unit": "slice (volumes)" if opts.per_slice else "file",
        "metrics": list(opts.metrics),
        "data range": rule_text,
        "data range values": _range_text(ctx.ranges),
    }
    if opts.ct_window:
        protocol["ct window"] = opts.ct_window.describe()
        protocol["ct reduction"] = reduction_text(opts.ct_reduction)
    if "ssim" in opts.metrics:
        protocol["ssim"] = _preset_text(ctx.preset)
    if ctx.volumes:
        protocol["volumes"] = ("slice axis = last array axis; data range per volume; " +
                               ("metrics per slice" if opts.per_slice else
                                "every metric per slice, then the mean over slices"
                                if opts.ct_window and opts.ct_reduction == "slice" else
                                "PSNR/NRMSE over the whole volume, SSIM = mean of 2-D SSIM over slices"))
    protocol["mask"] = (f"{opts.mask} (foreground = non-zero)" if opts.mask else "none")
    protocol["crop border"] = f"{opts.crop_border} px per in-plane side"
    protocol["channels"] = "gray (BT.601 luma of RGB)" if opts.gray else "all"
    if ctx.lpips_model is not None:
        protocol["lpips"] = (f"{ctx.lpips_model.net} ({opts.lpips_weights}); input 2 (x - low) / range - 1, "
                             "gray repeated to RGB, mask not applied")
    return protocol


def _ssim_preset(options: EvalOptions) -> str:
    """The SSIM preset: the one given, else the CT window's, else ``wang``; a window whose protocol fixes its
    SSIM (LDCT-bench's) admits no other."""
    window = options.ct_window
    preset = options.ssim_preset or (window.ssim_preset if window else "wang")
    require(preset in image.SSIM_PRESETS, "--ssim-preset",
            f"unknown preset '{preset}' (known: {', '.join(image.SSIM_PRESETS)})")
    if window is not None and window.fixed_ssim and preset != window.ssim_preset:
        raise InputError("--ssim-preset", f"{preset} does not combine with this CT window ({window.source}), "
                                          f"which scores with SSIM preset {window.ssim_preset}")
    return preset


def evaluate(pred: Path, gt: Path, options: EvalOptions) -> Evaluation:
    """Match ``pred`` with ``gt`` (files or directories), compute the metrics per file (or per slice) and collect
    the protocol; bad input raises :class:`InputError`."""
    preset = _ssim_preset(options)
    require(options.ct_reduction in REDUCTIONS, "--ct-reduction",
            f"must be one of {', '.join(REDUCTIONS)}, got {options.ct_reduction!r}")
    require(options.crop_border >= 0, "--crop-border", f"must be >= 0, got {options.crop_border}")
    require(options.ct_window is None or options.data_range is None, "--data-range",
            "does not combine with a CT window (the window sets the data range)")
    if options.data_range is not None:  # a malformed rule fails here, before any file is read
        image.resolve_data_range(options.data_range, torch.zeros(1, 1), np.uint8)
    matching = match_files(Path(pred), Path(gt), options.allow_missing)
    lpips_model = None
    if "lpips" in options.metrics:
        lpips_model = load_lpips(options.lpips_weights)
    ctx = _Context(options, image.SSIM_PRESETS[preset], lpips_model)
    masks = MaskSource(options.mask)
    records: list[dict[str, Any]] = []
    for key, pred_path, gt_path in matching.pairs:
        pred_item, gt_item = load_pair(pred_path, gt_path, options.gray)
        if options.ct_window is not None:  # a window on MR magnitudes or [0, 1] images scores clipped constants
            check_ct(gt_path, gt_item.data)
            check_ct(pred_path, pred_item.data)
        mask = masks.get(key, gt_item.data.shape[1:])
        records += _evaluate_pair(key, pred_item, gt_item, mask, ctx)
    key_columns = ["file", "slice"] if any("slice" in r for r in records) else ["file"]
    return Evaluation(_protocol(Path(pred), Path(gt), len(matching.pairs), ctx), list(options.metrics), records,
                      key_columns, ["range", "note"], matching.unmatched_lines(str(pred), str(gt)))
