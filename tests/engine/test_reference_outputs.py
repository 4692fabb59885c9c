"""A refactor changes no result: fixed-seed sketches equal the stored reference exactly.

The reference was made by `tests/reference_runs.py` before the settings-first refactor (the set in
tests/data/reference); a change meant to alter results regenerates it in the same commit and says why.
Float rounding depends on the CPU and torch (`tests.reference_runs.machine`), so a machine kind keeps its
own set in tests/data/reference/machines/<key>, made from the same code; on such a machine every value
must be equal bit for bit. On a machine without its own set the runs are compared with the first set
within what different rounding explains (each candidate's loss and the winner's within 2 %, the same
strokes and candidates), and the test says how to make that machine's set.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.reference_runs import REFERENCE_DIR, RUNS, machine, reference_dir, run

OWN = reference_dir()
EXACT = (OWN / "machine.json").is_file()


@pytest.mark.parametrize("name", sorted(RUNS))
def test_fixed_seed_run_equals_reference(name, tiny_models_dir):
    folder = OWN if EXACT else REFERENCE_DIR
    want = torch.load(folder / f"{name}.pt", weights_only=True)
    got = run(name, tiny_models_dir)
    assert sorted(got) == sorted(want)
    if not EXACT:
        return _close(name, got, want)
    assert json.loads((OWN / "machine.json").read_text()) == machine()
    for key, value in want.items():
        if key == "svg":
            assert got["svg"] == value, f"{name}: the SVG differs from the reference"
            assert (folder / f"{name}.svg").read_text() == value
        else:
            assert torch.equal(got[key], value), f"{name}: {key} differs from the reference"


def _close(name, got, want):
    hint = (
        "no reference set for this machine kind: compared within float-rounding differences; make one "
        "from a commit whose results are trusted with 'python -m tests.reference_runs --write'"
    )
    for key in ("points", "candidate_points", "widths", "colors"):
        assert got[key].shape == want[key].shape, f"{name}: {key} has another shape ({hint})"
    rel = (got["candidate_losses"] / want["candidate_losses"] - 1).abs()
    assert bool((rel < 0.02).all()), (
        f"{name}: candidate losses {got['candidate_losses']} vs {want['candidate_losses']} ({hint})"
    )
    assert abs(float(got["loss"]) / float(want["loss"]) - 1) < 0.02, (
        f"{name}: loss {got['loss']} vs {want['loss']} ({hint})"
    )
    for key in ("prefix_losses", "abstraction_losses"):
        if key in want:
            assert got[key].shape == want[key].shape, f"{name}: {key} has another length ({hint})"
            assert torch.allclose(got[key].double(), want[key].double(), rtol=0.05), f"{name}: {key} ({hint})"


def test_this_machine_kind_has_an_exact_reference_or_says_so():
    """Which comparison ran, and that a machine set describes its machine (a set copied to the wrong key
    would compare exactly against another CPU's numbers)."""
    for sub in (REFERENCE_DIR / "machines").glob("*"):
        info = json.loads((sub / "machine.json").read_text())
        assert reference_dir(info) == sub, f"{sub} holds the set of another machine ({info})"
        assert sorted(p.stem for p in sub.glob("*.pt")) == sorted(RUNS)
