"""A tiny explicit registry: ``@MODELS.register("edsr")`` and ``MODELS.build({"type": "edsr", ...})``.

Idea after LIIF's ``models.py``: a spec ``{type, **args}`` builds any object, and checkpoints store the spec.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping


class Registry:
    """Maps names to constructors for one kind of object."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(obj: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._items:
                raise KeyError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown {self.kind} '{name}' (known: {known})")
        return self._items[name]

    def build(self, spec: Mapping[str, Any], **extra: Any) -> Any:
        """Build from ``{"type": name, **args}``; ``extra`` adds keyword arguments."""
        args = dict(spec)
        if "type" not in args:
            raise KeyError(f"{self.kind} spec {dict(spec)!r} has no 'type'")
        name = args.pop("type")
        return self.get(name)(**args, **extra)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items


MODELS = Registry("model")
LOSSES = Registry("loss")
DATASETS = Registry("dataset")
METRICS = Registry("metric")
