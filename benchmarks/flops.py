"""Cost of every super-resolution model per output slice: parameters, MACs, peak memory and time per slice.

Two sets, in two tables: ``paper`` (each model built with its constructor defaults, the papers' sizes; ``sakg``:
the flagship's defaults; ``liif-swinir``: LIIF behind the paper-size SwinIR-light encoder) and ``benchmarked``
(the CPU-sized models that ``benchmarks/fair.py`` trains and scores, from the package configs). Each is run
on one 256x256 output slice at x2 and x4 with an HR reference (models that read it) and 3 adjacent LR slices.
MACs = FLOPs / 2 from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; FFTs,
interpolation and sampling are not counted), counted on the meta device. Time and peak memory are measured in a
fresh subprocess per model and scale: on CPU the peak resident set during the forward above the resident set
before it (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``), on GPU ``max_memory_allocated``
above the memory allocated before it; on the CPU always and on the GPU when one is present. The issue's budget for ``sakg`` is 150 GMACs at x2.

    python benchmarks/flops.py [--set paper|benchmarked|both] [--size 256] [--scales 2,4] [--models sakg,...]
                               [--repeats 2] [--no-timing] [--json F]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

BUDGET_GMACS = 150.0
MODELS_ORDER = ("bicubic", "zerofill", "edsr", "rdn", "liif", "liif-swinir", "metasr", "dualarb", "sakg")
PAPER_SPECS = {"liif-swinir": {"type": "liif", "encoder": {"type": "swinir_light"}}}
BENCHMARKED = ("liif", "liif_swinir", "metasr", "dualarb", "sakg", "sakg2")  # what benchmarks/fair.py trains


def specs(which: str, names: list[str]) -> dict[str, dict]:
    """Model specs of the ``paper`` or ``benchmarked`` set (``names`` filters either)."""
    if which == "paper":
        return {n: PAPER_SPECS.get(n, {"type": n}) for n in MODELS_ORDER if n in names}
    from fair import model_spec  # the variants' specs (sakg2: the redesign, its frozen prior counted untrained)

    return {n: model_spec(n.replace("_", "-")) for n in BENCHMARKED if n in names or n.replace("_", "-") in names}


def build(spec: dict) -> torch.nn.Module:
    from medsr.registry import MODELS

    return MODELS.build(spec).eval()


def inputs(size: int, scale: int, device: str | torch.device) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor]:
    lr = torch.rand(1, 3, size // scale, size // scale, device=device)
    return lr, (size, size), torch.rand(1, 1, size, size, device=device)


def supports(model: torch.nn.Module, scale: int) -> bool:
    fixed = model.fixed_scales
    return fixed is None or scale in fixed


def count_macs(spec: dict, size: int, scale: int) -> float:
    """MACs of one forward, counted on the meta device (shapes only, no arithmetic)."""
    with torch.device("meta"):
        model = build(spec)
        lr, out, ref = inputs(size, scale, "meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(lr, out, ref)
    return counter.get_total_flops() / 2


def proc_status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (Linux), e.g. ``VmRSS`` or ``VmHWM``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(spec: dict, size: int, scale: int, device: str, repeats: int) -> dict[str, float]:
    """Seconds per slice (best of ``repeats`` after one warm-up) and peak memory (MiB) of one forward."""
    torch.manual_seed(0)
    model = build(spec).to(device)
    lr, out, ref = inputs(size, scale, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set (VmHWM) to the current one
    base_rss = proc_status_kib("VmRSS")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            sync()
            start = time.perf_counter()
            model(lr, out, ref)
            sync()
            times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    else:
        peak = (proc_status_kib("VmHWM") - base_rss) / 1024
    return {"seconds": min(times[1:]), "peak_mib": peak}


def measure_in_subprocess(spec: dict, size: int, scale: int, device: str, repeats: int, threads: int) -> dict[str, float]:
    code = (
        "import json, sys, torch; sys.path.insert(0, %r); torch.set_num_threads(%d); import flops; "
        "print(json.dumps(flops.measure(json.loads(%r), %d, %d, %r, %d)))"
        % (str(Path(__file__).parent), threads, json.dumps(spec), size, scale, device, repeats)
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict], devices: list[str]) -> str:
    head = ["model", "scale", "params (M)", "GMACs"] + [f"{d} s/slice" for d in devices] + [
        f"{d} peak MiB" for d in devices]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], f"x{r['scale']}", f"{r['params'] / 1e6:.2f}", f"{r['gmacs']:.1f}"]
        cells += [f"{r[d]['seconds']:.3f}" if d in r else "-" for d in devices]
        cells += [f"{r[d]['peak_mib']:.0f}" if d in r else "-" for d in devices]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="output side (pixels)")
    parser.add_argument("--scales", default="2,4", help="integer scales, comma-separated")
    parser.add_argument("--set", choices=("paper", "benchmarked", "both"), default="both")
    parser.add_argument("--models", default=",".join(MODELS_ORDER + BENCHMARKED))
    parser.add_argument("--no-timing", action="store_true", help="parameters and MACs only")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after one warm-up (best is kept)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for timing")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    scales = [int(s) for s in args.scales.split(",")]
    devices = [] if args.no_timing else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"Output {args.size}x{args.size}, 3 LR slices, HR reference; CPU threads: {args.threads}; "
          f"devices: {', '.join(devices) or 'none (MACs only)'}; torch {torch.__version__}")
    sets = ("paper", "benchmarked") if args.set == "both" else (args.set,)
    rows, tables = [], {}
    for which in sets:
        for name, spec in specs(which, args.models.split(",")).items():
            model = build(spec)
            params = sum(p.numel() for p in model.parameters())
            for scale in scales:
                if not supports(model, scale):
                    continue
                row = {"set": which, "model": name, "scale": scale, "params": params,
                       "gmacs": count_macs(spec, args.size, scale) / 1e9}
                for device in devices:
                    row[device] = measure_in_subprocess(spec, args.size, scale, device, args.repeats, args.threads)
                rows.append(row)
                print(f"{which} {name} x{scale}: {row['gmacs']:.1f} GMACs", file=sys.stderr, flush=True)
        title = ("paper sizes (constructor defaults)" if which == "paper"
                 else "benchmarked (CPU-sized configs that benchmarks/fair.py trains)")
        tables[which] = f"\n{title}:\n\n" + table([r for r in rows if r["set"] == which], devices)
        print(tables[which])
    paper = [r for r in rows if r["set"] == "paper"]
    sakg = [r for r in paper if r["model"] == "sakg" and r["scale"] == 2]
    if sakg:
        g = sakg[0]["gmacs"]
        verdict = "within" if g <= BUDGET_GMACS else "OVER"
        print(f"\nsakg at x2 (paper size): {g:.1f} GMACs, {verdict} the {BUDGET_GMACS:g} GMAC budget")
        for r in paper:
            if r["model"] == "dualarb" and r["scale"] == 2:
                ratio = f"{r['cpu']['seconds'] / sakg[0]['cpu']['seconds']:.1f}x" if "cpu" in r else "not timed"
                print(f"dualarb / sakg MACs at x2: {r['gmacs'] / g:.1f}x; CPU time ratio: {ratio}")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "devices": devices, "tables": tables, "rows": rows},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
