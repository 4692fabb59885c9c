"""clipasso.optimize and clipasso.post.select with a tiny real open_clip ResNet (no mocks)."""

from __future__ import annotations

import time

import pytest
import torch

from clipasso.optimize import OptimizeConfig, OptimizeError, optimize
from clipasso.post.select import rank, select_best
from clipasso.strokes import StrokeError, Strokes
from clipasso.settings import PRESETS, SettingsError


def _target():
    t = torch.ones(3, 224, 224)
    t[:, 40:60, 40:184] = 0.0  # a dark bar
    t[:, 60:190, 100:124] = 0.1  # and a stem: a 'T'
    return t


def _strokes(seeds, n=6):
    from clipasso.place.init import initialize_strokes

    return initialize_strokes((224, 224), n, list(seeds))


def _cfg(**kw):
    base = dict(iterations=6, eval_interval=2, callback_interval=1, num_augs=2)
    base.update(kw)
    return OptimizeConfig(**base)


def test_gradients_reach_control_points(tiny_rn):
    from clipasso.objective.losses import CLIPassoLoss
    from clipasso.render.raster import rasterize

    st = _strokes([0])
    pts = st.points.clone().requires_grad_()
    img = rasterize(pts, st.widths, st.colors, 224, 224)[0]
    loss = CLIPassoLoss(tiny_rn, _target()).train_loss(img, [torch.Generator().manual_seed(0)])
    loss["total"].sum().backward()
    assert pts.grad is not None and torch.isfinite(pts.grad).all()
    assert (pts.grad.abs().sum(-1) > 0).float().mean() > 0.5  # most control points get a gradient


def test_loss_decreases_over_a_short_run(tiny_rn):
    st = _strokes([0, 1000], n=8)
    res = optimize(st, _target(), tiny_rn, _cfg(iterations=24, eval_interval=4, lr=2.0))
    first, best = res.history[0], res.strokes.losses
    assert (best < first * 0.95).all(), (first, best)
    assert res.iterations_run == 24 and not res.cancelled
    assert res.history_iterations[0] == 0 and res.history_iterations[-1] == 24
    moved = (res.final.points - st.points).abs().amax()
    assert moved > 1.0  # lr 1 on pixels: points moved by pixels


def test_best_state_is_the_evaluated_state(tiny_rn):
    """The kept points reproduce the kept loss when evaluated again (no off-by-one save)."""
    from clipasso.objective.losses import CLIPassoLoss
    from clipasso.render.raster import rasterize

    st = _strokes([0, 1000])
    res = optimize(st, _target(), tiny_rn, _cfg(iterations=8, eval_interval=3))
    best = res.strokes
    img = rasterize(best.points, best.widths, best.colors, 224, 224)[0]
    with torch.no_grad():
        again = CLIPassoLoss(tiny_rn, _target()).eval_loss(img)["total"]
    assert torch.allclose(again, best.losses, rtol=1e-4, atol=1e-6)
    for b in range(2):
        it = int(best.iterations[b])
        row = res.history_iterations.index(it)
        assert torch.isclose(res.history[row, b], best.losses[b])
        assert best.losses[b] == res.history[:, b].min()


def test_batched_seeds_match_separate_runs(tiny_rn):
    seeds = [0, 1000, 2000]
    st = _strokes(seeds)
    cfg = _cfg(iterations=5, eval_interval=5)
    together = optimize(st, _target(), tiny_rn, cfg)
    for i, s in enumerate(seeds):
        alone = optimize(st.select(i), _target(), tiny_rn, cfg)
        assert alone.strokes.seeds == (s,)
        assert torch.allclose(alone.final.points[0], together.final.points[i], atol=2e-3), s
        assert torch.allclose(alone.strokes.losses[0], together.strokes.losses[i], rtol=1e-3, atol=1e-5)


def test_deterministic_for_a_fixed_seed(tiny_rn):
    st = _strokes([7])
    a = optimize(st, _target(), tiny_rn, _cfg(iterations=4))
    b = optimize(st, _target(), tiny_rn, _cfg(iterations=4))
    assert torch.equal(a.final.points, b.final.points)
    assert torch.equal(a.history, b.history)


def test_callback_gets_iteration_losses_and_render(tiny_rn):
    calls = []

    def cb(it, losses, image):
        calls.append((it, {k: v.clone() for k, v in losses.items()}, image.shape))

    optimize(_strokes([0, 1]), _target(), tiny_rn, _cfg(iterations=4, callback_interval=2), callback=cb)
    assert [c[0] for c in calls] == [2, 4]
    assert calls[-1][2] == (2, 3, 224, 224)
    assert set(calls[-1][1]) == {"train", "eval", "best"} and calls[-1][1]["best"].shape == (2,)


def test_cancellation_stops_promptly_and_returns_best_so_far(tiny_rn):
    checks = []

    def stop():
        checks.append(1)
        return len(checks) > 3  # stop before the 4th step

    t = time.perf_counter()
    res = optimize(_strokes([0, 1]), _target(), tiny_rn, _cfg(iterations=1000, eval_interval=2), should_stop=stop)
    assert res.cancelled and res.iterations_run == 3
    assert time.perf_counter() - t < 60
    assert res.strokes.losses.shape == (2,) and torch.isfinite(res.strokes.losses).all()
    assert res.history_iterations == [0, 2, 3]  # the stopped state was evaluated too
    assert (res.strokes.losses <= res.history.min(0).values + 1e-7).all()


def test_exception_in_stop_check_propagates(tiny_rn):
    class Interrupted(Exception):
        pass

    def stop():
        raise Interrupted()

    with pytest.raises(Interrupted):
        optimize(_strokes([0]), _target(), tiny_rn, _cfg(), should_stop=stop)


def test_zero_iterations_evaluates_the_start(tiny_rn):
    st = _strokes([0])
    res = optimize(st, _target(), tiny_rn, _cfg(iterations=0))
    assert res.iterations_run == 0 and torch.equal(res.strokes.points, st.points)
    assert torch.isfinite(res.strokes.losses).all()


def test_config_validation_and_presets():
    with pytest.raises(SettingsError, match="iterations"):
        OptimizeConfig(iterations=-1).validate()
    with pytest.raises(SettingsError, match="lr"):
        OptimizeConfig(lr=float("nan")).validate()
    with pytest.raises(SettingsError, match="preset"):
        OptimizeConfig.from_preset("slow")
    paper = OptimizeConfig.from_preset("paper")
    assert (paper.iterations, paper.num_augs, paper.lr, paper.aug_pool) == (2000, 4, 1.0, 0)
    assert PRESETS["paper"]["clip_model"] == "RN101" and PRESETS["paper"]["seeds"] == 3
    assert PRESETS["paper"]["strokes"] == 16
    fast = OptimizeConfig.from_preset("fast", iterations=7)
    assert fast.iterations == 7 and fast.aug_pool > 0


def test_select_picks_lowest_loss():
    pts = torch.rand(4, 3, 4, 2) * 200
    st = Strokes.from_points(
        pts, (224, 224), losses=torch.tensor([0.5, 0.2, float("nan"), 0.3]), seeds=(0, 1000, 2000, 3000)
    )
    win, idx = select_best(st)
    assert idx == 1 and win.num_candidates == 1 and win.seeds == (1000,)
    assert torch.equal(win.points[0], pts[1])
    assert rank(st) == [1, 3, 0, 2]
    with pytest.raises(StrokeError, match="no losses"):
        select_best(Strokes.from_points(pts, (224, 224)))
    with pytest.raises(StrokeError, match="NaN"):
        select_best(st.replace(losses=torch.full((4,), float("nan"))))


def test_select_after_optimize(tiny_rn):
    res = optimize(_strokes([0, 1000, 2000]), _target(), tiny_rn, _cfg(iterations=2))
    win, idx = select_best(res.strokes)
    assert float(win.losses[0]) == float(res.strokes.losses.min())
    assert win.seeds == (res.strokes.seeds[idx],)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mixed_precision_on_gpu_matches_fp32(tiny_models):
    from clipasso.models import load_clip

    enc = load_clip(tiny_models["rn_name"], models_dir=tiny_models["folder"], device="cuda", allow_download=False)
    st = _strokes([0, 1000])
    amp = optimize(st, _target(), enc, _cfg(iterations=6, mixed_precision="auto"))
    full = optimize(st, _target(), enc, _cfg(iterations=6, mixed_precision="fp32"))
    assert torch.isfinite(amp.strokes.losses).all()
    assert torch.allclose(amp.history[0], full.history[0], rtol=0.05)  # same start, reduced precision
    assert (amp.strokes.losses < amp.history[0]).all()


def test_bad_target_is_a_clear_error(tiny_rn):
    bad = _target()
    bad[0, 5, 5] = float("nan")
    with pytest.raises(OptimizeError, match="NaN"):
        optimize(_strokes([0]), bad, tiny_rn, _cfg())
    with pytest.raises(OptimizeError, match="0..1"):
        optimize(_strokes([0]), _target() * 3, tiny_rn, _cfg())
