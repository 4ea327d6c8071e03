"""A tiny explicit registry: ``@MODELS.register("edsr")`` and ``MODELS.build({"type": "edsr", ...})``.

Idea after LIIF's ``models.py``: a spec ``{type, **args}`` builds any object, and checkpoints store the spec.
Each registry names the package whose modules register into it and imports every module of that package the
first time it is asked for a name, so ``MODELS.build(...)`` works in a fresh interpreter without importing
``medsr.models`` first, and a new model, loss or task is one new module: no list to edit.

Code outside medsr registers the same way from an installed package that declares an entry point in the group
``medsr.plugins`` (``[project.entry-points."medsr.plugins"] name = "module"``, the mechanism pytest and
Lightning use): each such module is imported, once, the first time any registry is filled, so a task, a model and
its ``medsr test`` protocol can live in one folder of the user's own package.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pkgutil
from typing import Any, Callable, Mapping

from medsr.errors import InputError


PLUGIN_GROUP = "medsr.plugins"
_plugins_loaded = False


def load_plugins() -> None:
    """Import every module named by an entry point of :data:`PLUGIN_GROUP` (once per interpreter); a plugin that
    fails to import is an :class:`InputError` naming it."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True  # before importing: a plugin may itself look up a registry
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            entry.load()
        except Exception as err:  # a broken third-party package must not hide behind a traceback
            raise InputError(f"plugin {entry.name} ({entry.value})", f"cannot be imported: {err}") from None


class Registry:
    """Maps names to constructors for one kind of object; ``package`` (all its modules, imported on first lookup)
    fills it."""

    def __init__(self, kind: str, package: str | None = None):
        self.kind = kind
        self.package = package
        self._filled = package is None
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(obj: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._items:
                raise KeyError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return add

    def _fill(self) -> None:
        if self._filled:
            return
        package = importlib.import_module(self.package)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{self.package}."):
            importlib.import_module(info.name)
        load_plugins()
        self._filled = True

    def get(self, name: str) -> Callable[..., Any]:
        """The constructor registered as ``name``; an unknown name is an :class:`InputError` listing the known."""
        self._fill()
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "none"
            raise InputError(self.kind, f"unknown {self.kind} '{name}' (known: {known})")
        return self._items[name]

    def build(self, spec: Mapping[str, Any], **extra: Any) -> Any:
        """Build from ``{"type": name, **args}``; ``extra`` adds keyword arguments.

        A spec whose arguments do not fit the constructor's signature is an :class:`InputError`; an error raised
        inside the constructor propagates unchanged, with its traceback.
        """
        constructor, args = self.check(spec, **extra)
        return constructor(**args, **extra)

    def check(self, spec: Mapping[str, Any], **extra: Any) -> tuple[Callable[..., Any], dict[str, Any]]:
        """The constructor of ``spec`` and its arguments, once they are known to fit its signature (the checks of
        :meth:`build`, without building)."""
        if not isinstance(spec, Mapping) or "type" not in spec:
            raise InputError(self.kind, f"spec {spec!r} has no 'type'")
        args = {str(k): v for k, v in spec.items() if k != "type"}
        name = spec["type"]
        constructor = self.get(name)
        try:
            inspect.signature(constructor).bind(**args, **extra)
        except TypeError as err:
            raise InputError(self.kind, f"{name}: {err}") from None
        return constructor, args

    def names(self) -> list[str]:
        self._fill()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._fill()
        return name in self._items


MODELS = Registry("model", "medsr.models")
LOSSES = Registry("loss", "medsr.losses")
TASKS = Registry("task", "medsr.tasks")
# Full-reference image metrics of ``medsr evaluate``: pure functions ``metric(pred, gt, **inputs) -> Tensor[B]``
# whose parameter names say which inputs they read (``data_range``, ``floor``, ``mask``, ``preset``, ``model``).
METRICS = Registry("metric", "medsr.metrics")
# Dataset preparers of ``medsr prepare NAME``: ``prepare(out_dir, options, **sources) -> split``.
DATASETS = Registry("dataset", "medsr.data.prepare")
# What ``medsr test`` does with the weights of each task (by the weights' ``meta.task``): a
# :class:`medsr.evaluation.testing.TestProtocol`.
PROTOCOLS = Registry("test protocol", "medsr.evaluation")
