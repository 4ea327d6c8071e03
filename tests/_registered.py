"""Test-only registrations, scoped: ``with registered(MODELS, {"_test_x": X}):`` adds them and removes them after."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

from medsr.registry import Registry


@contextlib.contextmanager
def registered(registry: Registry, items: Mapping[str, Any]) -> Iterator[None]:
    registry.names()  # fill the registry with the package's own entries first
    for name, obj in items.items():
        registry.register(name)(obj)
    try:
        yield
    finally:
        for name in items:
            del registry._items[name]
