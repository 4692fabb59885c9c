"""A refactor changes no result: fixed-seed sketches equal the stored reference exactly.

The reference (tests/data/reference) was made by `tests/reference_runs.py` before the settings-first
refactor; a change meant to alter results regenerates it in the same commit and says why.
"""
from __future__ import annotations

import pytest
import torch

from tests.reference_runs import REFERENCE_DIR, RUNS, run


@pytest.mark.parametrize("name", sorted(RUNS))
def test_fixed_seed_run_equals_reference(name, tiny_models_dir):
    want = torch.load(REFERENCE_DIR / f"{name}.pt", weights_only=True)
    got = run(name, tiny_models_dir)
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        if key == "svg":
            assert got["svg"] == value, f"{name}: the SVG differs from the reference"
            assert (REFERENCE_DIR / f"{name}.svg").read_text() == value
        else:
            assert torch.equal(got[key], value), f"{name}: {key} differs from the reference"
