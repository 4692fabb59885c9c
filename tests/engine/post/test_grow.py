"""clipasso.post.abstraction.grow_abstract: automatic stroke count by growing from few strokes.

Mostly measured with the weights-free trace loss (1.0 = empty canvas, 0 = the picture's line map),
which makes "the sketch got closer to the picture" meaningful without pretrained CLIP weights; one
test runs the tiny real open_clip ResNet to show the placement works through a CLIP loss too.
"""

from __future__ import annotations

import pytest
import torch

from clipasso.post.abstraction import AbstractionError, NoImprovementError, grow_abstract, ink_benefit, masked_losses
from clipasso.pipeline import post_process
from clipasso.optimize import OptimizeConfig
from clipasso.settings import SettingsError
from clipasso.strokes import Strokes
from tests.engine.post.test_abstraction import SIDE, seg, t_target

TRACE = OptimizeConfig(iterations=0, num_augs=0, loss="trace", lr=1.0)


def corner_start():
    """One short stroke in the top-left corner, away from the T."""
    return Strokes.from_points(torch.tensor([[seg(6, 6, 12, 6)]]), (SIDE, SIDE), width=1.5)


def bar_sketch():
    """The T's bar drawn, the stem missing."""
    return Strokes.from_points(torch.tensor([[seg(18, 21, 48, 21), seg(48, 21, 78, 21)]]), (SIDE, SIDE), width=3.0)


def test_ink_benefit_points_at_the_missing_part():
    """With the bar drawn, ink helps most on the stem; nowhere is the map negative or non-finite."""
    b = ink_benefit(bar_sketch(), t_target(), None, TRACE)
    assert b.shape == (SIDE, SIDE) and bool(torch.isfinite(b).all()) and float(b.min()) >= 0
    y, x = divmod(int(torch.argmax(b)), SIDE)
    assert 30 <= y <= 84 and 36 <= x <= 60, (y, x)  # on the stem (rows 26-84, columns 42-54)
    stem = b[40:80, 42:54].mean()
    bar = b[17:25, 20:76].mean()
    far = b[88:, :].mean()
    assert stem > 2 * bar and stem > 10 * far


def test_growing_adds_strokes_in_order_and_lowers_the_loss():
    seen = []
    r = grow_abstract(
        corner_start(),
        t_target(),
        None,
        0.9,
        TRACE,
        max_strokes=6,
        grow_iterations=0,
        min_gain=0.0,
        callback=lambda k, loss, s: seen.append((k, s.num_strokes, loss)),
    )
    assert r.method == "grow" and r.stop_reason == "max_strokes" and not r.cancelled
    assert r.counts == [1, 2, 3, 4, 5, 6] and [k for k, _, _ in seen] == r.counts
    assert all(n == k for k, n, _ in seen)
    assert r.blank_loss == pytest.approx(1.0, abs=1e-5) and r.losses[0] >= r.blank_loss  # the corner is off the T
    for a, b in zip(r.losses, r.losses[1:]):
        assert b < a  # each placed stroke is the best of its candidates and lands on the T
    assert r.losses[-1] < 0.9
    assert r.full_loss == min(r.losses)
    # without re-optimisation every grown sketch is exactly a prefix of the next: the drawing order
    for k in range(1, 6):
        assert torch.equal(r.sketches[k].points, r.sketches[k + 1].points[:, :k])
    # the curve's losses are the eval losses of the sketches it names
    again = masked_losses(r.sketches[4], torch.ones(1, 4, dtype=torch.bool), t_target(), None, TRACE)
    assert float(again[0]) == pytest.approx(r.losses[3], rel=1e-5)
    # the chosen count: the smallest measured count reaching the fidelity (of the best loss reached)
    fids = dict(zip(r.counts, r.fidelities))
    assert fids[r.count] >= 0.9 - 1e-9 and all(f < 0.9 for k, f in fids.items() if k < r.count)
    assert r.strokes.num_strokes == r.count
    assert float(r.strokes.losses[0]) == pytest.approx(r.losses[r.counts.index(r.count)])
    d = r.to_dict()
    assert d["method"] == "grow" and [c["strokes"] for c in d["curve"]] == r.counts


def test_lower_fidelity_chooses_fewer_strokes_from_the_same_growth():
    kw = dict(max_strokes=6, grow_iterations=0, min_gain=0.0)
    high = grow_abstract(corner_start(), t_target(), None, 1.0, TRACE, **kw)
    low = grow_abstract(corner_start(), t_target(), None, 0.5, TRACE, **kw)
    assert high.losses == low.losses  # growing is deterministic; only the choice differs
    assert high.count == 6 and low.count < high.count


def test_reoptimisation_moves_the_strokes_and_helps():
    plain = grow_abstract(corner_start(), t_target(), None, 0.9, TRACE, max_strokes=6, grow_iterations=0, min_gain=0.0)
    r = grow_abstract(corner_start(), t_target(), None, 0.9, TRACE, max_strokes=6, grow_iterations=4, min_gain=0.0)
    # the first stage places the same stroke; re-optimising keeps its best state (which includes the start)
    assert r.losses[1] <= plain.losses[1] + 1e-6
    assert r.losses[-1] < plain.losses[-1]
    assert not torch.equal(r.sketches[6].points[:, :5], r.sketches[5].points)  # earlier strokes moved
    assert all(int(r.sketches[k].iterations[0]) <= 4 for k in range(2, 7))


def test_a_plateau_stops_growing():
    r = grow_abstract(
        corner_start(), t_target(), None, 0.9, TRACE, max_strokes=12, grow_iterations=0, min_gain=0.5, patience=1
    )
    # each stroke gains less than half of the total improvement from the third one on
    assert r.stop_reason == "plateau" and r.counts[-1] < 12
    gains = [a - b for a, b in zip(r.losses, r.losses[1:])]
    total = r.blank_loss - min(r.losses)
    assert gains[-1] < 0.5 * total
    full = grow_abstract(
        corner_start(),
        t_target(),
        None,
        0.9,
        TRACE,
        max_strokes=8,
        grow_iterations=0,
        min_gain=0.5,
        patience=1,
        full_curve=True,
    )
    assert full.counts[-1] == 8 and full.stop_reason == "max_strokes"


def test_prior_restricts_where_new_strokes_start():
    prior = torch.zeros(SIDE, SIDE)
    prior[:, SIDE // 2 :] = 1.0  # right half only
    r = grow_abstract(
        corner_start(), t_target(), None, 0.9, TRACE, max_strokes=4, grow_iterations=0, min_gain=0.0, prior=prior
    )
    starts = r.sketches[4].points[0, 1:, 0]  # first control point of each added stroke
    assert bool((starts[:, 0] >= SIDE // 2).all()), starts


def test_start_strokes_takes_the_first_strokes():
    two = Strokes.from_points(torch.tensor([[seg(6, 6, 12, 6), seg(18, 21, 48, 21)]]), (SIDE, SIDE))
    r = grow_abstract(
        two, t_target(), None, 0.9, TRACE, start_strokes=1, max_strokes=3, grow_iterations=0, min_gain=0.0
    )
    assert r.counts == [1, 2, 3]
    assert torch.equal(r.sketches[1].points, two.points[:, :1])


def test_cancel_stops_and_chooses_among_the_counts_measured():
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 3

    r = grow_abstract(
        corner_start(), t_target(), None, 1.0, TRACE, max_strokes=20, grow_iterations=2, min_gain=0.0, should_stop=stop
    )
    assert r.cancelled and r.stop_reason == "cancelled"
    assert r.counts[-1] < 20 and r.count in r.counts and r.strokes.num_strokes == r.count


def test_growing_through_the_clip_loss(tiny_rn):
    """The placement needs only the loss's gradient, so it works with CLIP too (tiny random ResNet)."""
    cfg = OptimizeConfig(iterations=0, num_augs=1, lr=1.0)
    b = ink_benefit(bar_sketch(), t_target(), tiny_rn, cfg)
    assert bool(torch.isfinite(b).all()) and float(b.min()) >= 0 and float(b.max()) > 0
    r = grow_abstract(bar_sketch(), t_target(), tiny_rn, 0.9, cfg, max_strokes=4, grow_iterations=1, min_gain=0.0)
    assert r.counts == [2, 3, 4] and r.sketches[4].num_strokes == 4
    assert r.blank_loss > r.losses[0] > r.losses[-1] == r.full_loss


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(max_strokes=1), AbstractionError, r"max_strokes \(1\) must be larger than the 1 strokes"),
        (
            dict(max_strokes=2, start_strokes=2),
            AbstractionError,
            "start_strokes is 2 but the starting sketch has only 1",
        ),
        (dict(grow_iterations=-1), SettingsError, "grow_iterations must be 0 or more"),
        (dict(candidates=0), AbstractionError, "candidates must be a whole number >= 1"),
        (dict(min_gain=1.0), SettingsError, r"min_gain must be a share in \[0, 1\)"),
        (dict(min_gain=float("nan")), SettingsError, r"min_gain must be a share in \[0, 1\)"),
        (dict(patience=0), AbstractionError, "patience must be a whole number >= 1"),
        (dict(prior=torch.ones(5, 5)), AbstractionError, "prior must be a finite map >= 0 of the canvas size 96x96"),
        (dict(prior=-torch.ones(SIDE, SIDE)), AbstractionError, "prior must be a finite map >= 0"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        grow_abstract(corner_start(), t_target(), None, 0.9, TRACE, **kwargs)


def test_more_bad_inputs():
    start = corner_start()
    two = Strokes.from_points(torch.tensor([[seg(6, 6, 12, 6), seg(18, 21, 48, 21)]]), (SIDE, SIDE))
    with pytest.raises(AbstractionError, match=r"max_strokes \(2\) must be larger than the 2 strokes"):
        grow_abstract(two, t_target(), None, 0.9, TRACE, max_strokes=2)
    with pytest.raises(SettingsError, match=r"fidelity must be a number in \(0, 1\]"):
        grow_abstract(start, t_target(), None, 1.5, TRACE)
    with pytest.raises(AbstractionError, match="Strokes"):
        grow_abstract(torch.zeros(1, 1, 4, 2), t_target(), None, 0.9, TRACE)
    # a blank picture has no lines: every stroke makes the trace worse, nothing to keep
    with pytest.raises(NoImprovementError, match="no closer to the picture"):
        grow_abstract(start, torch.ones(3, SIDE, SIDE), None, 0.9, TRACE, max_strokes=3, grow_iterations=0)
    with pytest.raises(SettingsError, match="abstraction_method must be one of prune, grow; got 'shrink'"):
        post_process(start, t_target(), None, TRACE, auto_strokes=0.9, abstraction_method="shrink")


def test_pipeline_step_grows_the_winner():
    out, ab, order = post_process(
        corner_start(),
        t_target(),
        None,
        TRACE,
        auto_strokes=0.8,
        abstraction_method="grow",
        max_strokes=5,
        grow_iterations=1,
        min_gain=0.0,
    )
    assert order is None and ab.method == "grow" and ab.counts[0] == 1 and ab.counts[-1] == 5
    assert out.num_strokes == ab.count


def test_sketch_pipeline_grows(tiny_models_dir):
    """`sketch(auto_strokes=..., abstraction_method="grow")`: the run optimises start_strokes, then grows (new
    strokes weighted by the saliency map of the tiny ViT) and reports the growth."""
    from PIL import Image, ImageDraw

    from clipasso.pipeline import sketch

    img = Image.new("RGB", (120, 120), "white")
    ImageDraw.Draw(img).polygon([(60, 10), (110, 110), (10, 110)], outline="black", width=5)
    res = sketch(
        img,
        preset="fast",
        seeds=1,
        iterations=3,
        device="cpu",
        models_dir=tiny_models_dir,
        background_removal=False,
        allow_download=False,
        loss="trace",
        canvas=96,
        auto_strokes=0.8,
        abstraction_method="grow",
        start_strokes=1,
        max_strokes=4,
        grow_iterations=1,
        min_gain=0.0,
    )
    ab = res.abstraction
    assert ab.method == "grow" and ab.counts == [1, 2, 3, 4] and res.strokes.num_strokes == ab.count
    assert res.settings["abstraction"] == "grow" and res.settings["strokes"] == 1
    assert ab.losses[-1] < ab.losses[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(abstraction_method="grow", start_strokes=8, max_strokes=8),
            r"start_strokes \(8\) must be below max_strokes",
        ),
        (dict(abstraction_method="grow", start_strokes=0), "start_strokes must be at least 1"),
        (dict(abstraction_method="shrink"), "abstraction_method must be one of prune, grow"),
    ],
)
def test_sketch_pipeline_rejects_bad_growth_settings(kwargs, message):
    from clipasso.pipeline import sketch

    with pytest.raises(SettingsError, match=message):
        sketch(
            np_white(),
            auto_strokes=0.9,
            device="cpu",
            background_removal=False,
            allow_download=False,
            loss="trace",
            saliency="none",
            **kwargs,
        )


def np_white():
    import numpy as np

    return np.full((32, 32, 3), 255, dtype=np.uint8)


def test_new_strokes_take_the_pictures_colour_with_color_from_image():
    """A red T: with color_from_image the added strokes are red, without it they take the black pen."""
    red = t_target().clone()
    dark = red.mean(0) < 0.5
    red[0][dark], red[1][dark], red[2][dark] = 0.85, 0.1, 0.1
    for from_image in (False, True):
        cfg = OptimizeConfig(iterations=0, num_augs=0, loss="trace", lr=1.0, color_from_image=from_image)
        r = grow_abstract(corner_start(), red, None, 0.9, cfg, max_strokes=3, grow_iterations=0, min_gain=0.0)
        added = r.sketches[3].colors[0, 1:, :3]
        if from_image:
            assert bool((added[:, 0] > 0.5).all() and (added[:, 1:] < 0.3).all()), added
        else:
            assert torch.equal(added, torch.zeros_like(added))  # the start's black pen
