"""The weights-free trace loss (clipasso.objective.losses.TraceLoss) and loss="trace" / "clip+trace" through
the optimiser, the pipeline and the command line."""

from __future__ import annotations

import pytest
import torch

from clipasso.objective.losses import LossConfigError, TraceLoss, line_map
from clipasso.optimize import OptimizeConfig, OptimizeError, optimize
from clipasso.settings import SettingsError

SIZE = 96


def _ring_target(size=SIZE):
    """A dark ring on white [3,H,W]."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    r = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2).sqrt()
    ink = ((r - size * 0.3).abs() < 2.0).float()
    return (1 - ink).expand(3, size, size).contiguous()


def _strokes(n=4, seeds=(0,), size=SIZE):
    from clipasso.place.init import initialize_strokes

    return initialize_strokes((size, size), n, list(seeds))


def test_zero_for_identical_images_and_one_for_blank():
    t = _ring_target()
    same = TraceLoss(t, reference="image").eval_loss(t.unsqueeze(0))
    assert float(same["total"]) == pytest.approx(0.0, abs=1e-7)
    blank = TraceLoss(t, reference="image").eval_loss(torch.ones(2, 3, SIZE, SIZE))
    assert torch.allclose(blank["total"], torch.ones(2), atol=1e-5)
    assert {"trace_s1", "trace_s2", "trace_s4", "trace_s8", "total"} <= set(same)
    # "edges" compares with the target's line map: drawing exactly that map scores 0
    lines = line_map(t)
    drawn = (1 - lines).expand(1, 3, SIZE, SIZE)
    assert float(TraceLoss(t).eval_loss(drawn)["total"]) == pytest.approx(0.0, abs=1e-7)


def test_line_map_of_a_filled_shape_is_its_outline():
    t = torch.ones(3, 64, 64)
    t[:, 16:48, 16:48] = 0.0  # a filled black square
    lines = line_map(t, thickness=1)
    assert lines[32, 32] == 0 and lines[16, 32] == 1 and lines[32, 47] == 1
    assert lines.sum() == pytest.approx(4 * 31, abs=4)  # a 1 px outline of the 32 px square


def test_closer_sketch_scores_lower():
    t = _ring_target()
    loss = TraceLoss(t)
    near = torch.ones(1, 3, SIZE, SIZE)
    near[..., 18:20, 30:66] = 0  # a bar on the ring's top
    far = torch.ones(1, 3, SIZE, SIZE)
    far[..., 46:48, 30:66] = 0  # the same bar through the empty middle
    assert float(loss.eval_loss(near)["total"]) < min(1.0, float(loss.eval_loss(far)["total"]))


def test_gradient_flows_to_stroke_points():
    from clipasso.render.raster import rasterize

    st = _strokes(6, seeds=(0, 1))
    pts = st.points.clone().requires_grad_()
    img = rasterize(pts, st.widths, st.colors, SIZE, SIZE)[0]
    terms = TraceLoss(_ring_target()).train_loss(img, None)
    assert terms["total"].shape == (2,)
    terms["total"].sum().backward()
    assert pts.grad is not None and torch.isfinite(pts.grad).all()
    assert (pts.grad.abs().sum(-1) > 0).float().mean() > 0.5


def test_trace_mode_optimizes_without_an_encoder():
    st = _strokes(6, seeds=(0, 1000))
    cfg = OptimizeConfig(loss="trace", iterations=40, eval_interval=5, lr=1.0)
    res = optimize(st, _ring_target(), None, cfg)
    assert res.iterations_run == 40 and not res.diverged
    first, best = res.history[0], res.strokes.losses
    assert (best < first * 0.8).all(), (first, best)
    assert res.train_losses.shape == (40, 2)


def test_trace_mode_ignores_a_given_encoder_device():
    """An encoder passed in trace mode is not used (and not checked against the device)."""
    res = optimize(_strokes(2), _ring_target(), None, OptimizeConfig(loss="trace", iterations=2), device="cpu")
    assert res.iterations_run == 2


def test_bad_settings_are_clear_errors():
    t = _ring_target()
    with pytest.raises(SettingsError, match="loss must be one of"):
        OptimizeConfig(loss="pixels").validate()
    with pytest.raises(SettingsError, match="trace_weight"):
        OptimizeConfig(loss="clip+trace", trace_weight=-1.0).validate()
    with pytest.raises(SettingsError, match="trace_weight"):
        OptimizeConfig(loss="clip+trace", trace_weight=0.0).validate()
    with pytest.raises(SettingsError, match="trace_sigmas"):
        OptimizeConfig(loss="trace", trace_sigmas=(0.0, 2.0)).validate()
    with pytest.raises(SettingsError, match="trace_sigmas"):
        OptimizeConfig(loss="trace", trace_sigmas=()).validate()
    with pytest.raises(SettingsError, match="trace_reference"):
        OptimizeConfig(loss="trace", trace_reference="canny").validate()
    with pytest.raises(OptimizeError, match="needs a CLIP encoder"):
        optimize(_strokes(2), t, None, OptimizeConfig(iterations=1))
    with pytest.raises(OptimizeError, match="needs a CLIP encoder"):
        optimize(_strokes(2), t, None, OptimizeConfig(loss="clip+trace", iterations=1))
    with pytest.raises(SettingsError, match="trace_sigmas must be positive blur radii"):
        TraceLoss(t, sigmas=(-1,))
    with pytest.raises(SettingsError, match="trace_reference must be one of edges, image"):
        TraceLoss(t, reference="photo")
    with pytest.raises(SettingsError, match="trace_reference"):
        TraceLoss(t, OptimizeConfig(trace_reference="canny"))
    with pytest.raises(LossConfigError, match="one RGB image"):
        TraceLoss(torch.ones(2, 3, 8, 8))
    with pytest.raises(LossConfigError, match="differs from the target size"):
        TraceLoss(t).eval_loss(torch.ones(1, 3, 32, 32))


def test_clip_plus_trace_adds_the_terms(tiny_rn):
    from clipasso.objective.losses import CLIPassoLoss
    from clipasso.objective import Objective
    from clipasso.render.raster import rasterize

    t = _ring_target(224)
    st = _strokes(4, seeds=(0, 1), size=224)
    img = rasterize(st.points, st.widths, st.colors, 224, 224)[0]
    clip, trace = CLIPassoLoss(tiny_rn, t, num_augs=0), TraceLoss(t)
    objective = Objective.build(OptimizeConfig(loss="clip+trace", trace_weight=2.5, num_augs=0), tiny_rn, t)
    assert [(name, weight) for name, weight, _ in objective.terms] == [("clip", 1.0), ("trace", 2.5)]
    both = objective.eval_loss(img)
    expect = clip.eval_loss(img)["total"] + 2.5 * trace.eval_loss(img)["total"]
    assert torch.allclose(both["total"], expect, rtol=1e-5)
    assert {"clip", "trace", "semantic", "trace_s1"} <= set(both)
    res = optimize(st, t, tiny_rn, OptimizeConfig(loss="clip+trace", iterations=3, num_augs=1))
    assert res.iterations_run == 3 and torch.isfinite(res.strokes.losses).all()


def test_pipeline_trace_mode_loads_no_clip_model(monkeypatch):
    import clipasso.pipeline as pipeline
    from clipasso import models
    from clipasso.models import loader

    def no_clip(*a, **k):
        raise AssertionError("trace mode must not load a CLIP model")

    monkeypatch.setattr(pipeline, "loss_encoder", no_clip)
    monkeypatch.setattr(models, "load_clip", no_clip)
    monkeypatch.setattr(loader, "load_clip", no_clip)
    img = (_ring_target(120).permute(1, 2, 0) * 255).byte().numpy()
    res = pipeline.sketch(
        img,
        preset="fast",
        strokes=5,
        seeds=2,
        iterations=6,
        saliency="none",
        background_removal=False,
        device="cpu",
        loss="trace",
        allow_download=False,
    )
    assert res.settings["loss"] == "trace" and res.settings["clip_model"] is None
    assert res.candidates.num_candidates == 2 and res.run.iterations_run == 6
    assert float(res.strokes.losses[0]) < 1.0


def test_cli_trace_flag(tmp_path, capsys):
    from PIL import Image, ImageDraw

    from clipasso.cli import main

    src = tmp_path / "tri.png"
    im = Image.new("RGB", (150, 120), "white")
    ImageDraw.Draw(im).polygon([(75, 10), (140, 110), (10, 110)], outline="black", width=4)
    im.save(src)
    out = tmp_path / "tri.svg"
    rc = main(
        [
            "sketch",
            str(src),
            "-o",
            str(out),
            "--loss",
            "trace",
            "--saliency",
            "none",
            "--iterations",
            "3",
            "--strokes",
            "4",
            "--seeds",
            "1",
            "--no-background-removal",
            "--device",
            "cpu",
            "--offline",
            "-q",
        ]
    )
    text, err = capsys.readouterr()
    assert rc == 0, err
    assert out.read_text().count("<path") == 4
    assert "trace loss" in text
    with pytest.raises(SystemExit):
        main(["sketch", str(src), "--loss", "pixels"])
