"""The one exception type that the command line turns into a clean error line and exit status 2."""

from __future__ import annotations

import math
from pathlib import Path


class InputError(Exception):
    """A problem with something the user gave us (a file, a flag, a value).

    ``source`` names what is wrong (a path or a flag); the CLI prints ``medsr: error: SOURCE: MESSAGE``.
    """

    def __init__(self, source: str | Path | None, message: str):
        self.source = str(source) if source is not None else None
        self.message = message
        super().__init__(f"{self.source}: {message}" if self.source else message)

    def __reduce__(self) -> tuple:
        return type(self), (self.source, self.message)


def require(condition: bool, source: str | Path | None, message: str) -> None:
    """Raise :class:`InputError` unless ``condition`` holds."""
    if not condition:
        raise InputError(source, message)


def as_number(value: object, source: str | Path | None) -> float:
    """``value`` (e.g. a command-line string) as a finite float; :class:`InputError` naming ``source`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(source, f"must be a number, got {value!r}") from None
    require(math.isfinite(number), source, f"must be a finite number, got {value!r}")
    return number


def as_integer(value: object, source: str | Path | None) -> int:
    """``value`` (e.g. a command-line string) as an int; :class:`InputError` naming ``source`` otherwise."""
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 10)
    except ValueError:
        raise InputError(source, f"must be an integer, got {value!r}") from None
