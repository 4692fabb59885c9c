"""Shared fixtures: tiny randomly initialised open_clip models, written to files once per session
and loaded through the real loader (never a mock encoder)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

torch.set_num_threads(min(2, torch.get_num_threads()))

from clipasso.testing.tiny_models import write_tiny_models  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Folder with the tiny ResNet and ViT (by their own names and as RN101/ViT-B-32 'openai')."""
    return write_tiny_models(tmp_path_factory.mktemp("clip_models"), as_defaults=True)


@pytest.fixture(scope="session")
def tiny_models_dir(tiny_models):
    return tiny_models["folder"]


@pytest.fixture(scope="session")
def tiny_rn(tiny_models):
    from clipasso.models import load_clip

    return load_clip(tiny_models["rn_name"], models_dir=tiny_models["folder"], allow_download=False)


@pytest.fixture(scope="session")
def tiny_vit(tiny_models):
    from clipasso.models import load_clip

    return load_clip(tiny_models["vit_name"], models_dir=tiny_models["folder"], allow_download=False)


@pytest.fixture(autouse=True, scope="session")
def _compile_cache(tmp_path_factory):
    """torch.compile's caches and ledger (clipasso.models.compiled) in a folder of the session, never the
    user's ~/.cache."""
    folder = tmp_path_factory.mktemp("compile_cache")
    old = os.environ.get("CLIPASSO_COMPILE_CACHE")
    os.environ["CLIPASSO_COMPILE_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("CLIPASSO_COMPILE_CACHE", None)
    else:
        os.environ["CLIPASSO_COMPILE_CACHE"] = old
