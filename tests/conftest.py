"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mni_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded MNI slice store, prepared once per test session (about a second)."""
    from medsr.data.embedded import prepare_mni

    return prepare_mni(tmp_path_factory.mktemp("mni") / "store", progress=False)


FLOAT_SENSITIVE = {"test_masks", "test_kspace", "test_resample", "test_metrics_image", "test_degrade",
                   "test_slice_profile", "test_scales", "test_resume"}
"""Modules whose results depend on FFT/BLAS round-off; `make test` runs them a second time on one thread, so a
comparison that only holds for one thread count (or one CPU) fails here rather than on a user's machine."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__ in FLOAT_SENSITIVE:
            item.add_marker(pytest.mark.float_sensitive)
