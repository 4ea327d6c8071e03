"""The import layering of docs/architecture.md, read from the source with ``ast``: a module imports only from its
own layer or the layers below it, so the dependency graph has one direction."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "medsr"

# Highest first. A module belongs to the first layer one of whose prefixes it starts with ("medsr" itself: the
# package's __init__ only, so a new package must be placed here explicitly).
LAYERS = [
    ("commands", ("medsr.cli", "medsr.__main__", "medsr.commands", "medsr.demo")),
    ("infer", ("medsr.infer", "medsr.viz")),
    ("engine", ("medsr.engine",)),
    ("tasks", ("medsr.tasks",)),
    ("evaluation", ("medsr.evaluation",)),
    ("inference", ("medsr.inference",)),
    ("components", ("medsr.data", "medsr.models", "medsr.losses", "medsr.metrics", "medsr.checkpoint", "medsr.ct",
                    "medsr.classical", "medsr.optim", "medsr.intensity")),
    ("io", ("medsr.io",)),
    ("core", ("medsr.kspace", "medsr.slice_profile", "medsr.resample", "medsr.scales", "medsr.device", "medsr.errors",
              "medsr.registry", "medsr.config", "medsr")),
]

# Imports that go upwards, each a known debt to remove; the test fails when one disappears (delete it here) or a
# new one appears.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def layer_of(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or (p != "medsr" and module.startswith(p + ".")) for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path, local_only: bool = False) -> set[str]:
    """Every ``medsr`` module a file imports, at module level or inside functions (only inside functions when
    ``local_only``)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    tree = ast.parse(path.read_text())
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    found = set()
    for node in (m for root in (functions if local_only else [tree]) for m in ast.walk(root)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "medsr"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            if base.split(".")[0] == "medsr":
                found.add(base)
    return found


def upward_imports() -> set[tuple[str, str]]:
    edges = set()
    for path in sorted(SRC.rglob("*.py")):
        importer = module_name(path)
        for imported in project_imports(path):
            if layer_of(imported) < layer_of(importer):
                edges.add((importer, imported))
    return edges


def test_every_module_has_a_layer():
    for path in SRC.rglob("*.py"):
        layer_of(module_name(path))


def test_imports_go_down_the_layers():
    upward = upward_imports()
    new = sorted(upward - KNOWN_UPWARD)
    assert not new, "imports that go up the layers (docs/architecture.md): " + ", ".join(f"{a} -> {b}" for a, b in new)
    gone = sorted(KNOWN_UPWARD - upward)
    assert not gone, "no longer upward, remove from KNOWN_UPWARD: " + ", ".join(f"{a} -> {b}" for a, b in gone)


def test_the_bottom_layer_imports_no_heavier_layer():
    """The core modules import only each other."""
    for name in ("kspace", "resample", "scales", "errors", "registry", "config"):
        imported = project_imports(SRC / f"{name}.py")
        assert all(layer_of(m) == len(LAYERS) - 1 for m in imported), (name, imported)


def test_project_imports_are_at_module_level():
    """Every module shows its whole dependency graph at the top of the file (no function-local project imports),
    except the command modules, which the CLI imports all to build its parser: they import their back-ends
    inside ``run`` so that ``medsr --help`` and each command load only what they use."""
    commands = SRC / "commands"
    paths = [p for p in SRC.rglob("*.py") if commands not in p.parents]
    hidden = {module_name(p): project_imports(p, local_only=True) for p in paths}
    assert not any(hidden.values()), {k: v for k, v in hidden.items() if v}


def test_the_parser_builds_without_torch():
    code = ("import sys; from medsr import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'lightning', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(SRC.parent)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_checker_sees_upward_and_relative_imports(tmp_path):
    """The import reader on a hand-made file: a function-local import and a relative one are both found."""
    pkg = tmp_path / "medsr" / "data"
    pkg.mkdir(parents=True)
    probe = pkg / "probe.py"
    probe.write_text("from . import store\ndef f():\n    from medsr.engine import runs\n")
    global SRC
    saved, SRC = SRC, tmp_path / "medsr"
    try:
        assert project_imports(probe) == {"medsr.data", "medsr.engine"}
        assert project_imports(probe, local_only=True) == {"medsr.engine"}
    finally:
        SRC = saved
    assert layer_of("medsr.engine") < layer_of("medsr.data.probe")
