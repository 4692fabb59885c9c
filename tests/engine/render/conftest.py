"""The `pydiffvg` fixture: diffvg built from ../shared/third_party/ by tests/diffvg_build.py into a cache
outside the repository; skipped locally when it cannot be built, a failure on CI (CI=true)."""

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pydiffvg():
    # by its path: another test may have bound the name ``tests`` to another package
    path = Path(__file__).resolve().parents[2] / "diffvg_build.py"
    spec = importlib.util.spec_from_file_location("clipasso_test_diffvg_build", path)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    build.diffvg_or_skip()
    import pydiffvg as module

    return module
