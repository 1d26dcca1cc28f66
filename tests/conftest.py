"""Shared fixtures: a small demo photo set made once per session, and a private cache folder."""

from pathlib import Path

import pytest

from tests.helpers import REAL_PHOTOS


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Keep every test's decoded-photo cache out of the user's ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("CATDOG_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="session")
def demo_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from catdog.synthetic import make_demo_data

    folder = tmp_path_factory.mktemp("demo")
    make_demo_data(folder, per_class=60, seed=0, progress=False)
    return folder


@pytest.fixture
def real_photos() -> Path:
    if not REAL_PHOTOS.is_dir():
        pytest.skip(
            f"real photos not found at {REAL_PHOTOS} (the shared data folder beside the checkout)"
        )
    return REAL_PHOTOS
