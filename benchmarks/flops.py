"""Cost of every super-resolution model per output slice: parameters, MACs, peak memory and time per slice.

Each model is built with its constructor defaults (the papers' sizes; ``sakg``: the flagship's defaults) and run
on one 256x256 output slice at x2 and x4 with an HR reference (models that read it) and 3 adjacent LR slices.
MACs = FLOPs / 2 from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; FFTs,
interpolation and sampling are not counted), counted on the meta device. Time and peak memory are measured in a
fresh subprocess per model and scale: on CPU the peak resident set during the forward above the resident set
before it (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``), on GPU ``max_memory_allocated``
above the memory allocated before it; on the CPU always and on the GPU when one is present. The issue's budget for ``sakg`` is 150 GMACs at x2.

    python benchmarks/flops.py [--size 256] [--scales 2,4] [--models sakg,liif,...] [--repeats 2] [--json F]
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
MODELS_ORDER = ("bicubic", "zerofill", "edsr", "rdn", "liif", "metasr", "dualarb", "sakg")


def build(name: str) -> torch.nn.Module:
    from medsr.registry import MODELS

    return MODELS.build({"type": name}).eval()


def inputs(size: int, scale: int, device: str | torch.device) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor]:
    lr = torch.rand(1, 3, size // scale, size // scale, device=device)
    return lr, (size, size), torch.rand(1, 1, size, size, device=device)


def supports(model: torch.nn.Module, scale: int) -> bool:
    fixed = model.fixed_scales
    return fixed is None or scale in fixed


def count_macs(name: str, size: int, scale: int) -> float:
    """MACs of one forward, counted on the meta device (shapes only, no arithmetic)."""
    with torch.device("meta"):
        model = build(name)
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


def measure(name: str, size: int, scale: int, device: str, repeats: int) -> dict[str, float]:
    """Seconds per slice (best of ``repeats`` after one warm-up) and peak memory (MiB) of one forward."""
    torch.manual_seed(0)
    model = build(name).to(device)
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


def measure_in_subprocess(name: str, size: int, scale: int, device: str, repeats: int, threads: int) -> dict[str, float]:
    code = (
        "import json, sys, torch; sys.path.insert(0, %r); torch.set_num_threads(%d); import flops; "
        "print(json.dumps(flops.measure(%r, %d, %d, %r, %d)))"
        % (str(Path(__file__).parent), threads, name, size, scale, device, repeats)
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict], devices: list[str]) -> str:
    head = ["model", "scale", "params (M)", "GMACs"] + [f"{d} s/slice" for d in devices] + [
        f"{d} peak MiB" for d in devices]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], f"x{r['scale']}", f"{r['params'] / 1e6:.2f}", f"{r['gmacs']:.1f}"]
        cells += [f"{r[d]['seconds']:.3f}" for d in devices] + [f"{r[d]['peak_mib']:.0f}" for d in devices]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="output side (pixels)")
    parser.add_argument("--scales", default="2,4", help="integer scales, comma-separated")
    parser.add_argument("--models", default=",".join(MODELS_ORDER))
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after one warm-up (best is kept)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for timing")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    scales = [int(s) for s in args.scales.split(",")]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for name in args.models.split(","):
        model = build(name)
        params = sum(p.numel() for p in model.parameters())
        for scale in scales:
            if not supports(model, scale):
                continue
            row = {"model": name, "scale": scale, "params": params, "gmacs": count_macs(name, args.size, scale) / 1e9}
            for device in devices:
                row[device] = measure_in_subprocess(name, args.size, scale, device, args.repeats, args.threads)
            rows.append(row)
            print(f"{name} x{scale}: {row['gmacs']:.1f} GMACs, " + ", ".join(
                f"{d} {row[d]['seconds']:.3f} s" for d in devices), file=sys.stderr, flush=True)
    print(f"Output {args.size}x{args.size}, 3 LR slices, HR reference; CPU threads: {args.threads}; "
          f"devices: {', '.join(devices)}; torch {torch.__version__}\n")
    print(table(rows, devices))
    sakg = [r for r in rows if r["model"] == "sakg" and r["scale"] == 2]
    if sakg:
        g = sakg[0]["gmacs"]
        verdict = "within" if g <= BUDGET_GMACS else "OVER"
        print(f"\nsakg at x2: {g:.1f} GMACs, {verdict} the {BUDGET_GMACS:g} GMAC budget")
        for r in rows:
            if r["model"] == "dualarb" and r["scale"] == 2:
                print(f"dualarb / sakg MACs at x2: {r['gmacs'] / g:.1f}x; CPU time ratio: "
                      f"{r['cpu']['seconds'] / sakg[0]['cpu']['seconds']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "devices": devices, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
