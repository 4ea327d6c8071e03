"""The one exception type that the command line turns into a clean error line and exit status 2."""

from __future__ import annotations

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
