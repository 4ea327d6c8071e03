"""``medsr demo`` from a plain install of the built wheel (issue 9): the wheel is built from this checkout, installed
into a fresh virtual environment that sees the dependencies but not the source tree, and the demo's quick path
runs there from an empty working directory. Catches configs, weights or manifests missing from the package data
and code that finds files through the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# without PYTHONPATH: a source tree on it would make pip think medsr is installed already (src/medsr.egg-info)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)


def test_demo_runs_from_the_installed_wheel(tmp_path):
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                  str(tmp_path / "dist"), str(REPO)], tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("medsr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("medsr/configs/demo.yaml", "medsr/configs/bases/mni_sr.yaml", "medsr/weights/sakg_synth.pth",
                   "medsr/data/heldout.json"):
        assert needed in names

    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path).returncode == 0
    python = venv / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path)
    # the dependencies come from this environment's site-packages, added as a plain path entry: its .pth files
    # (among them the editable install of the checkout) are not processed, so `medsr` resolves to the wheel only
    Path(purelib.stdout.strip(), "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                     tmp_path)
    assert installed.returncode == 0, installed.stderr

    work = tmp_path / "work"
    work.mkdir()
    where = _run([str(python), "-c", "import medsr; print(medsr.__file__)"], work)
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    demo = _run([str(venv / "bin" / "medsr"), "demo", "--minutes", "0.2"], work)
    assert demo.returncode == 0, demo.stderr[-3000:]
    report = (work / "runs" / "demo" / "report.md").read_text()
    assert "| x2 | zerofill |" in report and "| x2 | sakg |" in report
    assert (work / "runs" / "demo" / "comparison.png").stat().st_size > 10_000
    assert (work / "data" / "mni").is_dir()
