"""clipasso.post.abstraction (automatic stroke count by pruning) with the tiny real open_clip ResNet."""

from __future__ import annotations

import math

import pytest
import torch

from clipasso.post.abstraction import AbstractionError, auto_abstract, masked_losses
from clipasso.optimize import OptimizeConfig
from clipasso.strokes import StrokeError, Strokes
from clipasso.settings import SettingsError

SIDE = 96


def t_target():
    """A dark 'T' on white."""
    t = torch.ones(3, SIDE, SIDE)
    t[:, 16:26, 16:80] = 0.0
    t[:, 26:84, 42:54] = 0.1
    return t


def seg(x0, y0, x1, y1):
    return [
        [x0, y0],
        [x0 + (x1 - x0) / 3, y0 + (y1 - y0) / 3],
        [x0 + 2 * (x1 - x0) / 3, y0 + 2 * (y1 - y0) / 3],
        [x1, y1],
    ]


def t_sketch():
    """Four strokes that each draw a part of the T (bar left/right, stem top/bottom)."""
    pts = [seg(18, 21, 48, 21), seg(48, 21, 78, 21), seg(48, 28, 48, 55), seg(48, 55, 48, 82)]
    return Strokes.from_points(torch.tensor([pts]), (SIDE, SIDE), width=3.0)


EVAL = OptimizeConfig(iterations=0, num_augs=1)


def test_masked_losses_match_the_loss_of_the_drawn_subsets(tiny_rn):
    """Transparent strokes are absent strokes: the rows measure the empty canvas and the full sketch."""
    from clipasso.objective.losses import CLIPassoLoss
    from clipasso.render.raster import render

    sk = t_sketch()
    rows = torch.tensor([[False] * 4, [True] * 4, [True, False, False, False]])
    got = masked_losses(sk, rows, t_target(), tiny_rn, EVAL)
    loss = CLIPassoLoss(tiny_rn, t_target(), num_augs=0)
    with torch.no_grad():
        blank = loss.eval_loss(torch.ones(1, 3, SIDE, SIDE))["total"]
        full = loss.eval_loss(render(sk).image)["total"]
        first = loss.eval_loss(render(Strokes(sk.points[:, :1], sk.widths[:, :1], sk.colors[:, :1], sk.canvas)).image)[
            "total"
        ]
    assert torch.allclose(got, torch.cat([blank, full, first]), rtol=1e-4, atol=1e-6)
    assert got[0] > got[2] > got[1]  # more of the T drawn, closer to the picture


def test_lower_fidelity_keeps_fewer_strokes(tiny_rn):
    sk, target = t_sketch(), t_target()
    high = auto_abstract(sk, target, tiny_rn, 1.0, EVAL, prune_iterations=0)
    low = auto_abstract(sk, target, tiny_rn, 0.3, EVAL, prune_iterations=0)
    assert low.count < high.count
    for r in (high, low):
        assert r.strokes.num_strokes == r.count
        fids = dict(zip(r.counts, r.fidelities))
        assert fids[r.count] >= r.fidelity - 1e-9
        # the smallest count measured that reaches the target
        assert all(f < r.fidelity for k, f in fids.items() if k < r.count)
        # the chosen strokes are a subset of the input's, and its loss is the measured one
        assert float(r.strokes.losses[0]) == pytest.approx(r.losses[r.counts.index(r.count)])
    # without full_curve, pruning stops at the first count below the target
    assert low.counts[-1] == 1 or low.fidelities[-1] < 0.3


def test_curve_is_measured_and_monotone_ish(tiny_rn):
    sk, target = t_sketch(), t_target()
    r = auto_abstract(sk, target, tiny_rn, 0.5, EVAL, prune_iterations=0, full_curve=True)
    assert r.counts == [4, 3, 2, 1]
    assert len(r.removed) == 3 and len(set(r.removed)) == 3
    span = r.blank_loss - r.full_loss
    assert span > 0
    for a, b in zip(r.losses, r.losses[1:]):
        assert b >= a - 0.05 * span  # removing a useful stroke does not make the sketch much better
    assert r.losses[-1] > r.losses[0] and r.blank_loss > max(r.losses)
    # each point of the curve is the loss of the sketch kept at that count
    again = masked_losses(r.sketches[2], torch.ones(1, 2, dtype=torch.bool), target, tiny_rn, EVAL)
    assert float(again[0]) == pytest.approx(r.losses[r.counts.index(2)], rel=1e-4)
    assert "fidelity" in r.table() and r.to_dict()["count"] == r.count


def test_reoptimisation_after_each_removal(tiny_rn):
    """With re-optimisation the kept strokes move, and the loss after a removal is never worse than the
    pruned sketch before re-optimising (the optimiser keeps its best state, which includes the start)."""
    sk, target = t_sketch(), t_target()
    cfg = OptimizeConfig(iterations=0, num_augs=1, lr=1.0)
    plain = auto_abstract(sk, target, tiny_rn, 0.5, cfg, prune_iterations=0, full_curve=True, min_strokes=2)
    seen = []
    r = auto_abstract(
        sk,
        target,
        tiny_rn,
        0.5,
        cfg,
        prune_iterations=2,
        full_curve=True,
        min_strokes=2,
        callback=lambda k, loss, s: seen.append((k, s.num_strokes)),
    )
    assert r.counts == [4, 3, 2] and seen == [(4, 4), (3, 3), (2, 2)]
    assert r.removed[0] == plain.removed[0]  # the first removal is decided before any re-optimisation
    assert r.losses[1] <= plain.losses[1] + 1e-6
    for k in (3, 2):  # the optimiser's best state, with the iteration it was reached at
        assert r.sketches[k].iterations is not None and 0 <= int(r.sketches[k].iterations[0]) <= 2


@pytest.mark.parametrize("fidelity", [0, 0.0, -0.5, 1.01, float("nan"), True, "0.9"])
def test_fidelity_outside_range_is_a_clear_error(tiny_rn, fidelity):
    with pytest.raises(SettingsError, match=r"fidelity must be a number in \(0, 1\]"):
        auto_abstract(t_sketch(), t_target(), tiny_rn, fidelity, EVAL)


def test_bad_inputs_are_clear_errors(tiny_rn):
    target = t_target()
    with pytest.raises(StrokeError, match="at least one stroke"):
        Strokes.from_points(torch.zeros(1, 0, 4, 2), (SIDE, SIDE))
    with pytest.raises(AbstractionError, match="min_strokes"):
        auto_abstract(t_sketch(), target, tiny_rn, 0.9, EVAL, min_strokes=0)
    with pytest.raises(AbstractionError, match="min_strokes"):
        auto_abstract(t_sketch(), target, tiny_rn, 0.9, EVAL, min_strokes=5)
    with pytest.raises(SettingsError, match="prune_iterations"):
        auto_abstract(t_sketch(), target, tiny_rn, 0.9, EVAL, prune_iterations=-1)
    with pytest.raises(AbstractionError, match="Strokes"):
        auto_abstract(torch.zeros(1, 4, 4, 2), target, tiny_rn, 0.9, EVAL)
    two = Strokes.concat([t_sketch(), t_sketch()])
    with pytest.raises(AbstractionError, match="Select Best"):
        auto_abstract(two, target, tiny_rn, 0.9, EVAL)
    # strokes entirely off the canvas draw nothing: no better than an empty canvas
    off = Strokes.from_points(torch.full((1, 2, 4, 2), -50.0), (SIDE, SIDE))
    with pytest.raises(AbstractionError, match="no closer to the picture than an empty canvas"):
        auto_abstract(off, target, tiny_rn, 0.9, EVAL)


def test_several_candidates_with_losses_use_the_best(tiny_rn):
    sk = t_sketch()
    worse = sk.replace(points=sk.points + 30.0)
    two = Strokes.concat([worse.replace(losses=torch.tensor([5.0])), sk.replace(losses=torch.tensor([1.0]))])
    r = auto_abstract(two, t_target(), tiny_rn, 1.0, EVAL, prune_iterations=0)
    ref = auto_abstract(sk, t_target(), tiny_rn, 1.0, EVAL, prune_iterations=0)
    assert math.isclose(r.full_loss, ref.full_loss, rel_tol=1e-6)


def test_pipeline_step_keeps_a_sketch_that_is_no_better_than_blank(tiny_rn):
    """After a long run, a sketch that is not better than an empty canvas is kept (with a warning), not lost."""
    from clipasso.pipeline import post_process

    off = Strokes.from_points(torch.full((1, 2, 4, 2), -50.0), (SIDE, SIDE))
    with pytest.warns(RuntimeWarning, match="automatic abstraction skipped"):
        out, ab, order = post_process(off, t_target(), tiny_rn, EVAL, auto_strokes=0.8)
    assert ab is None and order is None and out.num_strokes == 2
