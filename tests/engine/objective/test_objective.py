"""The Objective: one loss object per target from named, weighted terms, shared by every stage."""

from __future__ import annotations

import pytest
import torch

from clipasso.objective import TERMS, Objective, register_term
from clipasso.settings import OptimizeConfig
from clipasso.strokes import Strokes


def _target():
    t = torch.ones(3, 64, 64)
    t[:, 20:44, 30:34] = 0.0
    return t


def _sketch():
    pts = torch.tensor(
        [
            [
                [[31.0, 18.0], [31.0, 28.0], [32.0, 38.0], [32.0, 46.0]],
                [[10.0, 10.0], [20.0, 12.0], [30.0, 14.0], [40.0, 16.0]],
            ]
        ]
    )
    return Strokes.from_points(pts, (64, 64))


class InkAmount:
    """A toy term: the mean ink of the render."""

    def eval_loss(self, images):
        return {"total": (1 - images).mean(dim=(1, 2, 3))}

    def train_loss(self, images, generators):
        return self.eval_loss(images)


def test_a_registered_term_adds_to_the_total_with_its_weight():
    base = Objective.build(OptimizeConfig(loss="trace"), None, _target())
    register_term("ink", lambda s, enc, target, dev: InkAmount(), weight=lambda s: 0.5, enabled=lambda s: True)
    try:
        both = Objective.build(OptimizeConfig(loss="trace"), None, _target())
    finally:
        del TERMS["ink"]
    assert [name for name, _, _ in both.terms] == ["trace", "ink"]
    image = both.draw(_sketch())
    parts = both.eval_loss(image)
    assert torch.allclose(parts["total"], base.eval_loss(image)["total"] + 0.5 * parts["ink"])
    assert float(parts["ink"][0]) > 0


def test_evaluate_and_masked_measure_the_strokes_as_drawn():
    objective = Objective.build(OptimizeConfig(loss="trace"), None, _target())
    sketch = _sketch()
    full = objective.evaluate(sketch)
    rows = torch.tensor([[False, False], [True, False], [True, True]])
    masked = objective.masked(sketch, rows)
    assert torch.equal(masked[2:], full)
    assert masked[1] < masked[0]  # the stroke on the bar lowers the loss from the empty canvas


def test_the_objective_refuses_what_cannot_work():
    from clipasso.errors import OptimizeError

    with pytest.raises(OptimizeError, match="needs a CLIP encoder"):
        Objective.build(OptimizeConfig(loss="clip"), None, _target())
    objective = Objective.build(OptimizeConfig(loss="trace"), None, _target())
    with pytest.raises(OptimizeError, match="canvas"):
        objective.evaluate(Strokes.from_points(torch.zeros(1, 1, 4, 2), (32, 32)))
