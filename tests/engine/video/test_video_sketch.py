"""Video mode's engine: the temporal term (value and gradient recomputed by hand), the optical flow and the
warm start on clips with a known motion, strokes carried off the canvas, and bad clips."""

import numpy as np
import pytest
import torch

from clipasso.errors import OptimizeError, VideoError
from clipasso.objective import Objective
from clipasso.objective.temporal import TemporalTerm
from clipasso.settings import OptimizeConfig, VideoSettings
from clipasso.strokes import Strokes
from clipasso.video import replace_lost, sketch_video
from clipasso.video.flow import estimate_flow, move_points, sample_flow

FAST = dict(
    preset="fast",
    loss="trace",
    saliency="none",
    background_removal=False,
    framing="stretch",
    strokes=8,
    seeds=1,
    iterations=40,
    device="cpu",
)


@pytest.fixture(scope="module")
def photo():
    from skimage import data, transform

    return transform.resize(data.chelsea(), (320, 480), anti_aliasing=True).astype(np.float32)


def crop(photo, dx=0, dy=0, side=96):
    """A side x side window of the photo whose content moves by (-dx, -dy) as dx, dy grow."""
    y, x = 100 + dy, 150 + dx
    return (photo[y : y + side, x : x + side] * 255).astype(np.uint8)


def strokes_at(points, canvas=(64, 64)):
    p = torch.as_tensor(points, dtype=torch.float32)
    b, s = p.shape[:2]
    return Strokes(p, torch.full((b, s), 1.5), torch.tensor([0.0, 0, 0, 1]).expand(b, s, 4).clone(), canvas)


# --------------------------------------------------------------------------- the temporal term


def test_temporal_term_value_and_gradient_match_a_hand_computation():
    torch.manual_seed(0)
    anchor = torch.rand(1, 3, 4, 2) * 448
    points = (anchor + torch.randn(2, 3, 4, 2) * 3).requires_grad_(True)
    term = TemporalTerm(anchor, 0.5, canvas=(448, 448))
    value = term.train_loss(points)["total"]
    unit = 448 / 224
    for b in range(2):  # a plain loop over every control point
        total = 0.0
        for s in range(3):
            for k in range(4):
                dx = (float(points.detach()[b, s, k, 0]) - float(anchor[0, s, k, 0])) / unit
                dy = (float(points.detach()[b, s, k, 1]) - float(anchor[0, s, k, 1])) / unit
                total += dx * dx + dy * dy
        assert float(value[b]) == pytest.approx(0.5 * total / 12, rel=1e-5)
    value.sum().backward()
    expected = 2 * 0.5 * (points.detach() - anchor) / unit**2 / 12
    assert torch.allclose(points.grad, expected, rtol=1e-5, atol=1e-7)
    assert torch.equal(term.eval_loss(points.detach())["total"], value.detach())


def test_a_nan_anchor_frees_its_points_and_bad_anchors_are_refused():
    anchor = torch.zeros(1, 2, 4, 2)
    anchor[0, 1] = float("nan")
    points = torch.ones(1, 2, 4, 2) * 3
    v = TemporalTerm(anchor, 1.0, canvas=(224, 224)).value(points)
    assert float(v[0]) == pytest.approx(18 * 4 / 8)  # only stroke 0's four points count, over all eight
    with pytest.raises(OptimizeError, match="infinite"):
        TemporalTerm(torch.full((1, 1, 4, 2), float("inf")), 1.0)
    with pytest.raises(OptimizeError, match="strokes"):
        TemporalTerm(torch.zeros(1, 2, 4, 2), 1.0).value(torch.zeros(1, 3, 4, 2))
    with pytest.raises(OptimizeError, match="weight"):
        TemporalTerm(torch.zeros(1, 2, 4, 2), -1.0)


def test_the_objective_adds_the_temporal_term_when_its_context_has_an_anchor():
    target = torch.ones(3, 64, 64)
    target[:, 20:44, 30:34] = 0
    cfg = OptimizeConfig(loss="trace").validate()
    sk = strokes_at(torch.tensor([[[[10.0, 10], [20, 20], [30, 30], [40, 40]]]]))
    plain = Objective.build(cfg, None, target)
    anchor = sk.points + torch.tensor([2.0, 0.0])
    timed = Objective.build(cfg, None, target, context=dict(anchor=anchor, temporal_weight=0.25))
    assert not plain.needs_points and timed.needs_points
    base = float(plain.evaluate(sk)[0])
    # 4 px off in x on a 64 canvas: (2 * 224 / 64)^2 = 49 per point, times the weight
    assert float(timed.evaluate(sk)[0]) == pytest.approx(base + 0.25 * 49, rel=1e-5)
    parts = timed.eval_loss(timed.draw(sk), sk.points)
    assert float(parts["temporal"][0]) == pytest.approx(0.25 * 49, rel=1e-5)
    with pytest.raises(OptimizeError, match="points"):
        timed.eval_loss(timed.draw(sk))
    # adding the term to a built objective: the same values, the picture term shared, not built again
    added = plain.with_context(anchor=anchor, temporal_weight=0.25)
    assert float(added.evaluate(sk)[0]) == pytest.approx(float(timed.evaluate(sk)[0]), rel=1e-6)
    assert added.term("trace") is plain.term("trace") and not plain.needs_points
    assert plain.with_context() is plain


# --------------------------------------------------------------------------- flow and the warm start


def test_flow_of_a_translated_photo_is_the_translation(photo):
    a = torch.from_numpy(crop(photo)).permute(2, 0, 1).float() / 255
    b = torch.from_numpy(crop(photo, dx=2, dy=1)).permute(2, 0, 1).float() / 255  # content moves by (-2, -1)
    for method in ("tvl1", "ilk"):
        flow = estimate_flow(a, b, method)
        inner = flow[:, 10:-10, 10:-10]
        assert float(inner[0].median()) == pytest.approx(-2.0, abs=0.1), method
        assert float(inner[1].median()) == pytest.approx(-1.0, abs=0.1), method
    assert torch.equal(estimate_flow(a, b, "none"), torch.zeros(2, 96, 96))
    with pytest.raises(VideoError, match="same size"):
        estimate_flow(a, b[:, :50], "tvl1")


def test_move_points_samples_the_flow_at_each_control_point():
    flow = torch.zeros(2, 64, 64)
    flow[0] = torch.arange(64.0)[None, :]  # dx = the pixel's column: bilinear in x
    flow[1] = 3.0
    sk = strokes_at(torch.tensor([[[[10.5, 5.5], [20.0, 7.5], [30.5, 60.5], [-5.0, 1.0]]]]))
    moved = move_points(sk, flow)
    d = moved.points - sk.points
    assert torch.allclose(d[0, 0, :3, 0], torch.tensor([10.0, 19.5, 30.0]), atol=1e-4)
    assert float(d[0, 0, 3, 0]) == pytest.approx(-5.5, abs=1e-3)  # off the canvas: the fitted motion, x - 0.5
    assert torch.allclose(d[..., 1], torch.full_like(d[..., 1], 3.0))
    assert torch.equal(sample_flow(flow, torch.tensor([[0.5, 0.5]])), torch.tensor([[0.0, 3.0]]))


def test_a_pan_moves_the_strokes_with_the_picture(photo):
    frames = [crop(photo, dx=2 * i) for i in range(4)]
    out = list(sketch_video(frames, temporal_weight=10.0, frame_iterations=5, **FAST))
    assert [r.index for r in out] == [0, 1, 2, 3] and out[0].key and not any(r.key for r in out[1:])
    assert all(r.strokes.num_strokes == 8 and r.strokes.num_candidates == 1 for r in out)
    key = out[0].frame_strokes.points
    canvas = out[0].frame_strokes.canvas[0]
    scale = canvas / 96  # stretch: the 96 px frame fills the canvas
    for r in out[1:]:
        kept = [i for i in range(8) if all(i not in x.replaced for x in out[1 : r.index + 1])]
        truth = key[0, kept] - torch.tensor([2.0 * r.index * scale, 0.0])
        err = (r.frame_strokes.points[0, kept] - truth).norm(dim=-1).mean()
        assert float(err) < 1.0, (r.index, float(err))
        assert r.flow_shift == pytest.approx(2 * scale, rel=0.1)
        assert r.iterations == 5 and np.isfinite(r.loss)


def test_a_static_clip_keeps_its_strokes_still(photo):
    frames = [crop(photo)] * 3
    out = list(sketch_video(frames, frame_iterations=8, **FAST))
    for r in out[1:]:
        assert r.moved < 0.05 and r.flow_shift < 0.05
        assert r.loss == pytest.approx(out[0].loss, rel=0.02)


def test_strokes_carried_off_the_canvas_are_placed_again_inside_it():
    from clipasso.settings import SketchSettings

    pts = torch.tensor([[[[10.0, 10], [15, 12], [20, 14], [25, 16]], [[-30, 5], [-20, 6], [-10, 7], [3, 8]]]])
    sk = strokes_at(pts)
    target = torch.ones(3, 64, 64)
    target[:, 30:40, 30:40] = 0
    s = SketchSettings.from_preset("fast", loss="trace", saliency="none", background_removal=False)
    out, replaced = replace_lost(sk, target, None, s, torch.device("cpu"), seed=3)
    assert replaced == [1]
    assert torch.equal(out.points[0, 0], pts[0, 0])
    p = out.points[0, 1]
    assert bool(((p >= 0) & (p <= 64)).all())
    assert out.num_strokes == 2 and torch.equal(out.widths, sk.widths)


# --------------------------------------------------------------------------- bad clips


def test_bad_clips_get_clear_errors(photo):
    with pytest.raises(VideoError, match="no frames"):
        list(sketch_video([], **FAST))
    frames = [crop(photo), crop(photo, side=80)]
    with pytest.raises(VideoError, match="same size"):
        list(sketch_video(frames, frame_iterations=2, **FAST))
    with pytest.raises(VideoError, match="fewer masks"):
        list(sketch_video([crop(photo)] * 2, masks=[np.ones((96, 96))], frame_iterations=2, **FAST))
    with pytest.raises(Exception, match="frame_iterations"):
        list(sketch_video([crop(photo)], frame_iterations=-1, **FAST))
    assert VideoSettings().frame_steps(type("S", (), {"iterations": 500})()) == 50


def test_one_frame_is_a_key_frame_and_a_mask_is_the_matte(photo):
    mask = np.zeros((96, 96), np.float32)
    mask[20:70, 20:70] = 1
    out = list(sketch_video([crop(photo)], masks=[mask], **dict(FAST, saliency="mask")))
    assert len(out) == 1 and out[0].key
    pts = out[0].frame_strokes.points[0]
    scale = out[0].frame_strokes.canvas[0] / 96
    inside = ((pts >= 15 * scale) & (pts <= 75 * scale)).all(-1).float().mean()
    assert float(inside) > 0.8  # the strokes start inside the given matte


def test_lost_strokes_are_placed_again_with_the_best_of_several_placements():
    from clipasso.settings import SketchSettings

    before = strokes_at(torch.tensor([[[[10.0, 10], [15, 12], [20, 14], [25, 16]], [[5, 5], [6, 6], [7, 7], [8, 8]]]]))
    pts = before.points.clone()
    pts[0, 1] -= 40  # the motion took stroke 1 off the top-left corner
    after = before.replace(points=pts)
    s = SketchSettings.from_preset("fast", loss="trace", saliency="none", background_removal=False)
    cpu = torch.device("cpu")
    line = torch.ones(3, 64, 64)
    line[:, 8:18, 8:28] = 0
    placed, replaced = replace_lost(after, line, None, s, cpu, 0, before=before)
    assert replaced == [1] and bool(((placed.points[0, 1] >= 0) & (placed.points[0, 1] <= 64)).all())
    assert torch.equal(placed.points[0, 0], after.points[0, 0])
    # judged by the frame's loss: the lowest of the placements drawn (seeds 0..3), which tries=1 draws one by one
    objective = Objective.build(s.optimize_config(), None, line)
    best, _ = replace_lost(after, line, None, s, cpu, 0, before=before, objective=objective, tries=4)
    singles = [
        float(objective.evaluate(replace_lost(after, line, None, s, cpu, k, before=before, tries=1)[0])[0])
        for k in range(4)
    ]
    assert float(objective.evaluate(best)[0]) == pytest.approx(min(singles), rel=1e-6)
    # a stroke off the canvas a frame earlier too, or excluded, is left where it is
    assert replace_lost(after, line, None, s, cpu, 0, before=after)[1] == []
    assert replace_lost(after, line, None, s, cpu, 0, exclude=[1])[1] == []


def test_a_long_pan_keeps_its_strokes_on_the_picture(photo):
    """A pan that carries strokes off the canvas: each stroke placed again is where the picture is, and only
    where that paid (the frame's loss after its pass beat leaving the stroke out of sight)."""
    frames = [crop(photo, dx=12 * i) for i in range(6)]  # 60 of the 96 px leave the frame
    out = list(sketch_video(frames, frame_iterations=10, **dict(FAST, strokes=12, iterations=60)))
    assert all(r.strokes.num_strokes == 12 for r in out)
    assert sum(len(r.replaced) for r in out) >= 2
    for r in out[1:]:
        for i in r.replaced:
            curve = r.frame_strokes.points[0, i]
            assert bool(((curve >= -20) & (curve <= r.frame_strokes.canvas[0] + 20)).all())


def test_scene_mode_keeps_every_strokes_layer_through_the_clip(photo):
    frames = [crop(photo, dx=i) for i in range(2)]
    out = list(
        sketch_video(
            frames,
            **dict(FAST, scene=True, background_strokes=6, background_removal=True, framing="pad", joint_iterations=2),
            frame_iterations=3,
        )
    )
    assert len(out) == 2
    layers = out[0].strokes.layers
    assert layers is not None and set(layers) <= {"background", "foreground"}
    assert out[1].strokes.layers == layers and out[1].strokes.num_strokes == out[0].strokes.num_strokes


def test_points_off_the_canvas_move_with_the_frames_affine_motion():
    from clipasso.video.flow import affine_fit

    h = w = 64
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    flow = torch.stack([0.02 * (xs - 32) + 1.0, 0.02 * (ys - 32) - 0.5])  # a zoom by 2 % and a shift
    a = affine_fit(flow)
    assert torch.allclose(a, torch.tensor([[0.02, 0.0, 1.0 - 0.64], [0.0, 0.02, -0.5 - 0.64]]), atol=1e-4)
    sk = strokes_at(torch.tensor([[[[-20.0, 10], [10, 10], [30, 80], [70, -5]]]]))
    d = move_points(sk, flow).points - sk.points
    expected = torch.stack([0.02 * (sk.points[..., 0] - 32) + 1.0, 0.02 * (sk.points[..., 1] - 32) - 0.5], -1)
    assert torch.allclose(d, expected, atol=1e-3)  # inside: sampled; outside: the fitted motion, not the border's
