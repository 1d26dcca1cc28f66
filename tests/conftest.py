"""Shared fixtures: a small demo photo set made once per session, and a private cache folder."""

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REAL_PHOTOS

FORKING_FIRST = "tests/test_distributed.py"
"""Its ranks are forked from the test process, and a forked child can't run backward once its
parent has both compiled something (torch.compile) and run a backward ("Unable to handle
autograd's threading in combination with fork-based multiprocessing"): seen when pytest-xdist
gave one worker compiled optimizer proofs before it."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the forking tests first, in collection order, before any test could compile: each
    xdist worker then meets them before anything else it runs."""
    items.sort(key=lambda item: not item.nodeid.startswith(FORKING_FIRST))


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Keep every test's decoded-photo cache out of the user's ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("CATDOG_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(autouse=True, scope="session")
def sigint_reaches_children() -> Iterator[None]:
    """Let the tests' Ctrl-C reach the catdog processes they start.

    A suite started in the background (`make test &`, a job of a script) inherits SIGINT
    ignored, and so would every process it starts: Python leaves an ignored SIGINT ignored, so
    no Ctrl-C could reach a catdog start-up. A foreground process in a terminal has it on, as
    here (a handler here becomes the default disposition in a child).
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


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
