"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mni_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded MNI slice store, prepared once per test session (about a second)."""
    from medsr.data.embedded import prepare_mni

    return prepare_mni(tmp_path_factory.mktemp("mni") / "store", progress=False)
