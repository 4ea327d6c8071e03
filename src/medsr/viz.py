"""Figures: comparison grids with error maps and a zoomed inset, PSNR/SSIM-versus-scale plots, feature maps.

Figures are drawn on :class:`matplotlib.figure.Figure` objects directly (Agg canvas, no pyplot state), so they
can be made from worker processes and tests without a display. Every writer saves atomically as PNG, or as PDF
when the output name ends with ``.pdf``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from medsr.checkpoint import build_from_weights
from medsr.config import load_config
from medsr.data.datasets import ScaleBatchSampler
from medsr.data.embedded import ensure_mni
from medsr.data.store import robust_scale
from medsr.errors import InputError
from medsr.infer.volume import model_slices
from medsr.io.atomic import atomic_path
from medsr.io.images import read_image
from medsr.io.nifti import on_grid_of
from medsr.models.base import bicubic_upsample, sr_model
from medsr.tasks.sr import SRTask

FIGURE_FORMATS = {".png": "png", ".pdf": "pdf"}
_DPI = 150


def figure_format(out: str | Path) -> str:
    """``png`` or ``pdf`` from the output name; anything else is an :class:`InputError`."""
    fmt = FIGURE_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise InputError(out, f"figure output must end with {' or '.join(FIGURE_FORMATS)}")
    return fmt


def new_figure(width: float, height: float) -> Figure:
    """A figure with an Agg canvas and constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out: str | Path) -> Path:
    """Save ``fig`` atomically (PNG, or PDF for ``.pdf``) and return the output path."""
    out = Path(out)
    fmt = figure_format(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=_DPI)
    return out


def _image_2d(name: str, image: np.ndarray) -> np.ndarray:
    array = np.asarray(image, dtype=np.float64)
    array = array.squeeze() if array.ndim > 2 else array
    if array.ndim != 2 or array.size == 0:
        raise InputError(name, f"expected a non-empty 2-D image, got shape {np.shape(image)}")
    if not np.isfinite(array).all():
        raise InputError(name, "holds non-finite values (NaN or Inf)")
    return array


def auto_zoom(hr: np.ndarray) -> tuple[int, int, int]:
    """Zoom box ``(y, x, size)`` over the most detailed square (largest mean gradient magnitude) of ``hr``."""
    from scipy import ndimage

    size = max(4, min(hr.shape) // 4)
    detail = np.hypot(*np.gradient(hr.astype(np.float64)))
    energy = ndimage.uniform_filter(detail, size=size, mode="constant")
    half = size // 2
    valid = energy[half : hr.shape[0] - size + half + 1, half : hr.shape[1] - size + half + 1]
    y, x = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(y), int(x), size


def _check_zoom(zoom: Sequence[int], shape: tuple[int, int]) -> tuple[int, int, int]:
    y, x, size = (int(v) for v in zoom)
    if size < 2 or y < 0 or x < 0 or y + size > shape[0] or x + size > shape[1]:
        raise InputError("--zoom", f"box y={y}, x={x}, size={size} does not fit inside the {shape} image")
    return y, x, size


def _show(ax: Any, image: np.ndarray, shape: tuple[int, int], **kwargs: Any) -> Any:
    """Draw ``image`` stretched over the HR pixel grid of ``shape`` (so LR and HR panels line up)."""
    extent = (-0.5, shape[1] - 0.5, shape[0] - 0.5, -0.5)
    return ax.imshow(image, extent=extent, interpolation="nearest", **kwargs)


def _box(ax: Any, zoom: tuple[int, int, int], colour: str = "yellow") -> None:
    y, x, size = zoom
    ax.add_patch(Rectangle((x - 0.5, y - 0.5), size, size, fill=False, edgecolor=colour, linewidth=1.0))


def _inset(ax: Any, image: np.ndarray, shape: tuple[int, int], zoom: tuple[int, int, int], **kwargs: Any) -> None:
    """A magnified copy of the zoom box in the corner of ``ax`` diagonally opposite the box."""
    y, x, size = zoom
    left = 0.0 if x + size / 2 > shape[1] / 2 else 0.6
    bottom = 0.6 if y + size / 2 > shape[0] / 2 else 0.0
    inset = ax.inset_axes((left, bottom, 0.4, 0.4))
    _show(inset, image, shape, **kwargs)
    inset.set_xlim(x - 0.5, x + size - 0.5)
    inset.set_ylim(y + size - 0.5, y - 0.5)
    inset.set_xticks([])
    inset.set_yticks([])
    for spine in inset.spines.values():
        spine.set_edgecolor("yellow")
    _box(ax, zoom)


def comparison_figure(
    panels: Mapping[str, np.ndarray],
    hr: np.ndarray,
    out: str | Path,
    *,
    title: str | None = None,
    zoom: Sequence[int] | None = None,
    error_max: float | None = None,
) -> Path:
    """Comparison grid: ``panels`` in order (e.g. LR, bicubic, methods), then HR; below each panel of HR size its
    absolute error map against ``hr`` (shared colour scale ``[0, error_max]`` and colour bar); a zoomed inset of
    the box ``zoom = (y, x, size)`` in HR pixels (default: the most detailed square) on every image panel.

    Panels of another size (e.g. LR) are stretched over the HR field of view and get no error map. Grey levels
    are shared: ``[min(hr), 99.5th percentile of hr]``. ``error_max`` defaults to the largest 99.5th percentile
    of the error maps. Returns ``out``.
    """
    figure_format(out)
    hr = _image_2d("hr", hr)
    if not panels:
        raise InputError("panels", "need at least one panel to compare with HR")
    images = {name: _image_2d(name, image) for name, image in panels.items()}
    shape = hr.shape
    zoom = _check_zoom(zoom, shape) if zoom is not None else auto_zoom(hr)
    errors = {name: np.abs(image - hr) for name, image in images.items() if image.shape == shape}
    if error_max is None:
        error_max = max((float(np.percentile(e, 99.5)) for e in errors.values()), default=0.0)
    error_max = float(error_max) if error_max and error_max > 0 else 1e-6
    grey = {"cmap": "gray", "vmin": float(hr.min()), "vmax": max(float(np.percentile(hr, 99.5)), float(hr.min()) + 1e-6)}

    columns = [*images.items(), ("HR", hr)]
    fig = new_figure(2.4 * len(columns) + 0.8, 5.2)
    axes = fig.subplots(2, len(columns), squeeze=False)
    for ax, (name, image) in zip(axes[0], columns):
        _show(ax, image, shape, **grey)
        _inset(ax, image, shape, zoom, **grey)
        ax.set_title(f"{name}" if image.shape == shape else f"{name} ({image.shape[0]}x{image.shape[1]})")
    mappable = None
    for ax, (name, _) in zip(axes[1], columns):
        if name in errors and name != "HR":
            mappable = _show(ax, errors[name], shape, cmap="inferno", vmin=0.0, vmax=error_max)
            _box(ax, zoom, colour="cyan")
            ax.set_title(f"|{name} - HR|  MAE {errors[name].mean():.3g}", fontsize="small")
        else:
            ax.set_frame_on(False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if mappable is not None:
        fig.colorbar(mappable, cax=axes[1, -1].inset_axes((0.05, 0.05, 0.08, 0.9)), label="absolute error")
    if title:
        fig.suptitle(title)
    return save_figure(fig, out)


MIN_SIDE = 8


def read_picture(path: str | Path, reference: str | Path | None = None) -> np.ndarray:
    """A 2-D image or 3-D volume from a file as float64 (colour PNG/JPEG images averaged to grey); a NIfTI file
    is put on the grid of a NIfTI ``reference`` (:func:`medsr.io.nifti.on_grid_of`)."""
    data = np.asarray(on_grid_of(path, read_image(path), reference), dtype=np.float64)
    if data.ndim == 3 and data.shape[-1] in (3, 4) and Path(path).suffix.lower() in (".png", ".jpg", ".jpeg"):
        data = data[..., :3].mean(axis=-1)
    if data.ndim not in (2, 3):
        raise InputError(path, f"expected a 2-D image or 3-D volume, got shape {data.shape}")
    return data


def take_slice(data: np.ndarray, index: int | None = None, depth: int | None = None) -> np.ndarray:
    """``data`` itself when 2-D; else slice ``index`` (middle when None) of its last axis. ``index`` counts in
    ``depth`` slices (default: this volume's): a volume of another depth gives the slice at the same position
    (pixel-centre geometry), so an LR volume lines up with its HR volume."""
    if data.ndim == 2:
        return data
    n = data.shape[-1]
    depth = depth or n
    k = depth // 2 if index is None else int(index)
    if not 0 <= k < depth:
        raise InputError("--slice", f"slice {k} is outside 0..{depth - 1}")
    return data[..., min(n - 1, max(0, round((k + 0.5) * n / depth - 0.5)))]


def parse_method(text: str) -> tuple[str, str]:
    """``NAME=FILE`` as ``(name, file)``."""
    name, sep, file = text.partition("=")
    if not sep or not name or not file:
        raise InputError("--method", f"expected NAME=FILE, got {text!r}")
    return name, file


def parse_zoom(text: str) -> tuple[int, int, int]:
    """``y,x,size`` as three integers."""
    try:
        y, x, size = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError("--zoom", f"expected three integers y,x,size, got {text!r}") from None
    return y, x, size


def compare_files(
    hr: str | Path,
    out: str | Path,
    *,
    lr: str | Path | None = None,
    methods: Sequence[tuple[str, str | Path]] = (),
    zoom: Sequence[int] | None = None,
    slice_index: int | None = None,
) -> Path:
    """:func:`comparison_figure` of image/volume files: LR and its bicubic upsampling (when ``lr`` is given), the
    ``methods`` in order, then HR; volumes are cut at ``slice_index`` of the HR volume's last axis."""
    import torch

    hr_data = read_picture(hr)
    depth = hr_data.shape[-1] if hr_data.ndim == 3 else None
    hr_image = take_slice(hr_data, slice_index)
    if min(hr_image.shape) < MIN_SIDE:
        raise InputError(hr, f"image {'x'.join(map(str, hr_image.shape))} is too small to compare (needs at least "
                         f"{MIN_SIDE} pixels a side)")
    panels: dict[str, np.ndarray] = {}
    if lr is not None:
        panels["LR"] = take_slice(read_picture(lr), slice_index, depth)
        lr_tensor = torch.from_numpy(panels["LR"]).float()[None, None]
        panels["bicubic"] = bicubic_upsample(lr_tensor, hr_image.shape)[0, 0].double().numpy()
    for name, path in methods:
        data = read_picture(path, reference=hr)
        if data.shape != hr_data.shape:
            raise InputError(path, f"method {name}: shape {'x'.join(map(str, data.shape))} differs from the HR "
                             f"image {hr} ({'x'.join(map(str, hr_data.shape))})")
        panels[name] = take_slice(data, slice_index, depth)
    if not panels:
        raise InputError("--method", "give --lr and/or at least one --method NAME=FILE to compare with HR")
    title = None if depth is None else f"slice {depth // 2 if slice_index is None else slice_index} of {depth}"
    return comparison_figure(panels, hr_image, out, title=title, zoom=zoom)


def _scale_value(raw: Any, source: Path) -> float:
    """A result's scale as one number: the value itself, or the geometric mean of per-axis scales."""
    values = np.atleast_1d(np.asarray(raw, dtype=np.float64)) if not isinstance(raw, str) else None
    if values is None or values.size == 0 or not np.isfinite(values).all() or (values <= 0).any():
        raise InputError(source, f"invalid scale {raw!r} in results")
    return float(values[0]) if values.size == 1 else float(np.exp(np.log(values).mean()))


def read_results(json_files: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Rows of ``medsr test`` JSON files, each with ``file`` (stem) and a numeric ``x`` (scale) added."""
    rows: list[dict[str, Any]] = []
    for path in map(Path, json_files):
        if not path.is_file():
            raise InputError(path, "no such results file")
        try:
            content = json.loads(path.read_text())
            results = content["results"]
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(path, f"not a medsr test results file ({type(err).__name__}: {err})") from None
        for row in results:
            if not isinstance(row, dict) or not {"method", "scale", "psnr", "ssim"} <= row.keys():
                raise InputError(path, "each result needs method, scale, psnr and ssim")
            rows.append({**row, "file": path.name.removesuffix(".json"), "x": _scale_value(row["scale"], path),
                         "trained": _trained_range(content.get("protocol"))})
    if not rows:
        raise InputError(json_files[0] if json_files else "JSON", "no results to plot")
    return rows


def _series_label(row: Mapping[str, Any], with_file: bool) -> str:
    """Legend entry: method, reference setting, and the file's stem when ``with_file`` (same label in two files)."""
    ref = row.get("ref")
    label = f"{row['method']} + ref {ref}" if ref not in (None, False, "", "none") else str(row["method"])
    return f"{label} [{row['file']}]" if with_file else label


def _trained_range(protocol: Any) -> tuple[float, float] | None:
    """``(low, high)`` from a protocol's ``scales_trained`` (``"1.5-4"``), or None when it is absent or unknown."""
    text = protocol.get("scales_trained") if isinstance(protocol, dict) else None
    try:
        low, high = (float(v) for v in str(text).split("-"))
    except ValueError:
        return None
    return low, high


def _ood_spans(rows: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """Intervals around out-of-distribution scales, reaching halfway to the neighbouring scales, or to the end of
    the training range when the results file states it (so a run trained up to x4 is shaded from x4 on)."""
    xs = sorted({row["x"] for row in rows})
    ood = {row["x"] for row in rows if row.get("ood")}
    ranges = [row["trained"] for row in rows if row.get("ood") and row.get("trained")]
    low = min((r[0] for r in ranges), default=None)
    high = max((r[1] for r in ranges), default=None)
    spans = []
    for i, x in enumerate(xs):
        if x in ood:
            left = (xs[i - 1] + x) / 2 if i > 0 else x - (xs[1] - x) / 2 if len(xs) > 1 else x - 0.25
            right = (xs[i + 1] + x) / 2 if i + 1 < len(xs) else x + (x - xs[i - 1]) / 2 if i > 0 else x + 0.25
            if high is not None and x > high and (i == 0 or xs[i - 1] <= high):
                left = high
            if low is not None and x < low and (i + 1 == len(xs) or xs[i + 1] >= low):
                right = low
            spans.append((left, right))
    return spans


def scale_plot(json_files: Sequence[str | Path], out: str | Path) -> Path:
    """PSNR and SSIM versus scale (error bars = standard deviation over volumes) for every method and reference
    setting in ``medsr test`` JSON files; out-of-distribution scales (``ood``) are shaded. Returns ``out``."""
    figure_format(out)
    rows = read_results(json_files)
    files_per_label: dict[str, set[str]] = {}
    for row in rows:
        files_per_label.setdefault(_series_label(row, False), set()).add(row["file"])
    series: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        clash = len(files_per_label[_series_label(row, False)]) > 1
        series.setdefault(_series_label(row, clash), []).append(row)
    ood_spans = _ood_spans(rows)
    fig = new_figure(10.0, 4.0)
    axes = fig.subplots(1, 2)
    for ax, metric, unit in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        for label, points in series.items():
            points = sorted((p for p in points if p[metric] is not None), key=lambda r: r["x"])  # null: n/a
            std = [float(p.get(f"{metric}_std") or 0.0) for p in points]
            ax.errorbar([p["x"] for p in points], [float(p[metric]) for p in points], yerr=std, marker="o",
                        markersize=3, capsize=2, label=label)
        for i, (lo, hi) in enumerate(ood_spans):
            ax.axvspan(lo, hi, color="grey", alpha=0.15, linewidth=0, label="out of training range" if i == 0 else None)
        ax.set_xlabel("scale")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return save_figure(fig, out)


def _channel_grid(maps: np.ndarray, max_channels: int) -> tuple[np.ndarray, int, int]:
    """The first ``max_channels`` channels of ``[C, h, w]``, each scaled to [0, 1], and the grid's rows/cols."""
    maps = maps[:max_channels].astype(np.float64)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    maps = (maps - lo) / np.where(span > 0, span, 1.0)
    cols = math.ceil(math.sqrt(len(maps)))
    return maps, math.ceil(len(maps) / cols), cols


def layer_output(weights: str | Path, image: np.ndarray, layer_name: str) -> np.ndarray:
    """Output ``[C, h, w]`` of the module ``layer_name`` when the model of ``weights`` super-resolves ``image``
    (normalised by its robust scale, at the model's first fixed scale or x2), captured with a forward hook."""
    import torch

    model, meta = build_from_weights(weights, task="sr")
    model = sr_model(model, weights)
    modules = dict(model.named_modules())
    if layer_name not in modules or not layer_name:
        names = ", ".join(n for n in list(modules)[1:20]) or "none"
        raise InputError("--layer", f"model has no module '{layer_name}' (first names: {names})")
    scale = int((model.fixed_scales or (2,))[0])
    image = _image_2d("--image", image)
    lr = torch.from_numpy(image / robust_scale(image)).float()
    lr = lr.expand(1, model_slices(model, meta), *lr.shape).contiguous()
    captured: list[torch.Tensor] = []
    hook = modules[layer_name].register_forward_hook(
        lambda _m, _i, output: captured.append(output[0] if isinstance(output, (tuple, list)) else output))
    try:
        with torch.no_grad():
            model(lr, (image.shape[0] * scale, image.shape[1] * scale), None)
    finally:
        hook.remove()
    if not captured or captured[0].ndim != 4:
        got = "no output" if not captured else f"shape {tuple(captured[0].shape)}"
        raise InputError("--layer", f"'{layer_name}' does not give image-shaped feature maps [B, C, h, w] ({got})")
    return captured[0][0].float().cpu().numpy()


def feature_maps(
    weights: str | Path, image: np.ndarray, layer_name: str, out: str | Path, *, max_channels: int = 64
) -> Path:
    """Grid of the first ``max_channels`` channels (each min-max scaled) that layer ``layer_name`` of the model in
    ``weights`` produces for ``image``. Returns ``out``."""
    figure_format(out)
    maps, rows, cols = _channel_grid(layer_output(weights, image, layer_name), max_channels)
    fig = new_figure(1.3 * cols, 1.3 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        if index < len(maps):
            ax.imshow(maps[index], cmap="viridis", interpolation="nearest")
            ax.set_title(str(index), fontsize="x-small")
        ax.set_axis_off()
    fig.suptitle(f"{layer_name}: {len(maps)} channels")
    return save_figure(fig, out)


def samples_figure(items: Sequence[Mapping[str, Any]], out: str | Path, *, title: str | None = None) -> Path:
    """Grid of training items, one per column: target (HR), reference, LR input (its centre slice, stretched
    over the HR field of view) and labels; each image panel in grey from 0 to its own 99.5th percentile."""
    figure_format(out)
    if not items:
        raise InputError("--n", "need at least one item")
    rows = ("target", "reference", "LR input", "labels")
    fig = new_figure(1.6 * len(items) + 0.4, 1.7 * len(rows))
    axes = fig.subplots(len(rows), len(items), squeeze=False)
    for col, item in enumerate(items):
        hr = np.asarray(item["hr"], dtype=np.float64)[0]
        lr = np.asarray(item["lr"], dtype=np.float64)
        panels = {"target": hr, "LR input": lr[lr.shape[0] // 2]}
        if "ref" in item:
            panels["reference"] = np.asarray(item["ref"], dtype=np.float64)[0]
        for row, name in enumerate(rows):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if name == "labels" and "label" in item:
                _show(ax, np.asarray(item["label"]), hr.shape, cmap="tab10", vmin=0, vmax=9)
            elif name in panels:
                image = panels[name]
                _show(ax, image, hr.shape, cmap="gray", vmin=0.0, vmax=max(float(np.percentile(image, 99.5)), 1e-6))
            else:
                ax.set_frame_on(False)
            if col == 0:
                ax.set_ylabel(name)
        sy, sx = (float(v) for v in item["scale"])
        axes[0, col].set_title(f"{item['key']}\nx{sy:.2g}, {sx:.2g}", fontsize="x-small")
    if title:
        fig.suptitle(title)
    return save_figure(fig, out)


def training_samples(config: str | Path, n: int, out: str | Path) -> Path:
    """:func:`samples_figure` of ``n`` training items of a run config: the first item of the batches at ``n``
    steps spread over the run (so every curriculum stage shows), exactly as the engine would make them."""
    if n < 1:
        raise InputError("--n", f"must be at least 1, got {n}")
    figure_format(out)
    cfg = load_config(config)
    if cfg.data.embedded == "mni":
        ensure_mni(cfg.data.root)
    task = SRTask(cfg)
    dataset = task.dataset(cfg.data.train_split, training=True)
    sampler = ScaleBatchSampler(len(dataset), 1, task.curriculum, cfg.seed)
    steps = np.linspace(0, cfg.train.steps - 1, n).round().astype(int)
    items = [dataset[sampler.batch_at(int(step))[0]] for step in steps]
    return samples_figure(items, out, title=f"{Path(config).name}: training items (data.dataset: {cfg.data.dataset})")


def ct_comparison_figure(images: Mapping[str, np.ndarray], full_dose: np.ndarray, out: str | Path, window: Any,
                         title: str = "", error_max: float = 100.0) -> Path:
    """CT comparison: each HU image of ``images`` (e.g. low dose, methods) and the full dose shown in ``window``
    (a :class:`medsr.metrics.ct.CTWindow`), above the absolute error (HU) of each against the full dose on a
    shared ``[0, error_max]`` scale. Returns ``out``."""
    figure_format(out)
    names = [*images, "full dose"]
    fig = new_figure(2.3 * len(names) + 0.8, 4.9)
    axes = fig.subplots(2, len(names), squeeze=False)
    err = None
    for col, name in enumerate(names):
        image = _image_2d(name, full_dose if name == "full dose" else images[name])
        axes[0, col].imshow(np.clip(image, window.low, window.high), cmap="gray", vmin=window.low, vmax=window.high)
        axes[0, col].set_title(name, fontsize=9)
        if name != "full dose":
            err = axes[1, col].imshow(np.abs(image - full_dose), cmap="inferno", vmin=0, vmax=error_max)
        for ax in axes[:, col]:
            ax.axis("off")
    if err is not None:
        fig.colorbar(err, ax=axes[1, :].tolist(), shrink=0.8, label="|error| (HU)")
    fig.suptitle(f"{title} window C {window.center:g} / W {window.width:g} HU".strip(), fontsize=10)
    return save_figure(fig, out)
